"""Evaluation commands: evaluate."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import _common as c

ORDER = 20


def add_commands(sub) -> None:
    p = sub.add_parser("evaluate", help="metrics of a run on a split; writes RUN/eval.json")
    p.add_argument("run", help="run folder")
    p.add_argument("--split", default="test", choices=("train", "val", "test", "all"))
    p.add_argument("--iwae-samples", type=int, default=0, metavar="K", help="VAEs: IWAE bound with K samples (0: off)")
    p.add_argument("--binarize", default="none", choices=("none", "static"), help="score a seeded Bernoulli draw")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--max-samples", type=int, default=None, metavar="N", help="first N images of the split only")
    p.add_argument("--data-dir", default=None, help="override the run's data directory")
    p.add_argument("--out", default=None, help="JSON file to write (default RUN/eval.json)")
    p.set_defaults(func=cmd_evaluate)



def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..evaluate import evaluate

    run = c.load_run(args.run)
    data = run.data(**({"data_dir": args.data_dir} if args.data_dir else {}))
    metrics = evaluate(run.model, data, args.split, iwae_samples=args.iwae_samples, batch_size=args.batch_size,
                       binarize=args.binarize, max_samples=args.max_samples)
    out = Path(args.out) if args.out else run.path / "eval.json"
    c.write_json(out, {"split": args.split, "binarize": args.binarize, **metrics})
    c.print_metrics(metrics, f"{run.model_name} on {data.name} [{args.split}]")
    print(f"wrote {out}")
    return 0

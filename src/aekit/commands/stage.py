"""`aekit train-stage RUN [--stage NAME]`: train a finished run's second stage (e.g. a VQ-VAE's prior over its
codes) inside the run folder. Family-agnostic: the stages are whatever the run's model lists in ``stages``."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import _common as c

ORDER = 5


def add_commands(sub) -> None:
    from ..options import add_flags
    from ..train.config import TrainConfig

    p = sub.add_parser("train-stage", help="train a run's second stage (e.g. the prior over its codes) into RUN/STAGE",
                       description="Train the second stage of a finished run on its frozen first stage, with the engine "
                                   "of `aekit train`. RUN/STAGE/ gets metrics.csv and checkpoints/ (continue with "
                                   "--resume); at the end RUN/model.safetensors holds the stage's best weights and "
                                   "RUN/config.json records the stage under 'stages'.")
    p.add_argument("run", help="finished run folder")
    p.add_argument("--stage", default=None, metavar="NAME", help="which stage (default: the model's only one)")
    p.add_argument("--resume", action="store_true", help="continue RUN/STAGE from its checkpoints/last.ckpt")
    p.add_argument("--data-dir", default=None, help="override the run's data directory")
    # binarize: a stage trains on codes, never on pixels
    add_flags(p.add_argument_group("training"), [TrainConfig], skip=("binarize",))
    p.set_defaults(func=cmd_train_stage)


def cmd_train_stage(args: argparse.Namespace) -> int:
    import dataclasses

    from ..registry import get
    from ..train.config import TrainConfig
    from ..train.runs import read_config, read_metrics
    from ..train.stage import resolve_stage, stage_record, train_stage

    run_dir = Path(args.run)
    record = read_config(run_dir)
    entry = get(record["model"]["name"])
    name = resolve_stage(record["model"]["name"], entry.cls.stages, args.stage)
    keys = [f.name for f in dataclasses.fields(TrainConfig)]
    given = {k: v for k, v in vars(args).items() if k in keys}
    opts = {}
    old = stage_record(record, name)
    if args.resume and old is not None:  # the recorded options, unless given again
        opts = {k: v for k, v in old.get("train", {}).items() if k in keys}
    cfg = TrainConfig.from_dict({**opts, **given})
    cfg.check_machine()
    print(f"training the {name} stage of {run_dir} ({record['model']['name']}) for {cfg.epochs} epochs -> {run_dir / name}")
    run = train_stage(run_dir, name, cfg, resume=args.resume,
                      data_overrides={"data_dir": args.data_dir} if args.data_dir else None)
    if run is None:  # a non-zero DDP rank
        return 0
    rows = read_metrics(run_dir / name / "metrics.csv")
    best = min(rows, key=lambda r: r.get("val_loss", r.get("train_loss", float("inf")))) if rows else {}
    c.print_metrics({k: v for k, v in best.items() if k.startswith(("val_", "train_loss")) or k == "epoch"},
                    f"{name} stage, best epoch:")
    print(f"wrote {run_dir / 'model.safetensors'} (with the {name} stage) and {run_dir / name}/")
    return 0

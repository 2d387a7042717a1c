"""Evaluation commands: evaluate (metrics of one run) and bench (the leaderboard of several models)."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import _common as c

ORDER = 20

METRIC_HELP = ("comma list of mse,bce,psnr,ssim,elbo,nll,kl,active,codebook,bits,fid,probe,knn,pca or 'all', which "
               "skips what does not apply with the reason (default: mse,bce,psnr,ssim, + elbo,kl,active for VAEs, "
               "+ codebook for discrete codes, + bits once their prior is trained)")


def add_commands(sub) -> None:
    p = sub.add_parser("evaluate", help="metrics of a run on a split; writes RUN/eval.json",
                       description="Metrics of a trained run. FID-classifier uses a small classifier aekit trains on "
                                   "the data set once and caches in the data folder; it is never comparable with "
                                   "Inception FID.")
    p.add_argument("run", help="run folder")
    p.add_argument("--metrics", default=None, metavar="LIST", help=METRIC_HELP)
    p.add_argument("--split", default="test", choices=("train", "val", "test", "all"), help="split to score (default test)")
    p.add_argument("--iwae-samples", type=c.nonneg_int, default=None, metavar="K",
                   help="VAEs: importance samples of the NLL bound (default 5000 with --metrics nll; "
                        "given alone it adds nll)")
    p.add_argument("--nll-samples", type=c.positive_int, default=None, metavar="N", help="score the NLL on the first N images only")
    p.add_argument("--binarize", default="none", choices=("none", "static"),
                   help="score a seeded Bernoulli draw of the data (likelihoods on binarised MNIST)")
    p.add_argument("--batch-size", type=c.positive_int, default=500, help="images per batch (default 500)")
    p.add_argument("--max-samples", type=c.positive_int, default=None, metavar="N", help="first N images of the split only")
    p.add_argument("--seed", type=c.seed, default=0,
                   help="seed of everything drawn at random (VAE posterior samples, --binarize, probe subsets)")
    p.add_argument("--data-dir", default=None, help="override the run's data directory")
    p.add_argument("--out", default=None, help="JSON file to write (default RUN/eval.json)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("bench", help="train and evaluate several models; writes a leaderboard",
                       description="Train each model (finished runs in OUT/runs are re-used), evaluate it on the test "
                                   "split, and write OUT/leaderboard.csv, leaderboard.md, leaderboard.png and "
                                   "bench.json, with the PCA baseline of the same code size as its own row.")
    p.add_argument("--dataset", required=True, metavar="SPEC", help="mnist | fashion-mnist | digits | ...")
    p.add_argument("--models", default="ae,deep-ae,conv-ae,dae,sparse-ae,vae,conv-vae,beta-vae", metavar="LIST",
                   help="comma list of registered models")
    p.add_argument("--latent-dim", type=c.positive_int, default=16, help="code size of every model (default 16)")
    p.add_argument("--epochs", type=c.positive_int, default=5, help="training epochs per model (default 5)")
    p.add_argument("--batch-size", type=c.positive_int, default=128, help="training images per batch (default 128)")
    p.add_argument("--time-budget", type=c.positive_float, default=None, metavar="MIN",
                   help="start no new training after MIN minutes (later models are listed as skipped)")
    p.add_argument("--max-train-samples", type=c.positive_int, default=None, metavar="N", help="train on a seeded subset")
    p.add_argument("--iwae-samples", type=c.positive_int, default=100, metavar="K", help="VAEs: IWAE samples of the NLL column")
    p.add_argument("--nll-samples", type=c.positive_int, default=1000, metavar="N", help="VAEs: test images scored for the NLL")
    p.add_argument("--data-dir", default=None, help="where datasets are found and cached (env AEKIT_DATA)")
    p.add_argument("--seed", type=c.seed, default=0, help="seed of the splits, weights and batches (default 0)")
    p.add_argument("--out", default=None, help="bench folder (default bench/DATASET-zLATENT)")
    p.set_defaults(func=cmd_bench)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..evaluate.metrics import parse_metrics
    from ..evaluate.suite import default_metrics, evaluate_metrics

    run = c.load_run(args.run)
    names = parse_metrics(args.metrics) if args.metrics else default_metrics(run.model)
    if args.iwae_samples is not None and "nll" not in names:
        names = (*names, "nll")  # --iwae-samples K alone asks for the bound, as before --metrics existed
    data = run.data(**({"data_dir": args.data_dir} if args.data_dir else {}))
    cache = args.data_dir or run.config["data"].get("data_dir")
    if cache is None:
        from ..data.load import default_data_dir

        cache = default_data_dir()
    metrics = evaluate_metrics(run.model, data, names, split=args.split,
                               iwae_samples=5000 if args.iwae_samples is None else args.iwae_samples,
                               nll_samples=args.nll_samples, binarize=args.binarize, batch_size=args.batch_size,
                               seed=args.seed, max_samples=args.max_samples, cache_dir=cache, progress=True)
    out = Path(args.out) if args.out else run.path / "eval.json"
    c.write_json(out, metrics)
    c.print_metrics({k: v for k, v in metrics.items() if not isinstance(v, list)},
                    f"{run.model_name} on {data.name} [{args.split}]")
    print(f"wrote {out}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import re

    from ..errors import ConfigError
    from ..evaluate.bench import leaderboard_figure, leaderboard_markdown, parse_models, run_bench
    from ..train.runs import atomic_write, write_csv

    models = parse_models(args.models)
    for flag, value in (("--latent-dim", args.latent_dim), ("--epochs", args.epochs), ("--batch-size", args.batch_size)):
        if value < 1:
            raise ConfigError(f"{flag} must be a positive integer, got {value}")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(args.dataset).name or args.dataset).strip("-")
    out = Path(args.out) if args.out else Path("bench") / f"{slug}-z{args.latent_dim}"
    rows, info = run_bench(args.dataset, models, out, latent_dim=args.latent_dim, epochs=args.epochs,
                           time_budget_min=args.time_budget, max_train_samples=args.max_train_samples,
                           data_dir=args.data_dir, batch_size=args.batch_size, iwae_samples=args.iwae_samples,
                           nll_samples=args.nll_samples, seed=args.seed)
    title = f"{args.dataset}, {args.latent_dim}-d code, {args.epochs} epochs"
    write_csv(out / "leaderboard.csv", rows)
    md = leaderboard_markdown(rows, title)
    command = "aekit bench " + " ".join(_argv_of(args))
    atomic_write(out / "leaderboard.md", md + f"\nCommand: `{command}`\n")
    c.write_json(out / "bench.json", {"command": command, **info, "rows": rows})
    import io

    buf = io.BytesIO()
    leaderboard_figure(rows, title).savefig(buf, format="png", dpi=110)
    atomic_write(out / "leaderboard.png", buf.getvalue())
    print(md)
    print(f"wrote {out / 'leaderboard.csv'}, leaderboard.md, leaderboard.png, bench.json")
    return 0


def _argv_of(args: argparse.Namespace) -> list[str]:
    """The options as given, for the exact command line recorded beside the table."""
    parts = [f"--dataset {args.dataset}", f"--models {args.models}", f"--latent-dim {args.latent_dim}",
             f"--epochs {args.epochs}"]
    for flag, value in (("--time-budget", args.time_budget), ("--max-train-samples", args.max_train_samples),
                        ("--out", args.out)):
        if value is not None:
            parts.append(f"{flag} {value}")
    return parts

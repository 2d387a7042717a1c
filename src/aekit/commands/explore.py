"""Exploration commands: `aekit plot KIND RUN` (one experiment -> PNG + JSON) and `aekit report RUN`.

A thin CLI over :class:`aekit.session.RunSession`, which loads the run, encodes and caches, knows which figures
apply to the model and builds them; this module parses flags, renders Figures to bytes and writes them
atomically into RUN/figures/ (or --out) and RUN/report.html.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError
from ..session import KINDS, OPTION_NAMES
from . import _common as c

ORDER = 30


def _count(text: str) -> int | None:
    if text == "all":
        return None
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', got {text!r}")
    return n


def add_commands(sub) -> None:
    S = argparse.SUPPRESS  # absent unless given, so a flag a KIND does not take is an error, not ignored
    width = max(map(len, KINDS))
    kinds = "\n".join(f"  {k:<{width}} {spec.help}" + (f" [needs: {', '.join(spec.needs)}]" if spec.needs else "")
                      for k, spec in KINDS.items())
    p = sub.add_parser("plot", help="one latent-space experiment of a run -> RUN/figures/KIND.png (+ .json)",
                       description=f"KIND is one of:\n{kinds}\n\nA KIND the run's model cannot do (see `needs`) exits "
                                   "with the reason.", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", metavar="KIND", help="see the list above")
    p.add_argument("run", help="run folder")
    p.add_argument("--out", default=None, metavar="PNG", help="picture to write (default RUN/figures/KIND.png); numbers go beside it as .json")
    p.add_argument("--seed", type=c.seed, default=0, help="subsampling, sampling and noise seed")
    p.add_argument("--data-dir", default=None, help="override the run's data directory")
    p.add_argument("--batch-size", type=c.positive_int, default=1024, help="images per encode/decode batch (default 1024)")
    p.add_argument("--n", type=_count, default=S, metavar="N|all", help="how many images / codes / samples")
    p.add_argument("--split", choices=("train", "val", "test", "all"), default=S, help="default test")
    p.add_argument("--indices", type=c.int_list, default=S, metavar="I,J,..", help="images of the split to show")
    p.add_argument("--method", choices=("pca", "tsne", "umap", "none"), default=S, help="latent: projection of wide codes")
    p.add_argument("--dims", type=c.int_list, default=S, metavar="I,J[,K]", help="raw code dimensions to plot")
    p.add_argument("--a", type=c.nonneg_int, default=S, metavar="IDX", help="image index in the split")
    p.add_argument("--b", type=c.nonneg_int, default=S, metavar="IDX",
                   help="second image index (interpolate: the end; arithmetic: a - b)")
    p.add_argument("--c", type=c.nonneg_int, default=S, metavar="IDX", help="third image index (arithmetic: a - b + c)")
    p.add_argument("--classes", default=S, metavar="A,B,C", help="arithmetic A - B + C on class means (names or label numbers)")
    p.add_argument("--label", default=S, metavar="CLASS",
                   help="sample: images of one class (a conditional model such as cvae; a class name or label number)")
    p.add_argument("--expr", default=S, metavar="EXPR",
                   help="arithmetic: any signed combination of images and class means, e.g. '3 - 5 + 8', "
                        "'class:7 - class:1 + 12', '0.5*class:1 + 0.5*class:7'")
    p.add_argument("--steps", type=c.positive_int, default=S, help="interpolation / traversal steps")
    p.add_argument("--mode", default=S, help="interpolate: linear|slerp; traverse: range|max")
    p.add_argument("--range", type=c.finite_float, nargs=2, default=S, metavar=("LO", "HI"), help="manifold grid range")
    p.add_argument("--step", type=c.positive_float, default=S, help="manifold grid step")
    p.add_argument("--noise", default=S, help="denoise: gaussian:STD[,MEAN] e.g. gaussian:0.5 | saltpepper:0.1 | mask:0.3")
    p.add_argument("--cell", type=c.int_list, default=S, metavar="R,C", help="swap: the code-grid cell to change (default the centre)")
    p.add_argument("--entries", type=c.int_list, default=S, metavar="K,K,..",
                   help="swap: codebook entries to put in the cell (default the 7 most used)")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("report", help="self-contained HTML report of a run -> RUN/report.html",
                       description="Every figure that applies to the run's model, embedded in one HTML page; the "
                                   "figures that do not apply are listed with the reason.")
    p.add_argument("run", help="run folder")
    p.add_argument("--quick", action="store_true", help="subsample and skip t-SNE (seconds, not minutes)")
    p.add_argument("--data-dir", default=None, help="override the run's data directory")
    p.set_defaults(func=cmd_report)


def cmd_plot(args: argparse.Namespace) -> int:
    import json

    from .. import plots
    from ..fileio import atomic_write
    from ..session import RunSession

    if args.kind not in KINDS:
        raise ConfigError(f"unknown plot kind {args.kind!r}; use one of {', '.join(KINDS)}")
    out = Path(args.out) if args.out else None
    if out is not None and out.suffix.lower() != ".png":
        raise ConfigError(f"--out must name a .png file, got {out}")
    options = {k: getattr(args, k) for k in OPTION_NAMES if hasattr(args, k)}
    s = RunSession(c.load_run(args.run), args.data_dir, args.seed, args.batch_size)
    fig, numbers = s.figure(args.kind, options)
    out = out or s.run.path / "figures" / f"{args.kind}.png"
    atomic_write(out, plots.to_png(fig))
    atomic_write(out.with_suffix(".json"), json.dumps({"kind": args.kind, **numbers}) + "\n")
    if args.kind == "defects":
        c.print_metrics({k: numbers[k] for k in ("area_spread", "asymmetry", "gap_mass")},
                        f"latent-space defects of {s.model.name} (lower is better; gaps for: {numbers['sampler']}):")
    elif args.kind == "density":
        p = numbers["pooled"]
        print(f"all {p['count']} code values: from {p['min']:.2f} to {p['max']:.2f}, mean {p['mean']:.2f}, "
              f"std {p['std']:.2f}")
    elif args.kind == "denoise":
        print(f"PSNR noisy {numbers['mean_psnr_noisy']:.2f} dB -> output {numbers['mean_psnr_output']:.2f} dB")
    elif args.kind == "codes":
        print(f"codebook use: perplexity {numbers['perplexity']:.1f} of {numbers['codebook_size']}, "
              f"{numbers['dead']} dead entries")
    print(out)
    return 0


def write_report(run_path, quick: bool = False, data_dir: str | None = None, progress: bool = True) -> Path:
    """Make every applicable figure of the run and write RUN/report.html (self-contained); returns its path."""
    from ..fileio import atomic_write
    from ..report import build_report
    from ..session import RunSession

    # quick: every split capped to a seeded 5,000 images, so encoding stays a few seconds on MNIST
    s = RunSession(c.load_run(str(run_path)), data_dir, progress=progress, limit=5000 if quick else None)
    figures, skipped = s.report_figures(quick)
    out = s.run.path / "report.html"
    atomic_write(out, build_report(s.run, figures, skipped))
    return out


def cmd_report(args: argparse.Namespace) -> int:
    print(write_report(args.run, quick=args.quick, data_dir=args.data_dir))
    return 0

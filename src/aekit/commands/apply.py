"""Commands that put a trained model to work: anomaly, anomaly-bench, encode, denoise, export."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError, DataError
from . import _common as c

ORDER = 40


def _input_options(p: argparse.ArgumentParser, split_default: str) -> None:
    p.add_argument("run", help="run folder")
    p.add_argument("--data", default=None, metavar="SPEC",
                   help="data to process: mnist | digits | PATH (.npy/.npz/.csv/image folder); a tabular run takes "
                        "raw tables (.csv/.npy/.parquet/.mat) and applies its saved scaler; default: the run's own data")
    p.add_argument("--split", default=None, choices=("train", "val", "test", "all"),
                   help="which split of the data (default: all)" if split_default == "all" else
                   f"which split of the data (default: {split_default} of the run's own data, all of --data)")
    p.add_argument("--data-dir", default=None, help="where named datasets are found")
    p.add_argument("--image-size", type=c.size, default=None, metavar="H[xW]", help="resize the input images")
    p.add_argument("--channels", type=int, choices=(1, 3), default=None, help="convert the input to 1 or 3 channels")
    p.add_argument("--shape", type=c.shape3, default=None, metavar="CxHxW", help="shape of flat N x D arrays (default: the run's)")
    p.add_argument("--batch-size", type=c.positive_int, default=None, help="images per batch (default: anomaly 512, encode 4096, "
                   "denoise 1024)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(split_default=split_default)


def add_commands(sub) -> None:
    p = sub.add_parser("anomaly", help="anomaly scores of a run on data; writes a CSV",
                       description="Score images with a trained model (higher = more anomalous). The threshold is the "
                                   "(1 - contamination) quantile of the scores on the run's own train split.")
    _input_options(p, "test")
    p.add_argument("--score", default="recon", choices=("recon", "elbo", "nll"), help="recon: MSE; elbo/nll: VAEs")
    p.add_argument("--samples", type=c.positive_int, default=10, help="posterior samples for elbo / nll")
    p.add_argument("--contamination", type=c.finite_float, default=0.1, help="expected share of anomalies in the train split")
    p.add_argument("--out", default="scores.csv", help="CSV: index, label, score, is_anomaly")
    p.set_defaults(func=cmd_anomaly)

    p = sub.add_parser("anomaly-bench", help="one-class benchmark (Ruff et al. 2018) or the ODDS tables (PyOD's protocol)",
                       description="Images: train on one class at a time, score the full test set, AUROC per class and "
                                   "mean, beside Deep SVDD's published MNIST numbers. --dataset odds:cardio,pima: PyOD's "
                                   "protocol on ODDS .mat files in the data folder (60/40 splits, unsupervised fit on "
                                   "train, test ROC-AUC and precision @ n, mean ± std over --seeds); PyOD's AE and VAE "
                                   "run beside when PyOD is installed.")
    p.add_argument("--dataset", default="mnist", metavar="SPEC",
                   help="image data set (default mnist), or odds:NAME,NAME for the ODDS tables")
    p.add_argument("--data-dir", default=None, help="where datasets are found and cached (env AEKIT_DATA)")
    p.add_argument("--model", default=None, help="default conv-ae (one-class); ae,vae (odds: a comma list)")
    p.add_argument("--epochs", type=c.positive_int, default=None, help="default 5 (one-class); the detector's own (odds)")
    p.add_argument("--latent-dim", type=c.positive_int, default=None, help="default 32 (one-class); half the features, 1..16 (odds)")
    p.add_argument("--seeds", type=c.positive_int, default=3, help="odds: train/test splits (seeds 0..N-1)")
    p.add_argument("--batch-size", type=c.positive_int, default=128, help="training images per batch (default 128; odds: the "
                   "detector's own, 32, unless given)")
    p.add_argument("--lr", type=c.positive_float, default=1e-3, help="Adam learning rate (default 0.001)")
    p.add_argument("--score", default="recon", choices=("recon", "elbo", "nll"),
                   help="anomaly score: recon = reconstruction MSE; elbo / nll: VAEs only")
    p.add_argument("--classes", type=c.int_list, default=None, metavar="0,1,...", help="default: every class")
    p.add_argument("--seed", type=c.seed, default=0, help="one-class: seed of the splits, weights and batches (odds: "
                   "see --seeds)")
    p.add_argument("--runs", default=None, metavar="DIR", help="keep the per-class run folders here")
    p.add_argument("--out", default=None, metavar="JSON", help="write the results as JSON")
    p.add_argument("--markdown", default=None, metavar="MD", help="write the table as markdown")
    p.set_defaults(func=cmd_anomaly_bench)

    p = sub.add_parser("encode", help="codes of data under a run's encoder, streamed to .npy/.npz/.parquet",
                       description="Encode data batch by batch. A uint8 .npy input is memory-mapped and never read "
                                   "whole; a float .npy is converted to uint8 (a quarter of its size) a chunk at a "
                                   "time; .npy codes are appended batch by batch after a check that the disk has "
                                   "room, to a hidden temporary file renamed at the end.")
    _input_options(p, "all")
    p.add_argument("--out", required=True, help="codes.npy | codes.npz (codes + labels) | codes.parquet")
    p.add_argument("--backend", default="auto", choices=("torch", "onnx", "auto"),
                   help="torch; onnxruntime (uses RUN/export/encoder.onnx or exports one); auto (default): "
                        "the faster of the two, timed on the first batch (torch for jobs of a second or two)")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("denoise", help="reconstruct (clean) images through a run; PNG files or a .npy array")
    _input_options(p, "all")
    p.add_argument("--out", required=True, help="a folder (PNG files) or a .npy file (uint8 N x C x H x W)")
    p.add_argument("--noise", default=None, help="corrupt the input first (gaussian:STD[,MEAN] e.g. gaussian:0.5 | saltpepper:0.1 | mask:0.3)")
    p.add_argument("--save-input", action="store_true", help="PNG mode: also write the (noisy) inputs")
    p.add_argument("--seed", type=c.seed, default=0, help="seed of the --noise corruption")
    p.set_defaults(func=cmd_denoise)

    p = sub.add_parser("export", help="write encoder and decoder as ONNX (or TorchScript) files",
                       description="Write encoder and decoder, with export.json (each file's sha256 and the sha256 of "
                                   "the weights they came from), into a new folder that replaces --out whole in one "
                                   "rename: a reader finds the old pair or the new one, never a mix.")
    p.add_argument("run", help="run folder")
    p.add_argument("--format", default="onnx", choices=("onnx", "torchscript"),
                   help="onnx (default; onnxruntime and other runtimes) or torchscript (torch.jit)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="a new or empty folder, or an earlier export (replaced); default RUN/export")
    p.set_defaults(func=cmd_export)


def _load(args, run, lazy: bool = False):
    from ..apply import load_input
    from ..data.tables import is_table_record, load_for_run

    spec = args.data if args.data is not None else run.config["data"]["spec"]
    opts = {"image_size": args.image_size, "channels": args.channels, "shape": args.shape}
    if is_table_record(run.config["data"]):  # a table: raw rows through the run's saved scaler
        for flag, value in (("--image-size", args.image_size), ("--channels", args.channels), ("--shape", args.shape)):
            if value is not None:
                raise ConfigError(f"{flag} applies to images; {args.run} was trained on a table")
        data = load_for_run(args.data, run.config["data"], data_dir=args.data_dir)
    else:
        if args.data is None:  # the run's own data, split as in training
            from ..data import recorded_options

            for k, v in recorded_options(run.config["data"]).items():
                if opts.get(k) is None:
                    opts[k] = v
        if args.data_dir:
            opts["data_dir"] = args.data_dir
        data = load_input(spec, run.model.input_shape, **opts)
    if args.split is None:  # a file of the user's own is scored whole; the run's data by its held-out split
        args.split = "all" if args.data is not None else args.split_default
    # lazy: a consumer that only slices (encode) lets data kept on disk (a pack) read a slice at a time
    images, labels = data.split_lazy(args.split) if lazy else data.split(args.split)
    if len(images) == 0:
        raise DataError(f"split {args.split!r} of {data.name} is empty; use --split all")
    return data, images, labels


def cmd_anomaly(args: argparse.Namespace) -> int:
    import numpy as np

    from ..anomaly import AnomalyDetector
    from ..train.runs import write_csv

    c.check_output_path(args.out, "--out")
    run = c.load_run(args.run)
    det = AnomalyDetector(run, score_type=args.score, contamination=args.contamination, samples=args.samples,
                          batch_size=args.batch_size or 512, progress=args.progress)
    data, images, labels = _load(args, run)  # the data to score: checked before the threshold is fitted
    train_opts = {"data_dir": args.data_dir} if args.data_dir else {}
    det.fit(run.data(**train_opts).split("train")[0])
    scores = det.decision_function(images)  # scored as the threshold's scores were (a table: the run's scaler)
    flags = (scores > det.threshold_).astype(np.int64)
    idx = data.splits.get(args.split) if args.split != "all" else None
    rows_of = idx.tolist() if idx is not None else range(len(images))  # the row in the data set, not in the split
    rows = [{"index": i, "label": int(y), "score": f"{s:.6g}", "is_anomaly": int(f)}
            for i, y, s, f in zip(rows_of, labels.tolist(), scores, flags)]
    write_csv(Path(args.out), rows)
    print(f"{len(scores)} samples of {data.name} [{args.split}] scored ({args.score}); threshold {det.threshold_:.6g} "
          f"(contamination {args.contamination}); {int(flags.sum())} flagged -> {args.out}")
    return 0


def cmd_anomaly_bench(args: argparse.Namespace) -> int:
    from ..anomaly import benchmark_markdown, one_class_benchmark

    if args.epochs is not None and args.epochs < 1:
        raise ConfigError(f"--epochs must be >= 1, got {args.epochs}")
    c.check_output_path(args.out, "--out")
    c.check_output_path(args.markdown, "--markdown")
    if args.dataset.strip().lower().startswith("odds:"):
        return _odds_bench(args)
    args.model = args.model or "conv-ae"
    args.epochs = args.epochs or 5
    args.latent_dim = args.latent_dim if args.latent_dim is not None else 32
    opts = {"data_dir": args.data_dir} if args.data_dir else {}
    result = one_class_benchmark(args.dataset, args.model, args.epochs, args.classes, args.latent_dim, args.score,
                                 args.runs, args.batch_size, args.lr, args.seed, opts)
    table = benchmark_markdown(result, reference=_reference(args.dataset))
    return _write_bench(args, result, table, f"mean AUROC {result['mean']:.2f}% in {result['seconds']:.0f}s")


def _odds_bench(args: argparse.Namespace) -> int:
    from ..anomaly import odds_benchmark, odds_markdown, odds_names

    models = [m.strip() for m in (args.model or "ae,vae").split(",") if m.strip()]
    opts = {"latent_dim": args.latent_dim} if args.latent_dim is not None else {}
    if args.batch_size != 128:  # the one-class default; the detector's own (32, PyOD's) otherwise
        opts["batch_size"] = args.batch_size
    opts.update(lr=args.lr)
    result = odds_benchmark(odds_names(args.dataset), models, args.seeds, args.epochs, args.score,
                            args.data_dir, opts)
    return _write_bench(args, result, odds_markdown(result), f"in {result['seconds']:.0f}s")


def _write_bench(args: argparse.Namespace, result: dict, table: str, summary: str) -> int:
    from ..fileio import atomic_write

    print(table, end="")
    print(summary)
    if args.out:
        c.write_json(Path(args.out), result)
    if args.markdown:
        atomic_write(Path(args.markdown), table)
    return 0


def _reference(dataset: str):
    from ..anomaly import DEEP_SVDD_MNIST

    return DEEP_SVDD_MNIST if dataset.lower() == "mnist" else None


def cmd_encode(args: argparse.Namespace) -> int:
    import time

    from ..apply import CODE_FORMATS, encode_images, make_encoder, write_codes

    suffix = Path(args.out).suffix.lower()
    if suffix not in CODE_FORMATS:
        raise ConfigError(f"{args.out}: unknown output format {suffix or '(none)'}; use {', '.join(CODE_FORMATS)}")
    c.check_output_path(args.out, "--out")
    run = c.load_run(args.run)
    data, images, labels = _load(args, run, lazy=True)
    bs = args.batch_size or 4096
    enc = make_encoder(run.model, args.backend, run.path, probe=images[:min(bs, 512)], total=len(images))
    t = time.perf_counter()
    coded = encode_images(enc, images, bs, show_progress=args.progress)
    labels_np = labels.numpy() if suffix != ".npy" else None
    size = run.model.code_size  # a spatial (D, h, w) code is written flattened, row-major
    write_codes(args.out, len(images), size, coded, labels_np)
    dt = time.perf_counter() - t
    print(f"encoded {len(images)} samples of {data.name} [{args.split}] with {enc.backend} "
          f"({len(images) / max(dt, 1e-9):,.0f} img/s) -> {args.out} ({len(images)} x {size})")
    return 0


def cmd_denoise(args: argparse.Namespace) -> int:
    from ..apply import denoise_images, write_images_npy, write_png
    from ..data import parse_noise

    out = Path(args.out)
    if out.suffix and out.suffix.lower() != ".npy":
        raise ConfigError(f"{out}: unknown output format {out.suffix}; give a folder (PNG files) or a .npy file")
    if out.suffix:
        c.check_output_path(out, "--out")
    elif out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder for the PNG files, or a .npy file")
    run = c.load_run(args.run)
    noise = parse_noise(args.noise) if args.noise else None
    data, images, _ = _load(args, run)
    parts = denoise_images(run.model, images, args.batch_size or 1024, noise, args.seed, show_progress=args.progress)
    if out.suffix.lower() == ".npy":
        write_images_npy(out, tuple(images.shape), ((s, y) for s, _, y in parts))
    else:
        width = len(str(len(images) - 1))
        for start, x, y in parts:
            for j in range(len(y)):
                write_png(out / f"{start + j:0{width}d}.png", y[j])
                if args.save_input:
                    write_png(out / f"{start + j:0{width}d}_input.png", x[j])
    print(f"denoised {len(images)} images of {data.name} [{args.split}] -> {out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..export import MANIFEST, export, read_manifest
    from ..fileio import sha256_file
    from ..train.runs import WEIGHTS

    out = Path(args.out) if args.out else Path(args.run) / "export"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder for the exported files")
    if args.out and out.is_dir() and any(out.iterdir()) and read_manifest(out) is None:
        raise ConfigError(f"--out {out} holds other files (no aekit {MANIFEST}); an export replaces its folder "
                          "whole: give a new or empty folder")
    weights = Path(args.run) / WEIGHTS
    # hashed before loading: weights replaced in between then look newer than the export, never the reverse
    weights_sha = sha256_file(weights) if weights.is_file() else None
    run = c.load_run(args.run)
    code = ", ".join(map(str, run.model.code_shape))
    info = {"run": str(run.path), "model": run.model_name, "input_shape": list(run.model.input_shape),
            "code_shape": list(run.model.code_shape), "latent_dim": run.model.latent_dim,
            "encoder": f"images float32 (B, C, H, W) in [0, 1] -> codes (B, {code}) (the model's encode)",
            "decoder": f"codes (B, {code}) -> images float32 (B, C, H, W) in [0, 1]"}
    paths = export(run.model, out, args.format, weights_sha256=weights_sha, info=info)
    for k, p in paths.items():
        print(f"{k}: {p}")
    return 0

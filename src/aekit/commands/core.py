"""Core commands: models, train, summary, demo."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from ..errors import ConfigError, RunError
from . import _common as c

ORDER = 0

# flag dest -> model config field (the flags a model may or may not have)
MODEL_KEYS = ("latent_dim", "hidden_dims", "filters", "kernel_sizes", "strides", "batch_norm", "dropout", "loss",
              "beta", "noise", "sparsity", "activation", "arch", "encoder", "decoder", "kl_warmup", "iwae_k")
TRAIN_KEYS = ("epochs", "batch_size", "lr", "weight_decay", "schedule", "patience", "seed", "precision", "devices",
              "strategy", "accelerator", "binarize", "progress")
OTHER_KEYS = ("model", "dataset", "out", "resume")


def add_commands(sub) -> None:
    p = sub.add_parser("models", help="list the registered models")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("train", help="train a model and write a run folder",
                       description="Train an autoencoder with PyTorch Lightning. Options may also come from "
                                   "--config run.yaml (same names; flags override the file).")
    add_train_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("summary", help="Keras-like layer table of a run or a registered model")
    p.add_argument("target", help="run folder or model name")
    p.add_argument("--input-shape", type=c.shape3, default=(1, 28, 28), metavar="CxHxW", help="for a model name")
    p.add_argument("--latent-dim", type=int, default=None)
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("demo", help="train a 2-D conv-vae on the bundled MNIST and report it")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--max-train-samples", type=int, default=20000)
    p.add_argument("--data-dir", default=None)
    p.set_defaults(func=cmd_demo)


def add_train_options(p: argparse.ArgumentParser) -> None:
    S = argparse.SUPPRESS  # options not given stay absent, so the config file and defaults can fill them
    p.add_argument("--config", default=None, metavar="YAML", help="options file (flags override it)")
    p.add_argument("--model", default=S, help="registered model name (see `aekit models`)")
    c.add_data_options(p)
    m = p.add_argument_group("model")
    m.add_argument("--latent-dim", type=int, default=S, help="code size (default 2)")
    m.add_argument("--hidden-dims", type=c.int_list, default=S, metavar="512,256", help="dense layer widths")
    m.add_argument("--filters", type=c.int_list, default=S, metavar="32,64,64,64", help="conv channels per layer")
    m.add_argument("--kernel-sizes", type=c.int_list, default=S, metavar="3,3,3,3")
    m.add_argument("--strides", type=c.int_list, default=S, metavar="1,2,2,1")
    m.add_argument("--arch", choices=("dense", "conv"), default=S, help="body of dae / sparse-ae / vae")
    m.add_argument("--encoder", choices=("strided", "maxpool"), default=S, help="conv encoder style")
    m.add_argument("--decoder", choices=("transpose", "upsample"), default=S, help="conv decoder style")
    m.add_argument("--activation", default=S, help="relu | leaky_relu | selu | elu | tanh | gelu")
    m.add_argument("--batch-norm", action="store_true", default=S)
    m.add_argument("--dropout", type=float, default=S)
    m.add_argument("--loss", choices=("mse", "rmse", "bce"), default=S, help="reconstruction loss (default bce)")
    m.add_argument("--beta", type=float, default=S, help="VAE: weight of the KL term")
    m.add_argument("--kl-warmup", type=int, default=S, metavar="EPOCHS", help="VAE: linear KL warm-up epochs")
    m.add_argument("--iwae-k", type=int, default=S, metavar="K", help="VAE: train on the IWAE bound with K samples")
    m.add_argument("--noise", default=S, help="input corruption in training: gaussian:0.5 | saltpepper:0.1 | mask:0.3")
    m.add_argument("--sparsity", type=float, default=S, help="L1 weight on the code")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int, default=S, help="default 20")
    t.add_argument("--batch-size", type=int, default=S, help="default 128")
    t.add_argument("--lr", type=float, default=S, help="Adam learning rate (default 1e-3)")
    t.add_argument("--weight-decay", type=float, default=S)
    t.add_argument("--schedule", choices=("none", "cosine"), default=S, help="learning-rate schedule")
    t.add_argument("--patience", type=int, default=S, help="early-stopping patience in epochs (0: off; default 10)")
    t.add_argument("--seed", type=int, default=S)
    t.add_argument("--precision", choices=("32", "bf16-mixed", "16-mixed", "64"), default=S)
    t.add_argument("--devices", type=int, default=S)
    t.add_argument("--strategy", default=S, help="auto | ddp")
    t.add_argument("--accelerator", default=S, help="auto | cpu | gpu")
    t.add_argument("--binarize", choices=("none", "dynamic", "static"), default=S, help="Bernoulli-binarise the data")
    t.add_argument("--no-progress", dest="progress", action="store_false", default=S, help="no progress bar")
    p.add_argument("--out", default=S, help="run folder (default runs/MODEL-DATASET)")
    p.add_argument("--resume", action="store_true", default=S, help="continue OUT from checkpoints/last.ckpt")


def _merged_options(args: argparse.Namespace) -> dict[str, Any]:
    given = {k: v for k, v in vars(args).items() if k not in ("func", "debug", "command", "config")}
    opts: dict[str, Any] = {}
    if args.config:
        opts.update(c.load_yaml(args.config))
        known = set(MODEL_KEYS) | set(TRAIN_KEYS) | set(OTHER_KEYS) | set(c.DATA_KEYS)
        unknown = sorted(set(opts) - known)
        if unknown:
            raise ConfigError(f"{args.config}: unknown option(s) {', '.join(unknown)}")
        for key in ("hidden_dims", "filters", "kernel_sizes", "strides", "image_size", "shape"):
            if isinstance(opts.get(key), str):
                opts[key] = c.int_list(opts[key].replace("x", ","))
    opts.update(given)
    return opts


def _default_out(model: str, dataset: str) -> Path:
    base = Path("runs") / re.sub(r"[^A-Za-z0-9._-]+", "-", f"{model}-{Path(dataset).name or dataset}").strip("-")
    out, i = base, 2
    while out.exists():
        out, i = base.with_name(f"{base.name}-{i}"), i + 1
    return out


def cmd_train(args: argparse.Namespace) -> int:
    opts = _merged_options(args)
    from ..train import TrainConfig
    from ..train.runs import read_config

    if opts.get("resume"):
        if "out" not in opts:
            raise ConfigError("--resume needs --out RUN (the run folder to continue)")
        old = read_config(Path(opts["out"]))
        for key in MODEL_KEYS:
            if key in opts and old["model"]["config"].get(key) not in (opts[key], list(opts[key]) if isinstance(opts[key], tuple) else opts[key]):
                raise ConfigError(f"--{key.replace('_', '-')} differs from the run being resumed; leave it out")
        model_spec, data_opts = old["model"], {k: v for k, v in old["data"].items() if k in ("spec", *c.DATA_KEYS, "seed")}
        train_opts = {**old["train"], **{k: opts[k] for k in TRAIN_KEYS if k in opts}}
    else:
        if "model" not in opts or "dataset" not in opts:
            raise ConfigError("train needs --model and --dataset (or a --config file that names them)")
        model_spec = None
        data_opts = {"spec": opts["dataset"], **{k: opts[k] for k in c.DATA_KEYS if k in opts}, "seed": opts.get("seed", 0)}
        train_opts = {k: opts[k] for k in TRAIN_KEYS if k in opts}
    cfg = TrainConfig.from_dict(train_opts)
    out = Path(opts["out"]) if "out" in opts else _default_out(opts["model"], opts["dataset"])

    from ..data import load_data
    from ..registry import build_model, get, model_from_dict

    load_opts = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data_opts.items() if k != "spec" and v is not None}
    data = load_data(data_opts["spec"], **load_opts)
    if model_spec is not None:
        model = model_from_dict(model_spec)
    else:
        entry = get(opts["model"])
        overrides = {k: opts[k] for k in MODEL_KEYS if k in opts}
        bad = sorted(k for k in overrides if k not in entry.cls.Config.__dataclass_fields__)
        if bad:
            raise ConfigError(f"--{bad[0].replace('_', '-')} does not apply to model {opts['model']!r}")
        import torch

        torch.manual_seed(cfg.seed)  # same seed -> same initial weights
        model = build_model(opts["model"], input_shape=tuple(data.shape), **overrides)
    print(f"training {model.name} on {data.name} {tuple(data.shape)} "
          f"(train {len(data.splits['train'])}, val {len(data.splits['val'])}, test {len(data.splits['test'])}) -> {out}")
    from ..train import train

    run = train(model, data, cfg, out, resume=bool(opts.get("resume")), data_options=data_opts)
    if run is None:  # a non-zero DDP rank
        return 0
    _finish(run, data)
    return 0


def _finish(run, data) -> dict:
    from ..evaluate import evaluate

    metrics = evaluate(run.model, data, "test")
    c.write_json(run.path / "eval.json", {"split": "test", **metrics})
    print(f"run folder: {run.path}")
    c.print_metrics({k: v for k, v in metrics.items() if k in ("mse", "bce", "psnr", "elbo", "loss")}, "test metrics:")
    return metrics


def cmd_models(args: argparse.Namespace) -> int:
    from ..registry import list_models

    models = list_models()
    width = max(map(len, models))
    for name, desc in models.items():
        print(f"{name:<{width}}  {desc}")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from ..models.summary import summary
    from ..registry import build_model

    if Path(args.target).is_dir():
        model = c.load_run(args.target).model
    else:
        if "/" in args.target or args.target.endswith(".json"):
            raise RunError(f"{args.target} is not a run folder")
        extra = {"latent_dim": args.latent_dim} if args.latent_dim else {}
        model = build_model(args.target, input_shape=args.input_shape, **extra)
    print(summary(model))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """`make demo`: train (or re-use) runs/demo, evaluate it, and write its HTML report."""
    argv = ["--model", "conv-vae", "--dataset", "mnist", "--latent-dim", "2", "--epochs", str(args.epochs),
            "--max-train-samples", str(args.max_train_samples), "--patience", "0", "--out", args.out]
    if args.data_dir:
        argv += ["--data-dir", args.data_dir]
    if (Path(args.out) / "model.safetensors").exists():
        print(f"{args.out} exists: re-using it (delete it to train again)")
        run = c.load_run(args.out)
        _finish(run, run.data(**({"data_dir": args.data_dir} if args.data_dir else {})))
    else:
        p = argparse.ArgumentParser()
        add_train_options(p)
        cmd_train(p.parse_args(argv))
    from .explore import write_report

    report = write_report(args.out, quick=True, data_dir=args.data_dir)
    print(f"report: {report}")
    print(f"next: aekit plot manifold {args.out}   |   aekit serve {args.out}   |   open {report}")
    return 0

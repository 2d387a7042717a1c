"""Core commands: models, train, summary, demo."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError, RunError
from . import _common as c

ORDER = 0

OTHER_KEYS = ("model", "dataset", "out", "resume", "init_from")
DEMO_EPOCHS = 15  # `make demo`: see cmd_demo


def model_fields() -> dict[str, list[str]]:
    """Every registered family's config field -> the models it applies to (flags and YAML keys come from
    these; ``input_shape`` comes from the data)."""
    import dataclasses

    from ..registry import MODELS, get

    get("ae")  # loads the registry
    fields: dict[str, list[str]] = {}
    for name, entry in MODELS.items():
        for f in dataclasses.fields(entry.cls.Config):
            if f.name != "input_shape":
                fields.setdefault(f.name, []).append(name)
    return fields


def train_fields() -> tuple[str, ...]:
    import dataclasses

    from ..train.config import TrainConfig

    return tuple(f.name for f in dataclasses.fields(TrainConfig))


def add_commands(sub) -> None:
    p = sub.add_parser("models", help="list the registered models")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("train", help="train a model and write a run folder",
                       description="Train an autoencoder with PyTorch Lightning. Options may also come from "
                                   "--config run.yaml (same names; flags override the file).")
    if c.builds("train"):
        add_train_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("summary", help="Keras-like layer table of a run or a registered model",
                       description="Print the layers, output shapes and parameter counts of a run folder's model, or "
                                   "of a registered model built with the same model flags as `aekit train` (preview a "
                                   "custom net before training it, as Keras's model.summary()).")
    p.add_argument("target", help="run folder or model name")
    p.add_argument("--input-shape", type=c.shape3, default=(1, 28, 28), metavar="CxHxW",
                   help="image shape for a model name (default 1x28x28; a run folder knows its own)")
    if c.builds("summary"):
        add_model_flags(p)
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("demo", help=f"train a VAE with a 2-D code on the bundled MNIST ({DEMO_EPOCHS} epochs, about "
                                    "2-3 minutes on 2 CPU cores) and write its report")
    p.add_argument("--out", default="runs/demo", help="run folder (default runs/demo; re-used when it holds a model)")
    p.add_argument("--epochs", type=c.positive_int, default=DEMO_EPOCHS, help=f"training epochs (default {DEMO_EPOCHS})")
    p.add_argument("--max-train-samples", type=c.positive_int, default=None, metavar="N",
                   help="train on a seeded subset of N images (default all 54,000)")
    p.add_argument("--data-dir", default=None, help="where datasets are found and cached (env AEKIT_DATA)")
    p.set_defaults(func=cmd_demo)


def add_train_options(p: argparse.ArgumentParser) -> None:
    """Flags of `aekit train`: the model and training flags are made from the config dataclasses' fields
    (type, default, help), so a new config field is a flag, a YAML key and a config.json entry at once."""
    from ..options import add_flags
    from ..train.config import TrainConfig

    S = argparse.SUPPRESS  # options not given stay absent, so the config file and defaults can fill them
    p.add_argument("--config", default=None, metavar="YAML", help="options file (flags override it)")
    p.add_argument("--model", default=S, help="registered model name (see `aekit models`)")
    c.add_data_options(p)
    add_model_flags(p)
    add_flags(p.add_argument_group("training"), [TrainConfig])
    p.add_argument("--out", default=S, help="run folder (default runs/MODEL-DATASET)")
    p.add_argument("--resume", action="store_true", default=S, help="continue OUT from checkpoints/last.ckpt")
    p.add_argument("--init-from", default=S, metavar="RUN",
                   help="start from a finished run's weights: a new run (fresh training options and schedule) of the "
                        "same model, its options unless flags change them (not the layer sizes), on its data unless "
                        "--dataset is given; e.g. fine-tune an ELBO-trained vae on --iwae-k 20 with a lower --lr")


def add_model_flags(p: argparse.ArgumentParser) -> None:
    """One flag per field of every registered family's config (`aekit train` and `aekit summary`)."""
    from ..options import add_flags
    from ..registry import MODELS

    fields = model_fields()
    everyone = len(MODELS)
    note = {k: ("" if len(v) == everyone else ", ".join(v)) for k, v in fields.items()}
    add_flags(p.add_argument_group("model (each applies to the models named in brackets, or to all)"),
              [e.cls.Config for e in MODELS.values()], skip=("input_shape",), note=note)


def _merged_options(args: argparse.Namespace) -> dict[str, Any]:
    given = {k: v for k, v in vars(args).items() if k not in ("func", "debug", "command", "config", "threads")}
    opts: dict[str, Any] = {}
    if args.config:
        opts.update(c.load_yaml(args.config))
        known = set(model_fields()) | set(train_fields()) | set(OTHER_KEYS) | set(c.DATA_KEYS)
        unknown = sorted(set(opts) - known)
        if unknown:
            raise ConfigError(f"{args.config}: unknown option(s) {', '.join(unknown)}")
        for key in ("image_size", "shape"):
            if isinstance(opts.get(key), str):
                opts[key] = c.int_list(opts[key].replace("x", ","))
    opts.update(given)
    for key, kind in (("model", str), ("dataset", str), ("out", str), ("resume", bool), ("init_from", str)):
        if key in opts and not isinstance(opts[key], kind):
            raise ConfigError(f"{key} must be a {kind.__name__}, got {opts[key]!r}", param=key)
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

    init = None  # --init-from: the source run's folder, its record and its weights' sha256
    if opts.get("resume") and "init_from" in opts:
        raise ConfigError("--init-from starts a new run and --resume continues one; give one of them", param="init_from")
    if opts.get("resume"):
        if "out" not in opts:
            raise ConfigError("--resume needs --out RUN (the run folder to continue)")
        old = read_config(Path(opts["out"]))
        from ..options import coerce, fields
        from ..registry import get

        old_cfg = get(old["model"]["name"]).cls.Config.from_dict(old["model"]["config"])
        known = fields(type(old_cfg))
        # what defines the run cannot change on resume: refuse it rather than ignore it
        if opts.get("model", old["model"]["name"]) != old["model"]["name"]:
            raise ConfigError(f"{opts['out']} is a {old['model']['name']!r} run; --model cannot change on --resume", param="model")
        if opts.get("dataset", old["data"]["spec"]) != old["data"]["spec"]:
            raise ConfigError(f"{opts['out']} was trained on {old['data']['spec']!r}; --dataset cannot change on --resume",
                              param="dataset")
        for key in (k for k in (*model_fields(), *c.DATA_KEYS) if k in opts):
            if key in c.DATA_KEYS:
                was = old["data"].get("fold_shape" if key == "shape" else key)
                if opts[key] != was and not (isinstance(opts[key], tuple) and list(opts[key]) == was):
                    raise ConfigError(f"{key} differs from the run being resumed; leave it out", param=key)
            elif key not in known or coerce(key, known[key][1], opts[key]) != getattr(old_cfg, key):
                raise ConfigError(f"{key} differs from the run being resumed; leave it out", param=key)
        from ..data import recorded_options

        model_spec, data_opts = old["model"], {"spec": old["data"]["spec"], **recorded_options(old["data"])}
        train_keys = train_fields()
        train_opts = {**{k: v for k, v in old["train"].items() if k in train_keys}, **{k: opts[k] for k in train_keys if k in opts}}
        changed = [f"{k} {old['train'].get(k)!r} -> {train_opts[k]!r}" for k in train_keys
                   if k in opts and k in old["train"] and old["train"][k] != TrainConfig.from_dict({k: opts[k]}).__dict__[k]]
        if changed:
            print(f"resuming with changed training options: {', '.join(changed)}")
    else:
        if "init_from" in opts:
            init = _init_source(opts)
            opts.setdefault("model", init["config"]["model"]["name"])
        if "model" not in opts or ("dataset" not in opts and init is None):
            raise ConfigError("train needs --model and --dataset (or a --config file that names them)")
        model_spec = None
        if "dataset" not in opts:  # --init-from: the source run's data, its splits too (its val stays held out)
            from ..data import recorded_options

            old_data = init["config"]["data"]
            data_opts = {"spec": old_data["spec"], **recorded_options(old_data), **{k: opts[k] for k in c.DATA_KEYS if k in opts}}
            opts["dataset"] = old_data["spec"]
        else:
            data_opts = {"spec": opts["dataset"], **{k: opts[k] for k in c.DATA_KEYS if k in opts}, "seed": opts.get("seed", 0)}
        if data_opts.get("max_val_samples") is None:
            # a train cap caps val in proportion, so a small run does not spend a third of each epoch validating;
            # resolved here and recorded in config.json, so the run reloads the same val (old runs: no key, all of val)
            from ..data.splits import proportional_val_cap

            cap = proportional_val_cap(data_opts.get("max_train_samples"), data_opts.get("val_fraction", 0.1))
            if cap is not None:
                data_opts["max_val_samples"] = cap
        from ..registry import get as entry_of

        # the family's measured training defaults (registry train=...), then the config file's and the flags'
        train_opts = {**entry_of(opts["model"]).train, **{k: opts[k] for k in train_fields() if k in opts}}
    cfg = TrainConfig.from_dict(train_opts)
    cfg.check_machine()
    out = Path(opts["out"]) if "out" in opts else _default_out(opts["model"], opts["dataset"])

    from ..data import load_data
    from ..registry import build_model, get, model_from_dict

    load_opts = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data_opts.items() if k != "spec" and v is not None}
    data = load_data(data_opts["spec"], **load_opts)
    if model_spec is not None:
        import torch

        torch.manual_seed(cfg.seed)  # a resume that starts over (no checkpoint yet) starts from the same weights
        model = model_from_dict(model_spec)
    else:
        entry = get(opts["model"])
        overrides = {k: opts[k] for k in model_fields() if k in opts}
        bad = sorted(k for k in overrides if k not in entry.cls.Config.__dataclass_fields__)
        overrides = {**data.model_defaults(), **overrides}  # a table: loss mse unless --loss says otherwise
        if bad:
            raise ConfigError(f"{bad[0]} does not apply to model {opts['model']!r}", param=bad[0])
        import torch

        torch.manual_seed(cfg.seed)  # same seed -> same initial weights
        if init is not None:  # the source's options under the flags given, then its weights
            source = init["config"]["model"]
            was = tuple(source["config"].get("input_shape") or ())
            if was != tuple(data.shape):
                raise ConfigError(f"--init-from {init['record']['run']} was trained on {'x'.join(map(str, was))} "
                                  f"images and this data is {'x'.join(map(str, data.shape))}: give data of its shape "
                                  "(or leave out --dataset and the image options)", param="init_from")
            kept = {k: v for k, v in get(source["name"]).cls.Config.from_dict(source["config"]).__dict__.items()
                    if k != "input_shape"}
            model = build_model(opts["model"], config=get(opts["model"]).cls.Config.from_dict(
                {**kept, **{k: opts[k] for k in model_fields() if k in opts}, "input_shape": tuple(data.shape)}))
            _load_init_weights(model, init)
        else:
            model = build_model(opts["model"], input_shape=tuple(data.shape), **overrides)
    from ..train.trainer import _launched_rank

    say = print if _launched_rank() == 0 else (lambda *a, **k: None)  # a DDP child re-runs this command: rank 0 speaks
    say(f"training {model.name} on {data.name} {tuple(data.shape)} "
        f"(train {len(data.splits['train'])}, val {len(data.splits['val'])}, test {len(data.splits['test'])}) -> {out}")
    if not opts.get("resume") and "max_val_samples" not in opts and len(data.splits["val"]) == data_opts.get("max_val_samples"):
        say(f"val capped at {len(data.splits['val'])} images in proportion to --max-train-samples "
            "(--max-val-samples N to choose)")
    from ..train import train

    if opts.get("resume") and (recorded := read_config(out).get("init_from")) and not _has_checkpoint(out):
        # killed before its first checkpoint: it starts over, and from the same weights as the first time
        _load_init_weights(model, _init_source({"init_from": recorded["run"]}, recorded.get("sha256")))
        init = {"record": recorded}
    run = train(model, data, cfg, out, resume=bool(opts.get("resume")), data_options=data_opts,
                init_from=init["record"] if init is not None else None)
    if run is None:  # a non-zero DDP rank
        return 0
    _finish(run, data)
    return 0


def _init_source(opts: dict[str, Any], sha256: str | None = None) -> dict[str, Any]:
    """--init-from RUN: the finished run's record and weights file, checked before anything is written. With
    ``sha256`` (a resumed run's record) the weights must still be the ones it started from."""
    import hashlib

    from ..train.runs import CONFIG, WEIGHTS, read_config

    src = Path(opts["init_from"])
    try:
        config = read_config(src)
    except RunError as exc:  # a missing or damaged folder: the flag that named it
        raise ConfigError(f"--init-from: {exc}", param="init_from") from None
    weights = src / WEIGHTS
    if not weights.exists():
        raise ConfigError(f"{src} has no {WEIGHTS}: --init-from needs a finished run (resume it first)", param="init_from")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    if sha256 is not None and digest != sha256:
        raise ConfigError(f"{weights} changed since this run started from it (sha256 {digest[:12]} against "
                          f"{sha256[:12]} in {CONFIG}); train the run again", param="init_from")
    if config.get("stages"):  # e.g. vq-vae's prior, fitted to the codes these weights make: a new run changes them
        raise ConfigError(f"{src} has a trained second stage ({', '.join(config['stages'])}) that a new run would "
                          "leave stale; start from a run without one (train the stage again afterwards)",
                          param="init_from")
    if "model" in opts and opts["model"] != config["model"]["name"]:
        raise ConfigError(f"{src} is a {config['model']['name']!r} run; --init-from keeps its model: leave out "
                          f"--model or give {config['model']['name']}", param="model")
    record = {"run": str(src.absolute()), "sha256": digest, "model": config["model"]["name"],
              "epochs": (config.get("result") or {}).get("epochs_completed")}
    return {"config": config, "weights": weights, "record": record}


def _has_checkpoint(out: Path) -> bool:
    from ..train.checkpoints import PREVIOUS

    last = out / "checkpoints" / "last.ckpt"
    return last.exists() or last.with_name(PREVIOUS).exists()


def _load_init_weights(model, init: dict[str, Any]) -> None:
    from ..train.runs import load_weights

    try:
        load_weights(model, init["weights"])
    except RunError as exc:
        if "does not fit" not in str(exc):  # damaged or not finite: load_weights' own line says which
            raise ConfigError(f"--init-from: {exc}", param="init_from") from None
        raise ConfigError(f"--init-from {init['record']['run']}: its weights do not fit the options given "
                          f"({' '.join(str(exc).split(': ', 1)[-1].split())[:240]}); leave out the options that "
                          "change layer sizes", param="init_from") from None


def _finish(run, data) -> dict:
    from ..evaluate import evaluate

    from ..train.collapse import split_ratio

    if len(data.splits["test"]) == 0:  # --val-fraction 0 on a source without a test split of its own
        print(f"run folder: {run.path}")
        print("aekit: note: no test split (--val-fraction 0 and the source has no test split of its own), so no "
              "test metrics: eval.json not written", file=sys.stderr)
        return {}
    metrics = evaluate(run.model, data, "test")
    metrics["spread_ratio"] = split_ratio(run.model, data, "test")  # as `aekit evaluate` writes it
    c.write_json(run.path / "eval.json", {"split": "test", **metrics})
    print(f"run folder: {run.path}")
    c.print_metrics({k: v for k, v in metrics.items() if k in ("mse", "bce", "psnr", "elbo", "elbo_gaussian", "loss")}, "test metrics:")
    return metrics


def cmd_models(args: argparse.Namespace) -> int:
    from ..registry import MODELS, list_models

    models = list_models()
    width = max(map(len, models))
    for name, desc in models.items():
        own = MODELS[name].train  # the family's measured training defaults, where they differ
        flags = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in own.items())
        print(f"{name:<{width}}  {desc}" + (f" [trains with {flags} unless told]" if own else ""))
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from ..models.summary import summary
    from ..registry import build_model

    overrides = {k: getattr(args, k) for k in model_fields() if hasattr(args, k)}  # flags given (absent otherwise)
    if Path(args.target).is_dir():
        if overrides:
            key = sorted(overrides)[0]
            raise ConfigError(f"{args.target} is a run folder with its own architecture; --{key.replace('_', '-')} "
                              "applies to a model name (aekit summary MODEL ...)", param=key)
        model = c.load_run(args.target).model
    else:
        if "/" in args.target or args.target.endswith(".json"):
            raise RunError(f"{args.target} is not a run folder")
        from ..registry import get

        bad = sorted(k for k in overrides if k not in get(args.target).cls.Config.__dataclass_fields__)
        if bad:
            raise ConfigError(f"{bad[0]} does not apply to model {args.target!r}", param=bad[0])
        model = build_model(args.target, input_shape=args.input_shape, **overrides)
    print(summary(model))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """`make demo`: train (or re-use) runs/demo, evaluate it, and write its HTML report."""
    # A dense VAE, not the conv one: on a CPU it runs ~30x faster per epoch, so in the same 2-3 minutes it gets
    # 15 epochs over all of MNIST -- clean digits over the whole decoded plane and ten visible clusters, where 3
    # conv epochs gave blurry 8/9 blobs (measured: docs/benchmarks.md, "The demo").
    # the demo's recipe as measured (docs/benchmarks.md, "The demo"), not the vae defaults of the day
    argv = ["--model", "vae", "--hidden-dims", "512,256", "--activation", "relu", "--schedule", "none",
            "--dataset", "mnist", "--latent-dim", "2",
            "--epochs", str(args.epochs), "--patience", "0", "--out", args.out]
    if args.max_train_samples:
        argv += ["--max-train-samples", str(args.max_train_samples)]
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
    steps = [(f"open {report}", "the report: the decoded plane and the latent map first"),
             (f"aekit serve {args.out}", "explore it in a browser: sliders, morphing, drawing a digit"),
             (f"aekit plot interpolate {args.out} --a 0 --b 1", "morph one test digit into another"),
             (f"aekit plot defects {args.out}", "how a VAE's code space differs from a plain autoencoder's"),
             ("aekit models", "the other families to train next")]
    width = max(len(cmd) for cmd, _ in steps)
    print("next steps:\n" + "\n".join(f"  {cmd:<{width}}   {what}" for cmd, what in steps))
    return 0

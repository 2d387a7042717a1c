"""Helpers shared by the command modules: option parsers, run loading, printing, output paths."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import ConfigError


BUILDING: str | None = None  # the command being parsed ("" for none, None: build every command's flags)


def builds(command: str) -> bool:
    """Whether the parser being built needs ``command``'s full flags (those that import the model registry)."""
    return BUILDING is None or BUILDING == command


def int_list(text: str) -> tuple[int, ...]:
    """'512,256' -> (512, 256); '' -> ()."""
    try:
        return tuple(int(t) for t in text.replace(" ", "").split(",") if t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 512,256, got {text!r}") from None


def _whole(minimum: int):
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            n = minimum - 1
        if n < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}")
        return n

    parse.__name__ = f"whole number >= {minimum}"
    return parse


positive_int = _whole(1)  # '64' -> 64; zero, negatives and non-numbers are argument errors
nonneg_int = _whole(0)  # '0' -> 0; negatives and non-numbers are argument errors


def seed(text: str) -> int:
    """A seed in [0, 2**32), the range TrainConfig takes and every RNG (torch, numpy, python) accepts."""
    n = nonneg_int(text)
    if n >= 2**32:
        raise argparse.ArgumentTypeError(f"expected a seed in [0, 2**32), got {text!r}")
    return n


def finite_float(text: str) -> float:
    """A finite number: nan and inf are argument errors."""
    import math

    try:
        x = float(text)
    except ValueError:
        x = math.nan
    if not math.isfinite(x):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return x


def positive_float(text: str) -> float:
    x = finite_float(text)
    if x <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return x


def size(text: str) -> tuple[int, int]:
    """'32' -> (32, 32); '32x28' -> (32, 28)."""
    try:
        parts = [int(t) for t in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected H or HxW like 32 or 32x28, got {text!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected H or HxW like 32 or 32x28, got {text!r}")
    return parts[0], parts[1]


def shape3(text: str) -> tuple[int, int, int]:
    """'1x28x28' or '1,28,28' -> (1, 28, 28)."""
    try:
        parts = tuple(int(t) for t in text.lower().replace(",", "x").split("x"))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected C x H x W like 1x28x28, got {text!r}")
    return parts  # type: ignore[return-value]


def add_data_options(p: argparse.ArgumentParser, required: bool = False, suppress: bool = True) -> None:
    """Options of aekit.data.load_data. With ``suppress``, options not given stay absent from the namespace."""
    d = argparse.SUPPRESS if suppress else None
    g = p.add_argument_group("data")
    from ..data import spec_help

    g.add_argument("--dataset", required=required, default=d, metavar="SPEC", help=spec_help())
    g.add_argument("--data-dir", default=d, help="where datasets are found and cached (env AEKIT_DATA, default ~/.cache/aekit)")
    g.add_argument("--val-fraction", type=finite_float, default=d, help="part of train held out for validation (default 0.1)")
    g.add_argument("--image-size", type=size, default=d, metavar="H[xW]", help="resize images")
    g.add_argument("--channels", type=int, choices=(1, 3), default=d, help="convert to 1 or 3 channels")
    g.add_argument("--max-per-class", type=positive_int, default=d, metavar="N", help="subsample each class (quickdraw)")
    g.add_argument("--shape", type=shape3, default=d, metavar="CxHxW", help="shape of flat N x D arrays")
    g.add_argument("--max-train-samples", type=positive_int, default=d, metavar="N", help="train on a seeded subset")
    g.add_argument("--max-val-samples", type=positive_int, default=d, metavar="N",
                   help="validate on a seeded subset (default with --max-train-samples: in proportion to it, "
                        "val_fraction/(1-val_fraction) x N, at least 256; otherwise all of val)")
    g.add_argument("--download", action="store_true", default=d, help="download mnist/fashion-mnist when missing")
    g.add_argument("--scaler", choices=("standard", "minmax", "none"), default=d,
                   help="tables: per-feature scaling fit on the train split and saved with the run (default standard)")
    g.add_argument("--impute", choices=("none", "mean", "median"), default=d,
                   help="tables: fill missing values with the train split's mean or median (default none: refuse them)")
    g.add_argument("--categorical", choices=("none", "onehot"), default=d,
                   help="tables: one-hot encode text columns with the train split's categories, saved with the run "
                        "(default none: refuse them)")
    g.add_argument("--label-column", default=d, metavar="NAME", help="tables: the column of labels (default: 'label')")


DATA_KEYS = ("data_dir", "val_fraction", "image_size", "channels", "max_per_class", "shape", "max_train_samples",
             "max_val_samples", "download", "scaler", "impute", "categorical", "label_column")


def load_run(path: str):
    from ..train import load_run as _load

    return _load(path)


def print_metrics(metrics: dict[str, Any], title: str | None = None) -> None:
    if title:
        print(title)
    width = max((len(k) for k in metrics), default=0)
    for k, v in metrics.items():
        print(f"  {k:<{width}}  {v:.6g}" if isinstance(v, float) else f"  {k:<{width}}  {v}")


def write_json(path: Path, obj: Any) -> None:
    from ..train.runs import write_json as _w

    _w(Path(path), obj)


def check_output_path(path: str | Path | None, what: str) -> None:
    """Fail before a long job, not after it: ``path``'s folder must be creatable and writable."""
    import os

    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder; give a file name")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{what} {path}: {parent} is a file, not a folder; choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {path}: no permission to write in {parent}; choose another path")


def load_yaml(path: str) -> dict[str, Any]:
    import yaml

    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file {p} does not exist")
    if p.is_dir():
        raise ConfigError(f"config file {p} is a folder; give a YAML file")
    try:
        values = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"config file {p} is not text (a binary file?); give a YAML file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {p} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {p} must hold a mapping of option: value")
    return {str(k).replace("-", "_"): v for k, v in values.items()}


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2)

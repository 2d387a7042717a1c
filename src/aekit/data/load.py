"""load_data: a spec string ("mnist", "quickdraw:cat,dog", a path, ...) -> ImageData."""

from __future__ import annotations

import numbers
import os
from pathlib import Path

import numpy as np
import torch

from aekit.errors import DataError
from aekit.data import arrays, image
from aekit.data.base import ImageData, Raw, make_splits
from aekit.data.folder import EXTENSIONS, load_folder
from aekit.data.mnist import FASHION_MNIST, MNIST, load_mnist_like
from aekit.data.quickdraw import load_quickdraw, parse_categories

DATA_DIR_ENV = "AEKIT_DATA"
DEFAULT_DATA_DIR = Path("~/.cache/aekit")  # used when AEKIT_DATA is unset; "~" expanded on use
NAMED = ("mnist", "fashion-mnist", "digits", "quickdraw:<category>,...")
_FILE_KINDS = (".npy", ".npz", ".csv")


def default_data_dir() -> Path:
    """$AEKIT_DATA if set, else ~/.cache/aekit (read at call time, so tests and the CLI can set it)."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser() if env else DEFAULT_DATA_DIR.expanduser()


def load_data(
    spec: str | os.PathLike,
    *,
    data_dir: str | Path | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    image_size: tuple[int, int] | None = None,
    channels: int | None = None,
    max_per_class: int | None = None,
    shape: tuple[int, int, int] | None = None,
    max_train_samples: int | None = None,
    download: bool = False,
) -> ImageData:
    """Load a data set as uint8 images with deterministic train/val/test splits.

    spec: "mnist", "fashion-mnist", "digits", "quickdraw:cat,dog", or a path to an image folder, .npy,
    .npz or .csv (named specs win over same-named paths; write "./mnist" for a path). A source's own test
    split is kept; others get a seeded test split of `val_fraction`. Val is `val_fraction` of the train
    pool; `max_train_samples` keeps a seeded subset of train. `image_size` (H, W) resizes, `channels`
    (1 or 3) converts; `shape` (C, H, W) reads flat rows; `max_per_class` caps quickdraw categories.
    """
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(f"data spec must be a non-empty string, got {spec!r}; use one of {', '.join(NAMED)} or a path")
    _check_args(val_fraction, seed, max_per_class, max_train_samples)
    size = image.check_size(image_size) if image_size is not None else None
    chans = image.check_channels(channels) if channels is not None else None
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()

    raw = _load_raw(spec.strip(), root, size, chans, max_per_class, shape, seed, download)
    x = raw.images
    if len(x) == 0:
        raise DataError(f"data set {spec!r} is empty")
    if len(raw.labels) != len(x):
        raise DataError(f"data set {spec!r}: {len(raw.labels)} labels for {len(x)} images")
    if size is not None:
        x = image.resize(x, size)
    if chans is not None:
        x = image.convert_channels(x, chans)
    splits = make_splits(len(x), raw.test, float(val_fraction), int(seed), max_train_samples)
    return ImageData(
        images=torch.from_numpy(x),  # shares memory: a memmap stays a memmap
        labels=torch.from_numpy(np.ascontiguousarray(raw.labels, dtype=np.int64)),
        class_names=list(raw.class_names),
        splits={k: torch.from_numpy(v) for k, v in splits.items()},
        name=spec,
    )


def _check_args(val_fraction, seed, max_per_class, max_train_samples) -> None:
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, numbers.Real) or not 0 <= val_fraction < 1:
        raise DataError(f"val_fraction must be a number in [0, 1), got {val_fraction!r}; 0.1 is usual")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise DataError(f"seed must be an integer >= 0, got {seed!r}")
    for name, v in (("max_per_class", max_per_class), ("max_train_samples", max_train_samples)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1):
            raise DataError(f"{name} must be a positive integer or None, got {v!r}")


def _load_raw(spec, root, size, chans, max_per_class, shape, seed, download) -> Raw:
    key = spec.lower()
    if key == "mnist":
        return load_mnist_like(MNIST, root, download=download)
    if key in ("fashion-mnist", "fashion_mnist", "fashionmnist"):
        return load_mnist_like(FASHION_MNIST, root, download=download)
    if key == "digits":
        return _digits()
    if key.startswith("quickdraw:"):
        return load_quickdraw(parse_categories(spec.split(":", 1)[1]), root, max_per_class, seed)
    path = Path(spec).expanduser()
    if path.is_dir():
        return load_folder(path, size, chans)
    suffix = path.suffix.lower()
    if path.is_file():
        if suffix == ".npy":
            return arrays.load_npy(path, shape)
        if suffix == ".npz":
            return arrays.load_npz(path, shape)
        if suffix == ".csv":
            return arrays.load_csv(path, shape)
        raise DataError(
            f"{path}: unsupported file type {suffix or '(none)'}; "
            f"use {', '.join(_FILE_KINDS)} or a folder of images"
        )
    if suffix in (*_FILE_KINDS, *EXTENSIONS) or "/" in spec or os.sep in spec:
        raise DataError(f"{path}: no such file or folder")
    raise DataError(
        f"unknown data spec {spec!r}; "
        f"use one of {', '.join(NAMED)}, or a path to an image folder, .npy, .npz or .csv"
    )


def _digits() -> Raw:
    """scikit-learn's bundled 8×8 digits (1797 images, values 0..16 scaled to 0..255)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # (N, 1, 8, 8)
    return Raw(x, d.target.astype(np.int64), [str(c) for c in d.target_names])

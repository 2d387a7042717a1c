"""load_data: a spec string ("mnist", "quickdraw:cat,dog", a path, ...) -> ImageData, through the source
registry (``aekit.data.sources``); this file names no source."""

from __future__ import annotations

import numbers
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aekit.data import image
from aekit.data import sources
from aekit.data.sources import Request, resolve, spec_help
from aekit.data.splits import make_splits
from aekit.errors import DataError

if TYPE_CHECKING:
    from aekit.data.base import ImageData

DATA_DIR_ENV = "AEKIT_DATA"
DEFAULT_DATA_DIR = Path("~/.cache/aekit")  # used when AEKIT_DATA is unset; "~" expanded on use
COMMON_OPTIONS = ("data_dir", "val_fraction", "seed", "image_size", "channels", "max_train_samples", "max_val_samples")


def option_names() -> tuple[str, ...]:
    """Every option load_data takes: the common ones, then each registered source's own (for CLI flags,
    config-file keys and the data options a run records)."""
    return (*COMMON_OPTIONS, *(k for k in sources.option_names() if k not in COMMON_OPTIONS))


def recorded_options(data: dict[str, Any]) -> dict[str, Any]:
    """The load_data options in a run's recorded data section (config.json "data", spec excluded): the
    common ones and those its spec's source takes, JSON lists as tuples, None dropped. The section also
    records facts about the data (its ``shape``, ``normalization``); a fact is passed on only where the
    source takes an option of that name (``shape`` for array files), so a run reloads exactly as trained."""
    src, _, _ = resolve(str(data["spec"]).strip())
    keys = (*COMMON_OPTIONS, *src.option_fields())
    data = {**data, **({"shape": data["fold_shape"]} if data.get("fold_shape") is not None else {})}
    return {k: (tuple(data[k]) if isinstance(data[k], list) else data[k]) for k in keys if data.get(k) is not None}


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
    max_train_samples: int | None = None,
    max_val_samples: int | None = None,
    **options: Any,
) -> ImageData:
    """Load a data set as uint8 images with deterministic train/val/test splits.

    spec: a registered source (`aekit.data.list_sources()`: "mnist", "fashion-mnist", "digits",
    "quickdraw:cat,dog", ...) or a path a path source claims (an image folder, .npy, .npz, .csv, IDX files).
    Named specs win over same-named paths; write "./mnist" for a path. A source's own test split is kept;
    others get a seeded test split of `val_fraction`. Val is `val_fraction` of the train pool;
    `max_train_samples` / `max_val_samples` keep seeded subsets of train / val (None: all; `aekit train` caps
    val in proportion to a train cap, ``splits.proportional_val_cap``). `image_size` (H, W) resizes, `channels` (1 or 3)
    converts. `options` are the source's own (mnist: download; quickdraw: max_per_class; arrays: shape);
    one it does not take is a ConfigError naming it and the source. None means "not given".
    """
    spec = _check_spec(spec)
    _check_args(val_fraction, seed, max_train_samples, max_val_samples)
    size = image.check_size(image_size) if image_size is not None else None
    chans = image.check_channels(channels) if channels is not None else None
    raw = read_source(spec, data_dir=data_dir, seed=seed, image_size=size, channels=chans, **options)
    x = raw.images
    if len(x) == 0:
        raise DataError(f"data set {spec!r} is empty")
    if len(raw.labels) != len(x):
        raise DataError(f"data set {spec!r}: {len(raw.labels)} labels for {len(x)} images")
    if raw.finish is not None:  # another data kind: the source builds it from the splits
        if size is not None or chans is not None:
            raise DataError(f"data set {spec!r} is not images: image_size and channels do not apply to it")
        return raw.finish(make_splits(len(x), raw.test, float(val_fraction), int(seed), max_train_samples, max_val_samples),
                          spec)
    if size is not None:
        x = image.resize(x, size)
    if chans is not None:
        x = image.convert_channels(x, chans)
    splits = make_splits(len(x), raw.test, float(val_fraction), int(seed), max_train_samples, max_val_samples)

    import torch

    from aekit.data.base import ImageData

    return ImageData(
        images=torch.from_numpy(x),  # shares memory: a memmap stays a memmap
        labels=torch.from_numpy(np.ascontiguousarray(raw.labels, dtype=np.int64)),
        class_names=list(raw.class_names),
        splits={k: torch.from_numpy(v) for k, v in splits.items()},
        name=spec,
    )


def read_source(
    spec: str | os.PathLike,
    *,
    data_dir: str | Path | None = None,
    seed: int = 0,
    image_size: tuple[int, int] | None = None,
    channels: int | None = None,
    **options: Any,
) -> sources.Raw:
    """What a spec's source reads, before load_data resizes, converts and splits it: images in the source's
    order (maybe a memmap), labels, class names and the source's own test split (``aekit pack`` writes this).
    ``image_size``/``channels`` are only offered to the source (a folder reads at that size)."""
    spec = _check_spec(spec)
    size = image.check_size(image_size) if image_size is not None else None
    chans = image.check_channels(channels) if channels is not None else None
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    src, argument, path = resolve(spec)
    return src.load(Request(spec, argument, path, root, int(seed), size, chans, src.make_options(options)))


def _check_spec(spec) -> str:
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(f"data spec must be a non-empty string, got {spec!r}; use {spec_help()}")
    return spec.strip()


def _check_args(val_fraction, seed, max_train_samples, max_val_samples=None) -> None:
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, numbers.Real) or not 0 <= val_fraction < 1:
        raise DataError(f"val_fraction must be a number in [0, 1), got {val_fraction!r}; 0.1 is usual", param="val_fraction")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise DataError(f"seed must be an integer >= 0, got {seed!r}")
    for name, v in (("max_train_samples", max_train_samples), ("max_val_samples", max_val_samples)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1):
            raise DataError(f"{name} must be a positive integer (or left out: no cap), got {v!r}", param=name)

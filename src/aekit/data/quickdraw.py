"""Google Quick, Draw! 28×28 bitmaps: one `full_numpy_bitmap_<category>.npy` (N×784 uint8) per category."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aekit.data.arrays import as_images
from aekit.data.sources import Raw, Request, source
from aekit.data.splits import seeded_rng
from aekit.errors import ConfigError, DataError
from aekit.options import opt

BUCKET = "https://storage.googleapis.com/quickdraw_dataset/full/numpy_bitmap/"


def parse_categories(text: str) -> list[str]:
    cats = [c.strip() for c in text.split(",") if c.strip()]
    if not cats:
        raise DataError("quickdraw needs categories, e.g. quickdraw:cat,dog,tree")
    dup = sorted({c for c in cats if cats.count(c) > 1})
    if dup:
        raise DataError(f"quickdraw category listed twice: {', '.join(dup)}; list each once")
    return cats


def _find(data_dir: Path, cat: str) -> Path:
    # The bucket names files "<category>.npy"; Kaggle and gsutil copies are often "full_numpy_bitmap_<category>.npy".
    candidates = [d / f"full_numpy_bitmap_{cat}.npy" for d in (data_dir / "quickdraw", data_dir)]
    candidates.append(data_dir / "quickdraw" / f"{cat}.npy")
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        url = BUCKET + urllib.parse.quote(f"{cat}.npy")
        raise DataError(
            f"quickdraw category {cat!r}: expected full_numpy_bitmap_{cat}.npy "
            f"in {data_dir / 'quickdraw'} or {data_dir}; "
            f"download {url} (public bucket gs://quickdraw_dataset/full/numpy_bitmap) and save it there"
        )
    return found


def load_quickdraw(categories: list[str], data_dir: Path, max_per_class: int | None, seed: int) -> Raw:
    """Labels are the category's position in `categories`. Files are memory-mapped; a single category
    without `max_per_class` stays a memmap, several are concatenated into memory (cap them with max_per_class)."""
    parts = []
    for i, cat in enumerate(categories):
        path = _find(data_dir, cat)
        try:
            a = np.load(path, mmap_mode="c", allow_pickle=False)  # "c": see arrays.load_npy
        except (ValueError, OSError, EOFError) as e:
            raise DataError(f"cannot read {path}: {type(e).__name__}: {e}; download the file again") from None
        if a.dtype != np.uint8 or a.ndim != 2 or a.shape[1] != 784:
            raise DataError(
                f"{path}: expected an N×784 uint8 array, got {a.dtype} {tuple(a.shape)}; "
                f"is it a numpy_bitmap file?"
            )
        if max_per_class is not None and max_per_class < len(a):
            # Sorted picks read the memmap front to back; a different stream per category keeps them independent.
            keep = np.sort(seeded_rng(seed, 100 + i).choice(len(a), size=max_per_class, replace=False))
            a = a[keep]
        parts.append(as_images(a, str(path), (1, 28, 28)))
    images = parts[0] if len(parts) == 1 else np.concatenate(parts)
    labels = np.concatenate([np.full(len(p), i, dtype=np.int64) for i, p in enumerate(parts)])
    return Raw(images, labels, list(categories))


@dataclass(frozen=True)
class QuickdrawOptions:
    max_per_class: int | None = opt(None, "keep a seeded sample of N drawings per category (default: all)",
                                    metavar="N")

    def __post_init__(self):
        if self.max_per_class is not None and self.max_per_class < 1:
            raise ConfigError(f"max_per_class must be a positive integer, got {self.max_per_class!r}",
                              param="max_per_class")


@source("quickdraw", "Google Quick, Draw! 28×28 bitmaps of the listed categories (one .npy per category)",
        options=QuickdrawOptions, argument="cat,dog")
def _load(req: Request) -> Raw:
    return load_quickdraw(parse_categories(req.argument or ""), req.data_dir, req.options.max_per_class, req.seed)

"""IDX files (the format MNIST and Fashion-MNIST are published in), plain or gzipped, and the `idx` path
source: a folder holding the four MNIST-named files (its test split kept), or one images file.

Format (http://yann.lecun.com/exdb/mnist/): 2 zero bytes, a type byte (0x08 = uint8), a byte with the
number of dimensions, then each dimension as a big-endian uint32, then the values in C order.
Hand-written because it is twenty lines and the libraries that read it pull in whole frameworks.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from aekit.data.arrays import dense_labels
from aekit.data.sources import Raw, Request, source
from aekit.errors import DataError

_UINT8 = 0x08
IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def read_bytes(path: Path) -> bytes:
    """File contents, gunzipped when the file starts with the gzip magic."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
        if head == b"\x1f\x8b":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"cannot read {path}: {e}; the file is damaged or truncated, fetch it again") from None


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """A uint8 IDX array with `ndim` dimensions (3 for images, 1 for labels)."""
    data = read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{path} is not an IDX file (bad magic number {data[:4].hex() or 'empty'}); fetch it again")
    if data[2] != _UINT8 or data[3] != ndim:
        raise DataError(
            f"{path}: IDX header says type 0x{data[2]:02x} with {data[3]} dimensions, expected uint8 (0x08) "
            f"with {ndim}; is it the right file?"
        )
    start = 4 + 4 * ndim
    if len(data) < start:
        raise DataError(f"{path}: IDX header is truncated; fetch the file again")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = start + int(np.prod(dims))
    if len(data) != expected:
        raise DataError(
            f"{path}: {len(data)} bytes but the header {dims} needs {expected}; the file is truncated or damaged"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=start).reshape(dims)


def idx_set_in(folder: Path, what: str) -> list[Path] | None:
    """The four IDX_NAMES files (plain or .gz) in ``folder``; None when it has none of them, a DataError
    when it has only some."""
    found = [next((p for p in (folder / n, folder / f"{n}.gz") if p.is_file()), None) for n in IDX_NAMES]
    if all(found):
        return found  # type: ignore[return-value]
    if any(found):
        missing = ", ".join(n for n, p in zip(IDX_NAMES, found) if p is None)
        raise DataError(f"{what}: {folder} has only some IDX files, missing {missing}[.gz]; add them or remove the rest")
    return None


def read_idx_set(paths: list[Path], class_names: list[str] | None, what: str) -> Raw:
    """Train pool then test split (kept as test) from the four IDX files, in IDX_NAMES order."""
    xs, ys = [], []
    for img_path, lbl_path in ((paths[0], paths[1]), (paths[2], paths[3])):
        x, y = read_idx(img_path, 3), read_idx(lbl_path, 1)
        if len(x) != len(y):
            raise DataError(
                f"{what}: {img_path.name} has {len(x)} images but {lbl_path.name} has {len(y)} labels; "
                f"fetch the pair again"
            )
        xs.append(x)
        ys.append(y)
    return assemble(xs[0], ys[0], xs[1], ys[1], class_names, str(paths[0].parent))


def assemble(x_train, y_train, x_test, y_test, class_names: list[str] | None, what: str) -> Raw:
    """Train pool then test as uint8 (N, 1, H, W) with checked labels; class names "0".."max" when None."""
    for x, y, split in ((x_train, y_train, "train"), (x_test, y_test, "test")):
        if x.ndim != 3 or x.dtype != np.uint8:
            raise DataError(f"{what}: {split} images must be uint8 N×H×W, got {x.dtype} {tuple(x.shape)}")
        if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{what}: {split} labels must be {len(x)} integers, got {y.dtype} {tuple(y.shape)}")
        if class_names is not None and len(y) and (y.min() < 0 or y.max() >= len(class_names)):
            raise DataError(
                f"{what}: {split} labels must lie in 0..{len(class_names) - 1}, found {int(y.min())}..{int(y.max())}"
            )
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{what}: train images are {x_train.shape[1:]} but test images are {x_test.shape[1:]}")
    if len(x_train) == 0:
        raise DataError(f"{what}: contains no training images")
    images = np.concatenate([x_train, x_test])[:, None]  # (N, 1, H, W)
    labels = np.concatenate([y_train, y_test]).astype(np.int64)
    test = np.arange(len(x_train), len(images))
    if class_names is None:
        labels, class_names = dense_labels(labels)
    return Raw(images, labels, list(class_names), test)


# ---- the idx path source ---------------------------------------------------------------------------


def _stem(path: Path) -> str:
    name = path.name.lower()
    return name[:-3] if name.endswith(".gz") else name


def _is_idx(path: Path) -> bool:
    if path.is_dir():
        return any((path / n).is_file() or (path / f"{n}.gz").is_file() for n in IDX_NAMES)
    return path.is_file() and _stem(path).endswith("idx3-ubyte")


def _labels_beside(path: Path) -> Path | None:
    """train-images-idx3-ubyte[.gz] -> train-labels-idx1-ubyte[.gz] (EMNIST and Kaggle names alike)."""
    name = path.name[:-3] if path.name.lower().endswith(".gz") else path.name
    name = name.replace("idx3", "idx1").replace("images", "labels")
    return next((p for p in (path.with_name(name), path.with_name(name + ".gz")) if p.is_file()), None)


@source(
    "idx",
    "IDX files (the MNIST format): a folder with train/t10k images and labels, or one *-idx3-ubyte[.gz] file",
    matches=_is_idx,
    path_hint="IDX files",
    priority=10,  # before the image-folder source, which claims every folder
)
def load_idx(req: Request) -> Raw:
    path = req.path
    assert path is not None
    if path.is_dir():
        return read_idx_set(idx_set_in(path, str(path)), None, str(path))  # type: ignore[arg-type]
    x = read_idx(path, 3)
    lbl = _labels_beside(path)
    y = read_idx(lbl, 1).astype(np.int64) if lbl is not None else np.full(len(x), -1, dtype=np.int64)
    if len(y) != len(x):
        raise DataError(f"{path}: {len(x)} images but {lbl.name} has {len(y)} labels; fetch the pair again")
    if len(x) == 0:
        raise DataError(f"{path}: contains no images")
    # A copy: np.frombuffer arrays are read-only, and torch.from_numpy warns on those.
    y, names = dense_labels(y) if lbl is not None else (y, [])
    return Raw(x[:, None].copy(), y, names)  # (N, 1, H, W)

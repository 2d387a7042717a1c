"""Array sources (.npy, .npz and .csv files) and the checks that turn any array into uint8 (N, C, H, W)."""

from __future__ import annotations

import contextlib
import csv
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aekit.data.sources import Raw, Request, source
from aekit.errors import ConfigError, DataError
from aekit.options import opt

X_KEYS = ("x", "images", "x_train")
Y_KEYS = ("y", "labels", "y_train")
_CHANNELS = (1, 3, 4)


_CHUNK_VALUES = 1 << 22  # values converted at a time: a large float memmap never becomes one big float array


def _row_chunks(a: np.ndarray) -> Iterator[slice]:
    rows = max(1, _CHUNK_VALUES // max(1, a[0].size))
    for start in range(0, len(a), rows):
        yield slice(start, start + rows)


def to_uint8(a: np.ndarray, what: str) -> np.ndarray:
    """Pixels as uint8: uint8 passes through untouched (no copy, a memmap stays a memmap); bool -> 0/255;
    integers must lie in 0..255; floats must lie in [0, 1] and are scaled by 255. Other dtypes are checked
    and converted a chunk of rows at a time, so memory holds the uint8 result (a quarter of a float32
    input) plus one chunk: a float .npy larger than RAM/4 should be saved as uint8 first."""
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8, order="C") * np.uint8(255)
    if a.size == 0:
        return a.astype(np.uint8)
    is_int, is_float = np.issubdtype(a.dtype, np.integer), np.issubdtype(a.dtype, np.floating)
    if not (is_int or is_float):
        raise DataError(f"{what}: pixel dtype {a.dtype} is not supported; use uint8, integers 0..255 or floats in [0, 1]")
    lo, hi = np.inf, -np.inf
    for rows in _row_chunks(a):  # pass 1: check every value before converting any
        blk = a[rows]
        if is_float and not np.isfinite(blk).all():
            raise DataError(f"{what}: pixels contain NaN or infinity; clean the array first")
        lo, hi = min(lo, blk.min()), max(hi, blk.max())
    if is_int and (lo < 0 or hi > 255):
        raise DataError(f"{what}: integer pixels must lie in 0..255, found {int(lo)}..{int(hi)}; rescale them first")
    if is_float and (lo < 0.0 or hi > 1.0):
        raise DataError(
            f"{what}: float pixels must lie in [0, 1], found {float(lo):g}..{float(hi):g}; "
            "divide 0..255 values by 255 or save them as uint8"
        )
    out = np.empty(a.shape, dtype=np.uint8)  # C-contiguous whatever the layout of `a`
    for rows in _row_chunks(a):  # pass 2: convert
        if is_float:
            blk = np.multiply(a[rows], 255.0, dtype=np.float32)
            out[rows] = np.rint(blk, out=blk)
        else:
            out[rows] = a[rows]
    return out


def to_nchw(a: np.ndarray, what: str, shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """Reshape N×H×W, N×H×W×C, N×C×H×W, or N×D (with `shape`) to N×C×H×W, as a view (maybe strided).

    4-channel input is taken as RGBA and its alpha is dropped (a copy). Ambiguous 4-D layouts
    (both axis 1 and axis 3 of size 1/3/4) are read as N×C×H×W unless `shape` says otherwise.
    """
    if shape is not None:
        shape = _check_shape(shape)
    if a.ndim == 2:
        n, d = a.shape
        if shape is None:
            side = int(round(d**0.5))
            hint = f" (e.g. shape=(1, {side}, {side}))" if side * side == d else ""
            raise DataError(f"{what}: flat N×{d} array needs shape=(C, H, W) with C*H*W = {d}{hint}", param="shape")
        if int(np.prod(shape)) != d:
            raise DataError(f"{what}: shape={shape} has {int(np.prod(shape))} values per sample, the array has {d}",
                            param="shape")
        out = a.reshape(n, *shape)
    elif a.ndim == 3:
        out = a.reshape(a.shape[0], 1, a.shape[1], a.shape[2])
    elif a.ndim == 4:
        nchw_ok = a.shape[1] in _CHANNELS
        nhwc_ok = a.shape[3] in _CHANNELS
        nhwc_shape = (a.shape[3], a.shape[1], a.shape[2])
        if nhwc_ok and (not nchw_ok or (shape is not None and shape == nhwc_shape)):
            # N×H×W×1 is already N×1×H×W in memory (a view); other channel counts need a transpose.
            out = a.reshape(a.shape[0], 1, *a.shape[1:3]) if a.shape[3] == 1 else a.transpose(0, 3, 1, 2)
        elif nchw_ok:
            out = a
        else:
            raise DataError(
                f"{what}: 4-D array {tuple(a.shape)} has no channel axis of size 1, 3 or 4 "
                "(expected N×C×H×W or N×H×W×C)"
            )
    else:
        raise DataError(
            f"{what}: array of shape {tuple(a.shape)} is not images; expected N×H×W, N×H×W×C, N×C×H×W "
            "or N×D with shape=(C, H, W)", param="shape"
        )
    if out.shape[1] == 4:
        out = out[:, :3]  # RGBA -> RGB: alpha dropped
    if out.shape[1] not in (1, 3):
        raise DataError(f"{what}: {out.shape[1]} channels; only 1 (gray), 3 (RGB) or 4 (RGBA) are supported")
    if shape is not None and tuple(out.shape[1:]) != shape:
        raise DataError(f"{what}: images are {'x'.join(map(str, out.shape[1:]))} (CxHxW) but shape={shape} was given",
                        param="shape")
    return out


def as_images(a: np.ndarray, what: str, shape=None) -> np.ndarray:
    """Any supported array -> C-contiguous uint8 (N, C, H, W); a uint8 memmap in N×C×H×W, N×H×W or
    N×D layout comes back as a view of the same mapping (no copy)."""
    x = to_uint8(to_nchw(a, what, shape), what)
    if not x.flags.c_contiguous:
        x = np.ascontiguousarray(x)  # only after a real layout change (transpose / alpha drop)
    if len(x) == 0:
        raise DataError(f"{what}: contains no images")
    return x


def _check_shape(shape) -> tuple[int, int, int]:
    try:
        c, h, w = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise DataError(f"shape must be three positive integers (C, H, W), got {shape!r}", param="shape") from None
    if min(c, h, w) < 1:
        raise DataError(f"shape must be three positive integers (C, H, W), got {shape!r}", param="shape")
    return (c, h, w)


def check_labels(y: np.ndarray | None, n: int, what: str) -> np.ndarray:
    """Labels as int64 (N,); None -> all -1 (unknown)."""
    if y is None:
        return np.full(n, -1, dtype=np.int64)
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{what}: labels must be one integer per image, got an array of shape {tuple(y.shape)}")
    if len(y) != n:
        raise DataError(f"{what}: {len(y)} labels for {n} images; they must match one to one")
    if np.issubdtype(y.dtype, np.floating) and np.isfinite(y).all() and (y == np.round(y)).all():
        y = y.astype(np.int64)
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{what}: labels must be integers, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if n and y.min() < -1:
        raise DataError(f"{what}: labels must be >= 0 (or -1 for unknown), found {int(y.min())}")
    return y


DENSE_UP_TO = 1000  # integer labels up to this keep their values ("0".."max"); sparser ones are renumbered


def dense_labels(y: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Integer labels (-1 unknown) and their class names. Labels 0..max (max < DENSE_UP_TO) keep their values and
    are named "0".."max"; larger or sparse values (a label of 10**12) are renumbered 0..K-1 in sorted order, named
    by their original values, so nothing downstream (legends, one-hots, counts) sizes itself by the largest label."""
    known = y[y >= 0]
    if known.size == 0:
        return y, []
    top = int(known.max())
    if top < DENSE_UP_TO:
        return y, [str(i) for i in range(top + 1)]
    values = np.unique(known)
    dense = np.where(y >= 0, np.searchsorted(values, y), -1).astype(np.int64)
    return dense, [str(int(v)) for v in values]


def _np_error(path: Path, e: Exception) -> DataError:
    return DataError(f"cannot read {path}: {type(e).__name__}: {e}; check the file is a complete NumPy file")


def load_npy(path: Path, shape=None) -> Raw:
    """One .npy array of images, memory-mapped: a uint8 N×C×H×W (or N×H×W) file is never read into RAM."""
    try:
        # mmap "c" (copy-on-write) rather than "r": torch.from_numpy warns on read-only arrays, and an
        # in-place write through the tensor would segfault; unwritten pages stay shared with the file.
        a = np.load(path, mmap_mode="c", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise _np_error(path, e) from None
    what = str(path)
    x = as_images(a, what, shape)
    return Raw(x, np.full(len(x), -1, dtype=np.int64), [])


def _first(npz, keys):
    return next((k for k in keys if k in npz.files), None)


@contextlib.contextmanager
def open_npz(path: Path) -> Iterator[np.lib.npyio.NpzFile]:
    """np.load of an .npz without pickles, any failure (while open, too) as a one-line DataError."""
    try:
        # Our own handle: np.load leaks the one it opens when the zip directory is corrupt.
        with open(path, "rb") as f:
            z = np.load(f, allow_pickle=False)
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise DataError(f"{path}: not an .npz archive (one array?); save it with np.savez or rename it .npy")
            with z:
                yield z
    except DataError:  # a ValueError too, but already says what to do
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as e:
        raise _np_error(path, e) from None


def npz_member(z: np.lib.npyio.NpzFile, key: str, what: str) -> np.ndarray:
    """``z[key]`` after checking its .npy header: the array it declares must be what the member holds (a
    header may declare 50 GB over a few bytes) and must fit in memory, before numpy allocates it."""
    from aekit.limits import gib, require_memory

    name = key if key in z.zip.namelist() else f"{key}.npy"
    info = z.zip.getinfo(name)
    with z.zip.open(name) as f:
        try:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            header = read(f)  # (shape, fortran_order, dtype)
        except (ValueError, OSError, EOFError, TypeError) as e:
            raise DataError(f"{what}[{key}]: not a NumPy array ({e}); check the file is a complete .npz") from None
    shape, _, dtype = header
    declared = float(np.prod([float(d) for d in shape])) * dtype.itemsize
    if declared > info.file_size:
        raise DataError(f"{what}[{key}]: its header declares a {'x'.join(map(str, shape))} {dtype} array ({gib(declared)}) "
                        f"but the member holds {gib(info.file_size)}; the file is damaged or forged")
    require_memory(declared, f"{what}[{key}]", "use a smaller data set (or a .npy file, which is memory-mapped)", DataError)
    return z[key]


def load_npz(path: Path, shape=None) -> Raw:
    """An .npz with images under x / images / x_train, optional labels y / labels / y_train, and an
    optional own test split x_test (+ y_test), which is kept as test."""
    what = str(path)
    with open_npz(path) as z:
        xk = _first(z, X_KEYS)
        if xk is None:
            raise DataError(
                f"{what}: no image array; "
                f"expected one of the keys {', '.join(X_KEYS)} (has: {', '.join(z.files) or 'none'})"
            )
        yk = _first(z, Y_KEYS)
        x = npz_member(z, xk, what)
        y = npz_member(z, yk, what) if yk else None
        xt = npz_member(z, "x_test", what) if "x_test" in z.files else None
        yt = npz_member(z, "y_test", what) if "y_test" in z.files else None
        names = [str(s) for s in npz_member(z, "class_names", what)] if "class_names" in z.files else None
    x = as_images(x, f"{what}[{xk}]", shape)
    y = check_labels(y, len(x), f"{what}[{yk}]")
    test = None
    if xt is None and yt is not None:
        raise DataError(f"{what}: has y_test but no x_test; add the test images or drop y_test")
    if xt is not None:
        xt = as_images(xt, f"{what}[x_test]", shape)
        if xt.shape[1:] != x.shape[1:]:
            raise DataError(
                f"{what}: x_test images are {xt.shape[1:]} but {xk} images are {x.shape[1:]}; "
                f"they must match"
            )
        if (yt is None) != (yk is None):
            raise DataError(f"{what}: labels are given for only one of {xk} and x_test; give both or neither")
        yt = check_labels(yt, len(xt), f"{what}[y_test]")
        test = np.arange(len(x), len(x) + len(xt))
        x = np.concatenate([x, xt])
        y = np.concatenate([y, yt])
    if names is None:
        y, names = dense_labels(y)
    elif y.size and y.max() >= len(names):
        raise DataError(f"{what}: label {int(y.max())} has no entry in class_names ({len(names)} names)")
    return Raw(x, y, names, test)


def load_csv(path: Path, shape=None) -> Raw:
    """A table, one sample per row; a column named "label" holds the labels (integers or names).

    Scaling: one min and one max over all feature cells of the file (not per column, so the relative
    size of features is kept) map values linearly onto 0..255. Shape is (1, 1, D) unless `shape` is given.
    """
    what = str(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"cannot read {path}: {e}; expected a UTF-8 comma-separated table") from None
    # Row numbers below are file lines (1-based), so an error points at the line in an editor.
    lines = [(i + 1, r) for i, r in enumerate(rows) if any(c.strip() for c in r)]
    if not lines:
        raise DataError(f"{what}: the file has no rows; expected one sample per row")
    header = None
    if any(not _is_number(c) for c in lines[0][1]):
        header = [c.strip() for c in lines[0][1]]
        lines = lines[1:]
    if not lines:
        raise DataError(f"{what}: the file has a header but no data rows")
    width = len(header) if header else len(lines[0][1])
    for line, r in lines:
        if len(r) != width:
            raise DataError(f"{what}: row {line} has {len(r)} cells, expected {width}")
    label_col = next((i for i, h in enumerate(header or []) if h.lower() == "label"), None)
    cols = [i for i in range(width) if i != label_col]
    if not cols:
        raise DataError(f"{what}: no feature columns besides the label")
    cells = [[r[i] for i in cols] for _, r in lines]
    try:
        values = np.asarray(cells, dtype=np.float64)
    except ValueError:
        values = None
    if values is None or not np.isfinite(values).all():
        for line, r in lines:  # slow path, only to name the offending cell
            for i in cols:
                if not _is_number(r[i]) or not np.isfinite(float(r[i])):
                    col = repr(header[i]) if header else str(i + 1)
                    raise DataError(f"{what}: row {line}, column {col}: {r[i]!r} is not a finite number")
    lo, hi = float(values.min()), float(values.max())
    if not np.isfinite(hi - lo):  # +-1e308 cells: the span overflows and every pixel would be NaN
        raise DataError(f"{what}: values span {lo:g}..{hi:g}, wider than a float can scale; rescale the table first")
    scaled = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    x = np.rint(scaled * 255.0).astype(np.uint8)
    x = as_images(x, what, shape if shape is not None else (1, 1, len(cols)))
    names: list[str] = []
    if label_col is None:
        y = np.full(len(x), -1, dtype=np.int64)
    else:
        raw = [r[label_col].strip() for _, r in lines]
        if all(_is_int(v) for v in raw):
            y, names = dense_labels(check_labels(np.array([int(v) for v in raw], dtype=np.int64), len(x), what))
        else:
            names = sorted(set(raw))  # text labels: classes in sorted order
            index = {v: i for i, v in enumerate(names)}
            y = np.array([index[v] for v in raw], dtype=np.int64)
    return Raw(x, y, names)


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _is_int(s: str) -> bool:
    try:
        int(s)
    except ValueError:
        return False
    return True


# ---- the registered sources ------------------------------------------------------------------------


@dataclass(frozen=True)
class ArrayOptions:
    shape: tuple[int, int, int] | None = opt(None, "(C, H, W) of each flat row of an N×D array", metavar="CxHxW")

    def __post_init__(self):
        if self.shape is not None and min(self.shape) < 1:
            raise ConfigError(f"shape must be three positive integers (C, H, W), got {self.shape!r}", param="shape")


@source("npy", "one NumPy array of images (N×H×W, N×H×W×C, N×C×H×W, or N×D with shape), memory-mapped",
        options=ArrayOptions, extensions=(".npy",))
def _load_npy(req: Request) -> Raw:
    return load_npy(req.path, req.options.shape)


@source("npz", "NumPy archive: images under x/images/x_train, labels y/labels/y_train, own test x_test/y_test",
        options=ArrayOptions, extensions=(".npz",))
def _load_npz(req: Request) -> Raw:
    return load_npz(req.path, req.options.shape)


@source("csv", "a table, one sample per row (a 'label' column holds labels), scaled to 0..255",
        options=ArrayOptions, extensions=(".csv",))
def _load_csv(req: Request) -> Raw:
    return load_csv(req.path, req.options.shape)

"""IDX files (the format MNIST and Fashion-MNIST are published in), plain or gzipped.

Format (http://yann.lecun.com/exdb/mnist/): 2 zero bytes, a type byte (0x08 = uint8), a byte with the
number of dimensions, then each dimension as a big-endian uint32, then the values in C order.
Hand-written because it is twenty lines and the libraries that read it pull in whole frameworks.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from aekit.errors import DataError

_UINT8 = 0x08


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

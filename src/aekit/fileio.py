"""The one copy of file writing and image encoding: write-then-rename (atomic) saves, and PNG bytes of an
image array. Torch-free and cheap to import (Pillow is imported where a PNG is made)."""

from __future__ import annotations

import base64
import contextlib
import functools
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@functools.cache
def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temp_beside(path: str | Path, suffix: str = "") -> Path:
    """Create an empty hidden temporary file in ``path``'s folder (made if missing) and return its path.
    It gets the permissions a plain ``open`` would give (mkstemp's own are 0600), so the renamed file
    reads like any other."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
    finally:
        os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to fill (streamed writes, memory maps, downloads); on success it
    is renamed onto ``path``, on any failure removed: a reader never sees half a file."""
    tmp = temp_beside(path, suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` (text is UTF-8 encoded) to ``path`` through :func:`atomic_path`."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)


def png_bytes(img, compress_level: int = 1) -> bytes:
    """One image as PNG bytes: (C, H, W) uint8, or floats in [0, 1] (clipped, rounded); grey for C = 1, RGB for
    C = 3. Level 1 zlib: these images are tiny, and the explorer makes one per request."""
    import numpy as np
    from PIL import Image

    a = np.asarray(img)
    if a.ndim != 3:
        raise ValueError(f"png_bytes needs one (C, H, W) image, got shape {a.shape}")
    if a.dtype != np.uint8:
        a = (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    pil = Image.fromarray(np.ascontiguousarray(a[0] if a.shape[0] != 3 else a.transpose(1, 2, 0)))
    buf = io.BytesIO()
    pil.save(buf, "PNG", compress_level=compress_level)
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    """PNG bytes as a ``data:`` URI, for pages that fetch nothing (the report, the explorer's JSON)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")

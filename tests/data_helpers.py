"""Writers for small but real data files (IDX, gzip, npz, npy, PNG folders, csv) used by test_data.py."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np

IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def idx_bytes(a: np.ndarray) -> bytes:
    """IDX encoding: 0, 0, type 0x08 (uint8), ndim, big-endian uint32 dims, data."""
    a = np.ascontiguousarray(a, dtype=np.uint8)
    return bytes([0, 0, 0x08, a.ndim]) + np.array(a.shape, dtype=">u4").tobytes() + a.tobytes()


def write_idx(path: Path, a: np.ndarray, gz: bool = False) -> Path:
    data = idx_bytes(a)
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def mnist_arrays(n_train: int = 60, n_test: int = 20, seed: int = 0, size: int = 28):
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, 256, (n_train, size, size), dtype=np.uint8),
        rng.integers(0, 10, n_train).astype(np.uint8),
        rng.integers(0, 256, (n_test, size, size), dtype=np.uint8),
        rng.integers(0, 10, n_test).astype(np.uint8),
    )


def write_idx_set(folder: Path, arrays, gz: bool = False) -> list[Path]:
    """The four MNIST IDX files of (x_train, y_train, x_test, y_test) in `folder`."""
    return [write_idx(folder / n, a, gz=gz) for n, a in zip(IDX_NAMES, arrays)]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_pngs(folder: Path, n: int, size=(10, 12), mode: str = "L", seed: int = 0, ext: str = "png") -> list[Path]:
    """n random images of `size` (W, H) in `folder`."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], len(mode))
    paths = []
    for i in range(n):
        p = folder / f"img{i:03d}.{ext}"
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(p)  # 2-D -> L, 3 -> RGB, 4 -> RGBA
        paths.append(p)
    return paths


def one_line(exc_type, fn, *words) -> str:
    """Call fn, expect a one-line ``exc_type`` whose message contains every word; return the message."""
    import pytest

    with pytest.raises(exc_type) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg, msg
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"
    return msg

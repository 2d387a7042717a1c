"""Shared test helpers: writers for small but real data files (IDX, gzip, npz, npy, PNG folders, csv), and the
CLI helpers every test of bad input uses (run a command in-process, snapshot a folder, train a tiny run)."""

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


# ---- the CLI, in-process ------------------------------------------------------------------------------------

def cli(capsys, *argv):
    """(exit code, stdout, stderr) of ``aekit ARGV`` run in-process; arguments may be paths or numbers."""
    from aekit.cli import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes: equal snapshots mean nothing new or changed on disk."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def train_run(folder: Path, data_dir: Path, *argv) -> Path:
    """Train ``aekit train ARGV`` into ``folder/run`` (a module fixture's finished run) and return its path."""
    from aekit.cli import main

    out = folder / "run"
    assert main(["train", *map(str, argv), "--out", str(out), "--data-dir", str(data_dir)]) == 0
    return out


def copy_run(run: Path, tmp_path: Path, *ignore: str) -> Path:
    """A fresh copy of a finished run (``tmp_path/copy``) for a test that damages it; ``ignore``: names left out."""
    import shutil

    return Path(shutil.copytree(run, tmp_path / "copy", ignore=shutil.ignore_patterns(*ignore) if ignore else None))


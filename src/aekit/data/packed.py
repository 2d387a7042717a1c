"""Packed data: images in uint8 ``.npy`` shards + a JSON manifest, read a shard at a time (data larger than RAM).

A pack is a folder written by ``aekit pack SOURCE OUT`` (:func:`pack`) from any image source::

    OUT/manifest.json         format, count, (C, H, W), class names, the test range, and per shard:
                              file, first index, count, shape, dtype, bytes, sha256
    OUT/shard-00000.npy ...   uint8 (n, C, H, W): plain NumPy files, readable by np.load anywhere
    OUT/labels.npy            int64 (N,), -1 = unknown
    OUT/order.npy             int64 (N,): the source index of each packed image

Why ``.npy`` shards and not WebDataset tar shards: a tar holds one member per sample, so reading it means a
Python-level step (and a decode) per image, and 28x28 images get a 512-byte tar header each (3.3x the bytes);
a ``.npy`` shard is contiguous uint8 rows, mapped in one call and batched by one gather. On MNIST the shard
reader feeds ~58x more images per second than a tar walk (benchmarks/packed.py, docs/benchmarks.md), which is
what keeps training on packed data as fast as in memory on one core, with no worker processes and no new
dependency. Any NumPy reads a shard; the manifest is plain JSON.

Order and splits: the source's own test split (MNIST's 10k) is kept as the pack's last images, in source
order; the images before it (the train pool) are shuffled once at pack time with a seed (a class-sorted
source such as an image folder or several QuickDraw categories would otherwise give one-class shards, which
no bounded shuffle buffer can mix). The validation carve is made at load time from the seed, as for every
source (:func:`aekit.data.splits.make_splits`).

Reading: ``packed:DIR`` (or a DIR holding a pack's manifest.json) is a registered source. Shard sizes are
checked against the manifest when a pack is opened; a shard's sha256 when it is first read in a process.
Either failure is a one-line DataError naming the shard. Training streams a shard at a time
(:mod:`aekit.data.shards`); this module is torch-free.
"""

from __future__ import annotations

import hashlib
import io
import json
import mmap
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from aekit.data.sources import Raw, Request, source
from aekit.errors import ConfigError, DataError

MANIFEST = "manifest.json"
FORMAT = "aekit-pack"
VERSION = 1
SHARD_BYTES = 32 << 20  # default shard: ~32 MiB of pixels (42k MNIST images; ~170 RGB 256x256 ones)
_SHARD_NAME = re.compile(r"shard-\d{5,}\.npy")
_SHA = re.compile(r"[0-9a-f]{64}")


def is_pack(path: Path) -> bool:
    """A folder holding a pack's manifest (what the ``packed-folder`` path source claims)."""
    return path.is_dir() and (path / MANIFEST).is_file()


# ---------------------------------------------------------------- writing


class _HashingWriter:
    """A file wrapper that hashes what passes through (np.save then writes the array in 16 MiB chunks)."""

    def __init__(self, fh) -> None:
        self.fh, self.sha, self.n = fh, hashlib.sha256(), 0

    def write(self, b) -> int:
        self.sha.update(b)
        self.n += len(memoryview(b).cast("B"))
        return self.fh.write(b)


def _save(path: Path, a: np.ndarray) -> dict[str, Any]:
    with open(path, "wb") as fh:
        w = _HashingWriter(fh)
        np.lib.format.write_array(w, np.ascontiguousarray(a), allow_pickle=False)
    return {"file": path.name, "bytes": w.n, "sha256": w.sha.hexdigest()}


def write_pack(
    out: str | Path,
    read: Callable[[int, int], np.ndarray],
    count: int,
    labels: np.ndarray,
    *,
    shape: tuple[int, int, int],
    class_names: list[str] | None = None,
    n_test: int = 0,
    order: np.ndarray | None = None,
    shard_size: int | None = None,
    info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write a pack of ``count`` images to the new folder ``out`` and return its manifest.

    ``read(start, stop)`` gives the uint8 (n, C, H, W) images at packed positions [start, stop), called once
    per shard, so memory holds one shard. The last ``n_test`` images are the test split; shards never straddle
    the train/test boundary. ``shard_size`` is images per shard (default: ~32 MiB of pixels). Written into a
    hidden folder beside ``out`` and renamed into place: a reader never sees half a pack.
    """
    from aekit import __version__
    from aekit.fileio import atomic_dir, check_free_space

    out = Path(out)
    c, h, w = (int(v) for v in shape)
    row = c * h * w
    if shard_size is None:
        shard_size = max(1, SHARD_BYTES // row)
    if isinstance(shard_size, bool) or not isinstance(shard_size, (int, np.integer)) or shard_size < 1:
        raise ConfigError(f"shard_size must be a positive number of images, got {shard_size!r}", param="shard_size")
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    if labels.shape != (count,):
        raise DataError(f"{count} images but {len(labels)} labels")
    if not 0 <= n_test < count:
        raise DataError(f"the test split ({n_test}) must leave a train pool in the {count} images")
    n_pool = count - n_test
    bounds = [(a, min(a + shard_size, end))
              for lo, end in ((0, n_pool), (n_pool, count)) for a in range(lo, end, shard_size)]
    check_free_space(out, count * row + 16 * count + 4096 * len(bounds))
    with atomic_dir(out) as tmp:
        shards = []
        for i, (a, b) in enumerate(bounds):
            x = read(a, b)
            if x.dtype != np.uint8 or tuple(x.shape) != (b - a, c, h, w):
                raise DataError(f"shard {i}: expected uint8 {(b - a, c, h, w)}, got {x.dtype} {tuple(x.shape)}")
            shards.append({**_save(tmp / f"shard-{i:05d}.npy", x), "start": a, "count": b - a,
                           "shape": [b - a, c, h, w], "dtype": "uint8"})
        manifest = {
            "format": FORMAT, "version": VERSION, "aekit": __version__, **(info or {}),
            "count": int(count), "shape": [c, h, w], "dtype": "uint8",
            "class_names": list(class_names or []),
            "test": {"start": n_pool, "count": n_test} if n_test else None,
            "labels": _save(tmp / "labels.npy", labels),
            "order": _save(tmp / "order.npy", np.asarray(order, dtype=np.int64)) if order is not None else None,
            "shards": shards,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


def pack(
    spec: str,
    out: str | Path,
    *,
    shard_size: int | None = None,
    shuffle: bool = True,
    seed: int = 0,
    image_size: tuple[int, int] | None = None,
    channels: int | None = None,
    data_dir: str | Path | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Pack the data set ``spec`` (any image source load_data reads, a pack too) into the new folder ``out``.

    The source's own test split becomes the pack's last images, in source order; the train pool before it is
    shuffled with ``seed`` unless ``shuffle`` is False. ``image_size``/``channels`` resize/convert a shard at
    a time. A memory-mapped source (.npy, QuickDraw) is copied a shard at a time; a source that reads itself
    into memory (an image folder, IDX) needs that memory once, while packing. Returns the manifest.
    """
    from aekit.data import image
    from aekit.data.load import read_source

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} already exists; remove it or choose another folder to pack into")
    size = image.check_size(image_size) if image_size is not None else None
    chans = image.check_channels(channels) if channels is not None else None
    raw = read_source(spec, data_dir=data_dir, seed=seed, image_size=size, channels=chans, **options)
    if raw.finish is not None and not isinstance(raw.images, PackedImages):
        raise DataError(f"{spec}: not images (a table?); aekit pack packs image data sets")
    x = raw.images
    n = len(x)
    if n == 0:
        raise DataError(f"data set {spec!r} is empty")
    test = np.sort(np.unique(np.asarray(raw.test, dtype=np.int64))) if raw.test is not None else np.zeros(0, np.int64)
    pool = np.setdiff1d(np.arange(n), test) if len(test) else np.arange(n)
    if len(pool) == 0:
        raise DataError(f"data set {spec!r} has only test images; nothing to train on")
    if shuffle:
        from aekit.data.splits import seeded_rng

        pool = seeded_rng(seed, 3).permutation(pool)  # stream 3: not the split streams (1, 2)
    order = np.concatenate([pool, test])
    c, h, w = (int(v) for v in x.shape[1:])
    h, w = size if size is not None else (h, w)
    c = chans if chans is not None else c

    def read(a: int, b: int) -> np.ndarray:
        want = order[a:b]
        back = np.argsort(want, kind="stable")
        got = np.asarray(x[want[back]])  # sorted source indices: a memmap is read front to back
        block = np.empty_like(got)
        block[back] = got
        if size is not None:
            block = image.resize(block, size)
        if chans is not None:
            block = image.convert_channels(block, chans)
        return block

    info = {"source": str(spec), "shuffled": bool(shuffle), "seed": int(seed)}
    return write_pack(out, read, n, np.asarray(raw.labels)[order], shape=(c, h, w), class_names=raw.class_names,
                      n_test=len(test), order=order, shard_size=shard_size, info=info)


# ---------------------------------------------------------------- reading


def _map(fd: int, writable: bool):
    """A private memory map of a whole file, pre-faulted where the OS can (Linux MAP_POPULATE)."""
    if hasattr(mmap, "MAP_PRIVATE"):  # POSIX
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
        return mmap.mmap(fd, 0, flags=mmap.MAP_PRIVATE | getattr(mmap, "MAP_POPULATE", 0), prot=prot)
    return mmap.mmap(fd, 0, access=mmap.ACCESS_COPY if writable else mmap.ACCESS_READ)


class Pack:
    """An opened pack: the manifest checked, shard files present with the sizes it lists, labels verified.
    Shards are read whole (``load_shard``, one mapping per shard, gone with its array) or by rows
    (``read_rows``, plain reads); each is checked against its sha256 the first time this process reads it."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        m = self._manifest()
        self.manifest = m
        self.shape: tuple[int, int, int] = tuple(m["shape"])  # type: ignore[assignment]
        self.count = int(m["count"])
        self.row = int(np.prod(self.shape))
        self.shards: list[dict[str, Any]] = m["shards"]
        self.starts = np.array([s["start"] for s in self.shards], dtype=np.int64)
        self.counts = np.array([s["count"] for s in self.shards], dtype=np.int64)
        self.class_names = [str(n) for n in m.get("class_names") or []]
        t = m.get("test")
        self.test = np.arange(int(t["start"]), int(t["start"]) + int(t["count"])) if t else None
        self._header: dict[int, int] = {}
        self._verified: set[int] = set()
        for i, s in enumerate(self.shards):
            self._check_size(i, s)
        self.labels = self._small("labels", m["labels"])

    # -- checks ---------------------------------------------------------------------------------------
    def _bad(self, what: str) -> DataError:
        return DataError(f"pack {self.root}: {what}; pack the data again with `aekit pack`")

    def _manifest(self) -> dict[str, Any]:
        path = self.root / MANIFEST
        if not path.is_file():
            raise DataError(f"{self.root}: no {MANIFEST}; give a folder written by `aekit pack SOURCE OUT`")
        try:
            m = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise self._bad(f"{MANIFEST} is not readable JSON ({type(e).__name__})") from None
        if not isinstance(m, dict) or m.get("format") != FORMAT:
            raise DataError(f"{path}: not an aekit pack manifest (format {FORMAT!r} expected)")
        if m.get("version") != VERSION:
            raise DataError(f"{path}: pack format version {m.get('version')!r}; this aekit reads version {VERSION}, "
                            "pack the data again")
        try:
            shape = [int(v) for v in m["shape"]]
            count = int(m["count"])
            shards = m["shards"]
            expected = 0
            for s in shards:
                if not _SHARD_NAME.fullmatch(str(s["file"])) or not _SHA.fullmatch(str(s["sha256"])):
                    raise ValueError("shard entry")
                if int(s["start"]) != expected or int(s["count"]) < 1 or s.get("dtype", "uint8") != "uint8":
                    raise ValueError("shard ranges")
                if [int(v) for v in s["shape"]] != [int(s["count"]), *shape]:
                    raise ValueError("shard shape")
                expected += int(s["count"])
            if expected != count or len(shape) != 3 or min(shape) < 1 or not shards:
                raise ValueError("counts")
            for key in ("labels", "order"):  # order.npy is optional
                if (key == "labels" or m.get(key) is not None) and (
                        not _SHA.fullmatch(str(m[key]["sha256"])) or m[key]["file"] != f"{key}.npy"):
                    raise ValueError(key)
            t = m.get("test")
            if t is not None and not (0 < int(t["count"]) and int(t["start"]) + int(t["count"]) == count):
                raise ValueError("test range")
        except (KeyError, TypeError, ValueError) as e:
            raise self._bad(f"{MANIFEST} is malformed ({e})") from None
        return m

    def _check_size(self, i: int, s: dict[str, Any]) -> None:
        path = self.root / s["file"]
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise self._bad(f"shard {s['file']} is missing") from None
        data = int(s["count"]) * self.row
        if size != int(s["bytes"]) or size <= data:
            raise self._bad(f"shard {s['file']} is damaged ({size} bytes, the manifest says {s['bytes']})")
        self._header[i] = size - data

    def _small(self, key: str, entry: dict[str, Any]) -> np.ndarray:
        """labels.npy / order.npy: read whole, checked against the manifest's sha256."""
        path = self.root / entry["file"]
        try:
            buf = path.read_bytes()
        except FileNotFoundError:
            raise self._bad(f"{entry['file']} is missing") from None
        if hashlib.sha256(buf).hexdigest() != entry["sha256"]:
            raise self._bad(f"{entry['file']} is damaged (its sha256 differs from the manifest's)")
        a = np.load(io.BytesIO(buf), allow_pickle=False)
        if a.shape != (self.count,) or not np.issubdtype(a.dtype, np.integer):
            raise self._bad(f"{entry['file']} holds {a.dtype} {a.shape}, expected {self.count} integers")
        return a.astype(np.int64, copy=False)

    def order(self) -> np.ndarray | None:
        """The source index of each packed image (None for a pack written without one)."""
        entry = self.manifest.get("order")
        return self._small("order", entry) if entry else None

    # -- reading --------------------------------------------------------------------------------------
    def load_shard(self, i: int, writable: bool = False) -> np.ndarray:
        """Shard ``i`` whole as uint8 (n, C, H, W), checked against its sha256 on its first read in this process.

        The file is memory-mapped, its pages faulted in at once (MAP_POPULATE: from the page cache that is a
        few ms for 32 MB, against ~25 ms for a copy), and the mapping goes when the array does: the resident
        memory it adds is this shard's, for as long as the caller keeps it (a map over *all* shards would keep
        every page it ever touched). ``writable``: a private copy-on-write mapping (changes stay in memory)."""
        s = self.shards[i]
        path = self.root / s["file"]
        nbytes = int(s["bytes"])
        try:
            with open(path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if size != nbytes:
                    raise self._bad(f"shard {s['file']} is damaged ({size} bytes, the manifest says {nbytes})")
                buf = _map(fh.fileno(), writable)
        except FileNotFoundError:
            raise self._bad(f"shard {s['file']} is missing") from None
        if i not in self._verified:
            if hashlib.sha256(buf).hexdigest() != s["sha256"]:  # hashlib releases the GIL on large buffers
                raise self._bad(f"shard {s['file']} is damaged (its sha256 differs from the manifest's)")
            self._check_header(i, buf)
            self._verified.add(i)
        n = int(s["count"])
        return np.frombuffer(buf, dtype=np.uint8, count=n * self.row, offset=self._header[i]).reshape(n, *self.shape)

    def _check_header(self, i: int, buf) -> None:
        head = io.BytesIO(bytes(buf[: self._header[i]]))
        try:
            major, _ = np.lib.format.read_magic(head)
            read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(head)
        except ValueError:
            shape, fortran, dtype = None, False, None
        want = (int(self.shards[i]["count"]), *self.shape)
        if shape != want or fortran or dtype != np.uint8 or head.tell() != self._header[i]:
            raise self._bad(f"shard {self.shards[i]['file']} is not the uint8 array its manifest entry describes")

    def read_rows(self, i: int, a: int, b: int) -> np.ndarray:
        """Rows [a, b) of shard ``i``; an unverified shard is read whole once (to check it) and sliced."""
        if i not in self._verified:
            return self.load_shard(i)[a:b].copy()
        out = np.empty((b - a, *self.shape), dtype=np.uint8)
        with open(self.root / self.shards[i]["file"], "rb") as fh:
            fh.seek(self._header[i] + a * self.row)
            got = fh.readinto(memoryview(out).cast("B"))
        if got != out.nbytes:
            raise self._bad(f"shard {self.shards[i]['file']} is damaged (shorter than its manifest says)")
        return out

    def shard_of(self, positions: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.starts, positions, side="right") - 1

    def read(self, positions: np.ndarray) -> np.ndarray:
        """Images at packed ``positions`` (any order) as uint8 (len, C, H, W); memory: the result plus the span
        of one shard that holds some of them."""
        positions = np.asarray(positions, dtype=np.int64).reshape(-1)
        out = np.empty((len(positions), *self.shape), dtype=np.uint8)
        if len(positions) == 0:
            return out
        if positions.min() < 0 or positions.max() >= self.count:
            raise IndexError(f"index out of range for a pack of {self.count} images")
        sid = self.shard_of(positions)
        for i in np.unique(sid):
            rows = np.flatnonzero(sid == i)
            local = positions[rows] - self.starts[i]
            lo, hi = int(local.min()), int(local.max()) + 1
            out[rows] = self.read_rows(int(i), lo, hi)[local - lo]
        return out

    def verify(self) -> None:
        """Check every shard against its sha256 now (otherwise each is checked when first read)."""
        for i in range(len(self.shards)):
            if i not in self._verified:
                self.load_shard(i)

    @property
    def nbytes(self) -> int:
        return self.count * self.row


class PackedImages:
    """A pack's images (or a subset, by sorted packed positions) as a lazy (N, C, H, W) uint8 sequence:
    ``len``, ``shape`` and indexing by int, slice or index array read only the shards they need."""

    ndim = 4
    dtype: Any = np.uint8

    def __init__(self, pack: Pack, positions: np.ndarray | None = None) -> None:
        self.pack, self.positions = pack, positions

    def __len__(self) -> int:
        return self.pack.count if self.positions is None else len(self.positions)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), *self.pack.shape)

    @property
    def nbytes(self) -> int:
        return len(self) * self.pack.row

    def _read(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            i = int(key) + (len(self) if key < 0 else 0)
            if not 0 <= i < len(self):
                raise IndexError(f"index {int(key)} out of range for {len(self)} images")
            return self._read(np.array([i]))[0]
        if isinstance(key, slice):
            a, b, step = key.indices(len(self))
            if step == 1 and self.positions is None:
                return self.pack.read(np.arange(a, max(a, b)))
            key = np.arange(a, b, step)
        idx = np.asarray(key)
        if idx.dtype == np.bool_:
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64, copy=False)
        idx = np.where(idx < 0, idx + len(self), idx)
        return self.pack.read(idx if self.positions is None else self.positions[idx])

    def __getitem__(self, key) -> np.ndarray:
        return self._read(key)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        a = self._read(slice(None))
        return a if dtype is None else a.astype(dtype)

    def subset(self, positions: np.ndarray) -> "PackedImages":
        """The images at ``positions`` of this sequence, still lazy."""
        positions = np.asarray(positions, dtype=np.int64)
        return type(self)(self.pack, positions if self.positions is None else self.positions[positions])


# ---------------------------------------------------------------- the registered sources


def _load(path: Path, req: Request) -> Raw:
    if req.image_size is not None or req.channels is not None:
        raise DataError(f"{path} is packed at a fixed size: image_size and channels apply when packing "
                        "(aekit pack SOURCE OUT --image-size H --channels C), not when reading a pack")
    p = Pack(path)

    def finish(splits: dict[str, np.ndarray], name: str):
        from aekit.data.shards import packed_data

        return packed_data(p, splits, name)

    return Raw(PackedImages(p), p.labels, p.class_names, p.test, finish=finish)


@source("packed", "a folder written by `aekit pack` (uint8 .npy shards + manifest), streamed a shard at a time",
        argument="DIR")
def _load_named(req: Request) -> Raw:
    text = (req.argument or "").strip()
    if not text:
        raise DataError("packed needs a folder: packed:DIR (a folder written by `aekit pack SOURCE DIR`)")
    path = Path(text).expanduser()
    if not path.exists() and not path.is_absolute() and (req.data_dir / path).exists():
        path = req.data_dir / path  # a pack kept in the data folder
    if not path.exists():
        raise DataError(f"{path}: no such folder; write one with `aekit pack SOURCE {text}`")
    return _load(path, req)


@source("packed-folder", "a folder holding a pack's manifest.json (as packed:DIR)", matches=is_pack,
        path_hint="a packed folder", priority=20)  # before IDX (10) and image folders (-10)
def _load_path(req: Request) -> Raw:
    return _load(req.path, req)  # type: ignore[arg-type]


def describe_pack(m: dict[str, Any]) -> str:
    """One line about a pack's manifest, for ``aekit pack``."""
    n_test = (m.get("test") or {}).get("count", 0)
    size = sum(int(s["bytes"]) for s in m["shards"])
    from aekit.fileio import human_bytes

    return (f"{m['count']} images {'x'.join(map(str, m['shape']))} uint8 (train pool {m['count'] - n_test}, "
            f"test {n_test}) in {len(m['shards'])} shard(s), {human_bytes(size)}")


__all__ = ["MANIFEST", "Pack", "PackedImages", "is_pack", "pack", "write_pack"]

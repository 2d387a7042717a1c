"""Packed data in torch: :class:`PackedData` (an ImageData whose images stay on disk) and :class:`ShardLoader`,
the seeded, resumable, rank-aware stream of training batches over a pack's shards.

Memory while training: the labels and split indices (16 bytes per image), the epoch's order (8 bytes per
image of the split) and the shards in use: the ``shuffle_shards`` shards of the current shuffle group and the
one read ahead (for the batch that spans two groups, both groups), whatever the size of the pack.
``split(name)`` still reads a whole split into memory (evaluation, the explorer and the server work on the
test split, 10k images for MNIST); ``split_lazy(name)`` hands out a lazy view that reads a slice's shards on
demand (``aekit encode``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from aekit.data.base import ImageData, to_float
from aekit.data.packed import Pack, PackedImages
from aekit.errors import ConfigError, DataError

SHUFFLE_SHARDS = 2  # default shuffle buffer: the rows of two whole shards shuffled together


class TensorImages(PackedImages):
    """:class:`PackedImages` that hands out uint8 tensors (the ImageData contract)."""

    dtype = torch.uint8

    def __getitem__(self, key) -> torch.Tensor:
        if isinstance(key, torch.Tensor):
            key = key.numpy()
        return torch.from_numpy(self._read(key))

    @property
    def shape(self) -> torch.Size:
        return torch.Size(super().shape)


@dataclass
class PackedData(ImageData):
    """An ImageData whose images are a pack's shards on disk (``images`` is a lazy :class:`TensorImages`);
    labels and splits are in memory. ``batch_loader`` streams training batches a shard at a time."""

    pack: Pack | None = None

    def __post_init__(self):
        if self.labels.shape != (len(self.images),):
            raise DataError(f"PackedData.labels must have shape ({len(self.images)},), got {tuple(self.labels.shape)}")
        self.labels = self.labels.long()

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 images, labels) of one split, read into memory (memory: the split's size plus one shard)."""
        idx = self._index(name)
        if idx is None:
            return self.images[:], self.labels
        return self.images[idx], self.labels[idx]

    def split_lazy(self, name: str) -> tuple[TensorImages, torch.Tensor]:
        """(lazy images, labels) of one split: slicing reads only the shards the slice needs."""
        idx = self._index(name)
        if idx is None:
            return self.images, self.labels
        return self.images.subset(idx.numpy()), self.labels[idx]

    def batch_loader(self, split: str, batch_size: int, *, shuffle: bool, seed: int = 0, binarize: str = "none",
                     drop_last: bool = False, context: Callable[[], tuple[int, int, int]] = lambda: (0, 0, 1)):
        """The trainer's batches (same arguments as ``aekit.train.loader.BatchLoader``), streamed from shards."""
        return ShardLoader(self, split, batch_size, shuffle=shuffle, seed=seed, binarize=binarize,
                           drop_last=drop_last, context=context)

    def batches(self, split: str, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None,
                drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """As ImageData.batches, streamed a shard at a time (a shuffle is the shard stream's, seeded from
        ``generator``)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        seed = int(torch.randint(0, 2**62, (), generator=generator)) if shuffle else 0
        yield from ShardLoader(self, split, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last)

    def describe(self) -> dict:
        return {**super().describe(), "packed": {"path": str(self.pack.root), "shards": len(self.pack.shards)}}


def packed_data(pack: Pack, splits: dict[str, np.ndarray], name: str) -> PackedData:
    return PackedData(images=TensorImages(pack), labels=torch.from_numpy(pack.labels), class_names=pack.class_names,
                      splits={k: torch.from_numpy(v) for k, v in splits.items()}, name=name, pack=pack)


class ShardLoader(torch.utils.data.IterableDataset):
    """Batches of one split of a pack: (x float32 (B, C, H, W) in [0, 1], y int64 (B,)).

    An epoch's order is a pure function of (seed, epoch): the shards in a seeded order, taken
    ``shuffle_shards`` at a time, the split's rows of each group shuffled together (a shuffle buffer of whole
    shards; it is what bounds memory: a shard is read when the stream first needs it and dropped after its
    last image). Without ``shuffle``: shard order, rows sorted.

    The next shard is mapped ahead on a thread while the current ones are trained on.

    DDP: the epoch's stream is cut into ``world`` equal contiguous pieces, so each rank reads its own shards
    (two neighbours share at most the shuffle group their boundary cuts) and every rank gets the same number of
    batches. DataLoader workers (``DataLoader(loader, batch_size=None, num_workers=k)``) take every k-th
    batch, which the DataLoader hands back in the same order as one process.

    Resumable: ``state_dict()`` is (epoch, batches handed out); after ``load_state_dict`` the next pass over
    that epoch starts where it stopped, without reading the shards it skips. Lightning saves and restores this
    with a checkpoint (a loader with state_dict/load_state_dict is "stateful" to its fit loop; it fetches no
    batch ahead from a loader with a length, so "handed out" is "trained on").
    """

    def __init__(self, data: PackedData, split: str, batch_size: int, *, shuffle: bool, seed: int = 0,
                 binarize: str = "none", drop_last: bool = False,
                 context: Callable[[], tuple[int, int, int]] = lambda: (0, 0, 1),
                 shuffle_shards: int = SHUFFLE_SHARDS) -> None:
        idx = data._index(split)
        self.pack: Pack = data.pack  # type: ignore[assignment]
        self.positions = np.arange(len(data)) if idx is None else idx.numpy()  # sorted packed positions
        self.labels = data.labels
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.binarize, self.drop_last, self.context = binarize, drop_last, context
        if isinstance(shuffle_shards, bool) or not isinstance(shuffle_shards, int) or shuffle_shards < 1:
            raise ConfigError(f"shuffle_shards must be a positive number of shards, got {shuffle_shards!r}")
        self.shuffle_shards = shuffle_shards
        # the split's positions in each shard (views of one sorted array)
        cuts = np.searchsorted(self.positions, self.pack.starts[1:])
        self.rows = np.split(self.positions, cuts)
        self._state: dict[str, int] = {"epoch": -1, "batch": 0}
        self._resume: dict[str, int] | None = None

    # -- the order ------------------------------------------------------------------------------------
    def plan(self, epoch: int, rank: int = 0, world: int = 1) -> np.ndarray:
        """The packed positions this rank reads in ``epoch``, in order."""
        if self.shuffle:
            rng = np.random.default_rng([self.seed, epoch, 17])
            order = [int(s) for s in rng.permutation(len(self.rows)) if len(self.rows[s])]
            stream = np.empty(len(self.positions), dtype=np.int64)  # filled in place: one array of the split's size
            a = 0
            for g in range(0, len(order), self.shuffle_shards):
                group = np.concatenate([self.rows[s] for s in order[g:g + self.shuffle_shards]])
                stream[a:a + len(group)] = rng.permutation(group)
                a += len(group)
        else:
            stream = self.positions
        if world > 1:  # equal contiguous pieces: a rank reads its own shards, no rank waits on a collective
            per = len(stream) // world
            stream = stream[rank * per:(rank + 1) * per]
        return stream

    def _n(self, n: int) -> int:
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __len__(self) -> int:
        _, _, world = self.context()
        n = len(self.positions)
        return self._n(n // world if world > 1 else n)

    # -- resuming -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, int]:
        return dict(self._state)

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume = {"epoch": int(state["epoch"]), "batch": int(state["batch"])}

    # -- reading --------------------------------------------------------------------------------------
    def _shard(self, i: int, x: np.ndarray | None = None) -> np.ndarray:
        """Shard ``i`` (``x``: as read ahead), binarised when asked."""
        x = self.pack.load_shard(i, self.binarize == "static") if x is None else x
        if self.binarize == "static":  # one seeded draw per shard, the same in every epoch
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + 7919 + i)
            t = torch.from_numpy(x)
            for a in range(0, len(t), 4096):  # a block at a time: the floats would be 4x the shard
                block = t[a:a + 4096]
                block.copy_((torch.rand(block.shape, generator=g) < to_float(block)).to(torch.uint8) * 255)
        return x

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, rank, world = self.context()
        pos = self.plan(epoch, rank, world)
        bs, starts = self.batch_size, self.pack.starts
        n_batches = self._n(len(pos))
        first = 0
        if self._resume is not None:
            if self._resume["epoch"] == epoch:
                first = min(self._resume["batch"], n_batches)
            self._resume = None
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        mine = range(first + worker, n_batches, workers)
        if workers == 1:
            sel = pos[first * bs:min(n_batches * bs, len(pos))]
        else:
            sel = np.concatenate([pos[b * bs:(b + 1) * bs] for b in mine]) if len(mine) else pos[:0]
        first_use = np.full(len(self.pack.shards), len(sel), dtype=np.int64)  # where each shard is needed first
        last = np.full(len(self.pack.shards), -1, dtype=np.int64)  # ... and for the last time
        for a in range(0, len(sel), 1 << 16):  # in blocks: no temporaries of the split's size
            block = sel[a:a + (1 << 16)]
            sid, at = self.pack.shard_of(block), np.arange(a, a + len(block))
            np.minimum.at(first_use, sid, at)
            np.maximum.at(last, sid, at)
        coming = iter([int(i) for i in np.argsort(first_use, kind="stable") if last[i] >= 0])  # in order of need
        g = torch.Generator() if self.binarize == "dynamic" else None
        live: dict[int, np.ndarray] = {}
        # The next shard is mapped (its pages faulted in, from disk if need be) and checked on a thread (mmap and
        # sha256 release the GIL) while the current ones are trained on: for one more shard of memory.
        reader = ThreadPoolExecutor(1, thread_name_prefix="aekit-shards")
        ahead: dict[int, Future] = {}

        def read_ahead() -> None:
            i = next(coming, None)
            if i is not None:
                ahead[i] = reader.submit(self.pack.load_shard, i, self.binarize == "static")

        try:
            self._state = {"epoch": epoch, "batch": first}
            read_ahead()
            for k, b in enumerate(mine):
                a = k * bs
                p = sel[a:a + bs]
                s = self.pack.shard_of(p)
                need = np.unique(s)
                for i in need:
                    if i not in live:  # shards are first needed in the order of `coming`: it is the one ahead
                        live[i] = self._shard(int(i), ahead.pop(i).result() if i in ahead else None)
                        if not ahead:
                            read_ahead()
                if len(need) == 1:  # the usual case: one gather, as from an in-memory tensor
                    out = live[need[0]][p - starts[need[0]]]
                else:
                    out = np.empty((len(p), *self.pack.shape), dtype=np.uint8)
                    for i in need:
                        m = s == i
                        out[m] = live[i][p[m] - starts[i]]
                for i in [i for i in live if last[i] < a + bs]:
                    del live[i]  # its last image is in this batch: the memory is free for the next shard
                x = to_float(torch.from_numpy(out))  # (B, C, H, W) float32 in [0, 1]
                if g is not None:  # seeded per batch: a resumed epoch (or a worker) draws what an unbroken one does
                    g.manual_seed((((self.seed * 1_000_003 + epoch) * 1_000_003 + rank) * 1_000_003 + b) % 2**63)
                    x = torch.bernoulli(x, generator=g)
                self._state = {"epoch": epoch, "batch": b + 1}
                yield x, self.labels[torch.from_numpy(p)]
        finally:
            reader.shutdown(wait=True, cancel_futures=True)


__all__ = ["PackedData", "ShardLoader", "TensorImages", "packed_data"]

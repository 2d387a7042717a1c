"""Batches for the trainer: one index gather per batch from the uint8 tensor, converted to float on the fly.

A per-sample Dataset + collate costs more than an MLP training step on a CPU, so this iterable replaces the
DataLoader. It is deterministic per (seed, epoch), which makes a resumed run see the batches an unbroken run
would have seen, and it shards by rank for DDP (every rank gets the same number of batches).

``data`` is an ImageData, or anything whose ``split(name)`` gives (inputs, labels): a second stage trains on
tensors of another kind (a prior on grids of code indices, ``train/stage.py``). uint8 inputs are images and
become floats in [0, 1]; other tensors are batched as they are.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch

from ..data import ImageData, to_float


class BatchLoader:
    def __init__(
        self,
        data: ImageData,  # or any object whose split(name) -> (inputs (N, ...), labels (N,))
        split: str,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        binarize: str = "none",
        drop_last: bool = False,
        context: Callable[[], tuple[int, int, int]] = lambda: (0, 0, 1),
    ) -> None:
        self.images, self.labels = data.split(split)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.binarize, self.drop_last = binarize, drop_last
        self.context = context  # () -> (epoch, rank, world_size), read when an epoch starts
        if binarize == "static":  # one seeded draw, kept for every epoch
            g = torch.Generator().manual_seed(seed + 7919)
            self.images = (torch.rand(self.images.shape, generator=g) < to_float(self.images)).to(torch.uint8) * 255

    def _indices(self, epoch: int, rank: int, world: int) -> torch.Tensor:
        n = len(self.images)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            idx = torch.randperm(n, generator=g)
        else:
            idx = torch.arange(n)
        if world > 1:  # equal shares, so no rank waits on a collective the others never reach
            per_rank = n // world
            idx = idx[rank::world][:per_rank]
        return idx

    def __len__(self) -> int:
        _, _, world = self.context()
        n = len(self.images) // world
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, rank, world = self.context()
        idx = self._indices(epoch, rank, world)
        g = torch.Generator().manual_seed(self.seed * 7 + epoch * 13 + rank) if self.binarize == "dynamic" else None
        stop = len(idx) - (len(idx) % self.batch_size if self.drop_last else 0)
        for start in range(0, stop, self.batch_size):
            batch = idx[start : start + self.batch_size]
            x = self.images[batch]
            if x.dtype == torch.uint8:
                x = to_float(x)  # (B, C, H, W) float32 in [0, 1]
            if g is not None:
                x = torch.bernoulli(x, generator=g)
            yield x, self.labels[batch]

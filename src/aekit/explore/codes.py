"""Discrete codes as arrays: how a codebook is used, and what one grid cell's entry does to the image.

For models with ``capabilities.discrete`` (``codebook_size``, ``encode_indices``, ``decode_indices``). Pure
functions: index grids in, numpy arrays and numbers out.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import ConfigError


def code_usage(indices, codebook_size: int) -> dict:
    """How often each codebook entry is used over a set of index grids (N, h, w): ``counts`` (K,), the
    ``perplexity`` exp(H) of the usage distribution (K when every entry is used equally, 1 when one entry takes
    every cell; van den Oord et al. 2017 report it), and the entries never used (``dead``)."""
    idx = np.asarray(indices).reshape(-1)
    if idx.size == 0:
        raise ConfigError("code usage needs at least one index grid")
    counts = np.bincount(idx, minlength=codebook_size)[:codebook_size]  # (K,)
    p = counts / counts.sum()
    nz = p[p > 0]
    return {"counts": counts.tolist(), "perplexity": float(math.exp(-(nz * np.log(nz)).sum())),
            "used": int((counts > 0).sum()), "dead": int((counts == 0).sum()), "cells": int(idx.size)}


@torch.no_grad()
def decode_indices_all(model, indices, batch_size: int = 256) -> np.ndarray:
    """Images of index grids (N, h, w) -> (N, C, H, W) float32 in [0, 1]."""
    idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
    model.eval()
    dev = next(model.parameters()).device
    out = np.empty((len(idx), *model.input_shape), dtype=np.float32)
    for s in range(0, len(idx), batch_size):
        out[s : s + batch_size] = model.decode_indices(idx[s : s + batch_size].to(dev)).float().cpu().numpy()
    return out


def check_grid(indices, grid_shape: tuple[int, int], codebook_size: int, name: str = "indices") -> np.ndarray:
    """A (h, w) grid of codebook indices, checked: shape and every value in 0..K-1."""
    try:
        a = np.asarray(indices, dtype=np.int64)
    except (ValueError, TypeError, OverflowError):
        raise ConfigError(f"{name} must be a grid of whole numbers, {grid_shape[0]} rows of {grid_shape[1]}") from None
    if a.shape != tuple(grid_shape):
        raise ConfigError(f"{name} has shape {a.shape}; this model's code grid is {grid_shape[0]} x {grid_shape[1]}")
    bad = (a < 0) | (a >= codebook_size)
    if bad.any():
        r, c = map(int, np.argwhere(bad)[0])
        raise ConfigError(f"{name}[{r}][{c}] = {int(a[r, c])} is not a codebook entry; entries run 0..{codebook_size - 1}")
    return a


def cell_box(cell: tuple[int, int], grid_shape: tuple[int, int], image_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """Pixel box (y0, y1, x0, x1) that grid cell (r, c) covers when an (h, w) grid spans an H x W image."""
    (r, c), (h, w), (H, W) = cell, grid_shape, image_hw
    return math.floor(r * H / h), math.ceil((r + 1) * H / h), math.floor(c * W / w), math.ceil((c + 1) * W / w)


def swap_codes(model, grid, cell: tuple[int, int], entries) -> dict[str, np.ndarray]:
    """Code swapping: set one cell of an index grid (h, w) to each of ``entries`` in turn and decode. Returns
    ``grids`` (E, h, w), ``images`` (E, C, H, W), the unchanged grid's ``base`` image (C, H, W), and ``moved``
    (E, C, H, W), the absolute change from it; ``inside``/``outside`` (E,): the mean change within the cell's
    pixel box and elsewhere (a local code moves little outside its cell)."""
    grid = np.asarray(grid, dtype=np.int64)
    h, w = grid.shape
    r, c = cell
    if not (0 <= r < h and 0 <= c < w):
        raise ConfigError(f"cell {r},{c} is outside the {h} x {w} code grid; rows 0..{h - 1}, columns 0..{w - 1}")
    entries = [int(e) for e in entries]
    if not entries:
        raise ConfigError("code swapping needs at least one codebook entry")
    grids = np.repeat(grid[None], len(entries), 0)  # (E, h, w)
    grids[:, r, c] = entries
    base, *images = decode_indices_all(model, np.concatenate([grid[None], grids]))
    images = np.stack(images)
    moved = np.abs(images - base[None])  # (E, C, H, W)
    y0, y1, x0, x1 = cell_box(cell, (h, w), base.shape[1:])
    mask = np.zeros(base.shape[1:], bool)
    mask[y0:y1, x0:x1] = True
    inside = moved[:, :, mask].mean(axis=(1, 2))
    outside = moved[:, :, ~mask].mean(axis=(1, 2)) if (~mask).any() else np.zeros(len(entries))
    return {"grids": grids, "images": images, "base": base, "moved": moved, "inside": inside, "outside": outside,
            "box": np.array([y0, y1, x0, x1])}

"""Seeded, deterministic train/val/test index splits (numpy only)."""

from __future__ import annotations

import numpy as np

from aekit.errors import DataError


def seeded_rng(seed: int, stream: int) -> np.random.Generator:
    # One independent stream per purpose, so e.g. max_train_samples never changes which samples are val.
    return np.random.default_rng([stream, seed])


def make_splits(
    n: int, test: np.ndarray | None, val_fraction: float, seed: int, max_train_samples: int | None
) -> dict[str, np.ndarray]:
    """Sorted, disjoint train/val/test indices, identical for the same arguments.

    The source's own test split is kept; otherwise `val_fraction` of everything becomes test. Val is
    `val_fraction` of the train pool (or of everything, for a source without test): 0.1 gives 80/10/10.
    """
    rng = seeded_rng(seed, 1)
    if test is None:
        perm = rng.permutation(n)
        n_test = int(round(val_fraction * n))
        n_val = n_test
        test_idx, val_idx, train_idx = perm[:n_test], perm[n_test : n_test + n_val], perm[n_test + n_val :]
    else:
        test_idx = np.asarray(test, dtype=np.int64)
        pool = np.setdiff1d(np.arange(n), test_idx)
        perm = rng.permutation(pool)
        n_val = int(round(val_fraction * len(pool)))
        val_idx, train_idx = perm[:n_val], perm[n_val:]
    if len(train_idx) == 0:
        raise DataError(
            f"the train split is empty ({n} samples, val_fraction={val_fraction}); "
            "use a smaller val_fraction or more data"
        )
    if max_train_samples is not None and max_train_samples < len(train_idx):
        train_idx = seeded_rng(seed, 2).choice(train_idx, size=max_train_samples, replace=False)
    # Sorted indices read a memory-mapped file front to back instead of seeking around it.
    return {k: np.sort(v).astype(np.int64) for k, v in (("train", train_idx), ("val", val_idx), ("test", test_idx))}

"""Seeded, deterministic train/val/test index splits (numpy only)."""

from __future__ import annotations

import numpy as np

from aekit.errors import DataError


def seeded_rng(seed: int, stream: int) -> np.random.Generator:
    # One independent stream per purpose, so e.g. max_train_samples never changes which samples are val.
    return np.random.default_rng([stream, seed])


MIN_VAL_SAMPLES = 256  # a proportional val cap never goes below this: fewer makes val_loss too noisy to pick the best epoch


def proportional_val_cap(max_train_samples: int | None, val_fraction: float) -> int | None:
    """The val cap that keeps train:val at the full data's ratio when train is capped at ``max_train_samples``:
    val_fraction/(1-val_fraction) x max_train (0.1 -> 1 val image per 9 train), at least MIN_VAL_SAMPLES;
    None (no cap) without a train cap or without val. ``aekit train`` resolves and records it. Values load_data
    would refuse give None here too (load_data then says what is wrong)."""
    if not _whole(max_train_samples) or isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)):
        return None
    if not 0 < val_fraction < 1:
        return None
    return max(MIN_VAL_SAMPLES, int(round(val_fraction / (1 - val_fraction) * max_train_samples)))


def _whole(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1


def make_splits(
    n: int, test: np.ndarray | None, val_fraction: float, seed: int, max_train_samples: int | None,
    max_val_samples: int | None = None,
) -> dict[str, np.ndarray]:
    """Sorted, disjoint train/val/test indices, identical for the same arguments.

    The source's own test split is kept; otherwise `val_fraction` of everything becomes test. Val is
    `val_fraction` of the train pool (or of everything, for a source without test): 0.1 gives 80/10/10.
    `max_train_samples` / `max_val_samples` keep seeded subsets of train / val (None: all of it).
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
            "use a smaller val_fraction or more data", param="val_fraction"
        )
    if max_train_samples is not None and max_train_samples < len(train_idx):
        train_idx = seeded_rng(seed, 2).choice(train_idx, size=max_train_samples, replace=False)
    if max_val_samples is not None and max_val_samples < len(val_idx):
        val_idx = seeded_rng(seed, 3).choice(val_idx, size=max_val_samples, replace=False)
    # Sorted indices read a memory-mapped file front to back instead of seeking around it.
    return {k: np.sort(v).astype(np.int64) for k, v in (("train", train_idx), ("val", val_idx), ("test", test_idx))}

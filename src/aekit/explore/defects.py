"""The three defects of a plain autoencoder's latent space (the first seed article), as numbers.

1. Unequal areas: classes occupy regions of very different size, so random points land mostly in a few.
2. Asymmetry: the codes are not centred on the origin nor symmetric around it, so N(0, I) misses them.
3. Gaps: much of the codes' bounding box is empty, and codes drawn there decode to nothing recognisable.
A VAE's KL term pulls the codes towards N(0, I), which should shrink all three.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .latent import latent_stats


def class_volumes(codes, labels) -> dict[int, float]:
    """log of each class's covariance volume sqrt(det Σ_k) (an area for 2-D codes); classes with < D+1 codes skip."""
    codes, labels = np.asarray(codes, np.float64), np.asarray(labels)
    d = codes.shape[1]
    out = {}
    for k in np.unique(labels[labels >= 0]):
        c = codes[labels == k]
        if len(c) <= d:
            continue
        sign, logdet = np.linalg.slogdet(np.atleast_2d(np.cov(c, rowvar=False)))
        if sign > 0:
            out[int(k)] = 0.5 * float(logdet)
    return out


def gap_fraction(codes, reference, n_probe: int = 2000, radius: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """Fraction of points drawn uniformly in the bounding box of ``codes`` whose nearest ``reference`` code is
    farther than ``radius`` x the box diagonal; returns (fraction, the radius in code units)."""
    from sklearn.neighbors import NearestNeighbors

    codes, reference = np.asarray(codes, np.float64), np.asarray(reference, np.float64)
    lo, hi = codes.min(0), codes.max(0)
    r = radius * float(np.linalg.norm(hi - lo))
    probes = np.random.default_rng(seed).uniform(lo, hi, size=(n_probe, codes.shape[1]))  # (P, D)
    dist, _ = NearestNeighbors(n_neighbors=1).fit(reference).kneighbors(probes)  # (P, 1)
    return float((dist[:, 0] > r).mean()), r


def defects(codes, labels, train_codes=None, n_probe: int = 2000, radius: float = 0.05, seed: int = 0) -> dict:
    """The three numbers on ``codes`` (e.g. the test set), gaps measured against ``train_codes`` (default the
    codes themselves): area_ratio (largest / smallest class volume), asymmetry (norm of mean/std per
    dimension) and mean |skew|, gap_fraction; normal_miss_fraction (share of N(0, I) draws farther than the gap
    radius from every code); plus what they came from."""
    codes = np.asarray(codes, np.float64)
    if codes.ndim != 2 or len(codes) < 3:
        raise ConfigError(f"defects need at least 3 codes (N, D), got shape {codes.shape}")
    vols = class_volumes(codes, labels)
    stats = latent_stats(codes)
    std = np.maximum(np.asarray(stats["std"]), 1e-12)
    offset = np.asarray(stats["mean"]) / std  # (D,) mean in units of std
    ref = codes if train_codes is None else np.asarray(train_codes, np.float64)
    gaps, r = gap_fraction(codes, ref, n_probe, radius, seed)
    # how much of N(0, I) -- where a sampler without a fitted prior draws -- lands far from every code
    from sklearn.neighbors import NearestNeighbors

    normal = np.random.default_rng(seed + 1).standard_normal((n_probe, codes.shape[1]))
    dist, _ = NearestNeighbors(n_neighbors=1).fit(ref).kneighbors(normal)
    logs = list(vols.values())
    ratio = float(np.exp(max(logs) - min(logs))) if len(logs) >= 2 else float("nan")
    return {
        "area_ratio": ratio,
        "log_class_volume": {str(k): v for k, v in vols.items()},
        "asymmetry": float(np.linalg.norm(offset)),
        "mean_abs_skew": float(np.mean(np.abs(stats["skew"]))),
        "gap_fraction": gaps,
        "gap_radius": r,
        "normal_miss_fraction": float((dist[:, 0] > r).mean()),
        "mean": stats["mean"],
        "std": stats["std"],
        "skew": stats["skew"],
    }

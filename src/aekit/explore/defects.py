"""The three defects of a plain autoencoder's latent space (the first seed article, Steven Wang's "三大缺陷"),
as numbers that follow the article's meaning and do not change when the codes are rescaled.

1. Unequal areas: some digits occupy a small region (the article's 9), others a large one (its 0), so a random
   point lands more often in the large ones. Measured as each class's share of the summed class areas and the
   spread of those shares (:func:`area_shares`); a scale factor cancels in a share.
2. No symmetry about the origin: "far more points at negative x than positive, some reaching x = -15", so no
   distribution centred on the origin fits the codes. Measured as how far off-centre the origin sits in the
   codes' extent along every direction, in units of that extent (:func:`extent_asymmetry`).
3. Gaps: empty regions between the classes where a random point decodes to nothing. Measured as the probability
   mass of the sampling distribution a user would draw from that lands far from every code, "far" relative to
   the codes' own nearest-neighbour spacing (:func:`gap_mass`): N(0, I) for a model with a prior (a VAE), a
   Gaussian fitted to the codes for a plain AE (:func:`sampler_draws`, the choice ``aekit plot sample`` shows).

A VAE's KL term pulls the codes towards N(0, I), which should shrink all three (the article's next part).
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .latent import fit_gaussian, latent_stats, sample_codes

GAP_QUANTILE = 0.99  # a draw is in a gap when it is farther from every code than 99 % of the codes are from theirs
EXTENT_QUANTILE = 0.01  # the codes' extent along a direction: their 1st to 99th percentile (a few outliers don't count)


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


def area_shares(codes, labels) -> dict[int, float]:
    """Each class's share of the summed class areas. A class's area is det(Σ_k)^(1/D), the geometric mean of its
    variances (for 2-D codes sqrt(det Σ_k) = its 1-sigma ellipse's area / π); taking the D-th root keeps wide codes
    from turning small ratios per dimension into huge ones. Shares sum to 1 and do not change with the scale."""
    logs = class_volumes(codes, labels)
    if not logs:
        return {}
    d = np.asarray(codes).shape[1]
    keys = sorted(logs)
    log_area = np.array([2.0 * logs[k] / d for k in keys])  # log det(Σ_k)^(1/D)
    area = np.exp(log_area - log_area.max())  # the largest is 1: no overflow whatever the units
    return {k: float(a) for k, a in zip(keys, area / area.sum())}


def _directions(d: int, n: int, seed: int) -> np.ndarray:
    """(n, d) unit vectors: evenly spaced over the half circle for 2-D codes (u and -u measure the same thing),
    seeded random ones plus the axes for wider codes."""
    if d == 1:
        return np.ones((1, 1))
    if d == 2:
        a = np.linspace(0.0, np.pi, n, endpoint=False)
        return np.stack([np.cos(a), np.sin(a)], 1)
    u = np.concatenate([np.eye(d), np.random.default_rng(seed).standard_normal((n, d))])
    return u / np.linalg.norm(u, axis=1, keepdims=True)


def extent_asymmetry(codes, n_directions: int = 64, q: float = EXTENT_QUANTILE, seed: int = 0) -> float:
    """How far the origin sits from the centre of the codes' extent, in units of the extent's half-width, averaged
    over directions u: |lo + hi| / (hi - lo) with lo, hi the q and 1 - q quantiles of u·z. 0: along every
    direction the codes reach as far on one side of the origin as on the other; 1: they all lie on one side (the
    origin at their edge); above 1: the origin is outside them. A scale factor cancels in the ratio."""
    z = np.asarray(codes, np.float64)
    p = z @ _directions(z.shape[1], n_directions, seed).T  # (N, U)
    lo, hi = np.quantile(p, q, axis=0), np.quantile(p, 1 - q, axis=0)  # (U,)
    width = hi - lo
    ok = width > 1e-12 * (1 + np.abs(p).max())
    return float(np.mean(np.abs(lo + hi)[ok] / width[ok])) if ok.any() else 0.0


def gap_mass(samples, reference, quantile: float = GAP_QUANTILE) -> tuple[float, float, np.ndarray]:
    """The share of ``samples`` (draws of a sampling distribution, (S, D)) that land in empty code space: farther
    from every ``reference`` code than ``quantile`` of the reference codes are from their own nearest neighbour.
    A sampler that draws where the codes are gives about 1 - quantile; gaps between classes and draws past the
    codes' edge raise it. Returns (mass, the radius in code units, (S,) bool: which draws are in a gap)."""
    from sklearn.neighbors import NearestNeighbors

    samples, reference = np.asarray(samples, np.float64), np.asarray(reference, np.float64)
    nn = NearestNeighbors(n_neighbors=2).fit(reference)
    spacing = nn.kneighbors(reference)[0][:, 1]  # (R,) each code's distance to its nearest other code
    radius = float(np.quantile(spacing, quantile))
    dist = nn.kneighbors(samples, n_neighbors=1)[0][:, 0]  # (S,)
    far = dist > radius
    return float(far.mean()), radius, far


def sampler_draws(model, n: int, train_codes, seed: int = 0) -> tuple[str, np.ndarray]:
    """(name, (n, code_size) draws) of the distribution a user samples new codes from: the prior N(0, I) of a
    model that has one, else a Gaussian fitted to ``train_codes`` (the better of the two ``aekit plot sample``
    shows for a plain AE: N(0, I) would miss its codes for scale alone)."""
    if model.skip_reason("prior") is None:
        return "prior N(0, I)", sample_codes(model, n, "prior", seed=seed)
    return "Gaussian fitted to the codes", sample_codes(model, n, "fitted", train_codes=train_codes, seed=seed)


def defects(codes, labels, train_codes=None, samples=None, sampler: str | None = None, n_probe: int = 2000,
            seed: int = 0) -> dict:
    """The three defects of ``codes`` (N, D) (e.g. the test set's) with their ``labels``; gaps are measured
    against ``train_codes`` (default the codes themselves) for ``samples`` (S, D), draws of the sampling
    distribution (:func:`sampler_draws`; default ``n_probe`` draws of a Gaussian fitted to ``train_codes``),
    named by ``sampler``. Lower is better for the three headline numbers. Keys:

    - ``area_spread``: coefficient of variation (std / mean) of the classes' area shares; 0 = equal areas.
    - ``area_share``: {class: share of the summed class areas} (:func:`area_shares`).
    - ``area_ratio``: largest / smallest class area.
    - ``asymmetry``: :func:`extent_asymmetry`; 0 = the codes reach equally far either side of the origin.
    - ``mean_offset``: |mean code| / sqrt(trace Σ), the centre's distance from the origin in units of spread.
    - ``gap_mass``: share of the sampler's draws in empty code space (:func:`gap_mass`); about 0.01 is no gaps.
    - ``gap_radius``: what "far from every code" means, in code units.
    - ``sampler``: the sampling distribution's name; ``samples``: its draws; ``in_gap``: which of them are in a gap.
    - ``mean``, ``std``, ``skew``: per dimension, of ``codes``.
    """
    codes = np.asarray(codes, np.float64)
    if codes.ndim != 2 or len(codes) < 3:
        raise ConfigError(f"defects need at least 3 codes (N, D), got shape {codes.shape}")
    ref = codes if train_codes is None else np.asarray(train_codes, np.float64).reshape(-1, codes.shape[1])
    if samples is None:
        mean, cov = fit_gaussian(ref)
        samples = np.random.default_rng(seed).multivariate_normal(mean, cov, size=n_probe, method="cholesky")
        sampler = sampler or "Gaussian fitted to the codes"
    samples = np.asarray(samples, np.float64).reshape(-1, codes.shape[1])
    shares = area_shares(codes, labels)
    s = np.array(list(shares.values()))
    stats = latent_stats(codes)
    spread = float(np.sqrt(np.trace(np.atleast_2d(np.cov(codes, rowvar=False)))))
    mass, radius, far = gap_mass(samples, ref)
    return {
        "area_spread": float(s.std() / s.mean()) if len(s) >= 2 else float("nan"),
        "area_share": {str(k): v for k, v in shares.items()},
        "area_ratio": float(s.max() / s.min()) if len(s) >= 2 else float("nan"),
        "asymmetry": extent_asymmetry(codes, seed=seed),
        "mean_offset": float(np.linalg.norm(codes.mean(0)) / max(spread, 1e-12)),
        "gap_mass": mass,
        "gap_radius": radius,
        "sampler": sampler or "given samples",
        "samples": samples.tolist(),
        "in_gap": far.tolist(),
        "mean": stats["mean"],
        "std": stats["std"],
        "skew": stats["skew"],
    }

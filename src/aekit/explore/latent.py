"""The latent space as arrays: encode/decode whole sets, project to 2-D, describe, and draw codes.

Every function here is pure: tensors or arrays in, numpy arrays and numbers out. Nothing is written.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from ..errors import ConfigError, NoPriorError

PROJECTIONS = ("pca", "tsne", "umap", "none")
SOURCES = ("prior", "normal", "fitted")


def _as_float(images) -> torch.Tensor:
    """uint8 (N, C, H, W) in 0..255 or float in [0, 1] (tensor or array) -> float32 tensor in [0, 1]."""
    x = torch.as_tensor(images)
    if x.dtype == torch.uint8:
        return x.to(torch.float32).div_(255.0)
    return x.to(torch.float32)


def _device(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def encode_all(model, images, batch_size: int = 1024, progress: bool = False) -> np.ndarray:
    """Codes of a whole set, (N, D) float32: eval mode (a VAE gives its posterior mean), no grad, batched."""
    from tqdm.auto import tqdm

    x = torch.as_tensor(images)
    if x.ndim != 4:
        raise ConfigError(f"encode_all needs images (N, C, H, W), got shape {tuple(x.shape)}")
    model.eval()
    dev = _device(model)
    out = np.empty((len(x), model.latent_dim), dtype=np.float32)
    starts = range(0, len(x), batch_size)
    for s in tqdm(starts, desc="encode", unit="batch", file=sys.stderr, disable=not progress, leave=False):
        out[s : s + batch_size] = model.encode(_as_float(x[s : s + batch_size]).to(dev)).float().cpu().numpy()
    return out


@torch.no_grad()
def decode_all(model, codes, batch_size: int = 1024) -> np.ndarray:
    """Images of a set of codes (N, D) -> (N, C, H, W) float32 in [0, 1]."""
    z = torch.as_tensor(np.asarray(codes, dtype=np.float32))
    if z.ndim != 2 or z.shape[1] != model.latent_dim:
        raise ConfigError(f"codes must have shape (N, {model.latent_dim}), got {tuple(z.shape)}")
    model.eval()
    dev = _device(model)
    out = np.empty((len(z), *model.input_shape), dtype=np.float32)
    for s in range(0, len(z), batch_size):
        out[s : s + batch_size] = model.decode(z[s : s + batch_size].to(dev)).float().cpu().numpy()
    return out


def project(codes, method: str = "pca", seed: int = 0) -> np.ndarray:
    """(N, D) codes -> (N, 2) points for a scatter plot. 2-D codes pass through unchanged for pca/none."""
    codes = np.asarray(codes, dtype=np.float32)
    if method not in PROJECTIONS:
        raise ConfigError(f"unknown projection {method!r}; use one of {', '.join(PROJECTIONS)}")
    if codes.ndim != 2 or len(codes) == 0:
        raise ConfigError(f"project needs a non-empty (N, D) array of codes, got shape {codes.shape}")
    n, d = codes.shape
    if d == 2 and method in ("pca", "none"):
        return codes.copy()
    if d == 1:  # nothing to project: put the single dimension on x
        return np.concatenate([codes, np.zeros_like(codes)], axis=1)
    if method == "none":
        raise ConfigError(f"codes are {d}-D: choose --method pca|tsne|umap or two raw --dims i,j")
    if n < 3:
        raise ConfigError(f"projecting needs at least 3 codes, got {n}")
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(codes).astype(np.float32)
    if method == "tsne":
        from sklearn.manifold import TSNE
        from threadpoolctl import threadpool_limits

        # perplexity must stay below N; 30 is scikit-learn's default for larger sets
        tsne = TSNE(n_components=2, perplexity=min(30.0, (n - 1) / 3), init="pca", random_state=seed)
        # one OpenMP thread: on a shared or busy CPU, spinning OpenMP workers made it 10x slower (measured)
        with threadpool_limits(limits=1, user_api="openmp"):
            return tsne.fit_transform(codes).astype(np.float32)
    try:
        import umap  # optional extra: its numba compile costs ~45 s per process
    except ImportError:
        raise ConfigError("--method umap needs the optional umap-learn package (pip install umap-learn); "
                          "or use pca or tsne") from None
    return umap.UMAP(n_components=2, random_state=seed).fit_transform(codes).astype(np.float32)


def latent_stats(codes) -> dict[str, list[float]]:
    """Per-dimension min, max, mean, std and skew of the codes (lists of length D)."""
    from scipy.stats import skew

    c = np.asarray(codes, dtype=np.float64)
    if c.ndim != 2 or len(c) == 0:
        raise ConfigError(f"latent_stats needs a non-empty (N, D) array of codes, got shape {c.shape}")
    sk = skew(c, axis=0) if len(c) > 2 else np.zeros(c.shape[1])
    return {"min": c.min(0).tolist(), "max": c.max(0).tolist(), "mean": c.mean(0).tolist(),
            "std": c.std(0).tolist(), "skew": np.nan_to_num(sk).tolist()}


def fit_gaussian(codes) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of a set of codes; a tiny ridge keeps the covariance invertible."""
    c = np.asarray(codes, dtype=np.float64)
    if c.ndim != 2 or len(c) < 2:
        raise ConfigError(f"fitting a Gaussian needs at least 2 codes (N, D), got shape {c.shape}")
    cov = np.atleast_2d(np.cov(c, rowvar=False))
    return c.mean(0), cov + 1e-6 * np.trace(cov) / len(cov) * np.eye(len(cov))


def sample_codes(model, n: int, source: str = "prior", train_codes=None, seed: int = 0) -> np.ndarray:
    """n random codes (n, D), seeded: "prior" = the model's prior (VAEs: N(0, I)), "normal" = N(0, I) for any
    model, "fitted" = a Gaussian fitted to ``train_codes`` (the best a plain AE can do without a prior)."""
    if source not in SOURCES:
        raise ConfigError(f"unknown sample source {source!r}; use one of {', '.join(SOURCES)}")
    if n < 1:
        raise ConfigError(f"number of samples must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    d = model.latent_dim
    if source == "prior" and not model.has_prior:
        raise NoPriorError(f"model {model.name!r} has no prior; sample from 'normal' or 'fitted' instead")
    if source in ("prior", "normal"):
        return rng.standard_normal((n, d)).astype(np.float32)
    if train_codes is None:
        raise ConfigError("source 'fitted' needs train_codes (the codes of the training set)")
    mean, cov = fit_gaussian(train_codes)
    return rng.multivariate_normal(mean, cov, size=n, method="cholesky").astype(np.float32)

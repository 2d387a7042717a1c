"""The latent space as arrays: encode/decode whole sets, project to 2-D, describe, and draw codes.

Every function here is pure: tensors or arrays in, numpy arrays and numbers out. Nothing is written.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from ..errors import ConfigError, NoPriorError

PROJECTIONS = ("pca", "tsne", "umap", "none")


def require_method(method: str) -> None:
    """Refuse a projection whose optional package is missing, before any encoding is done."""
    import importlib.util

    if method == "umap" and importlib.util.find_spec("umap") is None:
        raise ConfigError("--method umap needs the optional umap-learn package: pip install 'aekit[umap]' "
                          "(or umap-learn); or use pca or tsne")
SOURCES = ("prior", "normal", "fitted")


def as_unit(x: torch.Tensor) -> torch.Tensor:
    """Images as float32 in [0, 1]: uint8 through :func:`aekit.data.to_float` (the one conversion), floats as
    they are."""
    from ..data import to_float

    return to_float(x) if x.dtype == torch.uint8 else x.to(torch.float32)


def _device(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def encode_all(model, images, batch_size: int = 1024, progress: bool = False, encode=None) -> np.ndarray:
    """The one encode-a-dataset: codes of a whole image set, (N, *code_shape) numpy, in eval mode (a VAE gives
    its posterior mean), without gradients, in batches. ``images``: (N, C, H, W) uint8 0..255 or floats in
    [0, 1], tensor or array. ``encode``: another image -> code map of the model to run instead of ``encode``
    (``model.encode_pre``; ``model.encode_indices`` gives (N, h, w) int64 indices)."""
    from tqdm.auto import tqdm

    x = torch.as_tensor(images)
    if x.ndim != 4:
        raise ConfigError(f"encode_all needs images (N, C, H, W), got shape {tuple(x.shape)}")
    fn = encode or model.encode
    model.eval()
    dev = _device(model)
    out = None
    starts = range(0, len(x), batch_size)
    for s in tqdm(starts, desc="encode", unit="batch", file=sys.stderr, disable=not progress, leave=False):
        z = fn(as_unit(x[s : s + batch_size]).to(dev))  # (B, *code_shape)
        z = (z.float() if z.is_floating_point() else z).cpu().numpy()
        if out is None:
            out = np.empty((len(x), *z.shape[1:]), dtype=z.dtype)
        out[s : s + len(z)] = z
    return out if out is not None else np.zeros((0, *model.code_shape), np.float32)


def as_codes(model, codes) -> torch.Tensor:
    """Codes (N, *code_shape), or flattened (N, code_size), as a float32 tensor (N, *code_shape)."""
    z = torch.as_tensor(np.asarray(codes, dtype=np.float32))
    shape = tuple(model.code_shape)
    if z.ndim == 1 + len(shape) and tuple(z.shape[1:]) == shape:
        return z
    if z.ndim == 2 and z.shape[1] == model.code_size:
        return z.reshape(len(z), *shape)
    want = ", ".join(map(str, shape)) if len(shape) == 1 else f"{', '.join(map(str, shape))}) or (N, {model.code_size}"
    raise ConfigError(f"codes must have shape (N, {want}), got {tuple(z.shape)}")


@torch.no_grad()
def decode_all(model, codes, batch_size: int = 1024) -> np.ndarray:
    """Images of a set of codes, (N, *code_shape) or flattened (N, code_size) -> (N, C, H, W) float32 in [0, 1]."""
    z = as_codes(model, codes)
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
    require_method(method)
    import umap  # optional extra: its numba compile costs ~45 s per process

    return umap.UMAP(n_components=2, random_state=seed).fit_transform(codes).astype(np.float32)


def latent_stats(codes) -> dict[str, list[float]]:
    """Per-dimension min, max, mean, std and skew of the codes (lists of length D)."""
    from scipy.stats import skew

    c = np.asarray(codes, dtype=np.float64)
    if c.ndim != 2 or len(c) == 0:
        raise ConfigError(f"latent_stats needs a non-empty (N, D) array of codes, got shape {c.shape}")
    sk = np.zeros(c.shape[1])
    varied = c.std(0) > 1e-12 * (1 + np.abs(c).max(0))  # a constant dimension (a quantised code can have one) has skew 0
    if len(c) > 2 and varied.any():
        sk[varied] = skew(c[:, varied], axis=0)
    return {"min": c.min(0).tolist(), "max": c.max(0).tolist(), "mean": c.mean(0).tolist(),
            "std": c.std(0).tolist(), "skew": np.nan_to_num(sk).tolist()}


def pooled_stats(codes) -> dict[str, float]:
    """min, max, mean and std of every value of every dimension taken together (the Keras article's "code values
    from -1.76 to 22.35"): the one distribution a sampler for all dimensions at once would have to cover."""
    c = np.asarray(codes, dtype=np.float64).reshape(-1)
    if len(c) == 0:
        raise ConfigError("pooled_stats needs at least one code value")
    return {"min": float(c.min()), "max": float(c.max()), "mean": float(c.mean()), "std": float(c.std()),
            "count": int(c.size)}


def fit_gaussian(codes) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of a set of codes; a tiny ridge keeps the covariance invertible."""
    c = np.asarray(codes, dtype=np.float64)
    if c.ndim != 2 or len(c) < 2:
        raise ConfigError(f"fitting a Gaussian needs at least 2 codes (N, D), got shape {c.shape}")
    cov = np.atleast_2d(np.cov(c, rowvar=False))
    return c.mean(0), cov + 1e-6 * np.trace(cov) / len(cov) * np.eye(len(cov))


def sample_codes(model, n: int, source: str = "prior", train_codes=None, seed: int = 0) -> np.ndarray:
    """n random flattened codes (n, code_size), seeded: "prior" = N(0, I), the prior of a model whose codes
    follow one (VAEs); "normal" = N(0, I) for any model; "fitted" = a Gaussian fitted to ``train_codes`` (the
    best a plain AE can do without a prior). Continuous codes only: a codebook's indices fit no Gaussian.
    Front ends draw a model's own prior with ``model.sample``."""
    if source not in SOURCES:
        raise ConfigError(f"unknown sample source {source!r}; use one of {', '.join(SOURCES)}")
    if n < 1:
        raise ConfigError(f"number of samples must be >= 1, got {n}")
    if model.skip_reason("discrete") is None:  # the model has a codebook
        raise ConfigError(f"{model.name} has discrete codes: a Gaussian over codes does not apply; sample its prior")
    rng = np.random.default_rng(seed)
    d = model.code_size
    if source == "prior" and not model.has_prior:
        raise NoPriorError(f"model {model.name!r} has no prior; sample from 'normal' or 'fitted' instead")
    if source in ("prior", "normal"):
        return rng.standard_normal((n, d)).astype(np.float32)
    if train_codes is None:
        raise ConfigError("source 'fitted' needs train_codes (the codes of the training set)")
    mean, cov = fit_gaussian(np.asarray(train_codes).reshape(len(train_codes), -1))
    return rng.multivariate_normal(mean, cov, size=n, method="cholesky").astype(np.float32)

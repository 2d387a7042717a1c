"""Per-split metrics beyond the first cut: SSIM, KL per dimension, active units, codes for the probes.

Everything here returns numbers or tensors; nothing writes files.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError

# every name `aekit evaluate --metrics` accepts, in report order
METRICS = ("mse", "bce", "psnr", "ssim", "elbo", "nll", "kl", "active", "codebook", "bits", "fid", "probe", "knn", "pca")
# the ones that need a posterior (a VAE)
VAE_ONLY = ("elbo", "nll", "kl", "active")
# what the elbo metric reports, named after the likelihood (models.vae.VAE.bound): Bernoulli, Gaussian (loss mse)
ELBO_KEYS = ("elbo", "elbo_gaussian")
# what a metric needs of the model: features of Autoencoder.skip_reason (every metric not listed applies to all)
NEEDS = {"elbo": ("likelihood",), "nll": ("likelihood",), "kl": ("posterior",), "active": ("posterior",),
         "codebook": ("discrete",), "bits": ("discrete", "prior")}


def skip_reason(model, metric: str) -> str | None:
    """None when ``metric`` applies to ``model``, else the one-line reason it does not (the model's own words)."""
    for feature in NEEDS.get(metric, ()):
        reason = model.skip_reason(feature)
        if reason is not None:
            return reason
    if metric == "pca" and model.skip_reason("discrete") is None:
        # PCA matches the count of real numbers in a code (D*h*w for a spatial one); indices are not numbers
        return f"{model.name} codes are codebook indices, so no PCA code of the same size compares with them"
    return None


def parse_metrics(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """'mse,psnr,fid' -> ('mse', 'psnr', 'fid'); 'all' is every metric; unknown names are a ConfigError."""
    names = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if names == ["all"]:
        return METRICS
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        raise ConfigError(f"unknown metric {', '.join(unknown) or '(none given)'!s}; choose from: {', '.join(METRICS)} (or all)")
    return tuple(dict.fromkeys(names))


def ssim_kernel(h: int, w: int) -> int:
    """The standard 11x11 Gaussian window (Wang et al. 2004), shrunk to the largest odd size the image holds."""
    k = min(11, h, w)
    return k if k % 2 else k - 1


@torch.no_grad()
def ssim_per_image(x_hat: torch.Tensor, x: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """SSIM of each image pair (Wang et al. 2004) via torchmetrics, Gaussian window sigma 1.5; (B,)."""
    from torchmetrics.functional.image import structural_similarity_index_measure as ssim

    k = ssim_kernel(*x.shape[-2:])
    return ssim(x_hat, x, data_range=data_range, kernel_size=k, sigma=1.5 * k / 11, reduction="none")


def encode_all(model, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Codes of uint8 images in eval mode (the posterior mean for a VAE), flattened: (N, code_size) float32 on
    the CPU, through the one encoder of a set, :func:`aekit.explore.encode_all`."""
    from ..explore import encode_all as encode_set

    return torch.from_numpy(encode_set(model, images, batch_size)).reshape(len(images), model.code_size)


@torch.no_grad()
def posterior_stats(model, images: torch.Tensor, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu, logvar) of q(z|x) for uint8 images: (N, D) each."""
    from ..data import to_float

    model.eval()
    device = next(model.parameters()).device
    mus, lvs = [], []
    for i in range(0, len(images), batch_size):
        mu, lv = model.posterior(to_float(images[i : i + batch_size]).to(device))
        mus.append(mu.float().cpu())
        lvs.append(lv.float().cpu())
    return torch.cat(mus), torch.cat(lvs)


def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Mean over images of KL(q(z_d|x) || N(0, 1)) for each code dimension d, in nats: (D,)."""
    return (0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)).mean(0)


def active_units(mu: torch.Tensor, threshold: float = 0.01) -> tuple[int, torch.Tensor]:
    """Active units (Burda et al. 2016, section 5.2): a dimension u is active when Cov_x(E_q[u|x]) > 1e-2.
    Returns (count, per-dimension variance (D,))."""
    var = mu.var(0, unbiased=True) if len(mu) > 1 else torch.zeros(mu.shape[1])
    return int((var > threshold).sum()), var


@torch.no_grad()
def code_indices(model, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Code-index grids of uint8 images (a discrete model's ``encode_indices``): (N, h, w) long on the CPU."""
    from ..data import to_float

    model.eval()
    device = next(model.parameters()).device
    parts = [model.encode_indices(to_float(images[i : i + batch_size]).to(device)).cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(parts)


def codebook_stats(indices: torch.Tensor, codebook_size: int) -> dict[str, float]:
    """How a split uses the codebook: ``perplexity`` exp(H) of the code frequencies (K when all K codes are used
    equally often, 1 when one code is), ``usage`` the fraction of the K codes used at least once."""
    counts = torch.bincount(indices.flatten(), minlength=codebook_size).double()
    p = counts / counts.sum().clamp_min(1)
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return {"perplexity": float(entropy.exp()), "usage": float((counts > 0).double().mean()), "codebook_size": codebook_size}


@torch.no_grad()
def prior_bits(model, indices: torch.Tensor, batch_size: int = 1000) -> dict[str, float]:
    """Mean NLL of code grids (N, h, w) under the model's learned prior: nats, and bits per image (nats / ln 2),
    the length of the image's code under the prior."""
    import math

    device = next(model.parameters()).device
    total = sum(float(model.code_nll(indices[i : i + batch_size].to(device)).sum()) for i in range(0, len(indices), batch_size))
    nats = total / max(len(indices), 1)
    return {"prior_nll": nats, "bits_per_image": nats / math.log(2)}

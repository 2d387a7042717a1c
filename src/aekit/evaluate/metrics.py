"""Per-split metrics beyond the first cut: SSIM, KL per dimension, active units, codes for the probes.

Everything here returns numbers or tensors; nothing writes files.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError

# every name `aekit evaluate --metrics` accepts, in report order
METRICS = ("mse", "bce", "psnr", "ssim", "elbo", "nll", "kl", "active", "fid", "probe", "knn", "pca")
# the ones that need a posterior (a VAE)
VAE_ONLY = ("elbo", "nll", "kl", "active")


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


@torch.no_grad()
def encode_all(model, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Codes of uint8 images in eval mode (the posterior mean for a VAE): (N, D) float32 on the CPU."""
    from ..data import to_float

    model.eval()
    device = next(model.parameters()).device
    parts = [model.encode(to_float(images[i : i + batch_size]).to(device)).float().cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(parts) if parts else torch.zeros(0, model.latent_dim)


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

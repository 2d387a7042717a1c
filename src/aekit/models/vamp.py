"""VampPrior VAE (Tomczak & Welling 2018, "VAE with a VampPrior"), ``vamp-vae``.

The prior is learned: a mixture of the encoder's own posteriors at K pseudo-inputs u_k (images learned with the
model),

    p(z) = 1/K sum_k q(z | u_k),

which approximates the aggregate posterior that maximises the ELBO (the paper's eq. 7-9) and so leaves the KL
term less to pay for. The KL against a mixture has no closed form: it is the one-sample Monte Carlo estimate
log q(z|x) - log p(z) at the z the reconstruction used. ``sample`` draws a component, then a code from it;
``log_importance_weights`` (the IWAE bound) uses the mixture's log-density.

Pseudo-inputs are ``hardtanh(0, 1)`` of free parameters, kept in the pixel range, and start at N(0.05, 0.01) per
pixel like the paper's code. Every training step encodes all K of them (K extra encoder inputs per batch).
Everything else — bodies, posterior, warm-up, the ``iwae_k`` objective — is the VAE's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError
from ..options import opt
from ..registry import register
from .vae import LOG_2PI, VAE, VAEConfig, log_normal


@dataclass(frozen=True)
class VampVAEConfig(VAEConfig):
    pseudo_inputs: int = opt(500, "K learned pseudo-inputs of the VampPrior (vamp-vae; hvae with --prior vamp)", metavar="K")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pseudo_inputs < 1:
            raise ConfigError(f"pseudo_inputs must be >= 1, got {self.pseudo_inputs}", param="pseudo_inputs")


def mixture_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, max_elements: int = 2**24) -> torch.Tensor:
    """log (1/K sum_k N(z; mu_k, diag exp(logvar_k))) for codes (..., D) and K components (K, D) -> (...).

    The quadratic form is expanded, sum_d (z_d - mu_kd)^2 / s_kd = (z^2) (1/s)^T - 2 z (mu/s)^T + sum_d mu_kd^2 /
    s_kd, so every component's log-density is one matrix product [z^2, z, 1] W^T and no (N, K, D) tensor is
    made: an IWAE-5000 evaluation passes millions of codes, and the broadcast form cost more than the decoder.
    The product runs in float64: its terms are of size z^2/s and cancel, which in float32 cost up to 0.01 nats
    (measured against torch.distributions, K=500, D=32). Chunked over the codes so the (n, K) log-densities
    stay at ``max_elements`` numbers."""
    shape, (k, d) = z.shape[:-1], mu.shape
    flat, mu, logvar = z.reshape(-1, d).double(), mu.double(), logvar.double()  # (N, D), (K, D), (K, D)
    prec = torch.exp(-logvar)  # (K, D): 1 / s
    const = -0.5 * (d * LOG_2PI + logvar.sum(-1) + (mu.pow(2) * prec).sum(-1))  # (K,)
    weights = torch.cat([-0.5 * prec, mu * prec, const[:, None]], dim=1)  # (K, 2D + 1)
    step = max(1, max_elements // k)
    parts = [torch.logsumexp((torch.cat([c.pow(2), c, c.new_ones(len(c), 1)], dim=1) @ weights.T).to(z.dtype), dim=1)
             for c in flat.split(step)]  # (n, K) -> (n,)
    return (torch.cat(parts) if parts else z.new_zeros(0)).view(shape) - math.log(k)


@register("vamp-vae", "VAE with a VampPrior: a mixture of posteriors at 500 learned pseudo-inputs "
                      "(Tomczak & Welling 2018)", hidden_dims=(512,))
class VampVAE(VAE):
    Config = VampVAEConfig
    tiny_options = {**VAE.tiny_options, "pseudo_inputs": 4}
    standard_prior = False  # the VampPrior mixture: no per-dimension KL
    capabilities = replace(VAE.capabilities, learned_inputs=True)  # the pseudo-inputs, to look at

    def __init__(self, config: VampVAEConfig) -> None:
        super().__init__(config)
        self.pseudo = nn.Parameter(0.05 + 0.01 * torch.randn(config.pseudo_inputs, *config.input_shape))  # (K, C, H, W)

    def pseudo_inputs(self) -> torch.Tensor:
        return F.hardtanh(self.pseudo, 0.0, 1.0)  # (K, C, H, W) in the pixel range

    def learned_inputs(self) -> torch.Tensor:
        """The K pseudo-inputs u_k, (K, C, H, W) in [0, 1]: what the prior's mixture components look like."""
        return self.pseudo_inputs().detach()

    def components(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Means and log-variances (K, D) of the mixture: the posteriors at the pseudo-inputs."""
        return self.posterior(self.pseudo_inputs())

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:  # (..., D) -> (...)
        mu, logvar = self.components()
        return mixture_log_density(z, mu, logvar)

    def kl(self, mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log q(z|x) - log p(z) at the drawn z, (B,): a one-sample estimate (no closed form for a mixture)."""
        return log_normal(z, mu, logvar).sum(-1) - self.log_prior(z)

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        mu, logvar = self.components()  # (K, D)
        k = torch.randint(len(mu), (n,), generator=generator, device=mu.device)  # (n,) components, uniform
        eps = torch.randn(n, mu.shape[1], generator=generator, device=mu.device, dtype=mu.dtype)
        return mu[k] + eps * torch.exp(0.5 * logvar[k])  # (n, D)

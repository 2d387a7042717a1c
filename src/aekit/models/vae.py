"""Variational autoencoders (Kingma & Welling 2014): ``vae`` (dense), ``conv-vae``, and ``beta-vae``
(Higgins et al. 2017), which is the same module with ``beta=4``.

The loss is the negative ELBO in nats per image: reconstruction (BCE summed over pixels, i.e. a Bernoulli
likelihood) plus ``beta`` times the KL divergence of q(z|x) = N(mu, diag sigma^2) from the prior N(0, I).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError
from ..registry import register
from .base import Autoencoder, Output
from .blocks import BodyConfig, build_body


@dataclass(frozen=True)
class VAEConfig(BodyConfig):
    beta: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta < 0:
            raise ConfigError(f"beta must be >= 0, got {self.beta}")


@register("beta-vae", "VAE with beta=4 on the KL term (Higgins et al. 2017)", beta=4.0, hidden_dims=(512,))
@register("conv-vae", "variational autoencoder with the conv body", arch="conv", activation="leaky_relu")
@register("vae", "variational autoencoder, dense (Kingma & Welling 2014)", hidden_dims=(512,))
class VAE(Autoencoder):
    Config = VAEConfig
    has_prior = True

    def __init__(self, config: VAEConfig) -> None:
        super().__init__(config)
        self.body = build_body(config)
        self.to_stats = nn.Linear(self.body.feature_dim, 2 * config.latent_dim)  # mean and log-variance

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.to_stats(self.body.features(x)).chunk(2, dim=1)  # (B, D) each
        return mu, logvar.clamp(-30.0, 20.0)  # keep exp() finite early in training

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x)[0]  # the posterior mean: deterministic

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.body.decoder(z)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)  # z = mu + sigma * eps

    def forward(self, x: torch.Tensor) -> Output:
        mu, logvar = self.posterior(self.corrupt(x))
        z = self.reparameterize(mu, logvar)  # sampled in eval too: the loss stays an honest ELBO estimate
        logits = self.decode_logits(z)
        terms = self.reconstruction_terms(logits, x)
        # KL(N(mu, sigma^2) || N(0, I)) in closed form, summed over dims (Kingma & Welling 2014, appendix B)
        kl_dims = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)  # (B, D)
        terms["kl"] = kl_dims.sum(1).mean()
        loss = terms["recon"] + self.config.beta * terms["kl"]
        terms["elbo"] = -(terms["recon"] + terms["kl"]).detach()  # beta=1 bound, whatever beta trains
        return Output(loss=loss, terms=terms, x_hat=torch.sigmoid(logits), z=z)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        p = next(self.parameters())
        z = torch.randn(n, self.latent_dim, generator=generator, device=p.device, dtype=p.dtype)
        return self.decode(z)

    @torch.no_grad()
    def log_importance_weights(self, x: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """log p(x, z_k) - log q(z_k | x) for k posterior samples: (k, B). Their log-mean-exp is the
        IWAE bound on log p(x) (Burda et al. 2016); needs a Bernoulli likelihood (loss=bce)."""
        mu, logvar = self.posterior(x)  # (B, D)
        std = torch.exp(0.5 * logvar)
        eps = torch.randn((k, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)  # (k, B, D)
        z = mu + eps * std
        logits = self.decode_logits(z.flatten(0, 1))  # (k*B, C, H, W)
        target = x.unsqueeze(0).expand(k, *x.shape).flatten(0, 1)
        log_px_z = -F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).sum(1).view(k, -1)
        log2pi = math.log(2 * math.pi)
        log_pz = -0.5 * (z.pow(2) + log2pi).sum(-1)
        log_qz = -0.5 * (eps.pow(2) + log2pi + logvar).sum(-1)
        return log_px_z + log_pz - log_qz

"""Wasserstein autoencoder with the MMD penalty, ``wae-mmd`` (Tolstikhin et al. 2018, "Wasserstein
Auto-Encoders", algorithm 2).

A deterministic autoencoder whose codes are pushed, as a whole batch, towards the prior p(z) = N(0, I): the loss
is the reconstruction cost plus ``mmd_weight`` (the paper's lambda) times the maximum mean discrepancy between
the batch's codes and as many prior draws. Unlike a VAE's KL, which pulls every code towards the prior on its own
(and blurs), the MMD only asks that the aggregate q(z) match p(z) — so ``sample`` decodes prior draws into images.

Kernel: inverse multiquadratic k(x, y) = C / (C + ||x - y||^2), the paper's choice for MNIST (its heavy tails
keep gradients alive for outliers), summed over scales C = 2 D s for s in 0.1 ... 10 as in the authors'
implementation, since no single scale fits every stage of training. The U-statistic estimator leaves out the
i = j pairs, so the MMD estimate is unbiased (it can dip below 0 when q(z) matches p(z)).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ConfigError
from ..options import opt
from ..registry import register
from .ae import AE
from .base import Capabilities, Output
from .blocks import BodyConfig

SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)  # multiples of the base scale 2 * D * var(p) (Tolstikhin et al.'s code)


@dataclass(frozen=True)
class WAEConfig(BodyConfig):
    mmd_weight: float = opt(10.0, "weight lambda of the MMD between the codes and the N(0, I) prior (WAE)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.mmd_weight >= 0:
            raise ConfigError(f"mmd_weight must be >= 0, got {self.mmd_weight}", param="mmd_weight")


def imq_mmd(z: torch.Tensor, z_prior: torch.Tensor) -> torch.Tensor:
    """Unbiased MMD^2 estimate between codes ``z`` (n, D) and prior draws (n, D) under the multi-scale inverse
    multiquadratic kernel; 0 for fewer than two codes (no pair to compare)."""
    n, d = z.shape
    if n < 2:
        return z.sum() * 0.0  # keeps the graph: a one-image batch adds nothing
    both = torch.cat([z, z_prior])  # (2n, D)
    # squared distances |a|^2 + |b|^2 - 2ab by one matmul (not cdist, whose gradient is NaN at distance 0)
    norms = both.pow(2).sum(1)  # (2n,)
    sq = (norms.unsqueeze(1) + norms.unsqueeze(0) - 2.0 * both @ both.t()).clamp_min(0.0)  # (2n, 2n)
    off = 1.0 - torch.eye(n, device=z.device, dtype=z.dtype)  # the U-statistic drops the i = j terms
    total = z.new_zeros(())
    for s in SCALES:
        c = 2.0 * d * s
        k = c / (c + sq)  # (2n, 2n)
        within = ((k[:n, :n] + k[n:, n:]) * off).sum() / (n * (n - 1))
        across = k[:n, n:].sum() * 2.0 / (n * n)
        total = total + within - across
    return total


@register("wae-mmd", "Wasserstein AE, MMD penalty with an inverse multiquadratic kernel; samples from N(0, I) "
                     "(Tolstikhin et al. 2018)", hidden_dims=(512,))
class WAE(AE):
    """The ``AE`` module (deterministic encoder, same bodies) with the MMD penalty and a prior to sample from."""

    Config = WAEConfig
    capabilities = Capabilities(prior=True)

    def forward(self, x: torch.Tensor) -> Output:
        z = self.encode(self.corrupt(x))  # (B, D)
        logits = self.decode_logits(z)
        terms, stats = self.reconstruction_terms(logits, x)
        mmd = imq_mmd(z, torch.randn_like(z))  # prior draws: a fresh batch each step
        terms["mmd"] = self.config.mmd_weight * mmd
        stats["mmd"] = mmd.detach()  # unweighted, comparable across mmd_weight
        return Output(loss=sum(terms.values()), terms=terms, x_hat=torch.sigmoid(logits), z=z, stats=stats)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        p = next(self.parameters())
        z = torch.randn(n, self.latent_dim, generator=generator, device=p.device, dtype=p.dtype)  # (n, D) ~ N(0, I)
        return self.decode(z)

"""β-TC-VAE (Chen et al. 2018, "Isolating Sources of Disentanglement in VAEs"), ``beta-tc-vae``.

The VAE's KL term, averaged over the data, splits into three parts (the paper's eq. 2):

    E_p(n) KL(q(z|n) || p(z)) = I_q(z; n)                       index-code mutual information  (``mi``)
                               + KL(q(z) || prod_j q(z_j))       total correlation              (``tc``)
                               + sum_j KL(q(z_j) || p(z_j))      dimension-wise KL              (``dim_kl``)

and the loss weights them apart: recon + alpha MI + beta TC + gamma dim-KL (``mi_weight``, ``tc_weight``,
``dim_kl_weight``; the paper's alpha = gamma = 1 with beta > 1 penalises only the total correlation, which is
what drives disentanglement). With every weight 1 the three terms sum to a one-sample estimate of the KL, and the
loss is the negative ELBO.

The aggregate posterior q(z) = 1/N sum_n q(z|n) is estimated on the minibatch by minibatch-weighted sampling
(the paper's section 4): log q(z_i) ~ logsumexp_j log q(z_i|x_j) - log M over the M codes of the batch, and the
same per dimension for q(z_ij). The paper's eq. S6 subtracts log(N M) instead (N the data-set size), as its
reference code does; that constant changes no gradient, but it is off by log N: where every q(z|x) equals the
prior (true MI = TC = dim-KL = 0) it reports MI = log N, TC = (D-1) log N and dim-KL = -D log N. Normalised by M
the three parts are exactly 0 there, so the reported terms mean what their names say. (The estimate of MI is
at most about log M, a limit of any minibatch estimate.)

Reuses the VAE module (bodies, posterior, prior, sampling, importance weights, KL warm-up): only the loss differs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..errors import ConfigError
from ..options import opt
from ..registry import register
from .base import Output
from .blocks import BodyConfig
from .vae import VAE, log_normal


@dataclass(frozen=True)
class BetaTCVAEConfig(BodyConfig):
    mi_weight: float = opt(1.0, "alpha of beta-TC-VAE: weight of the index-code mutual information")
    tc_weight: float = opt(6.0, "beta of beta-TC-VAE: weight of the total correlation of the code dimensions")
    dim_kl_weight: float = opt(1.0, "gamma of beta-TC-VAE: weight of the dimension-wise KL to the prior")
    kl_warmup: int = opt(0, "epochs of linear KL warm-up, 0: off", metavar="EPOCHS")
    # its objective is the decomposed ELBO, one draw per image: the VAE's importance-weighted options are fixed
    # here (class constants, not options: --iwae-k is refused as unknown for beta-tc-vae)
    iwae_k: ClassVar[int] = 1
    iwae_after: ClassVar[int] = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("mi_weight", "tc_weight", "dim_kl_weight"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}", param=name)
        if self.kl_warmup < 0:
            raise ConfigError(f"kl_warmup must be >= 0 epochs, got {self.kl_warmup}", param="kl_warmup")


@register("beta-tc-vae", "VAE whose KL is split into mutual information, total correlation and dimension-wise KL, "
                         "TC weighted by 6 (Chen et al. 2018)", hidden_dims=(512,))
class BetaTCVAE(VAE):
    Config = BetaTCVAEConfig

    def decompose(self, z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-image estimates (B,) of ``mi``, ``tc``, ``dim_kl`` for codes ``z`` drawn from q(z|x_i) = N(mu_i,
        sigma_i^2), by minibatch-weighted sampling; they sum to log q(z_i|x_i) - log p(z_i)."""
        log_m = math.log(z.shape[0])
        pairs = log_normal(z.unsqueeze(1), mu.unsqueeze(0), logvar.unsqueeze(0))  # (B, B, D): log q(z_i,d | x_j)
        log_qz_x = pairs.diagonal(dim1=0, dim2=1).sum(0)  # (B,): log q(z_i | x_i)
        log_qz = torch.logsumexp(pairs.sum(2), dim=1) - log_m  # (B,): log q(z_i)
        log_prod_qzd = (torch.logsumexp(pairs, dim=1) - log_m).sum(1)  # (B,): sum_d log q(z_i,d)
        log_pz = self.log_prior(z)  # (B,)
        return {"mi": log_qz_x - log_qz, "tc": log_qz - log_prod_qzd, "dim_kl": log_prod_qzd - log_pz}

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Output:
        mu, logvar = self.posterior(self.corrupt(x))
        z = self.reparameterize(mu, logvar)  # (B, D)
        logits = self.decode_logits(z)
        terms, stats = self.reconstruction_terms(logits, x)
        parts = {k: v.mean() for k, v in self.decompose(z, mu, logvar).items()}
        warm = self.kl_weight if self.training else 1.0  # the warm-up scales all three; validation uses the full loss
        cfg = self.config
        for key, weight in (("mi", cfg.mi_weight), ("tc", cfg.tc_weight), ("dim_kl", cfg.dim_kl_weight)):
            terms[key] = warm * weight * parts[key]
            stats[f"{key}_nats"] = parts[key].detach()  # unweighted
        kl = sum(parts.values())  # a one-sample estimate of the KL, the three parts together
        stats["kl_nats"] = kl.detach()
        stats.update(self.bound(terms["recon"], kl, x))
        return Output(loss=sum(terms.values()), terms=terms, x_hat=torch.sigmoid(logits), z=z, stats=stats)

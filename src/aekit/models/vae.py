"""Variational autoencoders (Kingma & Welling 2014): ``vae`` (dense), ``conv-vae``, ``beta-vae``
(Higgins et al. 2017), which is the same module with ``beta=4``, and ``iwae`` / ``conv-iwae``, the same module
trained on the importance-weighted bound with k = 5 (Burda et al. 2016).

The loss is the negative ELBO in nats per image: reconstruction (BCE summed over pixels, i.e. a Bernoulli
likelihood) plus ``beta`` times the KL divergence of q(z|x) = N(mu, diag sigma^2) from the prior N(0, I).

The ``elbo`` stat (metrics.csv, eval.json) is the beta = 1 bound under the likelihood the loss is (:meth:`VAE.bound`):
``elbo`` for ``loss=bce`` (Bernoulli); ``elbo_gaussian`` for ``loss=mse``, whose summed squared error is
-log N(x; x_hat, sigma^2 I) with sigma^2 = 1/2 less its constant (P/2) log(2 pi sigma^2), added back in the stat;
none for ``loss=rmse``, which is no log-likelihood.

Two options serve the likelihood benchmark (both off by default):
- ``kl_warmup``: the KL weight ramps linearly from 0 to ``beta`` over that many epochs (Bowman et al. 2016;
  Sønderby et al. 2016), which keeps latent units from collapsing early. Evaluation always uses the full weight,
  so the validation loss (best checkpoint, early stopping) stays the honest bound.
- ``iwae_k``: train on the importance-weighted bound with k samples instead of the ELBO (Burda et al. 2016);
  k = 1 is the ELBO. Costs k decoder passes per image. ``iwae_after``: train on the ELBO for that many epochs
  first and switch to the k-sample bound after (the cheap ELBO epochs do most of the learning; the bound's k
  draws tighten the model where it scores); validation always scores the k-sample bound, so the best epoch is
  chosen on one yardstick.

Families that change the prior (``vamp-vae``), the KL term (``beta-tc-vae``) or condition on labels (``cvae``)
subclass :class:`VAE` and override :meth:`VAE.log_prior`, :meth:`VAE.kl`, :meth:`VAE.sample_prior`, or
``posterior`` / ``decode_logits``, which take the labels ``y`` (ignored here: a VAE is unconditional).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError
from ..options import opt
from ..registry import register
from .base import Autoencoder, Capabilities, Output
from .blocks import BodyConfig, build_body


@dataclass(frozen=True)
class VAEConfig(BodyConfig):
    beta: float = opt(1.0, "weight of the KL term (beta-VAE: 4)")
    kl_warmup: int = opt(0, "epochs of linear KL warm-up, 0: off", metavar="EPOCHS")
    iwae_k: int = opt(1, "importance samples of the training objective (1: the ELBO; K > 1: the IWAE bound)", metavar="K")
    iwae_after: int = opt(0, "epochs trained on the ELBO before the --iwae-k bound takes over, 0: the bound from the "
                             "first epoch", metavar="EPOCHS")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta < 0:
            raise ConfigError(f"beta must be >= 0, got {self.beta}", param="beta")
        if self.kl_warmup < 0:
            raise ConfigError(f"kl_warmup must be >= 0 epochs, got {self.kl_warmup}", param="kl_warmup")
        if self.iwae_k < 1:
            raise ConfigError(f"iwae_k must be >= 1, got {self.iwae_k}", param="iwae_k")
        if self.iwae_after < 0:
            raise ConfigError(f"iwae_after must be >= 0 epochs, got {self.iwae_after}", param="iwae_after")
        if self.iwae_after > 0 and self.iwae_k == 1:
            raise ConfigError("iwae_after switches to the --iwae-k bound: it needs iwae_k > 1", param=("iwae_after", "iwae_k"))
        if self.iwae_k > 1 and self.loss != "bce":
            raise ConfigError("iwae_k > 1 needs loss=bce (a Bernoulli likelihood)", param=("iwae_k", "loss"))


@register("conv-iwae", "the conv VAE trained on the IWAE bound with k=5 (Burda et al. 2016)", iwae_k=5, arch="conv",
          activation="leaky_relu")
@register("iwae", "VAE trained on the importance-weighted bound, k=5 samples (Burda et al. 2016)", iwae_k=5,
          hidden_dims=(512,))
@register("beta-vae", "VAE with beta=4 on the KL term (Higgins et al. 2017)", beta=4.0, hidden_dims=(512,))
@register("conv-vae", "variational autoencoder with the conv body", arch="conv", activation="leaky_relu")
# the dense VAE's defaults: 1024-512 GELU (with TrainConfig's cosine schedule) reached a test -ELBO of 100 nats on
# grey-level MNIST in 9 epochs and 96.2 after 20, where 512 ReLU levelled off at 104; over 40 epochs it reaches 95
# (docs/benchmarks.md, "Time to quality against pythae"; benchmarks/defaults_search.py), so it trains 40 by default
@register("vae", "variational autoencoder, dense (Kingma & Welling 2014)", hidden_dims=(1024, 512), activation="gelu",
          train={"epochs": 40})
class VAE(Autoencoder):
    Config = VAEConfig
    tiny_options = {"filters": (8, 16), "kernel_sizes": (3, 3), "strides": (2, 2), "hidden_dims": (32,)}
    capabilities = Capabilities(posterior=True, likelihood=True, prior=True)

    def __init__(self, config: VAEConfig) -> None:
        super().__init__(config)
        self.body = build_body(config)
        self.to_stats = nn.Linear(self.body.feature_dim, 2 * config.latent_dim)  # mean and log-variance
        self.kl_weight = 1.0  # fraction of beta used in training; the warm-up schedule moves it

    def on_epoch_start(self, epoch: int, max_epochs: int) -> None:
        w = self.config.kl_warmup
        self.kl_weight = min(1.0, epoch / w) if w > 0 else 1.0
        self.elbo_phase = epoch < self.config.iwae_after

    elbo_phase = False  # training on the ELBO before --iwae-after's switch (set per epoch by on_epoch_start)

    def objective_k(self) -> int:
        """Importance samples of the objective this forward pass computes: in training, 1 (the ELBO) during the
        first ``iwae_after`` epochs, then ``iwae_k``; in evaluation always ``iwae_k``."""
        return 1 if self.training and self.elbo_phase else self.config.iwae_k

    def posterior(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.to_stats(self.body.features(x)).chunk(2, dim=1)  # (B, D) each
        return mu, logvar.clamp(-30.0, 20.0)  # keep exp() finite early in training

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.posterior(x, y)[0]  # the posterior mean: deterministic

    def decode_logits(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.body.decoder(z)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)  # z = mu + sigma * eps

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Output:
        if self.objective_k() > 1:
            return self._forward_iwae(x, y)
        mu, logvar = self.posterior(self.corrupt(x), y)
        z = self.reparameterize(mu, logvar)  # sampled in eval too: the loss stays an honest ELBO estimate
        logits = self.decode_logits(z, y)
        diagnose = self.wants_stats()
        x_hat = torch.sigmoid(logits) if diagnose else None  # once: the Output's reconstruction and the mse stat
        terms, stats = self.reconstruction_terms(logits, x, x_hat=x_hat)
        kl = self.kl(mu, logvar, z).mean()
        terms["kl"] = self._beta() * kl  # the weighted part of the loss; the raw KL is a stat
        if diagnose:
            stats["kl_nats"] = kl.detach()
            stats.update(self.bound(terms["recon"], kl, x))  # beta=1 bound, whatever beta trains
        return Output(loss=terms["recon"] + terms["kl"], terms=terms, x_hat=x_hat, z=z, stats=stats)

    def bound(self, recon: torch.Tensor, kl: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The ELBO (nats per image) named after its likelihood, from the loss's ``recon`` term and the KL (means
        over the batch): ``{"elbo": ...}`` (Bernoulli, loss bce), ``{"elbo_gaussian": ...}`` (loss mse: recon =
        sum (x - x_hat)^2 = -log N(x; x_hat, I/2) - (P/2) log(pi)), ``{}`` for rmse (no likelihood)."""
        if self.config.loss == "bce":
            return {"elbo": -(recon + kl).detach()}
        if self.config.loss == "mse":
            const = 0.5 * x[0].numel() * math.log(2 * math.pi * GAUSSIAN_VARIANCE)  # (P/2) log(2 pi sigma^2)
            return {"elbo_gaussian": -(recon + const + kl).detach()}
        return {}

    # --- the prior p(z) = N(0, I); subclasses with another prior override these three -------------------
    def kl(self, mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """KL(q(z|x) || p(z)) per image, (B,): closed form for N(mu, sigma^2) against N(0, I), summed over the
        dimensions (Kingma & Welling 2014, appendix B); ``z`` (a draw from q) serves Monte Carlo estimates."""
        return (0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)).sum(-1)

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) for codes (..., D) -> (...)."""
        return -0.5 * (z.pow(2) + LOG_2PI).sum(-1)  # log N(z; 0, I)

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n codes (n, D) drawn from p(z)."""
        p = next(self.parameters())
        return torch.randn(n, self.latent_dim, generator=generator, device=p.device, dtype=p.dtype)

    def _beta(self) -> float:
        # the warm-up applies to training steps only: validation scores the full objective
        return self.config.beta * (self.kl_weight if self.training else 1.0)

    def _forward_iwae(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Output:
        """Loss = -IWAE bound with k = iwae_k samples (Burda et al. 2016, eq. 8); the warm-up weight scales
        log p(z) - log q(z|x) inside each weight, which at weight 1 is the exact bound."""
        k = self.config.iwae_k
        log_px_z, log_pz_qz, mu, logvar, z = self._log_weight_parts(self.corrupt(x), k, None, target=x, y=y)
        log_w = log_px_z + self._beta() * log_pz_qz  # (k, B)
        bound = torch.logsumexp(log_w, 0) - math.log(k)  # (B,)
        if not self.wants_stats():  # a training step whose diagnostics are not read: no extra decoder pass
            loss = -bound.mean()
            return Output(loss=loss, terms={"iwae": loss}, x_hat=None, z=z[0], stats={})
        kl = self.kl(mu, logvar, z[0]).mean()
        with torch.no_grad():  # one sample's reconstruction, for the diagnostics only: nothing kept for backward
            logits0 = self.decode_logits(z[0], y)
            x_hat = torch.sigmoid(logits0)
            recon, stats = self.reconstruction_terms(logits0, x, x_hat=x_hat)
        loss = -bound.mean()
        stats.update(recon=recon["recon"].detach(), kl_nats=kl.detach(), iwae_bound=-loss.detach(),
                     elbo=(log_px_z + log_pz_qz).mean().detach())  # the k = 1 bound, averaged over the k draws
        return Output(loss=loss, terms={"iwae": loss}, x_hat=x_hat, z=z[0], stats=stats)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.decode(self.sample_prior(n, generator))

    @torch.no_grad()
    def log_importance_weights(self, x: torch.Tensor, k: int, generator: torch.Generator | None = None,
                               y: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x, z_k) - log q(z_k | x) for k posterior samples: (k, B). Their log-mean-exp is the
        IWAE bound on log p(x) (Burda et al. 2016) under the loss's likelihood (:meth:`log_likelihood`)."""
        log_px_z, log_pz_qz, *_ = self._log_weight_parts(x, k, generator, y=y)
        return log_px_z + log_pz_qz

    @property
    def nll_key(self) -> str:
        """The name of the IWAE NLL under this model's likelihood, as :meth:`bound` names the ELBO: ``nll_iwae``
        (Bernoulli, loss bce) or ``nll_iwae_gaussian`` (loss mse)."""
        return "nll_iwae_gaussian" if self.config.loss == "mse" else "nll_iwae"

    def log_likelihood(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x|z) per image under the likelihood the loss is: Bernoulli (bce) or N(x; sigmoid(logits),
        GAUSSIAN_VARIANCE I) (mse, the same bound :meth:`bound` reports). rmse is no likelihood: a ConfigError.

        ``logits`` (..., C, H, W) and ``x`` broadcast against each other, so k draws (k, B, C, H, W) are scored
        against their B images (B, C, H, W) without k copies of the images; the result has the leading shape."""
        pixels = tuple(range(-len(self.input_shape), 0))  # the image axes, summed
        if self.config.loss == "bce":
            # log Bern(x; sigmoid(l)) = x l - softplus(l): the same value as -BCE-with-logits, in fewer passes
            # over the logits, and the images broadcast instead of copied per draw
            return (logits * x).sum(pixels) - F.softplus(logits).sum(pixels)
        if self.config.loss == "mse":
            sq = (torch.sigmoid(logits) - x).pow(2).sum(pixels)
            return -sq / (2 * GAUSSIAN_VARIANCE) - 0.5 * math.prod(self.input_shape) * math.log(2 * math.pi * GAUSSIAN_VARIANCE)
        raise ConfigError(f"{self.name} was trained with --loss {self.config.loss}, which is no log-likelihood: a "
                          "likelihood bound (nll, --iwae-samples) needs --loss bce or mse")

    def _log_weight_parts(self, x: torch.Tensor, k: int, generator: torch.Generator | None, target: torch.Tensor | None = None,
                          y: torch.Tensor | None = None):
        """(log p(x|z), log p(z) - log q(z|x)) for k posterior draws, each (k, B); also mu, logvar, z."""
        target = x if target is None else target
        mu, logvar = self.posterior(x, y)  # (B, D)
        std = torch.exp(0.5 * logvar)
        eps = torch.randn((k, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)  # (k, B, D)
        z = mu + eps * std
        yk = None if y is None else y.repeat(k)  # (k*B,), matching z.flatten(0, 1)
        logits = self.decode_logits(z.flatten(0, 1), yk)  # (k*B, C, H, W)
        log_px_z = self.log_likelihood(logits.reshape(k, *target.shape), target)  # (k, B)
        log_qz = -0.5 * (eps.pow(2) + LOG_2PI + logvar).sum(-1)  # log N(z; mu, sigma^2) with z = mu + sigma eps
        return log_px_z, self.log_prior(z) - log_qz, mu, logvar, z


LOG_2PI = math.log(2 * math.pi)
# the fixed variance of the Gaussian likelihood that --loss mse is: sum (x - x_hat)^2 / (2 sigma^2) is the summed
# squared error exactly when sigma^2 = 1/2 (the elbo_gaussian stat)
GAUSSIAN_VARIANCE = 0.5


def log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(z; mu, exp(logvar)) (broadcasting); sum over the last axis for a diagonal Gaussian."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar))

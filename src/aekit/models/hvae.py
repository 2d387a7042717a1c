"""Hierarchical VAE with top-down inference: the Ladder VAE (Sønderby et al. 2016, "Ladder Variational
Autoencoders"), ``hvae``, dense or ``--arch conv``.

L stochastic layers z_1 (next to the image) ... z_L (the top, the code). The generative model is a chain

    p(z_L) = N(0, I),   p(z_l | z_{l+1}) = N(mu_p, sigma_p^2) (an MLP of z_{l+1}),   p(x | z_1) (the body's decoder).

Inference runs bottom-up, then top-down: the bottom-up pass computes deterministic features d_1 = body(x),
d_l = MLP(d_{l-1}) and from each a likelihood-only estimate (mu_hat_l, sigma_hat_l^2); the top-down pass starts
at q(z_L | x) = N(mu_hat_L, sigma_hat_L^2) and, going down, merges each estimate with the prior p(z_l | z_{l+1})
at the sampled z_{l+1} by precision weighting:

    sigma_q^2 = 1 / (sigma_hat^-2 + sigma_p^-2),   mu_q = (mu_hat sigma_hat^-2 + mu_p sigma_p^-2) sigma_q^2,

so inference and generative model share the top-down path. The loss is the negative ELBO: reconstruction plus
the sum over layers of KL(q(z_l | .) || p(z_l | z_{l+1})), each in closed form given the sampled z_{l+1}
(reported as stats ``kl_1`` (bottom) ... ``kl_L`` (top)). ``--beta``, the ``--iwae-k`` objective and the VAE's
KL warm-up (``--kl-warmup``) apply to the summed KL / to log p(z) - log q(z | x). The paper trains with batch
normalisation and warm-up, and so does the ``hvae`` preset (``batch_norm=True``, ``kl_warmup=2``): without them
upper layers collapse onto their prior in short runs (3 epochs on 3,000 MNIST images: decoding the top code gave
one image for every input; with them it did not, and the test ELBO was ~40 nats better).

The code is the top layer: ``encode(x)`` is the mean of q(z_L | x), ``posterior`` its mean and log-variance (its
prior is N(0, I), so KL-per-dimension and active units read as for a VAE), and ``decode(z_L)`` follows the prior
means down the chain (z_l = mu_p(z_{l+1})) to the image: every code dimension moves the picture, so latent
plots, traversals and interpolations of the top code mean what they mean for a VAE. ``forward``'s
reconstruction uses a sample of every layer; ``sample`` draws ancestrally from p(z_L) p(z_{L-1} | z_L) ...
``log_importance_weights`` is log p(x, z_1..L) - log q(z_1..L | x) for k joint draws (the IWAE bound).

With ``--arch conv`` the conv body computes d_1 and decodes z_1; the layers above are dense (stochastic layers
are flat vectors, as in the paper's MNIST models).

``--prior vamp`` replaces p(z_L) = N(0, I) with a VampPrior (Tomczak & Welling 2018, whose two-layer model puts
it on the top layer as here): the mixture of the top posteriors q(z_L | u_k) at ``--pseudo-inputs`` K learned
images u_k, p(z_L) = 1/K sum_k q(z_L | u_k). The top KL then has no closed form and is the one-sample estimate
log q(z_L | x) - log p(z_L) at the drawn z_L; ``sample`` draws a component first; the IWAE bound uses the
mixture's log-density (:func:`aekit.models.vamp.mixture_log_density`, the same as ``vamp-vae``'s). The
pseudo-inputs go through the bottom-up pass in the same batch as the images, so batch normalisation's batch and
running statistics are those of one population whichever pass asks; every step costs K extra bottom-up inputs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError
from ..options import opt
from ..registry import register
from .base import Autoencoder, Output
from .blocks import build_body, mlp
from .vae import LOG_2PI, VAE, VAEConfig
from .vamp import mixture_log_density


@dataclass(frozen=True)
class HVAEConfig(VAEConfig):
    latent_dims: tuple[int, ...] = opt((32,), "hvae: sizes of the stochastic layers under the top one, bottom (next to "
                                       "the image) first; the top layer is the code, --latent-dim", metavar="64,32")
    ladder_width: int = opt(256, "hvae: width of the deterministic MLPs between stochastic layers (bottom-up d_l and "
                                 "top-down prior nets, two layers each)", metavar="N")
    prior: str = opt("standard", "hvae: prior of the top code: standard N(0, I), or vamp, a VampPrior over "
                                 "--pseudo-inputs learned images (Tomczak & Welling 2018)", choices=("standard", "vamp"))
    pseudo_inputs: int = opt(500, "K learned pseudo-inputs of the VampPrior (vamp-vae; hvae with --prior vamp)", metavar="K")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.latent_dims:
            raise ConfigError("latent_dims needs at least one layer under the top one (e.g. 32): a hierarchical VAE "
                              "has two or more stochastic layers", param="latent_dims")
        if min(self.latent_dims) < 1:
            raise ConfigError(f"latent_dims must be positive, got {','.join(map(str, self.latent_dims))}",
                              param="latent_dims")
        if self.ladder_width < 1:
            raise ConfigError(f"ladder_width must be >= 1, got {self.ladder_width}", param="ladder_width")
        if self.prior not in ("standard", "vamp"):
            raise ConfigError(f"prior must be standard or vamp, got {self.prior!r}", param="prior")
        if self.pseudo_inputs < 1:
            raise ConfigError(f"pseudo_inputs must be >= 1, got {self.pseudo_inputs}", param="pseudo_inputs")


def kl_normal(mu_q: torch.Tensor, lv_q: torch.Tensor, mu_p: torch.Tensor, lv_p: torch.Tensor) -> torch.Tensor:
    """KL(N(mu_q, e^lv_q) || N(mu_p, e^lv_p)) summed over the last axis: (...)."""
    return 0.5 * (lv_p - lv_q + (lv_q.exp() + (mu_q - mu_p).pow(2)) * torch.exp(-lv_p) - 1.0).sum(-1)


def log_normal(z: torch.Tensor, mu: torch.Tensor, lv: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag e^lv) summed over the last axis: (...)."""
    return -0.5 * (LOG_2PI + lv + (z - mu).pow(2) * torch.exp(-lv)).sum(-1)


def precision_weighted(mu_hat: torch.Tensor, lv_hat: torch.Tensor, mu_p: torch.Tensor, lv_p: torch.Tensor):
    """The product of two Gaussians, renormalised (Sønderby et al. 2016's precision weighting), in log-variances:
    the weight of the bottom-up mean is its share of the precision, sigmoid(lv_p - lv_hat), which stays finite
    where the precisions themselves would overflow."""
    w = torch.sigmoid(lv_p - lv_hat)  # sigma_hat^-2 / (sigma_hat^-2 + sigma_p^-2)
    mu = w * mu_hat + (1 - w) * mu_p
    lv = -torch.logaddexp(-lv_hat, -lv_p)  # log 1 / (sigma_hat^-2 + sigma_p^-2)
    return mu, lv


def _clamp(lv: torch.Tensor) -> torch.Tensor:
    return lv.clamp(-30.0, 20.0)  # keep exp() finite early in training, as the VAE does


# trained as the paper trains it, with batch norm and KL warm-up: on MNIST (3 epochs, 512-256 body, codes 32 + 16)
# they took the IWAE-100 NLL from 134 to 96 nats, where the VAE of the same widths gets 111 (100 with batch norm)
@register("hvae", "hierarchical VAE with top-down inference: the Ladder VAE (Sønderby et al. 2016), "
                  "--latent-dims for the layers under the top code", hidden_dims=(512, 256), batch_norm=True, kl_warmup=2)
class HVAE(VAE):
    Config = HVAEConfig
    tiny_options = {**VAE.tiny_options, "latent_dims": (4,), "ladder_width": 16}
    standard_prior = False  # the KL is the sum over the layers; the posterior's (top) code is only one of them

    def __init__(self, config: HVAEConfig) -> None:
        Autoencoder.__init__(self, config)  # the VAE's single head does not apply: layers built here
        dims = [*config.latent_dims, config.latent_dim]  # bottom first: z_1 ... z_L
        self.dims = dims
        width = config.ladder_width
        self.body = build_body(dataclasses.replace(config, latent_dim=dims[0]))  # d_1 = features(x); p(x | z_1)
        # bottom-up: d_l = MLP(d_{l-1}) for l >= 2, and each layer's likelihood-only estimate from d_l
        self.up = nn.ModuleList(mlp([self.body.feature_dim if l == 1 else width, width, width], config, last_plain=False)
                                for l in range(1, len(dims)))  # d_2 ... d_L
        self.estimate = nn.ModuleList(nn.Linear(self.body.feature_dim if l == 0 else width, 2 * d)
                                      for l, d in enumerate(dims))  # (mu_hat_l, logvar_hat_l), l = 1 ... L
        # top-down: p(z_l | z_{l+1}) for l = 1 ... L-1
        self.prior_nets = nn.ModuleList(
            nn.Sequential(mlp([dims[l + 1], width, width], config, last_plain=False), nn.Linear(width, 2 * dims[l]))
            for l in range(len(dims) - 1))
        self.kl_weight = 1.0  # the VAE's warm-up schedule (on_epoch_start) moves it
        self.pseudo = None  # the VampPrior's pseudo-inputs, with --prior vamp
        if config.prior == "vamp":  # started at N(0.05, 0.01) per pixel, as vamp-vae (the paper's code)
            self.pseudo = nn.Parameter(0.05 + 0.01 * torch.randn(config.pseudo_inputs, *config.input_shape))  # (K, C, H, W)
            self.capabilities = dataclasses.replace(type(self).capabilities, learned_inputs=True)  # this instance's

    # --- the VampPrior of the top layer (--prior vamp) ---------------------------------------------------------
    def pseudo_inputs(self) -> torch.Tensor:
        return F.hardtanh(self.pseudo, 0.0, 1.0)  # (K, C, H, W) in the pixel range

    def learned_inputs(self) -> torch.Tensor:
        """The K pseudo-inputs u_k, (K, C, H, W) in [0, 1], with ``--prior vamp``."""
        if self.pseudo is None:
            return super().learned_inputs()  # the ConfigError naming the reason
        return self.pseudo_inputs().detach()

    def bottom_up_with_prior(self, x: torch.Tensor):
        """The bottom-up estimates of x, and the top prior's mixture components (mean, log-variance), (K, D_L)
        each, or None for N(0, I). One pass over [x; u]: batch norm sees images and pseudo-inputs together."""
        if self.pseudo is None:
            return self.bottom_up(x), None
        b = len(x)
        both = self.bottom_up(torch.cat([x, self.pseudo_inputs().to(x.dtype)]))  # [(B + K, D_l)] bottom first
        return [(mu[:b], lv[:b]) for mu, lv in both], (both[-1][0][b:], both[-1][1][b:])

    def components(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The VampPrior's mixture: q(z_L | u_k)'s means and log-variances, (K, D_L) each (for sampling and
        densities, in eval mode: in training mode batch norm would count the pseudo-inputs alone)."""
        return self.bottom_up(self.pseudo_inputs())[-1]

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:  # (..., D_L) -> (...)
        if self.pseudo is None:
            return super().log_prior(z)
        return mixture_log_density(z, *self.components())

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.pseudo is None:
            return super().sample_prior(n, generator)
        mu, logvar = self.components()  # (K, D_L)
        k = torch.randint(len(mu), (n,), generator=generator, device=mu.device)  # (n,) components, uniform
        eps = torch.randn(n, mu.shape[1], generator=generator, device=mu.device, dtype=mu.dtype)
        return mu[k] + eps * torch.exp(0.5 * logvar[k])  # (n, D_L)

    # --- the two passes ------------------------------------------------------------------------------------
    def bottom_up(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(mu_hat_l, logvar_hat_l) for l = 1 (bottom) ... L (top), each (B, D_l)."""
        d = self.body.features(x)  # (B, F): d_1
        out = []
        for l, head in enumerate(self.estimate):
            if l > 0:
                d = self.up[l - 1](d)  # (B, W): d_{l+1}
            mu, lv = head(d).chunk(2, dim=-1)  # (B, D_l) each
            out.append((mu, _clamp(lv)))
        return out

    def prior(self, l: int, z_above: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of p(z_l | z_{l+1}) for l = 0 (bottom) ... L-2, (..., D_l) each."""
        flat = z_above.reshape(-1, z_above.shape[-1])  # (N, D_{l+1}): batch norm wants one batch axis
        mu, lv = self.prior_nets[l](flat).view(*z_above.shape[:-1], -1).chunk(2, dim=-1)  # (..., D_l) each
        return mu, _clamp(lv)

    def top_down(self, estimates, k: int = 1, generator: torch.Generator | None = None, components=None):
        """k joint draws from q(z_1..L | x) through the top-down pass. Returns z_1 (k, B, D_1), the per-layer
        KLs [(k, B)] bottom first (closed form given the layer above; the top one a one-sample estimate under a
        VampPrior's ``components``), and log p(z) - log q(z | x) at the draws (k, B)."""
        mu, lv = estimates[-1]  # the top: q(z_L | x) is the bottom-up estimate alone
        mu, lv = mu.expand(k, *mu.shape), lv.expand(k, *lv.shape)  # (k, B, D_L)
        zeros = torch.zeros_like(mu)  # p(z_L) = N(0, I)
        kls, log_ratio = [], 0.0
        z = None
        for l in reversed(range(len(self.dims))):
            if z is not None:  # under the top: merge the estimate with p(z_l | z_{l+1}) at the drawn z_{l+1}
                mu_p, lv_p = self.prior(l, z)  # (k, B, D_l)
                mu, lv = precision_weighted(*estimates[l], mu_p, lv_p)
            else:
                mu_p, lv_p = zeros, zeros
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
            z = mu + eps * torch.exp(0.5 * lv)  # (k, B, D_l)
            neg_log_q = 0.5 * (LOG_2PI + lv + eps.pow(2)).sum(-1)  # -log q(z_l | .) at the draw, (k, B)
            if l == len(self.dims) - 1 and components is not None:  # the top under a VampPrior: no closed form
                log_p = mixture_log_density(z, *components)  # (k, B)
                kls.append(-neg_log_q - log_p)
            else:
                log_p = log_normal(z, mu_p, lv_p)
                kls.append(kl_normal(mu, lv, mu_p, lv_p))
            log_ratio = log_ratio + log_p + neg_log_q
        return z, kls[::-1], log_ratio

    # --- the contract --------------------------------------------------------------------------------------
    def posterior(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z_L | x) of the top layer, the code: (mean, log-variance), (B, D) each."""
        return self.bottom_up(x)[-1]

    def decode_logits(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """From a top code (B, D_L) down the prior means z_l = mu_p(z_{l+1}) to p(x | z_1)'s logits."""
        for l in reversed(range(len(self.dims) - 1)):
            z = self.prior(l, z)[0]  # (B, D_l)
        return self.body.decoder(z)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Output:
        if self.objective_k() > 1:
            return self._forward_iwae(x, y)
        estimates, components = self.bottom_up_with_prior(self.corrupt(x))
        z1, kls, _ = self.top_down(estimates, components=components)  # z1 (1, B, D_1)
        logits = self.body.decoder(z1[0])  # (B, C, H, W)
        diagnose = self.wants_stats()
        x_hat = torch.sigmoid(logits) if diagnose else None  # once: the Output's reconstruction and the mse stat
        terms, stats = self.reconstruction_terms(logits, x, x_hat=x_hat)
        per_layer = [kl.mean() for kl in kls]  # bottom first
        kl = sum(per_layer)
        terms["kl"] = self._beta() * kl  # warm-up and beta scale the whole KL, as Sønderby et al. 2016 warm up
        if diagnose:
            stats["kl_nats"] = kl.detach()
            stats.update({f"kl_{l + 1}": v.detach() for l, v in enumerate(per_layer)})
            stats.update(self.bound(terms["recon"], kl, x))
        # Output.z: the code, the top posterior mean (B, D_L); the drawn layers stay inside the loss
        return Output(loss=terms["recon"] + terms["kl"], terms=terms, x_hat=x_hat, z=estimates[-1][0], stats=stats)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Ancestral draws: z_L ~ p(z_L) (N(0, I), or under a VampPrior a component, then a draw from it), then
        z_l ~ p(z_l | z_{l+1}) down to p(x | z_1)'s mean."""
        z = self.sample_prior(n, generator)  # (n, D_L)
        for l in reversed(range(len(self.dims) - 1)):
            mu, lv = self.prior(l, z)
            z = mu + torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype) * torch.exp(0.5 * lv)
        return torch.sigmoid(self.body.decoder(z))

    def _log_weight_parts(self, x: torch.Tensor, k: int, generator: torch.Generator | None,
                          target: torch.Tensor | None = None, y: torch.Tensor | None = None):
        """(log p(x | z_1), log p(z_1..L) - log q(z_1..L | x)) for k joint draws, each (k, B); also the top
        posterior (mu, logvar), the per-layer KLs and the logits of the draws (k*B, C, H, W)."""
        target = x if target is None else target
        estimates, components = self.bottom_up_with_prior(x)
        z1, kls, log_ratio = self.top_down(estimates, k, generator, components)  # (k, B, D_1)
        logits = self.body.decoder(z1.flatten(0, 1))  # (k*B, C, H, W)
        log_px_z = self.log_likelihood(logits.reshape(k, *target.shape), target)  # (k, B)
        return log_px_z, log_ratio, estimates[-1], kls, logits

    def _forward_iwae(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Output:
        """Loss = -IWAE bound with k = iwae_k joint draws (Burda et al. 2016, eq. 8); the warm-up weight scales
        log p(z) - log q(z | x) inside each weight, which at weight 1 is the exact bound."""
        k = self.config.iwae_k
        log_px_z, log_ratio, (mu, _), kls, logits = self._log_weight_parts(self.corrupt(x), k, None, target=x)
        bound = torch.logsumexp(log_px_z + self._beta() * log_ratio, 0) - math.log(k)  # (B,)
        if not self.wants_stats():  # a training step whose diagnostics are not read
            loss = -bound.mean()
            return Output(loss=loss, terms={"iwae": loss}, x_hat=None, z=mu, stats={})
        with torch.no_grad():  # the first draw's reconstruction, for the diagnostics only
            logits0 = logits[: len(x)]
            x_hat = torch.sigmoid(logits0)
            recon, stats = self.reconstruction_terms(logits0, x, x_hat=x_hat)
        loss = -bound.mean()
        per_layer = [kl[0].mean().detach() for kl in kls]
        stats.update(recon=recon["recon"].detach(), kl_nats=sum(per_layer), iwae_bound=-loss.detach(),
                     elbo=(log_px_z + log_ratio).mean().detach())  # the k = 1 bound, averaged over the k draws
        stats.update({f"kl_{l + 1}": v for l, v in enumerate(per_layer)})
        return Output(loss=loss, terms={"iwae": loss}, x_hat=x_hat, z=mu, stats=stats)

"""VAE-GAN (Larsen et al. 2016, "Autoencoding beyond pixels using a learned similarity metric"): a VAE whose
reconstruction error is measured in the feature space of a GAN discriminator, trained with three optimizers.

Three networks: the encoder q(z|x) = N(mu, diag sigma^2) (the VAE's), the decoder (= the GAN's generator) and a
conv discriminator Dis. With x~ = Dec(z), z ~ q(z|x), and x_p = Dec(z_p), z_p ~ N(0, I):

- ``L_llike``: a Gaussian with unit variance on the l-th layer of Dis (paper eq. 6-7),
  -log N(Dis_l(x) | Dis_l(x~), I) = 0.5 ||Dis_l(x) - Dis_l(x~)||^2 (+ const), summed over features; plus
  ``pixel_weight`` times the pixel loss (``loss``, BCE by default). ``pixel_weight`` 0 is the paper's pure
  feature loss; the default keeps the pixel term because a young discriminator's feature distances are a few
  nats against a KL of ~20, and on MNIST the KL then switched the code off (1.2 nats after two epochs).
- ``L_prior``: KL(q(z|x) || N(0, I)), weighted by ``beta``.
- ``L_GAN``: the discriminator's binary cross-entropy with x real and both x~ and x_p fake (paper eq. 9).

Each network gets its own loss and optimizer (paper Algorithm 1): encoder ``beta*KL + L_llike``; decoder
``gamma*L_llike + L_GAN^gen``, where the generator's term is the non-saturating -log Dis(fake) (Goodfellow et al.
2014, sec. 3) in place of -L_GAN; discriminator ``L_GAN``. L_llike is never propagated into Dis: the engine's
``step`` back-propagates each loss into its own optimizer's parameters only. All three gradients come from one
forward pass, before any network steps, as in Algorithm 1. ``gamma`` = 0.01 lets the adversarial term shape the
decoder; at 0.1 or 1 the reconstruction term swamps it and samples stay VAE-blurry (MNIST, 10k images, 3 epochs,
latent 16: sample FID-classifier 47 at 0.01, 174 at 0.1, 329 at 1; the plain ``vae`` 404, a ``conv-vae`` with
this family's encoder and decoder 357).

Stabilisers (the defaults train MNIST without collapse): Adam with beta1 = 0.5 for decoder and discriminator
(Radford et al. 2016) and a lower discriminator learning rate (``disc_lr``); one-sided label smoothing of the real
targets (``real_label``, Salimans et al. 2016); and the equilibrium rule of the paper's code
(github.com/andersbll/autoencoding_beyond_pixels): when the discriminator's cost falls below ``equilibrium -
margin`` it is not updated, when it rises above ``equilibrium + margin`` the decoder gets no adversarial
gradient (ln 2 = 0.69 is the cost of a discriminator that cannot tell). The paper's code tests the real and the
fake cost each; here their mean is tested (see ``_equilibrium``).

``forward`` (validation, evaluation) returns the paper's combined objective from the generator's side,
``L_prior + L_llike + L_GAN^gen``; ``stats`` carry ``disc_acc`` (balanced accuracy on real vs fake),
``gan_dis`` (the discriminator's loss), ``kl_nats`` and ``mse``. There is no pixel likelihood, so no ELBO.
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
from .base import Autoencoder, Capabilities, Output, adam
from .blocks import BodyConfig, build_body

GAN_BETAS = (0.5, 0.999)  # Radford et al. 2016: beta1 = 0.5 keeps Adam's momentum from overshooting the game


@dataclass(frozen=True)
class VAEGANConfig(BodyConfig):
    beta: float = opt(1.0, "weight of the KL term (beta-VAE: 4)")
    gamma: float = opt(1e-2, "decoder's weight of the reconstruction against its GAN loss (VAE-GAN)")
    pixel_weight: float = opt(1.0, "weight of the pixel loss added to the feature reconstruction (VAE-GAN; 0: the paper's pure feature loss)")
    disc_filters: tuple[int, ...] = opt((32, 64, 128), "discriminator conv channels, stride 2 each (VAE-GAN)", metavar="32,64,128")
    feature_layer: int = opt(0, "discriminator conv layer whose output is the reconstruction space, 1-based; 0: the last")
    disc_lr: float = opt(0.5, "discriminator learning rate as a multiple of --lr")
    real_label: float = opt(0.9, "discriminator target for real images (one-sided label smoothing; 1: off)")
    equilibrium: float = opt(0.68, "discriminator cost at balance for the update-skipping rule")
    margin: float = opt(0.35, "skip discriminator updates below equilibrium-margin, adversarial decoder updates above "
                              "equilibrium+margin; 0: off")

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("beta", "gamma", "pixel_weight", "margin"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}", param=name)
        if not self.disc_filters or min(self.disc_filters) < 1:
            raise ConfigError(f"disc_filters must be positive channel counts, got {self.disc_filters}", param="disc_filters")
        if not 0 <= self.feature_layer <= len(self.disc_filters):
            raise ConfigError(f"feature_layer must be in 0..{len(self.disc_filters)} (a discriminator conv layer), "
                              f"got {self.feature_layer}", param="feature_layer")
        if not self.disc_lr > 0:
            raise ConfigError(f"disc_lr must be > 0, got {self.disc_lr}", param="disc_lr")
        if not 0.5 < self.real_label <= 1.0:
            raise ConfigError(f"real_label must be in (0.5, 1], got {self.real_label}", param="real_label")
        if not self.equilibrium > 0:
            raise ConfigError(f"equilibrium must be > 0, got {self.equilibrium}", param="equilibrium")


class Discriminator(nn.Module):
    """Stride-2 3x3 convs with LeakyReLU(0.2) (Radford et al. 2016) -> one logit. 3x3 rather than the paper's
    5x5: half the step time on a CPU, and after three layers plus the linear head it still sees a whole digit.
    No batch norm: real and fake images go through in one batch, and batch statistics would mix them. Any
    (C, H, W): each conv maps a side n to ceil(n / 2)."""

    def __init__(self, cfg: VAEGANConfig) -> None:
        super().__init__()
        c, h, w = cfg.input_shape
        layers = []
        for f in cfg.disc_filters:
            layers.append(nn.Sequential(nn.Conv2d(c, f, 3, stride=2, padding=1), nn.LeakyReLU(0.2)))
            c, h, w = f, math.ceil(h / 2), math.ceil(w / 2)
        self.convs = nn.ModuleList(layers)
        self.head = nn.Linear(c * h * w, 1)
        self.feature_layer = (cfg.feature_layer or len(layers)) - 1  # 0-based

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features of layer l, flattened (B, F); logits (B,))."""
        feats = x
        for i, conv in enumerate(self.convs):
            x = conv(x)  # (B, f_i, ceil(H / 2^i), ceil(W / 2^i))
            if i == self.feature_layer:
                feats = x.flatten(1)
        return feats, self.head(x.flatten(1)).squeeze(1)


@register("vae-gan", "VAE with a learned similarity metric: discriminator features as reconstruction space, "
          "three optimizers (Larsen et al. 2016)", arch="conv", activation="leaky_relu",
          filters=(32, 64), kernel_sizes=(3, 3), strides=(2, 2))
class VAEGAN(Autoencoder):
    Config = VAEGANConfig
    tiny_options = {"filters": (8, 16), "kernel_sizes": (3, 3), "strides": (2, 2), "hidden_dims": (32,), "disc_filters": (8, 16)}
    capabilities = Capabilities(posterior=True, prior=True)

    def __init__(self, config: VAEGANConfig) -> None:
        super().__init__(config)
        self.body = build_body(config)  # body.features -> encoder, body.decoder -> decoder/generator
        self.to_stats = nn.Linear(self.body.feature_dim, 2 * config.latent_dim)  # mean and log-variance
        self.disc = Discriminator(config)

    # --- the VAE part ------------------------------------------------------------------------------
    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.to_stats(self.body.features(x)).chunk(2, dim=1)  # (B, D) each
        return mu, logvar.clamp(-30.0, 20.0)  # keep exp() finite early in training

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x)[0]  # the posterior mean: deterministic

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.body.decoder(z)  # (B, C, H, W)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        p = next(self.parameters())
        z = torch.randn(n, self.latent_dim, generator=generator, device=p.device, dtype=p.dtype)
        return self.decode(z)

    # --- losses ------------------------------------------------------------------------------------
    def _losses(self, x: torch.Tensor) -> tuple[Output, dict[str, torch.Tensor]]:
        """The Output (combined objective, generator side) and the per-network losses, on one shared graph."""
        cfg = self.config
        b = x.shape[0]
        mu, logvar = self.posterior(self.corrupt(x))  # (B, D)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)  # reparameterised draw from q(z|x)
        z_p = torch.randn_like(mu)  # prior draws: the paper's x_p = Dec(z_p), a second kind of fake
        logits = self.decode_logits(torch.cat([z, z_p]))  # (2B, C, H, W): one decoder pass for both
        x_tilde, x_p = torch.sigmoid(logits).split(b)
        feats, d = self.disc(torch.cat([x, x_tilde, x_p]))  # (3B, F), (3B,): one discriminator pass
        f_real, f_rec, _ = feats.split(b)
        d_real, d_fake = d[:b], d[b:]  # fakes: reconstructions then prior samples

        # L_llike: Gaussian NLL in Dis_l's space with unit variance (Larsen et al. eq. 7), nats per image
        feature = 0.5 * (f_rec - f_real).pow(2).sum(1).mean()
        pixel_terms, stats = self.reconstruction_terms(logits[:b], x)
        pixel = cfg.pixel_weight * pixel_terms["recon"]
        kl = (0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)).sum(1).mean()  # KL to N(0, I) (Kingma & Welling, app. B)

        real_t = torch.full_like(d_real, cfg.real_label)  # one-sided label smoothing: fakes stay at 0
        real_cost = F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))  # for the equilibrium rule
        fake_cost = F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))  # mean over both fakes
        # L_GAN (Larsen et al. eq. 9) with x~ and x_p sharing the fake half: real and fake weigh the same, as
        # in the paper's code (real_vs_gen_weight 0.5); two full fake terms would push Dis to call all fake
        gan_dis = F.binary_cross_entropy_with_logits(d_real, real_t) + fake_cost
        # the generator's non-saturating loss: -log Dis(x~) - log Dis(x_p), averaged over both kinds
        gan_gen = F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))

        recon = feature + pixel
        terms = {"recon": feature, "pixel": pixel, "kl": cfg.beta * kl, "gan": gan_gen}
        stats.update(
            kl_nats=kl.detach(), gan_dis=gan_dis.detach(), gan_real=real_cost.detach(), gan_fake=fake_cost.detach(),
            # balanced accuracy: reals called real and fakes (both kinds) called fake count alike
            disc_acc=0.5 * ((d_real > 0).float().mean() + (d_fake < 0).float().mean()),
        )
        out = Output(loss=sum(terms.values()), terms=terms, x_hat=x_tilde, z=z, stats=stats)
        losses = {"encoder": cfg.beta * kl + recon, "decoder": cfg.gamma * recon + gan_gen, "decoder_recon": cfg.gamma * recon,
                  "discriminator": gan_dis, "real_cost": real_cost.detach(), "fake_cost": fake_cost.detach()}
        return out, losses

    def forward(self, x: torch.Tensor) -> Output:
        return self._losses(x)[0]

    # --- the training recipe -----------------------------------------------------------------------
    def make_optimizers(self, cfg) -> dict[str, torch.optim.Optimizer]:
        encoder = [*self.body.features.parameters(), *self.to_stats.parameters()]
        return {
            "encoder": adam(encoder, cfg),
            "decoder": adam(self.body.decoder.parameters(), cfg, betas=GAN_BETAS),
            "discriminator": adam(self.disc.parameters(), cfg, lr_scale=self.config.disc_lr, betas=GAN_BETAS),
        }

    def training_step(self, x: torch.Tensor, y: torch.Tensor, step) -> Output:
        out, losses = self._losses(x)
        train_dis, train_gen = self._equilibrium(losses["real_cost"], losses["fake_cost"])
        # encoder, decoder, discriminator: each backward runs before its graph's later networks change
        step("encoder", losses["encoder"], retain_graph=True)
        step("decoder", losses["decoder"] if train_gen else losses["decoder_recon"], retain_graph=train_dis)
        if train_dis:
            step("discriminator", losses["discriminator"])
        stats = {**out.stats, "dis_updates": torch.tensor(float(train_dis)), "gen_updates": torch.tensor(float(train_gen))}
        return Output(loss=out.loss, terms=out.terms, x_hat=out.x_hat, z=out.z, stats=stats)

    def _equilibrium(self, real_cost: torch.Tensor, fake_cost: torch.Tensor) -> tuple[bool, bool]:
        """(update the discriminator, give the decoder its adversarial gradient). The paper's code pauses the
        discriminator when either cost is below the band; with one-sided label smoothing a good discriminator's
        real cost sits near -log 0.9 = 0.1 for good, and on MNIST that froze it for whole epochs while the
        decoder was fooling it. The mean of the two costs moves with the fakes, so a paused side resumes."""
        m, eq = self.config.margin, self.config.equilibrium
        if m == 0:
            return True, True
        cost = 0.5 * (real_cost + fake_cost).item()  # the discriminator's mean cross-entropy on real and fake
        return cost >= eq - m, cost <= eq + m  # it wins / loses by more than the margin: that side pauses

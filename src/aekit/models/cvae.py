"""Conditional VAE (Sohn et al. 2015, "Learning Structured Output Representation using Deep Conditional
Generative Models"; the label-conditioned M2-style model of Kingma et al. 2014), ``cvae``.

The label y enters both networks as a one-hot vector of ``num_classes``: the encoder reads it beside the image
features (after the conv stack for the conv body), the decoder reads [z, onehot(y)]. The ELBO is that of
log p(x | y); since the decoder is told the class, the code is free to hold what the label does not say — the
style — and the same z decoded under every label draws one style in every class.

Labels reach the model through :meth:`forward_batch` (the engine's training and validation steps); ``-1`` is an
unknown label and becomes the zero vector. In training a ``label_dropout`` fraction of the labels is hidden the
same way (as classifier-free guidance does, Ho & Salimans 2022), so the model also learns the label-free
p(x) = ∫ p(x | z, ∅) p(z) dz: ``encode(x)``, ``decode(z)``, ``forward(x)`` and the IWAE bound without labels
are that model's, and front ends that know no labels still get trained paths. ``sample(n, labels=None)`` draws
the labels uniformly.

Everything else — bodies, posterior, KL, warm-up, the ``iwae_k`` objective — is the VAE's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError
from ..options import opt
from ..registry import register
from .base import Autoencoder, Capabilities, Output
from .blocks import build_body
from .vae import VAE, VAEConfig


@dataclass(frozen=True)
class CVAEConfig(VAEConfig):
    num_classes: int = opt(10, "classes the conditional VAE's labels come from (labels 0..N-1, one-hot)", metavar="N")
    label_dropout: float = opt(0.1, "cvae: fraction of training labels hidden, so the label-free model is learned too")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1, got {self.num_classes}", param="num_classes")
        if not 0.0 <= self.label_dropout < 1.0:
            raise ConfigError(f"label_dropout must be in [0, 1), got {self.label_dropout}", param="label_dropout")


@register("cvae", "conditional VAE: the label enters encoder and decoder as a one-hot vector (Sohn et al. 2015)",
          hidden_dims=(512,))
class CVAE(VAE):
    Config = CVAEConfig
    capabilities = Capabilities(posterior=True, likelihood=True, prior=True, conditional=True)

    def __init__(self, config: CVAEConfig) -> None:
        Autoencoder.__init__(self, config)  # the VAE's layers, widened for the label: built here
        k = config.num_classes
        self.body = build_body(dataclasses.replace(config, latent_dim=config.latent_dim + k))  # decoder reads [z, y]
        self.to_stats = nn.Linear(self.body.feature_dim + k, 2 * config.latent_dim)  # reads [features, y]
        self.kl_weight = 1.0

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def labels(self, y, n: int) -> torch.Tensor:
        """Labels as a (n,) long tensor on the model's device: None -> all unknown (-1), an int -> that class
        for all, a sequence or tensor -> one per image. A class outside 0..num_classes-1 is a ConfigError."""
        device = next(self.parameters()).device
        if y is None:
            return torch.full((n,), -1, dtype=torch.long, device=device)
        y = torch.as_tensor(y, dtype=torch.long, device=device)
        y = y.expand(n) if y.ndim == 0 else y
        if y.shape != (n,):
            raise ConfigError(f"labels must be one per image ({n}), got shape {tuple(y.shape)}", param="label")
        if y.numel() and (int(y.max()) >= self.num_classes or int(y.min()) < -1):
            bad = int(y.max()) if int(y.max()) >= self.num_classes else int(y.min())
            raise ConfigError(f"label must be in 0..{self.num_classes - 1}, got {bad}", param="label")
        return y

    def onehot(self, y: torch.Tensor | None, n: int, dtype: torch.dtype) -> torch.Tensor:
        """(n, K) one-hot rows; an unknown label (-1) or no labels at all give zero rows."""
        if y is None:
            return torch.zeros(n, self.num_classes, dtype=dtype, device=next(self.parameters()).device)
        return F.one_hot(y.clamp_min(0), self.num_classes).to(dtype) * (y >= 0).unsqueeze(1).to(dtype)

    def posterior(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body.features(x)  # (B, F)
        mu, logvar = self.to_stats(torch.cat([h, self.onehot(y, len(x), h.dtype)], 1)).chunk(2, dim=1)  # (B, D) each
        return mu, logvar.clamp(-30.0, 20.0)

    def decode_logits(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.body.decoder(torch.cat([z, self.onehot(y, len(z), z.dtype)], 1))  # (B, D + K) -> (B, C, H, W)

    def encode(self, x: torch.Tensor, y=None) -> torch.Tensor:
        return self.posterior(x, None if y is None else self.labels(y, len(x)))[0]

    def decode(self, z: torch.Tensor, y=None) -> torch.Tensor:
        return torch.sigmoid(self.decode_logits(z, None if y is None else self.labels(y, len(z))))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Output:
        if y is not None and self.training and self.config.label_dropout > 0:
            hide = torch.rand(y.shape, device=y.device) < self.config.label_dropout
            y = y.masked_fill(hide, -1)
        return super().forward(x, y)

    def forward_batch(self, x: torch.Tensor, y: torch.Tensor) -> Output:
        return self(x, y)

    def sample(self, n: int, generator: torch.Generator | None = None, labels=None) -> torch.Tensor:
        """n images of the classes ``labels`` (an int, or one per image); None draws the classes uniformly."""
        z = self.sample_prior(n, generator)  # (n, D)
        if labels is None:
            y = torch.randint(self.num_classes, (n,), generator=generator, device=z.device)
        else:
            y = self.labels(labels, n)
        return self.decode(z, y)

    def prepare_data(self, data) -> None:
        super().prepare_data(data)  # labels must exist
        top = int(data.labels.max())
        if top >= self.num_classes:
            raise ConfigError(f"{data.name} has {top + 1} classes but num_classes is {self.num_classes}; "
                              f"pass --num-classes {top + 1}", param="num_classes")

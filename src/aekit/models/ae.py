"""The deterministic autoencoder family: plain (``ae``, ``deep-ae``, ``conv-ae``), denoising (``dae``) and
sparse (``sparse-ae``) are one module with different options.

- the code: a dense layer of ``latent_dim`` units after the body (``code=dense``, its activation
  ``code_activation``: the shallow Keras model uses ReLU), or the conv body's last map itself (``code=conv``,
  shape (D, h, w): the Keras article's 7x7x1 code, the QuickDraw article's 3x3x64).
- denoising: ``noise`` corrupts the input in training only; the loss compares with the clean input
  (Vincent et al. 2008).
- sparse: a penalty on the code weighted by ``sparsity``. ``l1``: sum |z| per image, the activity regulariser
  of the Keras article; ``kl``: sum_j KL(rho || rho_j) with rho_j the mean activation of code unit j over the
  batch and a sigmoid code (Ng, "Sparse autoencoder", CS294A notes 2011). The weight is per pixel, as Keras's
  regulariser weighs against its per-pixel mean loss: aekit's losses are summed over the pixels, so the penalty
  is multiplied by their number. ``stats["activation"]`` is the mean |code value|, ``stats["sparsity_zero_frac"]``
  the fraction of code values that are near zero (see :func:`zero_fraction`), reported for every model here.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..options import opt
from ..registry import register
from .base import ACTIVATIONS, Autoencoder, ModelConfig, Output
from .blocks import BodyConfig, activation, build_body

CODE_ACTIVATIONS = ("linear", *ACTIVATIONS, "sigmoid", "softplus")
ZERO_TOL = 0.01  # a code value is "near zero" below this fraction of the batch's largest |value|


@dataclass(frozen=True)
class AEConfig(BodyConfig):
    code: str = opt("dense", "the code: dense (a layer of latent_dim units after the body) or conv (the last conv map "
                    "itself, shape (filters[-1], h, w): needs arch=conv; latent_dim follows filters[-1])",
                    choices=("dense", "conv"))
    code_activation: str = opt("linear", "activation of the code (the Keras article's codes: relu; KL sparsity: sigmoid)",
                               choices=CODE_ACTIVATIONS)
    code_norm: bool = opt(False, "batch normalisation of the code before its activation: every unit starts centred on "
                          "the data, so no ReLU code unit is dead from the first step (sparse-ae)")
    sparsity: float = opt(0.0, "weight of the sparsity penalty on the code, per pixel as Keras's activity regulariser "
                          "against its mean loss (aekit sums the loss over pixels, so the penalty is multiplied by "
                          "their number); 0: off")
    sparsity_penalty: str = opt("l1", "sparsity penalty: l1 = sum |z| per image (Keras); kl = sum over code units of "
                                "KL(rho || unit's mean activation in the batch) (Ng's sparse AE; needs "
                                "code_activation sigmoid)", choices=("l1", "kl"))
    sparsity_target: float = opt(0.05, "rho, the target mean activation of each code unit (sparsity_penalty kl)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.code not in ("dense", "conv"):
            raise ConfigError(f"code must be 'dense' or 'conv', got {self.code!r}", param="code")
        if self.code_activation not in CODE_ACTIVATIONS:
            raise ConfigError(f"code_activation must be one of {', '.join(CODE_ACTIVATIONS)}, got {self.code_activation!r}",
                              param="code_activation")
        if not self.sparsity >= 0:
            raise ConfigError(f"sparsity must be >= 0, got {self.sparsity}", param="sparsity")
        if self.sparsity_penalty not in ("l1", "kl"):
            raise ConfigError(f"sparsity_penalty must be 'l1' or 'kl', got {self.sparsity_penalty!r}", param="sparsity_penalty")
        if not 0 < self.sparsity_target < 1:
            raise ConfigError(f"sparsity_target must be in (0, 1), got {self.sparsity_target}", param="sparsity_target")
        if self.sparsity_penalty == "kl" and self.sparsity > 0 and self.code_activation != "sigmoid":
            raise ConfigError("sparsity_penalty kl needs code_activation sigmoid (it compares mean activations in (0, 1) "
                              f"with rho), got {self.code_activation}", param=("sparsity_penalty", "code_activation"))
        if self.code == "conv":
            if self.arch != "conv":
                raise ConfigError("code conv needs arch=conv (the code is the conv body's last map)", param=("code", "arch"))
            d, default = self.filters[-1], LATENT_DEFAULT
            if self.latent_dim not in (d, default):
                raise ConfigError(f"latent_dim {self.latent_dim} does not apply with code conv: the code is the last conv "
                                  f"map, filters[-1] = {d} channels; leave it out or set it to {d}", param="latent_dim")
            object.__setattr__(self, "latent_dim", d)  # the recorded config says what the code is

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "AEConfig":
        # A config.json written before the sparsity weight was per pixel names every field of that time and none of
        # the later ones; its weight was per image: convert it, so an old run scores and resumes as it trained.
        cfg = super().from_dict(values)
        if LEGACY_FIELDS <= set(values) and "sparsity_penalty" not in values and cfg.sparsity > 0:
            scale = math.prod(cfg.input_shape) if cfg.loss in SUMMED else 1
            cfg = dataclasses.replace(cfg, sparsity=cfg.sparsity / scale)
        return cfg


LATENT_DEFAULT = ModelConfig.__dataclass_fields__["latent_dim"].default
SUMMED = ("bce", "mse")  # losses summed over pixels (rmse is already a per-pixel mean)
LEGACY_FIELDS = frozenset(("input_shape", "latent_dim", "loss", "noise", "arch", "hidden_dims", "filters", "kernel_sizes",
                           "strides", "encoder", "decoder", "activation", "batch_norm", "dropout", "sparsity"))


def zero_fraction(z: torch.Tensor) -> torch.Tensor:
    """Fraction of the code values in a batch (B, ...) whose |value| is under ZERO_TOL of the batch's largest:
    relative, so scaling a code down (and the decoder up) cannot fake sparsity."""
    a = z.detach().abs()
    return (a <= ZERO_TOL * a.max()).float().mean()


@register("sparse-ae", "autoencoder with an L1 activity penalty on a batch-normalised ReLU code (Keras article)",
          sparsity=1e-2, code_activation="relu", code_norm=True, hidden_dims=(512, 256))
@register("dae", "denoising autoencoder: gaussian/salt-pepper/mask noise on inputs in training", noise="gaussian:0.5",
          hidden_dims=(512, 256))
@register(
    "conv-ae", "strided-conv encoder and transposed-conv decoder (Generative Deep Learning style)",
    arch="conv", activation="leaky_relu",
)
@register("deep-ae", "dense autoencoder with several layers, 512-256 by default", hidden_dims=(512, 256))
@register("ae", "dense autoencoder with one hidden code layer (the shallow Keras model)", hidden_dims=())
class AE(Autoencoder):
    Config = AEConfig
    tiny_options = {"filters": (8, 16), "kernel_sizes": (3, 3), "strides": (2, 2), "hidden_dims": (32,)}

    def __init__(self, config: AEConfig) -> None:
        super().__init__(config)
        # a subclass with a config of its own (wae-mmd) keeps the plain linear dense code
        mine = isinstance(config, AEConfig)
        code, code_act, norm = (config.code, config.code_activation, config.code_norm) if mine else ("dense", "linear", False)
        self.conv_code = code == "conv"
        self.body = build_body(config, code_act if self.conv_code else None, code_norm=norm)
        # a conv code is the body's last map; a dense one is a linear layer (+ batch norm, activation) on the features
        self.to_code = nn.Identity() if self.conv_code else nn.Linear(self.body.feature_dim, config.latent_dim)
        self.code_norm = nn.BatchNorm1d(config.latent_dim) if norm and not self.conv_code else nn.Identity()
        self.code_act = nn.Identity() if self.conv_code else activation(code_act, config.leaky_slope)
        c, h, w = config.input_shape
        self.penalty_scale = c * h * w if config.loss in SUMMED else 1  # per-pixel weight -> the loss's units

    @property
    def code_shape(self) -> tuple[int, ...]:
        return tuple(self.body.code_shape) if self.conv_code else (self.config.latent_dim,)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.code_act(self.code_norm(self.to_code(self.body.features(x))))  # (B, *code_shape)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.body.decoder(z)  # (B, C, H, W)

    def sparsity_penalty(self, z: torch.Tensor) -> torch.Tensor:
        """The unweighted penalty of codes z (B, *code_shape): mean over the batch of sum |z| (l1), or
        sum_j KL(rho || rho_j) over code units j with rho_j their mean activation in the batch (kl; Ng 2011)."""
        flat = z.flatten(1)  # (B, code_size)
        if self.config.sparsity_penalty == "l1":
            return flat.abs().sum(1).mean()
        rho = self.config.sparsity_target
        rho_hat = flat.mean(0).clamp(1e-6, 1 - 1e-6)  # (code_size,)
        return (rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))).sum()

    def forward(self, x: torch.Tensor) -> Output:
        z = self.encode(self.corrupt(x))  # (B, *code_shape)
        logits = self.decode_logits(z)
        terms, stats = self.reconstruction_terms(logits, x)  # against the clean input
        if self.config.sparsity > 0:
            terms["sparsity"] = self.config.sparsity * self.penalty_scale * self.sparsity_penalty(z)
        if not self.wants_stats():  # a training step whose diagnostics are not read
            return Output(loss=sum(terms.values()), terms=terms, x_hat=None, z=z, stats=stats)
        stats["activation"] = z.detach().abs().mean()
        stats["sparsity_zero_frac"] = zero_fraction(z)
        return Output(loss=sum(terms.values()), terms=terms, x_hat=torch.sigmoid(logits), z=z, stats=stats)


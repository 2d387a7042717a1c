"""The deterministic autoencoder family: plain (``ae``, ``deep-ae``, ``conv-ae``), denoising (``dae``) and
sparse (``sparse-ae``) are one module with different options.

- denoising: ``noise`` corrupts the input in training only; the loss compares with the clean input
  (Vincent et al. 2008).
- sparse: an L1 penalty on the code, ``sparsity * sum|z|`` per image (the activity regulariser of the Keras
  article); ``stats["activation"]`` reports the mean absolute code value.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from ..options import opt
from ..registry import register
from .base import Autoencoder, Output
from .blocks import BodyConfig, build_body


@dataclass(frozen=True)
class AEConfig(BodyConfig):
    sparsity: float = opt(0.0, "L1 weight on the code (a sparse autoencoder)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sparsity < 0:
            raise ConfigError(f"sparsity must be >= 0, got {self.sparsity}", param="sparsity")


@register("sparse-ae", "autoencoder with an L1 activity penalty on the code", sparsity=1e-4, hidden_dims=(512, 256))
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
        self.body = build_body(config)
        self.to_code = nn.Linear(self.body.feature_dim, config.latent_dim)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_code(self.body.features(x))  # (B, D)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.body.decoder(z)  # (B, C, H, W)

    def forward(self, x: torch.Tensor) -> Output:
        z = self.encode(self.corrupt(x))
        logits = self.decode_logits(z)
        terms, stats = self.reconstruction_terms(logits, x)  # against the clean input
        if self.config.sparsity > 0:
            terms["sparsity"] = self.config.sparsity * z.abs().sum(1).mean()
        stats["activation"] = z.detach().abs().mean()
        return Output(loss=sum(terms.values()), terms=terms, x_hat=torch.sigmoid(logits), z=z, stats=stats)

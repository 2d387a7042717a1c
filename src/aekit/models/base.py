"""The model contract every aekit autoencoder follows.

A model is an ``nn.Module`` whose only constructor argument is a frozen config dataclass. It offers
``encode`` (deterministic in eval mode), ``decode`` (values in [0, 1]), ``forward -> Output`` (the model owns
its loss) and ``sample``. Loss terms are summed over pixels and averaged over the batch, so BCE terms are in
nats per image; ``terms["mse"]`` is always the per-pixel mean squared error, reported for every model.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError, NoPriorError

LOSSES = ("mse", "rmse", "bce")
ACTIVATIONS = ("relu", "leaky_relu", "selu", "elu", "tanh", "gelu")


@dataclass(frozen=True)
class Output:
    """What ``forward`` returns: the scalar loss, its named terms (detached diagnostics included), the
    reconstruction in [0, 1] and the code used to make it."""

    loss: torch.Tensor
    terms: dict[str, torch.Tensor]
    x_hat: torch.Tensor
    z: torch.Tensor


@dataclass(frozen=True)
class ModelConfig:
    """Fields every model shares. Subclasses add their own; all fields have defaults."""

    input_shape: tuple[int, int, int] = (1, 28, 28)
    latent_dim: int = 2
    loss: str = "bce"
    noise: str = "none"  # training-time input corruption; "gaussian:0.5" makes a denoising autoencoder

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # JSON gives lists back; keep tuples so configs stay hashable
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
        if len(self.input_shape) != 3 or min(self.input_shape) < 1:
            raise ConfigError(f"input_shape must be (C, H, W) with positive sizes, got {self.input_shape}")
        if self.latent_dim < 1:
            raise ConfigError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if self.loss not in LOSSES:
            raise ConfigError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        from ..data.noise import parse_noise

        parse_noise(self.noise)  # raises ConfigError on a bad spec

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        hints = typing.get_type_hints(cls)
        clean = {}
        for key, value in values.items():
            if isinstance(value, list) or (hints.get(key) and "tuple" in str(hints[key]) and isinstance(value, (list, tuple))):
                value = tuple(value)
            clean[key] = value
        try:
            return cls(**clean)
        except TypeError as exc:
            raise ConfigError(f"bad {cls.__name__}: {exc}") from None


class Autoencoder(nn.Module):
    """Base class: subclasses set ``Config``, build layers in ``__init__`` and implement
    ``encode``, ``decode_logits`` and ``forward``."""

    Config: ClassVar[type[ModelConfig]] = ModelConfig
    has_prior: ClassVar[bool] = False
    name: str = "autoencoder"  # set by the registry to the registered (preset) name

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if not isinstance(config, self.Config):
            raise ConfigError(f"{type(self).__name__} takes a {self.Config.__name__}, got {type(config).__name__}")
        self.config = config
        from ..data.noise import parse_noise

        self.noise = parse_noise(config.noise)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.config.input_shape)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, D)
        raise NotImplementedError  # abstract: every registered model overrides it

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:  # (B, D) -> (B, C, H, W) pre-sigmoid
        raise NotImplementedError  # abstract: every registered model overrides it

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decode_logits(z))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NoPriorError(
            f"model {self.name!r} has no prior to sample from; use a VAE, or aekit.explore's fitted-Gaussian sampler"
        )

    def on_epoch_start(self, epoch: int, max_epochs: int) -> None:
        """Called by the trainer before each training epoch (schedules such as KL warm-up); no-op here."""

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        """Training-time input corruption (denoising autoencoders); identity in eval mode."""
        return self.noise(x) if self.training and self.noise.kind != "none" else x

    def reconstruction_terms(self, logits: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``recon`` in the configured loss (summed over pixels, mean over batch) and per-pixel ``mse``."""
        x_hat = torch.sigmoid(logits)
        sq = (x_hat - x).pow(2).flatten(1)  # (B, P)
        mse = sq.mean()
        if self.config.loss == "bce":
            # with logits: exact and stable where sigmoid saturates
            recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1).mean()
        elif self.config.loss == "mse":
            recon = sq.sum(1).mean()
        else:  # rmse, as the Keras articles' custom loss: root of the per-image mean squared error
            recon = sq.mean(1).clamp_min(1e-12).sqrt().mean()
        return {"recon": recon, "mse": mse.detach()}

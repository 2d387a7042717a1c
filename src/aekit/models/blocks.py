"""Layer stacks shared by the model families: a dense body and a convolutional body.

A body turns an image into a flat feature vector (``features``, width ``feature_dim``) and a code back into
pre-sigmoid logits of the image shape (``decoder``). The families put their own heads between the two
(a linear code for autoencoders, mean and log-variance for VAEs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from ..options import opt
from .base import ACTIVATIONS, ModelConfig


def activation(name: str) -> nn.Module:
    return {
        "relu": nn.ReLU,
        "leaky_relu": lambda: nn.LeakyReLU(0.2),
        "selu": nn.SELU,
        "elu": nn.ELU,
        "tanh": nn.Tanh,
        "gelu": nn.GELU,
    }[name]()


@dataclass(frozen=True)
class BodyConfig(ModelConfig):
    """Architecture fields: ``arch`` picks the dense or the convolutional body."""

    arch: str = opt("dense", "body: dense layers or a conv stack", choices=("dense", "conv"))
    hidden_dims: tuple[int, ...] = opt((512, 256), "dense layer widths", metavar="512,256")
    filters: tuple[int, ...] = opt((32, 64, 64, 64), "conv channels per layer", metavar="32,64,64,64")
    kernel_sizes: tuple[int, ...] = opt((3, 3, 3, 3), "conv kernel size per layer", metavar="3,3,3,3")
    strides: tuple[int, ...] = opt((1, 2, 2, 1), "conv stride per layer", metavar="1,2,2,1")
    encoder: str = opt("strided", "conv encoder: strided convs, or stride-1 conv + max-pool", choices=("strided", "maxpool"))
    decoder: str = opt("transpose", "conv decoder: transposed convs, or upsampling + conv", choices=("transpose", "upsample"))
    activation: str = opt("relu", "hidden activation", choices=ACTIVATIONS)
    batch_norm: bool = opt(False, "batch normalisation after each hidden layer")
    dropout: float = opt(0.0, "dropout after each hidden layer")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.arch not in ("dense", "conv"):
            raise ConfigError(f"arch must be 'dense' or 'conv', got {self.arch!r}", param="arch")
        if any(int(h) < 1 for h in self.hidden_dims):
            raise ConfigError(f"hidden_dims must be positive, got {self.hidden_dims}", param="hidden_dims")
        if self.arch == "conv":
            n = len(self.filters)
            if n == 0 or len(self.kernel_sizes) != n or len(self.strides) != n:
                raise ConfigError(
                    f"filters, kernel_sizes and strides need one entry per conv layer, got "
                    f"{len(self.filters)}, {len(self.kernel_sizes)}, {len(self.strides)}"
                )
            if min(self.filters) < 1 or min(self.kernel_sizes) < 1 or min(self.strides) < 1:
                raise ConfigError("filters, kernel_sizes and strides must be positive")
        if self.encoder not in ("strided", "maxpool"):
            raise ConfigError(f"encoder must be 'strided' or 'maxpool', got {self.encoder!r}", param="encoder")
        if self.decoder not in ("transpose", "upsample"):
            raise ConfigError(f"decoder must be 'transpose' or 'upsample', got {self.decoder!r}", param="decoder")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}", param="activation")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}", param="dropout")


def mlp(dims: list[int], cfg: BodyConfig, last_plain: bool = True) -> nn.Sequential:
    """Linear layers through ``dims``; activation (+BN, dropout) after each but the last when ``last_plain``."""
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(d_in, d_out))
        if last_plain and i == len(dims) - 2:
            break
        if cfg.batch_norm:
            layers.append(nn.BatchNorm1d(d_out))
        layers.append(activation(cfg.activation))
        if cfg.dropout:
            layers.append(nn.Dropout(cfg.dropout))
    return nn.Sequential(*layers)


class DenseBody(nn.Module):
    """Flatten -> hidden_dims (features) ... code ... reversed hidden_dims -> C*H*W logits."""

    def __init__(self, cfg: BodyConfig) -> None:
        super().__init__()
        c, h, w = cfg.input_shape
        n_in = c * h * w
        hidden = [int(d) for d in cfg.hidden_dims]
        self.features = nn.Sequential(nn.Flatten(), *mlp([n_in, *hidden], cfg, last_plain=False))
        self.feature_dim = hidden[-1] if hidden else n_in
        self.decoder = nn.Sequential(
            *mlp([cfg.latent_dim, *reversed(hidden), n_in], cfg, last_plain=True),
            nn.Unflatten(1, (c, h, w)),
        )


def _conv_out(size: int, k: int, s: int, p: int) -> int:
    return (size + 2 * p - k) // s + 1


class ConvBody(nn.Module):
    """Conv stack -> flatten (features); Linear -> un-flatten -> mirrored stack -> C-channel logits.

    The decoder mirrors the encoder layer by layer and aims each layer at the exact spatial size the matching
    encoder layer received, so any (H, W) round-trips (transposed convs get the output_padding they need;
    upsampling layers upsample to an explicit size).
    """

    def __init__(self, cfg: BodyConfig) -> None:
        super().__init__()
        c, h, w = cfg.input_shape
        ks, ss, fs = list(cfg.kernel_sizes), list(cfg.strides), list(cfg.filters)
        sizes = [(h, w)]  # spatial size entering each encoder layer, then the final one
        enc: list[nn.Module] = []
        channels = c
        for f, k, s in zip(fs, ks, ss):
            p = k // 2
            if cfg.encoder == "maxpool":
                enc.append(nn.Conv2d(channels, f, k, stride=1, padding=p))
                hh, ww = _conv_out(sizes[-1][0], k, 1, p), _conv_out(sizes[-1][1], k, 1, p)
                enc += self._post(f, cfg)
                if s > 1:
                    enc.append(nn.MaxPool2d(s, ceil_mode=True))  # ceil: keep a border row, never drop one
                    hh, ww = math.ceil(hh / s), math.ceil(ww / s)
            else:
                enc.append(nn.Conv2d(channels, f, k, stride=s, padding=p))
                enc += self._post(f, cfg)
                hh, ww = _conv_out(sizes[-1][0], k, s, p), _conv_out(sizes[-1][1], k, s, p)
            if hh < 1 or ww < 1:
                raise ConfigError(f"conv stack shrinks a {h}x{w} input to nothing; use fewer or smaller strides")
            sizes.append((hh, ww))
            channels = f
        self.features = nn.Sequential(*enc, nn.Flatten())
        self.last_shape = (channels, *sizes[-1])  # (C', H', W') at the end of the encoder
        self.feature_dim = channels * sizes[-1][0] * sizes[-1][1]

        dec: list[nn.Module] = [nn.Linear(cfg.latent_dim, self.feature_dim), nn.Unflatten(1, self.last_shape)]
        n = len(fs)
        for i in reversed(range(n)):  # mirror: layer i maps sizes[i+1] -> sizes[i]
            c_in, c_out = fs[i], (fs[i - 1] if i > 0 else c)
            k, s, p = ks[i], ss[i], ks[i] // 2
            (h_in, w_in), (h_out, w_out) = sizes[i + 1], sizes[i]
            if cfg.decoder == "upsample":
                if (h_in, w_in) != (h_out, w_out):
                    dec.append(nn.Upsample(size=(h_out, w_out), mode="nearest"))
                dec.append(nn.Conv2d(c_in, c_out, k, padding="same"))
            else:
                op = (h_out - ((h_in - 1) * s - 2 * p + k), w_out - ((w_in - 1) * s - 2 * p + k))
                if not all(0 <= o < max(s, 1) or (s == 1 and o == 0) for o in op):
                    raise ConfigError(
                        f"a transposed conv cannot map {h_in}x{w_in} back to {h_out}x{w_out} with kernel {k}, "
                        f"stride {s}; use odd kernel sizes or decoder=upsample"
                    )
                dec.append(nn.ConvTranspose2d(c_in, c_out, k, stride=s, padding=p, output_padding=op))
            if i > 0:
                dec += self._post(c_out, cfg)
        self.decoder = nn.Sequential(*dec)

    @staticmethod
    def _post(channels: int, cfg: BodyConfig) -> list[nn.Module]:
        layers: list[nn.Module] = []
        if cfg.batch_norm:
            layers.append(nn.BatchNorm2d(channels))
        layers.append(activation(cfg.activation))
        if cfg.dropout:
            layers.append(nn.Dropout(cfg.dropout))
        return layers


def build_body(cfg: BodyConfig) -> DenseBody | ConvBody:
    return ConvBody(cfg) if cfg.arch == "conv" else DenseBody(cfg)

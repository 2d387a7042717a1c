"""Layer stacks shared by the model families: a dense body and a convolutional body.

A body turns an image into a flat feature vector (``features``, width ``feature_dim``) and a code back into
pre-sigmoid logits of the image shape (``decoder``). The families put their own heads between the two
(a linear code for autoencoders, mean and log-variance for VAEs). A conv body can instead end in its code: the
last conv map itself, ``code_shape = (D, h, w)`` (the 7x7x1 code of the Keras article, QuickDraw's 3x3x64), and
its decoder then starts from that map.

Convolutions pad as Keras's ``padding="same"``: a layer of stride s maps a side n to ceil(n / s) whatever the
kernel size (an even kernel puts its odd padding row on the bottom/right, as TensorFlow does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError
from ..options import opt
from .base import ACTIVATIONS, ModelConfig


def activation(name: str, slope: float = 0.2) -> nn.Module:
    """The activation ``name`` (one of :data:`ACTIVATIONS`, or ``linear``, ``sigmoid``, ``softplus`` for codes);
    ``slope`` is leaky_relu's negative slope."""
    if name == "leaky_relu":
        return nn.LeakyReLU(slope)
    return {
        "linear": nn.Identity,
        "relu": nn.ReLU,
        "selu": nn.SELU,
        "elu": nn.ELU,
        "tanh": nn.Tanh,
        "gelu": nn.GELU,
        "sigmoid": nn.Sigmoid,
        "softplus": nn.Softplus,
    }[name]()


@dataclass(frozen=True)
class BodyConfig(ModelConfig):
    """Architecture fields: ``arch`` picks the dense or the convolutional body."""

    arch: str = opt("dense", "body: dense layers or a conv stack", choices=("dense", "conv"))
    hidden_dims: tuple[int, ...] = opt((512, 256), "dense layer widths, encoder order; the decoder mirrors them (arch=dense)",
                                       metavar="512,256")
    filters: tuple[int, ...] = opt((32, 64, 64, 64), "conv channels per encoder layer (arch=conv)", metavar="32,64,64,64")
    kernel_sizes: tuple[int, ...] = opt((3, 3, 3, 3), "conv kernel size per layer, one per filters entry; any size "
                                        "pads like Keras's 'same' (arch=conv)", metavar="3,3,3,3")
    strides: tuple[int, ...] = opt((1, 2, 2, 1), "downsampling per layer, one per filters entry: the conv's stride "
                                   "(encoder=strided) or the max-pool size after it (encoder=maxpool); a side n becomes "
                                   "ceil(n/s) (arch=conv)", metavar="1,2,2,1")
    decoder_filters: tuple[int, ...] = opt((), "conv decoder channels, decoder order, one per layer but the last (which "
                                           "makes the image channels); empty: the encoder's filters mirrored (arch=conv)",
                                           metavar="64,32,32")
    encoder: str = opt("strided", "conv encoder: strided convs, or stride-1 conv + max-pool", choices=("strided", "maxpool"))
    pool_padding: str = opt("same", "max-pool border (encoder=maxpool): same keeps a partial window (7 -> 4, Keras "
                            "padding='same'), valid drops it (7 -> 3, Keras's default)", choices=("same", "valid"))
    decoder: str = opt("transpose", "conv decoder: transposed convs, or upsampling + conv", choices=("transpose", "upsample"))
    activation: str = opt("relu", "hidden activation", choices=ACTIVATIONS)
    leaky_slope: float = opt(0.2, "negative slope of leaky_relu (Keras's LeakyReLU default: 0.3)")
    batch_norm: bool = opt(False, "batch normalisation after each hidden layer, before its activation")
    dropout: float = opt(0.0, "dropout probability after each hidden layer's activation, in [0, 1); 0: off")

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
            if self.decoder_filters and len(self.decoder_filters) != n - 1:
                raise ConfigError(f"decoder_filters needs one entry per decoder layer but the last ({n - 1} for {n} conv "
                                  f"layers), got {len(self.decoder_filters)}", param="decoder_filters")
        if any(int(f) < 1 for f in self.decoder_filters):
            raise ConfigError(f"decoder_filters must be positive, got {self.decoder_filters}", param="decoder_filters")
        if self.encoder not in ("strided", "maxpool"):
            raise ConfigError(f"encoder must be 'strided' or 'maxpool', got {self.encoder!r}", param="encoder")
        if self.pool_padding not in ("same", "valid"):
            raise ConfigError(f"pool_padding must be 'same' or 'valid', got {self.pool_padding!r}", param="pool_padding")
        if self.decoder not in ("transpose", "upsample"):
            raise ConfigError(f"decoder must be 'transpose' or 'upsample', got {self.decoder!r}", param="decoder")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}", param="activation")
        if not self.leaky_slope >= 0:
            raise ConfigError(f"leaky_slope must be >= 0, got {self.leaky_slope}", param="leaky_slope")
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
        layers.append(activation(cfg.activation, cfg.leaky_slope))
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


class SameConv2d(nn.Conv2d):
    """A conv with Keras's ``padding="same"`` for an even kernel: output ceil(n / stride), the odd padding row
    and column on the bottom/right as TensorFlow puts them. nn.Conv2d pads both sides alike, so k // 2 grows a
    side (14 -> 15 for k = 2), and its own ``padding="same"`` takes no stride and copies the input with a warning."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int, size: tuple[int, int]) -> None:
        super().__init__(c_in, c_out, k, stride=stride)
        (t, b), (l, r) = (_same_pads(n, k, stride) for n in size)
        self.pads = (l, r, t, b)  # F.pad order: last axis first

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C', ceil(H/s), ceil(W/s))
        return super().forward(F.pad(x, self.pads))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", pads={self.pads}"


def _same_pads(n: int, k: int, s: int) -> tuple[int, int]:
    """(before, after) zero padding of a side n for Keras's "same": the output is ceil(n / s)."""
    total = max((math.ceil(n / s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def same_conv(c_in: int, c_out: int, k: int, stride: int, size: tuple[int, int]) -> nn.Conv2d:
    """A conv mapping a (H, W) map to (ceil(H/s), ceil(W/s)): odd kernels pad k // 2 on each side (a plain
    nn.Conv2d, as aekit has always built them), even kernels pad as Keras does (:class:`SameConv2d`)."""
    if k % 2:
        return nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2)
    return SameConv2d(c_in, c_out, k, stride, size)


class CroppedConvTranspose2d(nn.ConvTranspose2d):
    """A transposed conv whose output is cropped by ``crop`` = (top, bottom, left, right): the one case padding
    cannot reach the target size (stride 1 with an even kernel makes one row too many)."""

    def __init__(self, *args, crop: tuple[int, int, int, int], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.crop = crop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)  # (B, C', H' + t + b, W' + l + r)
        t, b, l, r = self.crop
        return y[..., t : y.shape[-2] - b, l : y.shape[-1] - r]

    def extra_repr(self) -> str:
        return super().extra_repr() + f", crop={self.crop}"


def _transpose_fit(n_in: int, n_out: int, k: int, s: int) -> tuple[int, int, int, int] | None:
    """(padding, output_padding, crop before, crop after) that take a transposed conv (kernel k, stride s) from
    a side n_in to n_out: aekit's symmetric k // 2 when it reaches n_out (every odd kernel of a 'same' encoder),
    else the least padding that does (Keras's 'valid' 3 -> 7, even kernels); None when nothing does."""
    p = k // 2
    op = n_out - ((n_in - 1) * s - 2 * p + k)
    if 0 <= op < s:
        return p, op, 0, 0
    full = (n_in - 1) * s + k  # the output with no padding
    if full < n_out:
        return (0, n_out - full, 0, 0) if n_out - full < s else None
    excess = full - n_out  # rows to remove: 2 * padding - output_padding, plus a crop where that cannot
    if excess % 2 == 0:
        return excess // 2, 0, 0, 0
    if s > 1:
        return excess // 2 + 1, 1, 0, 0
    return excess // 2, 0, 0, 1


class ConvBody(nn.Module):
    """Conv stack -> flatten (features); Linear -> un-flatten -> mirrored stack -> C-channel logits.

    The decoder mirrors the encoder layer by layer (kernel sizes, strides; channels from ``decoder_filters``
    or the encoder's reversed) and aims each layer at the exact spatial size the matching encoder layer
    received, so any (H, W) round-trips (transposed convs get the padding they need; upsampling layers upsample
    to an explicit size).

    ``code_activation`` None: the family puts a dense code after the flattened features. A name: the last conv
    map is the code, ``code_shape`` = (filters[-1], h, w), after that activation (batch norm before it only with
    ``code_norm``; no dropout); ``features`` returns it unflattened and the decoder starts from it.
    """

    def __init__(self, cfg: BodyConfig, code_activation: str | None = None, code_norm: bool = False) -> None:
        super().__init__()
        c, h, w = cfg.input_shape
        ks, ss, fs = list(cfg.kernel_sizes), list(cfg.strides), list(cfg.filters)
        n = len(fs)
        conv_code = code_activation is not None
        sizes = [(h, w)]  # spatial size entering each encoder layer, then the final one
        enc: list[nn.Module] = []
        channels = c
        for i, (f, k, s) in enumerate(zip(fs, ks, ss)):
            if conv_code and i == n - 1:  # the code layer
                post = [*([nn.BatchNorm2d(f)] if code_norm else []), activation(code_activation, cfg.leaky_slope)]
            else:
                post = self._post(f, cfg)
            hh, ww = sizes[-1]
            if cfg.encoder == "maxpool":
                enc += [same_conv(channels, f, k, 1, (hh, ww)), *post]
                if s > 1:
                    ceil = cfg.pool_padding == "same"  # ceil: keep a border row, never drop one
                    enc.append(nn.MaxPool2d(s, ceil_mode=True) if ceil else nn.MaxPool2d(s))
                    hh, ww = (math.ceil(hh / s), math.ceil(ww / s)) if ceil else (hh // s, ww // s)
            else:
                enc += [same_conv(channels, f, k, s, (hh, ww)), *post]
                hh, ww = math.ceil(hh / s), math.ceil(ww / s)
            if hh < 1 or ww < 1:
                raise ConfigError(f"conv stack shrinks a {h}x{w} input to nothing; use fewer or smaller strides")
            sizes.append((hh, ww))
            channels = f
        self.features = nn.Sequential(*enc) if conv_code else nn.Sequential(*enc, nn.Flatten())
        self.last_shape = (channels, *sizes[-1])  # (C', H', W') at the end of the encoder
        self.feature_dim = channels * sizes[-1][0] * sizes[-1][1]
        self.code_shape = self.last_shape if conv_code else None

        widths = [fs[-1], *(cfg.decoder_filters or reversed(fs[:-1])), c]  # channels through the decoder
        dec: list[nn.Module] = [] if conv_code else [nn.Linear(cfg.latent_dim, self.feature_dim),
                                                     nn.Unflatten(1, self.last_shape)]
        for j, i in enumerate(reversed(range(n))):  # mirror: decoder layer j undoes encoder layer i, sizes[i+1] -> sizes[i]
            c_in, c_out = widths[j], widths[j + 1]
            k, s = ks[i], ss[i]
            (h_in, w_in), (h_out, w_out) = sizes[i + 1], sizes[i]
            if cfg.decoder == "upsample":
                if (h_in, w_in) != (h_out, w_out):
                    dec.append(nn.Upsample(size=(h_out, w_out), mode="nearest"))
                dec.append(nn.Conv2d(c_in, c_out, k, padding="same") if k % 2 else SameConv2d(c_in, c_out, k, 1, (h_out, w_out)))
            else:
                fit_h, fit_w = _transpose_fit(h_in, h_out, k, s), _transpose_fit(w_in, w_out, k, s)
                if fit_h is None or fit_w is None:
                    raise ConfigError(f"a transposed conv cannot map {h_in}x{w_in} back to {h_out}x{w_out} with kernel "
                                      f"{k}, stride {s}; use decoder=upsample"
                                      + (" or pool_padding=same" if cfg.pool_padding == "valid" else ""),
                                      param=("decoder", "pool_padding"))
                pad, op = (fit_h[0], fit_w[0]), (fit_h[1], fit_w[1])
                crop = (fit_h[2], fit_h[3], fit_w[2], fit_w[3])
                if any(crop):
                    dec.append(CroppedConvTranspose2d(c_in, c_out, k, stride=s, padding=pad, output_padding=op, crop=crop))
                else:
                    dec.append(nn.ConvTranspose2d(c_in, c_out, k, stride=s, padding=pad, output_padding=op))
            if i > 0:
                dec += self._post(c_out, cfg)
        self.decoder = nn.Sequential(*dec)

    @staticmethod
    def _post(channels: int, cfg: BodyConfig) -> list[nn.Module]:
        layers: list[nn.Module] = []
        if cfg.batch_norm:
            layers.append(nn.BatchNorm2d(channels))
        layers.append(activation(cfg.activation, cfg.leaky_slope))
        if cfg.dropout:
            layers.append(nn.Dropout(cfg.dropout))
        return layers


def build_body(cfg: BodyConfig, code_activation: str | None = None, code_norm: bool = False) -> DenseBody | ConvBody:
    """The body ``cfg.arch`` names; ``code_activation`` (conv only): the last conv map is the code (see ConvBody)."""
    if cfg.arch == "conv":
        return ConvBody(cfg, code_activation, code_norm)
    if code_activation is not None:
        raise ConfigError("a conv code needs arch=conv", param=("code", "arch"))
    return DenseBody(cfg)

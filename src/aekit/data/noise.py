"""Input corruption for denoising autoencoders (Vincent et al. 2008) and for plots of it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from aekit.errors import ConfigError

KINDS = ("none", "gaussian", "saltpepper", "mask")
_FORMS = "none, gaussian:STD, gaussian:STD,MEAN, saltpepper:FRACTION or mask:FRACTION"


@dataclass(frozen=True)
class Noise:
    """kind "gaussian": add N(mean, level²) -- mean 0 is the Keras blog's ``x + 0.5 * N(0, 1)`` (gaussian:0.5),
    mean 0.5 the Habr article's ``x + K.random_normal(shape, 0.5, 0.5)`` (gaussian:0.5,0.5), which also brightens;
    "saltpepper": set a `level` fraction of pixels to 0 or 1 (half each); "mask": set a `level` fraction of
    pixels to 0. Pixel choices are shared across channels. The result is clipped to [0, 1]; level 0 and mean 0
    (or kind "none") return x itself."""

    kind: str = "none"
    level: float = 0.0
    mean: float = 0.0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ConfigError(f"unknown noise kind {self.kind!r}; use {_FORMS}")
        if not isinstance(self.level, (int, float)) or not math.isfinite(self.level) or self.level < 0:
            raise ConfigError(f"noise level must be a finite number >= 0, got {self.level!r}")
        if self.kind in ("saltpepper", "mask") and self.level > 1:
            raise ConfigError(f"{self.kind} noise level is a fraction of pixels in [0, 1], got {self.level!r}")
        if self.kind == "none" and self.level != 0:
            raise ConfigError(f"noise kind 'none' takes no level, got {self.level!r}")
        if isinstance(self.mean, bool) or not isinstance(self.mean, (int, float)) or not math.isfinite(self.mean):
            raise ConfigError(f"noise mean must be a finite number, got {self.mean!r}")
        if self.kind != "gaussian" and self.mean != 0:
            raise ConfigError(f"only gaussian noise takes a mean (gaussian:STD,MEAN), not {self.kind}")
        object.__setattr__(self, "level", float(self.level))
        object.__setattr__(self, "mean", float(self.mean))

    def __str__(self) -> str:
        if self.kind == "none":
            return "none"
        return f"{self.kind}:{self.level!r}" + (f",{self.mean!r}" if self.mean != 0 else "")

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.kind == "none" or (self.level == 0 and self.mean == 0):
            return x
        # Draw on the generator's device (a CPU generator cannot fill a GPU tensor), then move.
        device = generator.device if generator is not None else x.device

        def rand(shape, normal=False):
            fn = torch.randn if normal else torch.rand
            return fn(shape, generator=generator, device=device, dtype=x.dtype).to(x.device)

        if self.kind == "gaussian":
            return (x + (self.mean + self.level * rand(x.shape, normal=True))).clamp_(0.0, 1.0)
        # (B, 1, H, W) for image batches: one decision per pixel, broadcast over channels.
        shape = (x.shape[0], 1, *x.shape[2:]) if x.ndim == 4 else x.shape
        hit = rand(shape) < self.level
        if self.kind == "mask":
            return x.masked_fill(hit, 0.0).clamp_(0.0, 1.0)
        salt = (rand(shape) < 0.5).to(x.dtype)  # 1 = salt (white), 0 = pepper (black)
        return torch.where(hit, salt, x).clamp_(0.0, 1.0)


def parse_noise(spec: str) -> Noise:
    """"gaussian:0.5" | "gaussian:0.5,0.5" (std, mean) | "saltpepper:0.1" | "mask:0.3" | "none" -> Noise;
    parse_noise(str(n)) == n."""
    if not isinstance(spec, str):
        raise ConfigError(f"noise must be a string like gaussian:0.5, got {spec!r}")
    kind, sep, level = spec.strip().lower().partition(":")
    if kind == "none" and not sep:
        return Noise()
    if kind not in KINDS or kind == "none":
        raise ConfigError(f"unknown noise {spec!r}; use {_FORMS}")
    if not sep:
        raise ConfigError(f"noise {spec!r} needs a level, e.g. {kind}:0.3")
    parts = level.split(",")
    if len(parts) > (2 if kind == "gaussian" else 1):
        form = "gaussian:STD or gaussian:STD,MEAN" if kind == "gaussian" else f"{kind}:FRACTION"
        raise ConfigError(f"noise {spec!r} has too many numbers; use {form}")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ConfigError(f"noise level {level!r} in {spec!r} is not a number; e.g. {kind}:0.3") from None
    return Noise(kind, *values)

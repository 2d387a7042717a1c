"""Training options, as one frozen dataclass stored in the run folder's config.json."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

PRECISIONS = ("32", "bf16-mixed", "16-mixed", "64")
BINARIZE = ("none", "dynamic", "static")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "none"  # "cosine": cosine decay of the learning rate over the epochs
    patience: int = 10  # early stopping on the validation loss; 0 turns it off
    seed: int = 0
    precision: str = "32"
    devices: int = 1
    strategy: str = "auto"  # "ddp" for several processes (gloo on CPU, NCCL on GPUs)
    accelerator: str = "auto"
    binarize: str = "none"  # "dynamic": resample Bernoulli(pixel) every batch; "static": once, seeded
    progress: bool = True

    def __post_init__(self) -> None:
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "devices": self.devices}
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if not self.lr > 0:
            raise ConfigError(f"--lr must be > 0, got {self.lr}")
        if self.patience < 0:
            raise ConfigError(f"--patience must be >= 0, got {self.patience}")
        if str(self.precision) not in PRECISIONS:
            raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        object.__setattr__(self, "precision", str(self.precision))
        if self.binarize not in BINARIZE:
            raise ConfigError(f"--binarize must be one of {', '.join(BINARIZE)}, got {self.binarize!r}")
        if self.schedule not in ("none", "cosine"):
            raise ConfigError(f"--schedule must be 'none' or 'cosine', got {self.schedule!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"unknown training option(s): {', '.join(unknown)}")
        return cls(**values)

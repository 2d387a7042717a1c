"""Training options, as one frozen dataclass stored in the run folder's config.json. Each field's help is its
CLI flag's help (``aekit.options``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..options import from_dict, opt

PRECISIONS = ("auto", "32", "bf16-mixed", "16-mixed", "64")
BINARIZE = ("none", "dynamic", "static")
STRATEGIES = ("auto", "ddp", "ddp_spawn", "fsdp")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
# --logger: the modules each one needs and the aekit extra that installs them (csv: RUN/metrics.csv alone); the
# mlflow logger keeps a SQLite store (train/trainer.py _logger), which takes sqlalchemy (full mlflow has it)
LOGGERS = {"csv": None, "tensorboard": (("tensorboard",), "tensorboard"), "mlflow": (("mlflow", "sqlalchemy"), "mlflow")}


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = opt(20, "training epochs (a family may default to its own count: `aekit models` lists it)")
    batch_size: int = opt(128, "images per batch and process (the global batch is batch-size x devices x num-nodes)")
    lr: float = opt(1e-3, "Adam learning rate")
    weight_decay: float = opt(0.0, "Adam weight decay")
    schedule: str = opt("cosine", "learning-rate schedule: cosine decay to 0 over --epochs (resumed with more epochs: "
                                  "over the new total), or none (constant)",
                        choices=("none", "cosine"))
    grad_clip: float = opt(0.0, "clip each optimizer's gradient norm to this value, 0: off")
    patience: int = opt(10, "early stopping on the validation loss after this many epochs without progress, 0: off; "
                              "without a validation split (--val-fraction 0) none, and the last epoch is kept")
    max_minutes: float = opt(0.0, "time budget: no epoch starts that would end past M minutes of this session's "
                                  "training (judged by the last epoch's time), 0: no limit", metavar="M")
    seed: int = opt(0, "seed of the splits, initial weights and batches")
    precision: str = opt("auto", "numeric precision; auto: bf16-mixed where the hardware computes in bf16 (GPUs of compute "
                                 "capability 8+, CPUs with AVX-512-BF16 or AMX), 16-mixed on older GPUs, else 32 "
                                 "(config.json records it as train.precision_used)", choices=PRECISIONS)
    devices: int = opt(1, "processes (GPUs) per node; several train with DDP")
    num_nodes: int = opt(1, "machines the run spans, --devices processes on each (started by SLURM or torchrun: "
                            "docs/scaling.md)")
    strategy: str = opt("auto", "several processes: ddp (gloo on CPU, NCCL on GPUs)", choices=STRATEGIES)
    accelerator: str = opt("auto", "where to train", choices=ACCELERATORS)
    binarize: str = opt("none", "Bernoulli-binarise the data: resample every batch (dynamic) or once, seeded (static)",
                        choices=BINARIZE)
    weight_ema: float = opt(0.0, "keep an exponential moving average of the weights, with this decay per training "
                                 "batch (e.g. 0.999): validation, checkpoints and the saved model use the average "
                                 "(not vq-vae's codebook --ema-decay); 0: off", metavar="DECAY")
    on_nan: str = opt("stop", "a NaN/infinite loss: stop with a message (keeping the last good checkpoint), or skip "
                              "the batch (counted in metrics.csv)", choices=("stop", "skip"))
    checkpoint_every: int = opt(0, "also save the resume checkpoint (checkpoints/last.ckpt) every N batches, "
                                   "mid-epoch; 0: off", metavar="N")
    checkpoint_minutes: float = opt(10.0, "also save the resume checkpoint every M minutes of training, mid-epoch "
                                          "(it is always saved at the end of each epoch); 0: off", metavar="M")
    progress: bool = opt(True, "progress bar")
    log_epochs: bool = opt(True, "print one line per epoch: losses, loss terms, seconds")
    logger: str = opt("csv", "where the epoch metrics also go; RUN/metrics.csv is always written. tensorboard: "
                             "RUN/tensorboard (extra aekit[tensorboard]); mlflow: a local MLflow store in RUN/mlruns, "
                             "no server (extra aekit[mlflow])", choices=tuple(LOGGERS))

    @classmethod
    def for_model(cls, model, **overrides: Any) -> "TrainConfig":
        """The training defaults of a family (a registered name or a built model): the dataclass defaults with the
        family's own measured ones (``register(..., train=...)``; ``vae``: 40 epochs) and then ``overrides``
        applied. ``aekit train`` starts from the same."""
        from ..registry import get

        return cls.from_dict({**get(model if isinstance(model, str) else model.name).train, **overrides})

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "devices", "num_nodes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}", param=name)
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}", param="lr")
        if not self.weight_decay >= 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}", param="weight_decay")
        if not self.grad_clip >= 0:
            raise ConfigError(f"grad_clip must be >= 0, got {self.grad_clip}", param="grad_clip")
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"seed must be in [0, 2**32), got {self.seed}", param="seed")
        if self.patience < 0:
            raise ConfigError(f"patience must be >= 0, got {self.patience}", param="patience")
        if not self.max_minutes >= 0:  # NaN too
            raise ConfigError(f"max_minutes must be >= 0, got {self.max_minutes}", param="max_minutes")
        if not 0 <= self.weight_ema < 1:  # NaN too
            raise ConfigError(f"weight_ema must be in [0, 1), got {self.weight_ema}", param="weight_ema")
        if self.weight_ema and self.strategy == "fsdp":  # Lightning's weight averaging does not support sharded models
            raise ConfigError("weight_ema needs the whole model in each process; it does not work with strategy fsdp",
                              param="weight_ema")
        if self.checkpoint_every < 0:
            raise ConfigError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}", param="checkpoint_every")
        if not self.checkpoint_minutes >= 0:
            raise ConfigError(f"checkpoint_minutes must be >= 0, got {self.checkpoint_minutes}", param="checkpoint_minutes")
        object.__setattr__(self, "precision", str(self.precision))
        for name, allowed in (("precision", PRECISIONS), ("binarize", BINARIZE), ("schedule", ("none", "cosine")),
                              ("strategy", STRATEGIES), ("accelerator", ACCELERATORS),
                              ("on_nan", ("stop", "skip")), ("logger", tuple(LOGGERS))):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}", param=name)

    def check_machine(self) -> None:
        """Refuse, before anything is written, what this machine cannot do (imports torch)."""
        import torch

        if self.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
            raise ConfigError(f"accelerator {self.accelerator!r} needs a CUDA GPU and this machine has none; use cpu or auto",
                              param="accelerator")
        if self.accelerator == "mps" and not torch.backends.mps.is_available():
            raise ConfigError("accelerator 'mps' needs Apple silicon; use cpu or auto", param="accelerator")
        self.check_logger()

    def check_logger(self) -> None:
        """Refuse a --logger whose package is not installed, before anything is trained or written."""
        import importlib.util

        need = LOGGERS[self.logger]
        missing = [m for m in need[0] if importlib.util.find_spec(m) is None] if need is not None else []
        if missing:
            raise ConfigError(f"logger {self.logger} needs the {missing[0]} package, which is not installed: "
                              f"pip install 'aekit[{need[1]}]' (or logger=csv)", param="logger")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        return from_dict(cls, values, "training")

"""ImageData (uint8 images + labels + splits), TableData (scaled float features in the same frame) and the
per-batch float conversion."""

from __future__ import annotations

from collections.abc import Iterator
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from aekit.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")
DATA_FEATURES = ("images", "table")  # what a front end may ask of the data (ImageData.skip_reason)


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [0, 1] (done per batch: the data set itself stays uint8, 4x smaller). A float
    tensor is already model input (a table, scaled when it was loaded) and passes through as float32."""
    if x.dtype != torch.uint8:
        return x.to(torch.float32)
    return x.to(torch.float32).div_(255.0)


@dataclass
class ImageData:
    """A loaded data set: uint8 images (N, C, H, W), int64 labels (-1 = unknown) and index splits."""

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    splits: dict[str, torch.Tensor]
    name: str

    def __post_init__(self):
        # Cheap contract checks, so an ImageData built by hand (tests, other front ends) fails early.
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            got = f"{self.images.dtype} {tuple(self.images.shape)}"
            raise DataError(f"ImageData.images must be uint8 (N, C, H, W), got {got}; store pixels as uint8 0..255")
        if self.labels.shape != (len(self.images),):
            raise DataError(f"ImageData.labels must have shape ({len(self.images)},), got {tuple(self.labels.shape)}")
        self.labels = self.labels.long()

    @property
    def shape(self) -> tuple[int, int, int]:
        c, h, w = self.images.shape[1:]
        return (int(c), int(h), int(w))

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def _index(self, split: str) -> torch.Tensor | None:
        if split == "all":
            return None
        if split not in self.splits:
            known = ", ".join([*self.splits, "all"])
            raise DataError(f"unknown split {split!r} of data set {self.name!r}; use one of: {known}")
        return self.splits[split]

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 images, labels) of one split; "all" is the whole data set."""
        idx = self._index(name)
        if idx is None:
            return self.images, self.labels
        return self.images[idx], self.labels[idx]

    def split_lazy(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, labels) of one split for a consumer that only slices it (``aekit encode``): here the tensors
        of :meth:`split`; data kept on disk (a pack, ``aekit.data.shards``) reads each slice when it is taken."""
        return self.split(name)

    def batches(
        self,
        split: str,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (x float32 (B, C, H, W) in [0, 1], y int64 (B,)).

        One index gather per batch: a per-sample __getitem__ + collate costs more than a small model's step.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        idx = self._index(split)
        if idx is None:
            idx = torch.arange(len(self))
        if shuffle:
            idx = idx[torch.randperm(len(idx), generator=generator)]
        n = len(idx)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            b = idx[start : start + batch_size]  # (B,)
            yield to_float(self.images[b]), self.labels[b]

    def one_class(self, c: int, seed: int = 0, val_fraction: float = 0.1) -> "ImageData":
        """The one-class view of Ruff et al. 2018: train and val hold only the train images of class ``c``
        (a seeded ``val_fraction`` of them for validation); test stays the whole test split, every class.
        Shares the images (no copy)."""
        if not 0 <= int(c) < len(self.class_names):
            raise DataError(f"{self.name}: no class {c}; its classes are 0..{len(self.class_names) - 1}")
        train = self.splits["train"]
        idx = train[self.labels[train] == int(c)]
        if len(idx) == 0:
            raise DataError(f"{self.name}: class {c} has no training images")
        idx = idx[torch.randperm(len(idx), generator=torch.Generator().manual_seed(seed))]
        n_val = max(1, int(round(len(idx) * val_fraction, 6)))
        splits = {"train": idx[n_val:], "val": idx[:n_val], "test": self.splits.get("test", torch.arange(0))}
        return dataclasses.replace(self, splits=splits, name=f"{self.name}[class {c}]")  # a TableData stays one

    def record(self) -> dict[str, Any]:
        """What a run folder records about this data's kind and scaling (config.json "data")."""
        return {"normalization": "uint8/255"}

    def model_defaults(self) -> dict[str, Any]:
        """Model options that fit this kind of data, used where the user gave none (images: the presets')."""
        return {}

    def skip_reason(self, feature: str) -> str | None:
        """None when the data have ``feature`` (one of :data:`DATA_FEATURES`: "images", samples are pictures;
        "table", samples are rows of named features), else the one-line reason a front end shows for what it
        skips (the data's counterpart of ``model.skip_reason``)."""
        if feature not in DATA_FEATURES:
            raise ValueError(f"unknown data feature {feature!r}; one of {', '.join(DATA_FEATURES)}")
        return None if feature == "images" else f"{self.name} holds images, not a table of named features"

    def describe(self) -> dict:
        """JSON-able summary: name, shape, size of each split, classes."""
        return {
            "name": self.name,
            "shape": list(self.shape),
            "n": len(self),
            "splits": {k: int(len(v)) for k, v in self.splits.items()},
            "n_classes": len(self.class_names),
            "class_names": list(self.class_names),
        }


@dataclass
class TableData(ImageData):
    """A table of real-valued features in ImageData's frame: ``images`` are float32 (N, 1, 1, D), already
    scaled into the model's space by ``scaler`` (an ``aekit.data.tables.Scaler`` fit on the training split);
    ``features`` name the D columns. Dense models flatten C*H*W, so they see the D features; the batch
    loader and every front end pass float tensors through as they are (see ``aekit.data.tables``)."""

    features: list[str] = field(default_factory=list)
    scaler: Any = None
    label_column: str | None = None

    def __post_init__(self):
        x = self.images
        if x.dtype != torch.float32 or x.ndim != 4 or tuple(x.shape[1:3]) != (1, 1):
            raise DataError(f"TableData.images must be float32 (N, 1, 1, D), got {x.dtype} {tuple(x.shape)}")
        if len(self.features) != x.shape[3]:
            raise DataError(f"TableData has {x.shape[3]} features but {len(self.features)} feature names")
        if self.labels.shape != (len(x),):
            raise DataError(f"TableData.labels must have shape ({len(x)},), got {tuple(self.labels.shape)}")
        self.labels = self.labels.long()

    @property
    def values(self) -> torch.Tensor:
        """The scaled features as (N, D) (a view)."""
        return self.images.view(len(self.images), -1)

    def record(self) -> dict[str, Any]:
        from aekit.data.tables import KIND

        return {"kind": KIND, "normalization": f"{self.scaler.kind} scaler per feature, fit on the train split",
                "table": {"features": list(self.features), "label_column": self.label_column,
                          **self.scaler.to_dict()}}

    def model_defaults(self) -> dict[str, Any]:
        # real values: a Gaussian likelihood (MSE); BCE only fits values in [0, 1] (minmax, asked for)
        return {"loss": "mse"}

    def skip_reason(self, feature: str) -> str | None:
        if feature not in DATA_FEATURES:
            raise ValueError(f"unknown data feature {feature!r}; one of {', '.join(DATA_FEATURES)}")
        if feature == "images":
            return f"{self.name} is a table of {len(self.features)} features: its rows are not pictures"
        return None

    def describe(self) -> dict:
        return {**super().describe(), "kind": "table", "features": list(self.features)}

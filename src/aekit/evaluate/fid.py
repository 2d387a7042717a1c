"""FID-classifier: the Fréchet distance (Heusel et al. 2017) between two image sets in the feature space of a
small conv classifier that aekit trains on the data set once and caches.

It is NEVER comparable with Inception FID (other network, other features, other image size): compare
FID-classifier figures only with each other, on the same data set. Inception weights would need a download;
a classifier trained on the data itself needs none and sees what matters in 28x28 digits.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

FEATURES = 128
CACHE_VERSION = 1


class FeatureNet(nn.Module):
    """Two conv blocks -> 4x4 adaptive pool -> 128-d penultimate features -> class logits. Any (C, H, W)."""

    def __init__(self, channels: int, n_classes: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
            nn.Flatten(), nn.Linear(64 * 16, FEATURES), nn.ReLU(),
        )
        self.head = nn.Linear(FEATURES, n_classes)
        self.num_features = FEATURES  # read by torchmetrics' FID

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)  # (B, 128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (B, n_classes)


class _Features(nn.Module):
    """The feature map torchmetrics' FrechetInceptionDistance calls (it accepts any nn.Module)."""

    def __init__(self, net: FeatureNet) -> None:
        super().__init__()
        self.net = net
        self.num_features = net.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(x)


def cache_path(data, cache_dir: str | Path, train_options: dict | None = None) -> Path:
    """One cached classifier per (data set spec, shape, exact training subset and options): a run trained on a
    subset (``--max-train-samples``) makes its own, weaker classifier, which must not be reused for the full set."""
    import hashlib

    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", str(data.name)).strip("-")[:80] or "data"
    c, h, w = data.shape
    h_ = hashlib.sha256(data.splits["train"].numpy().astype("<i8").tobytes())
    h_.update(json.dumps(train_options or {}, sort_keys=True).encode())
    return Path(cache_dir) / "fid-classifier" / f"{slug}-{c}x{h}x{w}-{h_.hexdigest()[:12]}-v{CACHE_VERSION}.safetensors"


@torch.enable_grad()  # callers evaluate under no_grad
def train_classifier(data, *, epochs: int = 3, batch_size: int = 128, lr: float = 2e-3, max_train: int = 20000,
                     seed: int = 0) -> tuple[FeatureNet, float]:
    """Fit the feature classifier on the train split (a seeded subset of at most ``max_train`` images);
    returns the net (eval mode) and its test accuracy. A bare loop: this is a tool, not a user's run."""
    from ..data import to_float
    from ..errors import DataError

    images, labels = data.split("train")
    keep = labels >= 0
    images, labels = images[keep], labels[keep]
    n_classes = int(data.labels.max()) + 1 if len(data.labels) else 0
    if n_classes < 2:
        raise DataError(f"FID-classifier needs a labelled data set with 2+ classes; {data.name!r} has {n_classes}")
    g = torch.Generator().manual_seed(seed)
    if len(images) > max_train:
        idx = torch.randperm(len(images), generator=g)[:max_train]
        images, labels = images[idx], labels[idx]
    torch.manual_seed(seed)
    net = FeatureNet(data.shape[0], n_classes)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=g)
        for i in range(0, len(order), batch_size):
            b = order[i : i + batch_size]
            loss = F.cross_entropy(net(to_float(images[b])), labels[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    net.eval()
    return net, classifier_accuracy(net, *data.split("test"))


@torch.no_grad()
def classifier_accuracy(net: FeatureNet, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    """Accuracy on uint8 (or float [0, 1]) images with labels >= 0."""
    from ..data import to_float

    keep = labels >= 0
    images, labels = images[keep], labels[keep]
    if len(images) == 0:
        return float("nan")
    correct = 0
    for i in range(0, len(images), batch_size):
        x = images[i : i + batch_size]
        x = to_float(x) if x.dtype == torch.uint8 else x
        correct += int((net(x).argmax(1) == labels[i : i + batch_size]).sum())
    return correct / len(images)


def feature_classifier(data, cache_dir: str | Path | None = None, **train_options) -> tuple[FeatureNet, dict]:
    """The data set's cached classifier, trained on first use; returns (net in eval mode, info dict with its
    test accuracy). ``cache_dir=None`` trains without caching."""
    from safetensors.torch import load_file, save

    from ..train.runs import atomic_write

    path = cache_path(data, cache_dir, train_options) if cache_dir is not None else None
    n_classes = int(data.labels.max()) + 1 if len(data.labels) else 0
    if path is not None and path.exists() and path.with_suffix(".json").exists():
        info = json.loads(path.with_suffix(".json").read_text())
        net = FeatureNet(data.shape[0], int(info["n_classes"]))
        try:
            net.load_state_dict(load_file(str(path)))
            net.eval()
            return net, {**info, "cached": True}
        except (RuntimeError, OSError, ValueError):
            pass  # a damaged or stale cache: train again below and overwrite it
    net, acc = train_classifier(data, **train_options)
    info = {"data": str(data.name), "shape": list(data.shape), "n_classes": n_classes, "test_accuracy": acc,
            "train_images": len(data.splits["train"])}
    if path is not None:
        atomic_write(path, save({k: v.contiguous() for k, v in net.state_dict().items()}))
        atomic_write(path.with_suffix(".json"), json.dumps(info, indent=2))
    return net, {**info, "cached": False}


@torch.no_grad()
def frechet_distance(net: FeatureNet, real: torch.Tensor, fake: torch.Tensor, batch_size: int = 1000) -> float:
    """FID-classifier between two float image sets in [0, 1], (N, C, H, W) each (N >= 2), with torchmetrics'
    FrechetInceptionDistance and the classifier's penultimate features as the feature map."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    fid = FrechetInceptionDistance(feature=_Features(net), normalize=True)
    for i in range(0, len(real), batch_size):
        fid.update(real[i : i + batch_size], real=True)
    for i in range(0, len(fake), batch_size):
        fid.update(fake[i : i + batch_size], real=False)
    return float(fid.compute())

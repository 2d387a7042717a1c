"""Anomaly detection with a trained autoencoder, with PyOD's interface, and the one-class benchmark of
Ruff et al. 2018 (Deep SVDD, ICML): train on one class, score the whole test set, AUROC per class.

Scores (higher = more anomalous):
- ``recon``: per-image mean squared reconstruction error of the deterministic code (every model);
- ``elbo``: the negative ELBO in nats, averaged over ``samples`` posterior draws (VAEs);
- ``nll``: the IWAE estimate of -log p(x) with ``samples`` importance samples (Burda et al. 2016; VAEs).
"""

from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ConfigError, DataError

SCORES = ("recon", "elbo", "nll")
# Deep SVDD (one-class), Ruff et al. 2018, Table 1: MNIST AUROC (%) per normal digit 0..9.
DEEP_SVDD_MNIST = (98.0, 99.7, 91.7, 91.9, 94.9, 88.5, 98.3, 94.6, 93.9, 96.5)


def _model_of(run_or_model):
    from .train.runs import Run

    if isinstance(run_or_model, Run):
        return run_or_model.model
    if isinstance(run_or_model, (str, Path)):
        from .train import load_run

        return load_run(run_or_model).model
    if isinstance(run_or_model, torch.nn.Module) and hasattr(run_or_model, "encode"):
        return run_or_model
    raise ConfigError(f"expected a run folder, a Run or an aekit model, got {type(run_or_model).__name__}")


def _images(X, model) -> torch.Tensor:
    from .apply import as_image_tensor, check_shape
    from .data import ImageData

    if isinstance(X, ImageData):
        check_shape(X.shape, model.input_shape, X.name)
        return X.images
    return as_image_tensor(X, model.input_shape)


@torch.no_grad()
def anomaly_scores(model, images: torch.Tensor, score: str = "recon", samples: int = 10, batch_size: int = 512,
                   seed: int = 0, show_progress: bool = False) -> np.ndarray:
    """Score every image of a uint8 (N, C, H, W) tensor; (N,) float64, higher = more anomalous."""
    from .apply import batches, progress
    from .evaluate.basic import iwae_nll

    if score not in SCORES:
        raise ConfigError(f"score must be one of {', '.join(SCORES)}, got {score!r}")
    if score != "recon" and model.skip_reason("likelihood") is not None:
        raise ConfigError(f"score {score!r} needs a VAE (a likelihood); {model.name!r} has none: use score='recon'")
    if samples < 1:
        raise ConfigError(f"samples must be >= 1, got {samples}")
    if not (isinstance(images, torch.Tensor) and images.dtype == torch.uint8):
        from .apply import as_image_tensor

        images = as_image_tensor(images, model.input_shape)  # floats in [0, 1], numpy, other layouts -> uint8
    model.eval()
    g = torch.Generator().manual_seed(seed)
    out = np.empty(len(images), dtype=np.float64)
    with progress(len(images), f"score ({score})", show_progress) as bar:
        for start, xb in batches(images, batch_size):
            x = xb.to(torch.float32).mul_(1.0 / 255.0)  # (B, C, H, W)
            if score == "recon":
                s = (model.reconstruct(x) - x).pow(2).flatten(1).mean(1)
            elif score == "elbo":
                s = -model.log_importance_weights(x, samples, generator=g).mean(0)  # (B,)
            else:
                s = iwae_nll(model, x, samples, generator=g)
            out[start : start + len(xb)] = s.double().numpy()
            bar.update(len(xb))
    return out


class AnomalyDetector:
    """PyOD-style detector around a trained aekit model.

    ``fit(X)`` scores the (mostly normal) training data: ``decision_scores_`` and ``threshold_`` (the
    ``1 - contamination`` quantile of them); ``decision_function`` scores new data (higher = more
    anomalous); ``predict`` is 1 above the threshold; ``predict_proba`` maps scores linearly onto [0, 1]
    by the min and max training score (PyOD's "linear" method) and returns (N, 2) [P(normal), P(outlier)].
    X: images (N, C, H, W), (N, H, W) or (N, H, W, C), uint8 or floats in [0, 1]; flat (N, D) rows in the
    model's shape; or an ``ImageData``.
    """

    def __init__(self, run_or_model, score: str = "recon", contamination: float = 0.1, samples: int = 10,
                 batch_size: int = 512, seed: int = 0) -> None:
        if score not in SCORES:
            raise ConfigError(f"score must be one of {', '.join(SCORES)}, got {score!r}")
        if not (isinstance(contamination, numbers.Real) and 0.0 < contamination <= 0.5):
            raise ConfigError(f"contamination must be in (0, 0.5], got {contamination!r}")
        for name, value in (("samples", samples), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise ConfigError(f"seed must be a whole number, got {seed!r}")
        samples, batch_size, seed = int(samples), int(batch_size), int(seed)
        self.batch_size = batch_size
        self.model = _model_of(run_or_model)
        self.score = score
        self.contamination = float(contamination)
        self.samples = samples
        self.seed = seed
        if score != "recon" and self.model.skip_reason("likelihood") is not None:
            raise ConfigError(f"score {score!r} needs a VAE; {self.model.name!r} has no likelihood: use score='recon'")

    def fit(self, X, y=None, *, show_progress: bool = False) -> "AnomalyDetector":
        self.decision_scores_ = anomaly_scores(self.model, _images(X, self.model), self.score, self.samples,
                                               self.batch_size, self.seed, show_progress=show_progress)
        self.threshold_ = float(np.quantile(self.decision_scores_, 1.0 - self.contamination))
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(np.int64)
        self._lo, self._hi = float(self.decision_scores_.min()), float(self.decision_scores_.max())
        return self

    def decision_function(self, X) -> np.ndarray:
        return anomaly_scores(self.model, _images(X, self.model), self.score, self.samples, self.batch_size, self.seed)

    def _check_fitted(self) -> None:
        if not hasattr(self, "threshold_"):
            raise ConfigError("this AnomalyDetector is not fitted yet; call fit(X) on normal data first")

    def predict(self, X) -> np.ndarray:
        self._check_fitted()
        return (self.decision_function(X) > self.threshold_).astype(np.int64)

    def predict_proba(self, X) -> np.ndarray:
        self._check_fitted()
        s = self.decision_function(X)
        p = np.clip((s - self._lo) / max(self._hi - self._lo, 1e-12), 0.0, 1.0)
        return np.stack([1.0 - p, p], axis=1)

    def fit_predict(self, X, y=None) -> np.ndarray:
        return self.fit(X).labels_


def auroc(scores: np.ndarray, is_anomaly: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.asarray(is_anomaly, dtype=np.int64), scores))


def one_class_benchmark(dataset: str = "mnist", model: str = "conv-ae", epochs: int = 5, classes=None,
                        latent_dim: int = 32, score: str = "recon", out_dir: str | Path | None = None,
                        batch_size: int = 128, lr: float = 1e-3, seed: int = 0, data_options: dict | None = None,
                        model_options: dict | None = None, progress: bool = False, log=print) -> dict[str, Any]:
    """One-class protocol (Ruff et al. 2018): for each class c, train ``model`` on the train images of c
    only, score the whole test set, and report AUROC with "not c" as the anomaly. Returns
    {"per_class": {c: auroc%}, "mean": ..., "seconds": ..., "settings": {...}}."""
    import tempfile
    import time

    from .data import load_data
    from .registry import build_model
    from .train import TrainConfig, train

    opts = dict(data_options or {})
    data = load_data(dataset, seed=seed, **opts)
    labels = data.labels
    if (labels < 0).all():
        raise DataError(f"{dataset}: the one-class benchmark needs labelled data")
    classes = list(range(len(data.class_names))) if classes is None else [int(c) for c in classes]
    if not classes:
        raise ConfigError("the class list is empty; leave it out to use every class")
    # Everything that can fail is checked before the first (long) training.
    views = {c: data.one_class(c, seed=seed) for c in classes}  # raises on unknown or empty classes
    test_images, test_labels = data.split("test")
    test_labels = test_labels.numpy()
    for c in classes:
        if not (test_labels == c).any() or (test_labels == c).all():
            raise DataError(f"{dataset}: the test split needs images of class {c} and of other classes to "
                            f"measure an AUROC; it has {int((test_labels == c).sum())} of {len(test_labels)}")
    torch.manual_seed(seed)
    probe = build_model(model, input_shape=data.shape, latent_dim=latent_dim, **(model_options or {}))
    if score != "recon" and probe.skip_reason("likelihood") is not None:
        raise ConfigError(f"score {score!r} needs a VAE (a likelihood); {model!r} has none: use the recon score")
    scratch = tempfile.TemporaryDirectory(prefix="aekit-oneclass-") if out_dir is None else None
    root = Path(out_dir) if out_dir is not None else Path(scratch.name)  # per-class runs: kept only when asked
    for c in classes:
        if (root / f"class-{c}").exists():
            raise ConfigError(f"{root / f'class-{c}'} already exists; choose another folder for the per-class runs")
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root} is a file; choose a folder for the per-class runs")
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, patience=0, seed=seed, progress=progress)
    results: dict[int, float] = {}
    t0 = time.perf_counter()
    try:
        for c in classes:
            torch.manual_seed(seed)
            m = build_model(model, input_shape=data.shape, latent_dim=latent_dim, **(model_options or {}))
            run = train(m, views[c], cfg, root / f"class-{c}",
                        data_options={**opts, "spec": dataset, "seed": seed, "one_class": c})
            s = anomaly_scores(run.model, test_images, score)
            results[c] = round(100.0 * auroc(s, test_labels != c), 2)
            n_train = len(views[c].splits["train"]) + len(views[c].splits["val"])
            log(f"class {c}: AUROC {results[c]:.2f}% ({n_train} train images, {time.perf_counter() - t0:.0f}s so far)")
    finally:
        if scratch is not None:
            scratch.cleanup()
    return {
        "per_class": results,
        "mean": round(float(np.mean(list(results.values()))), 2),
        "seconds": round(time.perf_counter() - t0, 1),
        "settings": {"dataset": dataset, "model": model, "epochs": epochs, "latent_dim": latent_dim, "score": score,
                     "batch_size": batch_size, "lr": lr, "seed": seed},
    }


def benchmark_markdown(result: dict[str, Any], reference=DEEP_SVDD_MNIST, reference_name: str = "Deep SVDD") -> str:
    """A markdown table: AUROC per class and mean beside the published numbers."""
    per = result["per_class"]
    s = result["settings"]
    head = f"| class | aekit {s['model']} ({s['score']}, {s['epochs']} epochs) | {reference_name} (Ruff et al. 2018) |"
    lines = [head, "|---|---|---|"]
    for c, v in per.items():
        ref = f"{reference[int(c)]:.1f}" if reference is not None and int(c) < len(reference) else "—"
        lines.append(f"| {c} | {v:.1f} | {ref} |")
    ref_mean = f"{np.mean([reference[int(c)] for c in per]):.1f}" if reference is not None else "—"
    lines.append(f"| **mean** | **{result['mean']:.1f}** | **{ref_mean}** |")
    return "\n".join(lines) + "\n"


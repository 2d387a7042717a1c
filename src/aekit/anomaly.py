"""Anomaly detection with autoencoders, with PyOD's interface, and the one-class benchmark of Ruff et al.
2018 (Deep SVDD, ICML): train on one class, score the whole test set, AUROC per class.

:class:`AnomalyDetector` is a scikit-learn estimator (``OutlierMixin`` + ``BaseEstimator``) with PyOD's public
surface and PyOD's formulas (``pyod.models.base.BaseDetector``): it trains an aekit model in ``fit`` from its
options, or wraps a trained run. Scores (higher = more anomalous):

- ``recon``: per-sample mean squared reconstruction error of the deterministic code (every model);
- ``elbo``: the negative ELBO in nats, averaged over ``samples`` posterior draws (VAEs with loss=bce);
- ``nll``: the IWAE estimate of -log p(x) with ``samples`` importance samples (Burda et al. 2016; the same).
"""

from __future__ import annotations

import math
import numbers
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils.validation import check_is_fitted

from .errors import ConfigError, DataError

SCORES = ("recon", "elbo", "nll")
CONVENTIONS = ("pyod", "sklearn")
PROBA_METHODS = ("linear", "unify")
# Deep SVDD (one-class), Ruff et al. 2018, Table 1: MNIST AUROC (%) per normal digit 0..9.
DEEP_SVDD_MNIST = (98.0, 99.7, 91.7, 91.9, 94.9, 88.5, 98.3, 94.6, 93.9, 96.5)
_FITTED = ["decision_scores_", "threshold_", "labels_"]

def _run_and_model(run_or_model):
    """(Run or None, model) of a run folder, a Run or an aekit model."""
    from .train.runs import Run

    if isinstance(run_or_model, Run):
        return run_or_model, run_or_model.model
    if isinstance(run_or_model, (str, Path)):
        from .train import load_run

        run = load_run(run_or_model)
        return run, run.model
    if isinstance(run_or_model, torch.nn.Module) and hasattr(run_or_model, "encode"):
        return None, run_or_model
    raise ConfigError(f"run must be a run folder, a Run or an aekit model, got {type(run_or_model).__name__}", param="run")


def _images(X, model) -> torch.Tensor:
    from .apply import as_image_tensor, check_shape
    from .data import ImageData

    if isinstance(X, ImageData):
        check_shape(X.shape, model.input_shape, X.name)
        return X.images
    if _is_model_input(X, model.input_shape):
        return X
    return as_image_tensor(X, model.input_shape)


def _is_model_input(x, input_shape) -> bool:
    """A tensor already in the model's input space: uint8 images or floats (N, C, H, W) of its exact shape."""
    return isinstance(x, torch.Tensor) and x.ndim == 4 and tuple(x.shape[1:]) == tuple(input_shape)


def _check_likelihood_score(model, score: str) -> None:
    if score == "recon":
        return
    if model.skip_reason("likelihood") is not None:
        raise ConfigError(f"score {score!r} needs a VAE (a likelihood); {model.name!r} has none: use score='recon'",
                          param="score")
    if model.config.loss == "rmse":
        # log_importance_weights is the likelihood the loss is (Bernoulli for bce, Gaussian for mse); rmse has none
        raise ConfigError(f"score {score!r} needs a VAE trained with loss=bce or mse (a likelihood); this one "
                          f"was trained with loss=rmse: use score='recon'", param=("score", "loss"))


@torch.no_grad()
def anomaly_scores(model, images: torch.Tensor, score: str = "recon", samples: int = 10, batch_size: int = 512,
                   seed: int = 0, show_progress: bool = False) -> np.ndarray:
    """Score every sample, (N,) float64, higher = more anomalous. ``images``: model input (N, C, H, W) — uint8
    images, or float32 as the model takes it (images in [0, 1], a TableData's scaled rows) — or any array of
    images :func:`aekit.apply.as_image_tensor` reads."""
    from .apply import batches, progress
    from .data import to_float
    from .evaluate.basic import iwae_nll

    if score not in SCORES:
        raise ConfigError(f"score must be one of {', '.join(SCORES)}, got {score!r}", param="score")
    _check_likelihood_score(model, score)
    if samples < 1:
        raise ConfigError(f"samples must be >= 1, got {samples}", param="samples")
    if not _is_model_input(images, model.input_shape):
        from .apply import as_image_tensor

        images = as_image_tensor(images, model.input_shape)  # numpy, other layouts, floats in [0, 1] -> uint8
    model.eval()
    dtype = next(model.parameters()).dtype
    g = torch.Generator().manual_seed(seed)
    out = np.empty(len(images), dtype=np.float64)
    with progress(len(images), f"score ({score})", show_progress) as bar:
        for start, xb in batches(images, batch_size):
            x = to_float(xb).to(dtype)  # (B, C, H, W) in the model's precision
            if score == "recon":
                s = (model.reconstruct(x) - x).pow(2).flatten(1).mean(1)
            elif score == "elbo":
                s = -model.log_importance_weights(x, samples, generator=g).mean(0)  # (B,)
            else:
                s = iwae_nll(model, x, samples, generator=g)
            out[start : start + len(xb)] = s.double().numpy()
            bar.update(len(xb))
    return out


def _whole(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"{name} must be a whole number >= {minimum}, got {value!r}", param=name)
    return int(value)


def _positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a number > 0, got {value!r}", param=name)
    return float(value)


def _choice(name: str, value, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}", param=name)
    return value


def precision_n_scores(y, scores, n: int | None = None) -> float:
    """Precision @ rank n (n: the number of outliers in ``y``), as PyOD's ``precision_n_scores``."""
    y = np.asarray(y).astype(int).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    n = int(y.sum()) if n is None else int(n)
    if n < 1:
        raise DataError("precision @ n needs at least one outlier (1) in y")
    threshold = np.percentile(scores, 100 * (1 - n / len(scores)))
    pred = (scores > threshold).astype(int)
    return float((pred & y).sum() / max(int(pred.sum()), 1))


class AnomalyDetector(OutlierMixin, BaseEstimator):
    """An autoencoder outlier detector with PyOD's interface, trained in ``fit`` or wrapping a trained run.

    Construct from options and train on ``fit(X)`` (PyOD's way): ``model`` (a registered aekit model; default
    ``ae``, the deterministic autoencoder, with dense widths 128-64: on ten ODDS tables the ``vae``, whose
    codes collapse towards the prior on scaled tables, and the ``ae`` at 64-32 scored lower; docs/benchmarks.md),
    ``latent_dim`` (None: half the features, 1..16), ``hidden_dims`` (dense widths; applied to families that
    have them), ``loss`` (None: mse for tables, the family's preset for images), ``epochs``, ``batch_size``,
    ``lr``, ``seed``; tables are scaled per feature by ``scaler`` (standard | minmax | none), fit in ``fit``,
    with missing values refused or imputed (``impute``: none | mean | median) and text columns refused or one-hot
    encoded (``categorical``: none | onehot; a category unseen in ``fit`` is refused later). Or wrap a trained model:
    ``AnomalyDetector(run)`` (a run folder, a ``Run`` or a model; ``fit`` only scores, a tabular run's saved
    scaler is applied). ``contamination`` sets the threshold; ``score_type``: recon | elbo | nll (``samples``
    draws).

    PyOD's attributes after ``fit``: ``decision_scores_`` (scores of X), ``threshold_`` (their
    ``100 * (1 - contamination)`` percentile), ``labels_`` (1 above the threshold), ``_mu``/``_sigma``.
    ``convention``: "pyod" (default) — ``decision_function`` gives the scores and ``predict`` 0 (inlier) or
    1 (outlier), as in PyOD; "sklearn" — ``decision_function`` is ``threshold_ - score`` (negative for
    outliers) and ``predict`` gives 1 (inlier) or -1 (outlier), as scikit-learn's outlier detectors (it is the
    setting that passes ``check_estimator``). ``score_samples`` is minus the score (higher = more normal) and
    ``offset_`` is ``-threshold_`` in both; probabilities, confidence and rejection are PyOD's in both.

    X: a table (N, D) (numpy, lists, torch, data frames, a .csv/.npy/.parquet/.mat path), images (N, H, W),
    (N, H, W, C) or (N, C, H, W) (uint8 or floats in [0, 1]), an ``ImageData``/``TableData``, or model input
    (a float (N, C, H, W) tensor of the model's shape).
    """

    def __init__(self, run=None, *, model="ae", latent_dim=None, hidden_dims=(128, 64), loss=None, epochs=30,
                 batch_size=32, lr=1e-3, contamination=0.1, score_type="recon", samples=10, scaler="standard",
                 impute="none", categorical="none", convention="pyod", seed=0, progress=False):
        self.run = run
        self.model = model
        self.latent_dim = latent_dim
        self.hidden_dims = hidden_dims
        self.loss = loss
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.contamination = contamination
        self.score_type = score_type
        self.samples = samples
        self.scaler = scaler
        self.impute = impute
        self.categorical = categorical
        self.convention = convention
        self.seed = seed
        self.progress = progress

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()  # OutlierMixin: estimator_type "outlier_detector"
        tags.input_tags.allow_nan = self.impute in ("mean", "median")
        tags.non_deterministic = False
        return tags

    def __sklearn_is_fitted__(self) -> bool:
        return all(hasattr(self, a) for a in _FITTED)

    # ------------------------------------------------------------ options

    def _check_options(self) -> None:
        """Constructors only store (scikit-learn's rule); everything is checked here, at fit."""
        c = self.contamination
        if isinstance(c, bool) or not isinstance(c, numbers.Real) or not 0.0 < c <= 0.5:
            raise ConfigError(f"contamination must be in (0, 0.5], got {c!r}", param="contamination")
        _choice("score_type", self.score_type, SCORES)
        _choice("convention", self.convention, CONVENTIONS)
        _whole("samples", self.samples, 1)
        _whole("batch_size", self.batch_size, 1)
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral) or not 0 <= self.seed < 2**32:
            raise ConfigError(f"seed must be a whole number in [0, 2**32), got {self.seed!r}", param="seed")
        if self.run is not None:
            return
        if not isinstance(self.model, str):
            raise ConfigError(f"model must be a registered model name, got {self.model!r}", param="model")
        from .registry import get

        get(self.model)  # unknown names: a one-line error listing the known ones
        if self.latent_dim is not None:
            _whole("latent_dim", self.latent_dim, 1)
        if self.hidden_dims is not None:
            hd = self.hidden_dims
            if isinstance(hd, (str, bytes)) or not hasattr(hd, "__iter__") or not all(
                    isinstance(h, numbers.Integral) and not isinstance(h, bool) and h >= 1 for h in hd):
                raise ConfigError(f"hidden_dims must be whole numbers >= 1 like (64, 32), got {hd!r}", param="hidden_dims")
        if self.loss is not None:
            from .models.base import LOSSES

            _choice("loss", self.loss, LOSSES)
        _whole("epochs", self.epochs, 1)
        _positive("lr", self.lr)
        from .data.tables import CATEGORICAL, IMPUTE, SCALERS

        _choice("scaler", self.scaler, SCALERS)
        _choice("impute", self.impute, IMPUTE)
        _choice("categorical", self.categorical, CATEGORICAL)

    # ------------------------------------------------------------ inputs

    def _inputs(self, X, reset: bool) -> torch.Tensor:
        """X -> model input (N, C, H, W) (uint8 images or float32); with ``reset`` (fit) the input kind, the
        table scaler and ``n_features_in_`` are set."""
        from .data import ImageData, TableData

        if reset:
            self.kind_ = self._kind_of(X)
        if self.kind_ == "images":
            if reset and self.run is None:  # the images fix the model's input shape
                from .apply import as_image_tensor

                if isinstance(X, ImageData):
                    x = X.images
                elif isinstance(X, torch.Tensor) and X.ndim == 4 and X.dtype == torch.float32:
                    x = X  # model input already: floats (N, C, H, W)
                else:
                    x = as_image_tensor(X)
                self.n_features_in_ = int(np.prod(x.shape[1:]))
                return x
            return _images(X, self.model_)
        if isinstance(X, TableData):
            if reset and self.run is None:
                self._set_table_state(X.scaler, X.features)
            elif list(X.features) != list(self.feature_names_):
                raise DataError(f"{X.name}: its features are not the ones this detector was fitted on")
            return X.images
        d = len(self.feature_names_) if hasattr(self, "feature_names_") else None
        if d is not None and _is_model_input(X, (1, 1, d)) and X.dtype != torch.uint8:
            return X  # already scaled (a TableData's rows)
        from .data.tables import OneHot, Scaler, align, check_finite, read_table, table_data

        fitting = reset and self.run is None
        onehot = None if fitting else self.scaler_.onehot
        text = self.categorical == "onehot" if fitting else frozenset(onehot.categories) if onehot is not None else False
        t = read_table(X, what="X", text=text)
        if len(t.values) == 0:
            raise DataError(f"X holds no samples (shape {t.values.shape}); give at least one row")
        if t.values.shape[1] == 0:
            raise DataError(f"X has 0 feature(s) (shape={t.values.shape}) while a minimum of 1 is required; "
                            "give at least one column")
        if fitting:
            check_finite(t, self.impute)
            columns = list(t.features)
            onehot = OneHot.fit(t, np.arange(len(t.values)), self.impute) if t.text else None
            if onehot is not None:
                t = onehot.transform(t)  # text columns -> column=value 0/1 columns
            scaler = Scaler.fit(t.values, self.scaler, self.impute, t.features)
            scaler.onehot = onehot
            self._set_table_state(scaler, t.features)
            if t.named:
                self.feature_names_in_ = np.asarray(columns, dtype=object)
        else:
            t = align(t, onehot.columns if onehot is not None else self.feature_names_, who=type(self).__name__)
            check_finite(t, self.scaler_.impute)
            if onehot is not None:
                t = onehot.transform(t)
        n = len(t.values)
        return table_data(t, {"train": np.arange(n)}, "X", self.scaler_).images  # (N, 1, 1, D) float32

    def _set_table_state(self, scaler, features) -> None:
        self.scaler_ = scaler
        self.feature_names_ = list(features)  # the model's inputs (a text column's one-hot columns: column=value)
        self.n_features_in_ = len(scaler.onehot.columns) if scaler.onehot is not None else len(self.feature_names_)

    def _kind_of(self, X) -> str:
        from .data import ImageData, TableData

        if self.run is not None:  # a trained model: its run says what it was trained on
            from .data.tables import Scaler, is_table_record, record_state

            record = self.run_.config["data"] if self.run_ is not None else {}
            if is_table_record(record):
                state = record_state(record)
                self._set_table_state(Scaler.from_dict(state), state["features"])
                return "table"
            return "images"
        if isinstance(X, TableData):
            return "table"
        if isinstance(X, ImageData):
            return "images"
        if isinstance(X, (str, Path)) or (hasattr(X, "columns") and not isinstance(X, np.ndarray)) or \
                hasattr(X, "column_names"):  # a file, a data frame, a pyarrow Table
            return "table"
        ndim = getattr(X, "ndim", None)
        if ndim is None:
            try:
                ndim = np.asarray(X).ndim
            except (ValueError, TypeError):
                ndim = 2  # ragged rows, odd cells: the table reader names what is wrong
        if ndim == 2:
            return "table"
        if ndim in (3, 4):
            return "images"
        raise DataError(f"X must be a table (N, D) or images (N, H, W[, C]), got {ndim}-D data; "
                        "reshape one sample to (1, D)")

    # ------------------------------------------------------------ fit

    def fit(self, X, y=None, *, show_progress: bool | None = None) -> "AnomalyDetector":
        """Train (options) or load (run), then score X: ``decision_scores_``, ``threshold_``, ``labels_``.
        ``y`` is ignored (unsupervised)."""
        self._check_options()
        for a in (*_FITTED, "scaler_", "feature_names_", "feature_names_in_", "n_features_in_", "_model64"):
            self.__dict__.pop(a, None)  # a refit starts clean
        if self.run is not None:
            self.run_, self.model_ = _run_and_model(self.run)
        else:
            self.run_ = None
        x = self._inputs(X, reset=True)
        if self.run is None:
            self.model_ = self._train(x)
        _check_likelihood_score(self.model_, self.score_type)
        self.decision_scores_ = self._scores(x, show_progress)
        self._process_decision_scores()
        return self

    def _train(self, x: torch.Tensor):
        """Train ``model`` on x (all of it; no validation split, as PyOD) through aekit's one engine."""
        import dataclasses

        from .data import ImageData
        from .data.tables import KIND
        from .registry import build_model, get
        from .train import TrainConfig, train

        n = len(x)
        splits = {"train": torch.arange(n), "val": torch.arange(0), "test": torch.arange(0)}
        if self.kind_ == KIND:
            from .data import TableData

            data = TableData(images=x, labels=torch.full((n,), -1, dtype=torch.int64), class_names=[], splits=splits,
                             name="X", features=list(self.feature_names_), scaler=self.scaler_)
        else:
            data = ImageData(images=x, labels=torch.full((n,), -1, dtype=torch.int64), class_names=[],
                             splits=splits, name="X")
        fields = {f.name for f in dataclasses.fields(get(self.model).cls.Config)}
        d = int(np.prod(data.shape))
        overrides: dict[str, Any] = {"latent_dim": int(self.latent_dim) if self.latent_dim is not None
                                     else max(1, min(16, d // 2))}
        if self.hidden_dims is not None and "hidden_dims" in fields:
            overrides["hidden_dims"] = tuple(int(h) for h in self.hidden_dims)
        loss = self.loss if self.loss is not None else ("mse" if self.kind_ == KIND else None)
        if loss is not None:
            overrides["loss"] = loss
        torch.manual_seed(int(self.seed))  # same seed, same data -> same model
        model = build_model(self.model, input_shape=data.shape, **overrides)
        cfg = TrainConfig(epochs=int(self.epochs), batch_size=int(self.batch_size), lr=float(self.lr), patience=0,
                          seed=int(self.seed), progress=bool(self.progress), log_epochs=bool(self.progress))
        with tempfile.TemporaryDirectory(prefix="aekit-anomaly-") as tmp, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*(validation_step|val_dataloader).*")  # no val split: on purpose
            run = train(model, data, cfg, Path(tmp) / "run", data_options={"spec": "X"})
        self.n_epochs_ = int(run.config["result"]["epochs_completed"])
        return run.model.eval()

    def _scores(self, x: torch.Tensor, show_progress: bool | None = None) -> np.ndarray:
        bs = int(self.batch_size) if self.run is not None else max(int(self.batch_size), 512)
        show = bool(self.progress) if show_progress is None else show_progress
        return anomaly_scores(self._scoring_model(), x, self.score_type, int(self.samples), bs, int(self.seed),
                              show_progress=show)

    def _scoring_model(self):
        """Tables are scored in float64: float32 matrix products round differently with the batch size, so a
        sample's score would depend (in its last bits) on the batch it came in; images stay float32 (speed)."""
        if self.kind_ != "table":
            return self.model_
        if getattr(self, "_model64", None) is None:
            import copy

            self._model64 = copy.deepcopy(self.model_).double().eval()
        return self._model64

    def _process_decision_scores(self) -> None:
        """PyOD's ``_process_decision_scores``: the threshold, the training labels, and mu and sigma for the
        "unify" probabilities."""
        s = self.decision_scores_
        self.threshold_ = float(np.percentile(s, 100 * (1 - float(self.contamination))))
        self.labels_ = (s > self.threshold_).astype(int).ravel()
        self._mu, self._sigma = float(np.mean(s)), float(np.std(s))
        self._classes = 2
        self.offset_ = -self.threshold_  # scikit-learn: decision_function = score_samples - offset_

    # ------------------------------------------------------------ scores and labels

    def _anomaly_scores(self, X) -> np.ndarray:
        check_is_fitted(self, _FITTED)
        return self._scores(self._inputs(X, reset=False))

    def decision_function(self, X) -> np.ndarray:
        """PyOD convention: the anomaly score (higher = more anomalous). scikit-learn convention:
        ``threshold_ - score`` (negative = outlier)."""
        s = self._anomaly_scores(X)
        return s if self.convention == "pyod" else self.threshold_ - s

    def score_samples(self, X) -> np.ndarray:
        """Minus the anomaly score: higher = more normal (scikit-learn's meaning)."""
        return -self._anomaly_scores(X)

    def _labels(self, scores: np.ndarray) -> np.ndarray:
        out = (scores > self.threshold_).astype(int).ravel()  # PyOD: 1 = outlier
        return out if self.convention == "pyod" else 1 - 2 * out  # scikit-learn: -1 = outlier, 1 = inlier

    def predict(self, X, return_confidence: bool = False):
        """Outlier labels (PyOD: 0 inlier, 1 outlier; scikit-learn convention: 1 inlier, -1 outlier); with
        ``return_confidence`` also :meth:`predict_confidence`."""
        s = self._anomaly_scores(X)
        pred = self._labels(s)
        if return_confidence:
            return pred, self._confidence(s)
        return pred

    def fit_predict(self, X, y=None):
        """Fit on X and return its labels (``labels_`` in the detector's convention)."""
        self.fit(X)
        return self._labels(self.decision_scores_)

    def predict_proba(self, X, method: str = "linear", return_confidence: bool = False):
        """(N, 2) [P(inlier), P(outlier)]. "linear": the scores min-max scaled by the training scores and
        clipped to [0, 1]; "unify": erf((s - mu) / (sigma sqrt 2)) clipped (Kriegel et al. 2011)."""
        check_is_fitted(self, _FITTED)
        if method not in PROBA_METHODS:
            raise ConfigError(f"{method!r} is not a valid probability conversion method; use 'linear' or 'unify'",
                              param="method")
        s = self._anomaly_scores(X)
        probs = np.zeros((len(s), int(self._classes)))
        if method == "linear":
            lo, hi = float(self.decision_scores_.min()), float(self.decision_scores_.max())
            span = hi - lo if hi > lo else 1.0  # as scikit-learn's MinMaxScaler on a constant
            probs[:, 1] = ((s - lo) / span).clip(0, 1)
        else:
            from scipy.special import erf

            sigma = self._sigma if self._sigma > 0 else 1.0
            probs[:, 1] = erf((s - self._mu) / (sigma * np.sqrt(2))).clip(0, 1)
        probs[:, 0] = 1 - probs[:, 1]
        if return_confidence:
            return probs, self._confidence(s)
        return probs

    def predict_confidence(self, X) -> np.ndarray:
        """How consistently the detector would make the same prediction on slightly different training sets,
        in [0, 1] (Perini et al. 2020, ExCeeD)."""
        return self._confidence(self._anomaly_scores(X))

    def _confidence(self, s: np.ndarray) -> np.ndarray:
        from scipy.stats import binom

        n = len(self.decision_scores_)
        below = np.searchsorted(np.sort(self.decision_scores_), s, side="right")  # training scores <= s
        posterior = (1 + below) / (2 + n)  # Bayesian estimate of the outlier probability
        conf = 1 - binom.cdf(n - int(n * float(self.contamination)), n, posterior)
        pred = (s > self.threshold_).astype(int)
        return np.where(pred == 0, 1 - conf, conf)

    def predict_with_rejection(self, X, T: int = 32, return_stats: bool = False, delta: float = 0.1,
                               c_fp: float = 1, c_fn: float = 1, c_r: float = -1):
        """PyOD labels (0 inlier, 1 outlier) with -2 where the confidence is below ``1 - 2 exp(-T)`` (a
        rejection; Perini et al. 2023). ``return_stats``: also [expected rejection rate, its upper bound, the
        upper bound of the cost] (:meth:`compute_rejection_stats`). ``c_r`` < 0: the contamination."""
        check_is_fitted(self, _FITTED)
        if c_r < 0:
            if c_r != -1:  # -1 is the documented default: the contamination
                warnings.warn("the cost of rejection must be positive; it has been set to the contamination rate")
            c_r = float(self.contamination)
        if delta <= 0 or delta >= 1:
            warnings.warn("delta must lie in (0, 1); it has been set to 0.1")
            delta = 0.1
        self.rejection_threshold_ = 1 - 2 * np.exp(-T)
        s = self._anomaly_scores(X)
        pred = (s > self.threshold_).astype(int)
        conf = self._confidence(s)
        conf = np.where(pred == 0, 1 - conf, conf)  # as PyOD: undone by the symmetric distance below
        conf = 2 * np.abs(conf - 0.5)
        pred[conf <= self.rejection_threshold_] = -2
        if return_stats:
            return pred, list(self.compute_rejection_stats(T=T, delta=delta, c_fp=c_fp, c_fn=c_fn, c_r=c_r))
        return pred

    def compute_rejection_stats(self, T: int = 32, delta: float = 0.1, c_fp: float = 1, c_fn: float = 1,
                                c_r: float = -1, verbose: bool = False) -> tuple[float, float, float]:
        """(expected rejection rate, its upper bound holding with probability 1 - delta, the upper bound of the
        cost), PyOD's formulas (Perini et al. 2023)."""
        from scipy.optimize import root_scalar
        from scipy.stats import binom

        check_is_fitted(self, _FITTED)
        gamma = float(self.contamination)
        c_r = gamma if c_r < 0 else c_r
        delta = 0.1 if delta <= 0 or delta >= 1 else delta
        n = len(self.decision_scores_)
        k = int(n * gamma) - 1

        def quantile(level: float) -> float:
            return root_scalar(lambda p: binom.cdf(k, n, p) - level, bracket=[0, 1], method="brentq").root

        q1, q2 = quantile(1 - np.exp(-T)), quantile(np.exp(-T))
        expected = q2 - q1
        right = min(1.0, (-gamma * (n + 2) + n + 1) / n + (T * (n + 2)) / np.sqrt(2 * n ** 3 * T))
        inner = 0.5 * n ** 5 * (2 * n * (-3 * gamma ** 2 - 2 * n * (1 - gamma) ** 2 + 4 * gamma - 3) + T * (n + 2) ** 2 - 8)
        left = max(0.0, (2 + n * (1 - gamma) * (n + 1)) / n ** 2 - np.sqrt(inner) / n ** 4)
        upper_rate = right - left + 2 * np.sqrt(np.log(2 / delta) / (2 * n))
        upper_cost = min(gamma, q1) * c_fp + min(1 - q2, gamma) * c_fn + (q2 - q1) * c_r
        if verbose:
            print(f"expected rejection rate {expected:.4f}, upper bound {upper_rate:.4f}, upper bound cost {upper_cost:.4f}")
        return float(expected), float(upper_rate), float(upper_cost)

    def _predict_rank(self, X, normalized: bool = False) -> np.ndarray:
        """Outlyingness rank of each sample among the training scores (PyOD, for combining detectors)."""
        s = self._anomaly_scores(X)
        ranks = np.searchsorted(np.sort(self.decision_scores_), s)
        return ranks / ranks.max() if normalized and ranks.max() > 0 else ranks

    def fit_predict_score(self, X, y, scoring: str = "roc_auc_score") -> float:
        """Deprecated in PyOD (kept for its users): fit on X, then ROC-AUC or precision @ n of
        ``decision_scores_`` against ``y``."""
        warnings.warn("fit_predict_score is deprecated (as in PyOD): fit, then score decision_scores_",
                      FutureWarning, stacklevel=2)
        if scoring not in ("roc_auc_score", "prc_n_score"):  # checked before the (long) fit
            raise UnknownScoring(f"scoring must be 'roc_auc_score' or 'prc_n_score' (PyOD's built-in scores), got {scoring!r}",
                                 param="scoring")
        self.fit(X)
        if scoring == "roc_auc_score":
            return auroc(self.decision_scores_, y)
        return precision_n_scores(y, self.decision_scores_)


class UnknownScoring(ConfigError, NotImplementedError):
    """A scoring name PyOD does not define: bad input for aekit's CLI (exit 2), NotImplementedError as in PyOD."""


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


def odds_names(spec: str) -> list[str]:
    """``odds:cardio,pima`` or ``odds:cardio,odds:pima`` -> ["cardio", "pima"]."""
    names = [part.strip().removeprefix("odds:").strip() for part in spec.strip().removeprefix("odds:").split(",")]
    if not names or not all(names):
        raise ConfigError(f"--dataset {spec!r}: name the ODDS tables like odds:cardio,pima", param="dataset")
    return names


def _pyod_detectors() -> dict[str, Any]:
    """PyOD's AutoEncoder and VAE at their defaults, when PyOD is installed (it is not an aekit dependency)."""
    try:
        from pyod.models.auto_encoder import AutoEncoder
        from pyod.models.vae import VAE
    except ImportError:
        return {}
    return {"pyod-ae": lambda seed, c: AutoEncoder(contamination=c, random_state=seed, verbose=0),
            "pyod-vae": lambda seed, c: VAE(contamination=c, random_state=seed, verbose=0)}


def odds_benchmark(datasets: list[str], models=("ae", "vae"), seeds: int = 3, epochs: int | None = None,
                   score_type: str = "recon", data_dir: str | Path | None = None,
                   detector_options: dict[str, Any] | None = None, log=print) -> dict[str, Any]:
    """PyOD's benchmark protocol on ODDS tables (``DATA_DIR/NAME.mat``, read by scipy): for each seed a 60/40
    train/test split, an unsupervised fit on the train part (outliers included), ROC-AUC and precision @ n on
    the test part; mean and standard deviation over the seeds. PyOD's AutoEncoder and VAE run beside aekit's
    detectors when PyOD is installed (their inputs standardised on the train part, as PyOD's benchmark does).
    ``epochs`` None: the detector's default. Everything that can fail (missing files, bad options) is checked
    before the first training."""
    import time

    from sklearn.model_selection import train_test_split

    from .data.tables import _odds_path, check_finite, read_mat

    _whole("seeds", seeds, 1)
    epochs = AnomalyDetector().epochs if epochs is None else _whole("epochs", epochs, 1)
    _choice("score_type", score_type, SCORES)
    root = Path(data_dir).expanduser() if data_dir is not None else None
    tables = {}
    for name in datasets:
        t = read_mat(_odds_path(name, root))
        if t.labels is None:
            raise DataError(f"odds:{name}: the file has no labels y; the benchmark needs them")
        check_finite(t, "none")
        y = (np.asarray(t.labels, dtype=np.float64) != 0).astype(int)
        if y.sum() < 2 or y.sum() > len(y) - 2:
            raise DataError(f"odds:{name}: needs both normal samples and outliers (has {int(y.sum())} of {len(y)})")
        tables[name] = (t.values, y)
    opts = dict(detector_options or {})
    for m in models:  # options checked before any training
        AnomalyDetector(model=m, epochs=epochs, score_type=score_type, **opts)._check_options()
        if score_type != "recon":
            from .registry import build_model

            _check_likelihood_score(build_model(m, input_shape=(1, 1, 2), loss=opts.get("loss") or "mse"), score_type)
    runners: dict[str, Any] = {m: m for m in models}
    runners.update(_pyod_detectors())
    if len(runners) == len(models):
        log("PyOD is not installed: aekit's detectors only (pip install pyod to run PyOD's AE and VAE beside them)")
    out: dict[str, Any] = {"datasets": {}, "settings": {"models": list(runners), "seeds": seeds, "epochs": epochs,
                                                        "score_type": score_type, "protocol": "60/40 split per seed, "
                                                        "unsupervised fit on train (outliers included), test ROC-AUC and P@n",
                                                        **opts}}
    t0 = time.perf_counter()
    for name, (x, y) in tables.items():
        entry: dict[str, Any] = {"n": int(len(x)), "features": int(x.shape[1]), "outliers": round(float(y.mean()), 4),
                                 "models": {}}
        for label, runner in runners.items():
            rocs, prns = [], []
            for seed in range(seeds):
                x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.4, random_state=seed)
                c = min(0.5, max(float(y_tr.mean()), 1e-3))
                if isinstance(runner, str):
                    det = AnomalyDetector(model=runner, epochs=epochs, score_type=score_type, seed=seed,
                                          contamination=c, **opts).fit(x_tr)
                    s = det.decision_function(x_te)
                else:
                    mu, sd = x_tr.mean(0), x_tr.std(0)
                    sd = np.where(sd > 0, sd, 1.0)
                    s = runner(seed, c).fit((x_tr - mu) / sd).decision_function((x_te - mu) / sd)
                rocs.append(auroc(s, y_te))
                prns.append(precision_n_scores(y_te, s))
            entry["models"][label] = {"roc_auc": [round(v, 4) for v in rocs], "roc_auc_mean": round(float(np.mean(rocs)), 4),
                                      "roc_auc_std": round(float(np.std(rocs)), 4), "prn_mean": round(float(np.mean(prns)), 4),
                                      "prn_std": round(float(np.std(prns)), 4)}
            log(f"odds:{name} {label}: ROC-AUC {np.mean(rocs):.3f} ± {np.std(rocs):.3f}, P@n {np.mean(prns):.3f} "
                f"({time.perf_counter() - t0:.0f}s so far)")
        out["datasets"][name] = entry
    out["mean"] = {label: round(float(np.mean([d["models"][label]["roc_auc_mean"] for d in out["datasets"].values()])), 4)
                   for label in runners}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def odds_markdown(result: dict[str, Any]) -> str:
    """A markdown table: test ROC-AUC (mean ± std over the seeds) per ODDS table and detector, and the mean."""
    labels = list(result["settings"]["models"])
    lines = ["| data set (n, features, outliers) | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for name, d in result["datasets"].items():
        cells = [f"{d['models'][m]['roc_auc_mean']:.3f} ± {d['models'][m]['roc_auc_std']:.3f}" for m in labels]
        lines.append(f"| {name} ({d['n']}, {d['features']}, {100 * d['outliers']:.1f}%) | " + " | ".join(cells) + " |")
    lines.append("| **mean** | " + " | ".join(f"**{result['mean'][m]:.3f}**" for m in labels) + " |")
    return "\n".join(lines) + "\n"


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


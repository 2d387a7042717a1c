"""A scikit-learn transformer that trains an aekit autoencoder: ``transform`` = encode, ``inverse_transform`` =
decode, ``score`` = minus the reconstruction error. Works in ``Pipeline``, ``GridSearchCV`` and ``clone``.

X is images (N, H, W), (N, H, W, C) or (N, C, H, W) — uint8, or floats in [0, 1] — or a table (N, D).
Tables are min-max scaled per feature with the minimum and range learned in ``fit`` (values outside the
fitted range are clipped; training sees them at 8-bit resolution, range/255, as aekit's data are uint8), and read as (1, 1, D) "images" (use a dense model); give ``image_shape`` to
read flat rows as images instead, scaled like images. Training goes through ``aekit.train.train``
(Lightning) into a temporary folder; the fitted model stays in memory (``model_``).
"""

from __future__ import annotations

import tempfile
import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data


class AutoencoderTransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Autoencoder features for scikit-learn.

    model: registered aekit model ("vae", "ae", "conv-ae", ...); latent_dim: code size (the output width);
    hidden_dims: dense widths (None: the model's preset); loss: "bce" | "mse" | None (preset);
    image_shape: (C, H, W) to read flat rows as images; epochs, batch_size, lr, patience (0: off), seed:
    training options (same seed, same data -> same model).
    """

    def __init__(self, model="vae", latent_dim=16, hidden_dims=None, loss=None, image_shape=None, epochs=10,
                 batch_size=128, lr=1e-3, patience=0, seed=0):
        self.model = model
        self.latent_dim = latent_dim
        self.hidden_dims = hidden_dims
        self.loss = loss
        self.image_shape = image_shape
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.patience = patience
        self.seed = seed

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.transformer_tags.preserves_dtype = []  # codes are float32 whatever comes in
        tags.non_deterministic = False
        return tags

    # ------------------------------------------------------------ scaling

    def _validate(self, X, reset: bool) -> np.ndarray:
        X = validate_data(self, X, reset=reset, allow_nd=True, dtype=None, ensure_min_features=1)
        if X.dtype.kind not in "biuf":
            X = X.astype(np.float64)  # raises on strings, like every scikit-learn estimator
        if X.ndim > 4:
            raise ValueError(f"X must be 2-D (N, D) or image-shaped (N, H, W[, C]), got {X.ndim}-D")
        if reset:
            self.input_ndim_ = X.ndim
        elif X.ndim != self.input_ndim_:
            raise ValueError(f"X is {X.ndim}-D but the transformer was fitted on {self.input_ndim_}-D data")
        return X

    def _is_table(self) -> bool:
        return self.input_ndim_ == 2 and self.image_shape is None

    def _to_unit(self, X: np.ndarray, reset: bool) -> np.ndarray:
        """X -> float32 (N, C, H, W) in [0, 1]."""
        from .data.arrays import to_nchw

        if self._is_table():
            Xf = X.astype(np.float64)
            if reset:
                self.data_min_ = Xf.min(0)
                rng = Xf.max(0) - self.data_min_
                self.data_range_ = np.where(rng > 0, rng, 1.0)
            unit = np.clip((Xf - self.data_min_) / self.data_range_, 0.0, 1.0)
            return unit.astype(np.float32).reshape(len(X), 1, 1, X.shape[1])
        scale = 255.0 if X.dtype.kind in "iu" else 1.0  # integer pixels are 0..255, float pixels [0, 1]
        if reset:
            self.pixel_scale_ = scale  # inverse_transform answers in the scale fit saw
        unit = X.astype(np.float32) / np.float32(scale)
        if unit.size and (unit.min() < 0 or unit.max() > 1):
            raise ValueError("image pixels must be integers 0..255 or floats in [0, 1]; "
                             f"found {unit.min() * scale:g}..{unit.max() * scale:g}")
        shape = tuple(self.image_shape) if self.image_shape is not None else None
        try:
            return np.ascontiguousarray(to_nchw(unit, "X", shape))
        except Exception as exc:  # aekit's DataError is a ValueError; keep the message
            raise ValueError(str(exc)) from None

    def _from_unit(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        if self._is_table():
            return x.reshape(n, -1).astype(np.float64) * self.data_range_ + self.data_min_
        out = x.astype(np.float64) * self.pixel_scale_
        return out.reshape(n, *self.fit_shape_)

    # ------------------------------------------------------------ fit / transform

    def fit(self, X, y=None):
        from .data import ImageData
        from .registry import build_model
        from .train import TrainConfig, train

        X = self._validate(X, reset=True)
        unit = self._to_unit(X, reset=True)  # (N, C, H, W)
        self.fit_shape_ = X.shape[1:]
        images = torch.from_numpy(np.rint(unit * 255.0).astype(np.uint8))  # the trainer's data are uint8
        n = len(images)
        data = ImageData(images=images, labels=torch.full((n,), -1, dtype=torch.int64), class_names=[],
                         splits={"train": torch.arange(n), "val": torch.arange(0), "test": torch.arange(0)},
                         name="array")
        overrides = {"latent_dim": int(self.latent_dim)}
        if self.hidden_dims is not None:
            overrides["hidden_dims"] = tuple(int(h) for h in self.hidden_dims)
        if self.loss is not None:
            overrides["loss"] = self.loss
        torch.manual_seed(self.seed)  # same seed -> same initial weights
        model = build_model(self.model, input_shape=data.shape, **overrides)
        cfg = TrainConfig(epochs=int(self.epochs), batch_size=int(self.batch_size), lr=float(self.lr),
                          patience=int(self.patience), seed=int(self.seed), progress=False)
        with tempfile.TemporaryDirectory(prefix="aekit-sklearn-") as tmp, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*(validation_step|val_dataloader).*")  # no val split: on purpose
            run = train(model, data, cfg, tmp + "/run", data_options={"spec": "array"})
        self.model_ = run.model.eval()
        self.n_epochs_ = int(run.config["result"]["epochs_completed"])
        self._n_features_out = int(self.model_.code_size)  # a spatial (D, h, w) code is output flattened
        return self

    def _unit_tensor(self, X) -> torch.Tensor:
        check_is_fitted(self, "model_")
        X = self._validate(X, reset=False)
        if tuple(X.shape[1:]) != tuple(self.fit_shape_):
            raise ValueError(f"X has samples of shape {tuple(X.shape[1:])}, but {type(self).__name__} was fitted "
                             f"on samples of shape {tuple(self.fit_shape_)}")
        return torch.from_numpy(self._to_unit(X, reset=False))

    def transform(self, X) -> np.ndarray:
        """Codes (N, code size) float32: the deterministic encoding (VAE: posterior mean), flattened."""
        from .explore import encode_all

        x = self._unit_tensor(X)
        return encode_all(self.model_, x, 4096).reshape(len(x), self._n_features_out)

    def inverse_transform(self, X) -> np.ndarray:
        """Decode codes back to the input space (the fitted scale and shape)."""
        from .explore import decode_all

        check_is_fitted(self, "model_")
        Z = np.asarray(X, dtype=np.float32)
        size = self._n_features_out
        if Z.ndim != 2 or Z.shape[1] != size:
            raise ValueError(f"inverse_transform expects codes of shape (N, {size}), got {Z.shape}")
        if not np.isfinite(Z).all():
            raise ValueError("codes contain NaN or infinity")
        return self._from_unit(decode_all(self.model_, Z, 4096))

    def score(self, X, y=None) -> float:
        """Minus the mean squared reconstruction error per value, in the [0, 1] scale (higher is better)."""
        x = self._unit_tensor(X)
        with torch.inference_mode():
            err = sum(float((self.model_.reconstruct(b) - b).pow(2).sum()) for b in x.split(4096))
        return -err / max(x.numel(), 1)

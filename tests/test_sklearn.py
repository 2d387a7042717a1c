"""AutoencoderTransformer: scikit-learn's estimator checks, Pipeline, GridSearchCV, clone, scaling."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from aekit.sklearn import AutoencoderTransformer

TINY = dict(model="ae", latent_dim=2, hidden_dims=(8,), epochs=1, batch_size=64)


def test_passes_sklearn_estimator_checks():
    from sklearn.utils.estimator_checks import check_estimator

    results = check_estimator(AutoencoderTransformer(**TINY), on_fail=None)
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in results if r["status"] == "failed"]
    skipped = {r["check_name"] for r in results if r["status"] == "skipped"}
    assert not failed, failed
    # Only the array-API check may be skipped (it needs SCIPY_ARRAY_API=1 and a torch/cupy namespace).
    assert skipped <= {"check_array_api_input"}, skipped
    assert len(results) > 40


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    x = np.rint(d.images * (255 / 16)).astype(np.uint8)  # (N, 8, 8) uint8 images
    return x, d.target


def test_images_fit_transform_inverse_score(digits):
    x, _ = digits
    est = AutoencoderTransformer(model="ae", latent_dim=4, epochs=4, seed=1)
    codes = est.fit_transform(x)
    assert codes.shape == (len(x), 4) and codes.dtype == np.float32
    np.testing.assert_allclose(est.transform(x), codes, atol=1e-6)  # deterministic encode
    assert est.get_feature_names_out().tolist() == [f"autoencodertransformer{i}" for i in range(4)]
    back = est.inverse_transform(codes)
    assert back.shape == x.shape and 0 <= back.min() and back.max() <= 255  # uint8 in -> 0..255 back
    # same images as floats in [0, 1] give the same codes
    np.testing.assert_allclose(est.transform(x / 255.0), codes, atol=1e-4)
    # score = -MSE in [0, 1] units, and more training gives a better score
    short = AutoencoderTransformer(model="ae", latent_dim=4, epochs=1, seed=1).fit(x)
    err = ((back / 255.0 - x / 255.0) ** 2).mean()
    assert est.score(x) == pytest.approx(-err, rel=1e-3)
    assert est.score(x) > short.score(x)
    with pytest.raises(ValueError, match="features"):
        est.transform(x[:, :4])
    with pytest.raises(ValueError, match=r"shape \(8, 4\).*fitted on samples of shape \(8, 8\)"):
        est.transform(x[:, :, :4])  # same first axis, other width


def test_tabular_min_max_scaling_round_trip():
    rng = np.random.default_rng(0)
    t = rng.normal(size=(400, 1))
    X = np.hstack([1000 + 50 * t, -3 + 0.01 * t, 7 * t ** 2])  # features of very different scales
    est = AutoencoderTransformer(model="ae", latent_dim=1, hidden_dims=(16,), loss="mse", epochs=15, batch_size=32,
                                 lr=1e-2).fit(X)
    np.testing.assert_allclose(est.data_min_, X.min(0))
    np.testing.assert_allclose(est.data_range_, X.max(0) - X.min(0))
    back = est.inverse_transform(est.transform(X))
    assert back.shape == X.shape
    rel = np.abs(back - X).mean(0) / X.std(0)
    # the 1-D code carries each feature back in its own units (the quadratic one less exactly)
    assert (rel[:2] < 0.2).all() and rel[2] < 0.7, rel


def test_clone_params_pipeline_and_grid_search(digits):
    x, y = digits
    est = AutoencoderTransformer(model="vae", latent_dim=8, epochs=3)
    assert clone(est).get_params() == est.get_params()
    assert est.set_params(latent_dim=3).latent_dim == 3
    fitted = AutoencoderTransformer(**TINY).fit(x[:200])
    fresh = clone(fitted)  # clone copies parameters, never the fitted model
    assert hasattr(fitted, "model_") and not hasattr(fresh, "model_") and fresh.get_params() == fitted.get_params()
    pipe = make_pipeline(AutoencoderTransformer(model="ae", epochs=3, hidden_dims=(64,)),
                         LogisticRegression(max_iter=300))
    grid = GridSearchCV(pipe, {"autoencodertransformer__latent_dim": [2, 16]}, cv=2).fit(x[:800], y[:800])
    assert grid.best_params_["autoencodertransformer__latent_dim"] == 16  # more code, more information
    assert grid.score(x[800:], y[800:]) > 0.5  # far above 10-class chance


def test_mnist_100_labels_codes_beat_pca():
    """The few-labels example on the bundled MNIST (benchmarks/fewlabels.py is the full-size version):
    a deep autoencoder fitted without labels, then logistic regression on 100 labelled images."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    from aekit.data import load_data

    d = load_data("mnist")
    xtr, ytr = (t.numpy()[:12000] for t in d.split("train"))
    xte, yte = (t.numpy()[:5000] for t in d.split("test"))
    xtr, xte = xtr[:, 0], xte[:, 0]  # (N, 28, 28) uint8
    rng = np.random.default_rng(0)
    few = np.concatenate([rng.choice(np.flatnonzero(ytr == c), 10, replace=False) for c in range(10)])
    clf = lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))  # noqa: E731
    flat = lambda x: x.reshape(len(x), -1) / 255.0  # noqa: E731
    pca = PCA(16, random_state=0).fit(flat(xtr))
    pca_acc = clf().fit(pca.transform(flat(xtr[few])), ytr[few]).score(pca.transform(flat(xte)), yte)
    ae = AutoencoderTransformer(model="deep-ae", latent_dim=16, epochs=4, seed=0).fit(xtr)
    codes = ae.transform(xte)
    assert codes.shape == (5000, 16)
    ae_acc = clf().fit(ae.transform(xtr[few]), ytr[few]).score(codes, yte)
    assert ae_acc > 0.55 and ae_acc > pca_acc, (ae_acc, pca_acc)  # measured: 0.67 vs 0.61

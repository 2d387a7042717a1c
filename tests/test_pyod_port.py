"""PyOD's own detector tests (pyod/test/test_auto_encoder.py, test_vae.py, the clone case of
test_auto_encoder_torch.py, and test_base.py's contamination, tags and check_is_fitted cases) ported to
``aekit.anomaly.AnomalyDetector``, on PyOD's ``generate_data`` recipe at a smaller size; PyOD's formulas
(linear and unify probabilities, confidence, rank) checked against a direct re-computation; and
scikit-learn's ``check_estimator`` on the detector in scikit-learn's convention."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.utils.validation import check_is_fitted

from aekit.anomaly import AnomalyDetector
from aekit.errors import ConfigError, DataError

torch.set_num_threads(1)  # several test processes share the cores

N_TRAIN, N_TEST, N_FEATURES, CONTAMINATION, ROC_FLOOR = 600, 200, 30, 0.1, 0.8


def generate_data(n_train=1000, n_test=500, n_features=2, contamination=0.1, offset=10, random_state=None):
    """PyOD's ``pyod.utils.data.generate_data`` recipe (behaviour='new'): inliers are ``coef * N(0, 1) + o``,
    outliers uniform on [-o, o]^D, with o a random integer in [1, offset) and coef in [0.001, 1.001); the
    first ``n * (1 - contamination)`` rows of each split are inliers (label 0), the rest outliers (1)."""
    rs = np.random.RandomState(random_state)
    o = rs.randint(low=offset)
    if o == 0:
        o = rs.randint(low=1, high=offset)
    coef = rs.random_sample() + 0.001

    def split(n):
        n_out = int(n * contamination)
        n_in = n - n_out
        inliers = coef * rs.randn(n_in, n_features) + o
        outliers = rs.uniform(low=-o, high=o, size=(n_out, n_features))
        return np.r_[inliers, outliers], np.r_[np.zeros(n_in), np.ones(n_out)]

    x_train, y_train = split(n_train)
    x_test, y_test = split(n_test)
    return x_train, x_test, y_train, y_test


@pytest.fixture(scope="module")
def data():
    return generate_data(n_train=N_TRAIN, n_test=N_TEST, n_features=N_FEATURES, contamination=CONTAMINATION,
                         random_state=42)


# PyOD's AutoEncoder and VAE (epoch_num=5 there) -> aekit's dense AE and VAE; small nets, few epochs.
DETECTORS = {"ae": dict(model="ae", hidden_dims=(32, 16), latent_dim=4, epochs=5),
             "vae": dict(model="vae", hidden_dims=(32,), latent_dim=4, epochs=5)}


@pytest.fixture(scope="module", params=sorted(DETECTORS))
def clf(request, data):
    x_train, *_ = data
    return AnomalyDetector(contamination=CONTAMINATION, **DETECTORS[request.param]).fit(x_train)


def in_range(a, lo, hi):
    return a.min() >= lo and a.max() <= hi


# ---- pyod/test/test_auto_encoder.py and test_vae.py, TestAutoEncoder / TestVAE --------------------------


def test_parameters(clf):
    for attr in ("decision_scores_", "labels_", "threshold_", "_mu", "_sigma", "model"):
        assert hasattr(clf, attr) and getattr(clf, attr) is not None, attr
    assert isinstance(clf.model_, torch.nn.Module)  # the trained network (PyOD keeps it in .model)


def test_train_scores(clf, data):
    assert len(clf.decision_scores_) == data[0].shape[0]


def test_prediction_scores(clf, data):
    _, x_test, _, y_test = data
    pred_scores = clf.decision_function(x_test)
    assert pred_scores.shape[0] == x_test.shape[0]
    assert roc_auc_score(y_test, pred_scores) >= ROC_FLOOR


def test_prediction_labels(clf, data):
    _, x_test, _, y_test = data
    pred_labels = clf.predict(x_test)
    assert pred_labels.shape == y_test.shape


def test_prediction_proba(clf, data):
    assert in_range(clf.predict_proba(data[1]), 0, 1)


def test_prediction_proba_linear(clf, data):
    assert in_range(clf.predict_proba(data[1], method="linear"), 0, 1)


def test_prediction_proba_unify(clf, data):
    assert in_range(clf.predict_proba(data[1], method="unify"), 0, 1)


def test_prediction_proba_parameter(clf, data):
    with pytest.raises(ValueError):
        clf.predict_proba(data[1], method="something")


def test_prediction_labels_confidence(clf, data):
    _, x_test, _, y_test = data
    pred_labels, confidence = clf.predict(x_test, return_confidence=True)
    assert pred_labels.shape == y_test.shape and confidence.shape == y_test.shape
    assert in_range(confidence, 0, 1)


def test_prediction_proba_linear_confidence(clf, data):
    _, x_test, _, y_test = data
    pred_proba, confidence = clf.predict_proba(x_test, method="linear", return_confidence=True)
    assert in_range(pred_proba, 0, 1)
    assert confidence.shape == y_test.shape and in_range(confidence, 0, 1)


def test_prediction_with_rejection(clf, data):
    _, x_test, _, y_test = data
    pred_labels = clf.predict_with_rejection(x_test, return_stats=False)
    assert pred_labels.shape == y_test.shape


def test_prediction_with_rejection_stats(clf, data):
    _, [expected_rejrate, ub_rejrate, ub_cost] = clf.predict_with_rejection(data[1], return_stats=True)
    assert 0 <= expected_rejrate <= 1 and 0 <= ub_rejrate <= 1 and ub_cost >= 0


def test_fit_predict(clf, data):
    x_train, _, y_train, _ = data
    pred_labels = clone(clf).fit_predict(x_train)
    assert pred_labels.shape == y_train.shape


def test_fit_predict_score(clf, data):
    _, x_test, _, y_test = data
    det = clone(clf)
    with pytest.warns(FutureWarning):  # deprecated in PyOD too
        det.fit_predict_score(x_test, y_test)
        det.fit_predict_score(x_test, y_test, scoring="roc_auc_score")
        det.fit_predict_score(x_test, y_test, scoring="prc_n_score")
        with pytest.raises(NotImplementedError):
            det.fit_predict_score(x_test, y_test, scoring="something")


def test_no_nan_scores_without_preprocessing():
    """test_vae.py: values of size ~50 with no scaling (PyOD's preprocessing=False) give finite scores."""
    x = np.random.RandomState(42).randn(64, 10) * 50
    det = AnomalyDetector(model="vae", epochs=3, batch_size=32, contamination=0.1, scaler="none",
                          hidden_dims=(16,), latent_dim=2).fit(x)
    assert np.isfinite(det.decision_scores_).all()
    assert np.isfinite(det.decision_function(x[:32])).all()


def test_model_clone(clf):
    """test_auto_encoder_torch.py's clone case: the parameters are copied, the fitted state is not."""
    twin = clone(clf)
    assert twin.get_params() == clf.get_params()
    assert not hasattr(twin, "decision_scores_") and not hasattr(twin, "model_")


# ---- pyod/test/test_base.py ------------------------------------------------------------------------------


def test_init_contamination(data):
    """test_init: contamination must lie in (0, 0.5] (checked in fit: scikit-learn constructors only store)."""
    assert AnomalyDetector().contamination == 0.1
    assert AnomalyDetector(contamination=0.2).contamination == 0.2
    for bad in (0.51, 0, -0.5):
        with pytest.raises(ValueError, match="contamination"):
            AnomalyDetector(contamination=bad, epochs=1).fit(data[0][:50])


def test_sklearn_tags_and_check_is_fitted(clf):
    from sklearn.utils import get_tags
    from sklearn.exceptions import NotFittedError

    assert get_tags(AnomalyDetector()).estimator_type == "outlier_detector"
    check_is_fitted(clf, ["decision_scores_", "threshold_", "labels_"])
    with pytest.raises(NotFittedError):
        check_is_fitted(AnomalyDetector())
    with pytest.raises(NotFittedError):
        AnomalyDetector().predict(np.zeros((3, 2)))


def test_get_set_params_and_repr():
    det = AnomalyDetector(latent_dim=3)
    assert det.get_params()["latent_dim"] == 3 and det.set_params(epochs=7).epochs == 7
    with pytest.raises(ValueError):
        det.set_params(nonsense=1)
    assert repr(det) == "AnomalyDetector(epochs=7, latent_dim=3)"


# ---- PyOD's BaseDetector formulas, recomputed here ------------------------------------------------------


def test_formulas_match_pyod(clf, data):
    from scipy.special import erf
    from scipy.stats import binom
    from sklearn.preprocessing import MinMaxScaler

    train, x_test = clf.decision_scores_, data[1]
    s = clf.decision_function(x_test)
    assert clf.threshold_ == np.percentile(train, 100 * (1 - CONTAMINATION))
    np.testing.assert_array_equal(clf.labels_, (train > clf.threshold_).astype(int))
    np.testing.assert_array_equal(clf.predict(x_test), (s > clf.threshold_).astype(int))
    assert clf._mu == np.mean(train) and clf._sigma == np.std(train)
    linear = MinMaxScaler().fit(train.reshape(-1, 1)).transform(s.reshape(-1, 1)).ravel().clip(0, 1)
    np.testing.assert_allclose(clf.predict_proba(x_test)[:, 1], linear, rtol=1e-12)
    np.testing.assert_allclose(clf.predict_proba(x_test).sum(1), 1)
    unify = erf((s - clf._mu) / (clf._sigma * np.sqrt(2))).clip(0, 1)
    np.testing.assert_allclose(clf.predict_proba(x_test, method="unify")[:, 1], unify, rtol=1e-12)
    n = len(train)
    post = (1 + np.array([np.count_nonzero(train <= v) for v in s])) / (2 + n)
    conf = 1 - binom.cdf(n - int(n * CONTAMINATION), n, post)
    conf = np.where(s > clf.threshold_, conf, 1 - conf)
    np.testing.assert_allclose(clf.predict_confidence(x_test), conf, rtol=1e-12)
    np.testing.assert_array_equal(clf._predict_rank(x_test), np.searchsorted(np.sort(train), s))
    rej = clf.predict_with_rejection(x_test, T=2)  # a low T rejects the uncertain ones: -2
    assert set(np.unique(rej)) <= {-2, 0, 1} and (rej == -2).any()
    np.testing.assert_array_equal(rej[rej != -2], clf.predict(x_test)[rej != -2])


def test_outliers_score_higher_and_refit_is_repeatable(data):
    x_train, x_test, _, y_test = data
    a = AnomalyDetector(hidden_dims=(16,), latent_dim=2, epochs=3, seed=3).fit(x_train)
    b = clone(a).fit(x_train)
    np.testing.assert_array_equal(a.decision_scores_, b.decision_scores_)  # same seed, same data -> same model
    assert roc_auc_score(y_test, a.decision_function(x_test)) > 0.8
    assert a.n_features_in_ == N_FEATURES and a.scaler_.kind == "standard"
    # the scaler was fit on X: standard scaling puts the training data's mean at 0.5 in the model's space
    np.testing.assert_allclose(a.scaler_.transform(x_train).mean(0), 0.5, atol=1e-6)


# ---- scikit-learn -----------------------------------------------------------------------------------------


def test_sklearn_convention_and_check_estimator(data):
    from sklearn.utils.estimator_checks import check_estimator

    x_train, x_test, *_ = data
    det = AnomalyDetector(convention="sklearn", hidden_dims=(16,), latent_dim=2, epochs=2).fit(x_train)
    pred, dec = det.predict(x_test), det.decision_function(x_test)
    assert set(np.unique(pred)) <= {-1, 1}
    np.testing.assert_array_equal(pred == -1, dec < 0)  # outliers: negative decision, as IsolationForest
    np.testing.assert_allclose(dec, det.score_samples(x_test) - det.offset_)

    results = check_estimator(AnomalyDetector(convention="sklearn", hidden_dims=(8,), latent_dim=1, epochs=2),
                              on_fail=None)
    failed = [(r["check_name"], str(r["exception"])[:300]) for r in results if r["status"] == "failed"]
    skipped = {r["check_name"] for r in results if r["status"] == "skipped"}
    assert not failed, failed
    # skipped only for what this environment lacks: the array-API namespace, pandas
    assert skipped <= {"check_array_api_input", "check_classifier_data_not_an_array"}, skipped
    assert len(results) > 40


def test_bad_tables_are_one_line_errors(data):
    x_train = data[0][:80]
    det = AnomalyDetector(hidden_dims=(8,), latent_dim=2, epochs=1).fit(x_train)
    bad = x_train.copy()
    bad[5, 3] = np.nan
    with pytest.raises(DataError, match=r"column 'f3' has a missing value \(NaN\) at row 5"):
        det.decision_function(bad)
    with pytest.raises(DataError, match=r"column 'f3' has a missing value"):
        clone(det).fit(bad)
    imputed = clone(det).set_params(impute="median").fit(bad)  # imputed with the column's median
    np.testing.assert_allclose(imputed.scaler_.fill[3], np.nanmedian(bad[:, 3]))
    assert np.isfinite(imputed.decision_function(bad)).all()
    with pytest.raises(DataError, match=f"X has 29 features, but AnomalyDetector is expecting {N_FEATURES}"):
        det.predict(x_train[:, :-1])
    rows = x_train[:3].tolist()
    rows[1] = rows[1][:-2]
    with pytest.raises(DataError, match="rows have different lengths"):
        det.predict(rows)
    text = x_train[:4].astype(object)
    text[2, 7] = "red"
    with pytest.raises(DataError, match=r"column 'f7' is not numeric \(row 2: 'red'\)"):
        det.predict(text)
    for option, value, words in (("score_type", "elbo", "needs a VAE"), ("scaler", "robust", "scaler must be one of"),
                                 ("model", "nope", "nope"), ("epochs", 0, "epochs must be")):
        with pytest.raises(ConfigError, match=words) as info:
            clone(det).set_params(**{option: value}).fit(x_train)
        assert "\n" not in str(info.value)

"""AnomalyDetector (PyOD interface), the anomaly CLI and the one-class benchmark, on trained digits runs."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from aekit.anomaly import AnomalyDetector, anomaly_scores, auroc, benchmark_markdown
from aekit.cli import main
from aekit.errors import ConfigError, DataError
from aekit.train import load_run


# A few more epochs than the shared 3-epoch runs: a 3-epoch digits model still outputs near-uniform gray.
AE = dict(model="ae", latent_dim=8, epochs=10, lr=0.005)
VAE = dict(model="vae", latent_dim=2, epochs=10, lr=0.005)


def _odd_images(n: int, seed: int = 0) -> np.ndarray:
    """Clearly anomalous 8x8 images: white backgrounds with dark noise (digits are dark with bright strokes)."""
    return 255 - np.random.default_rng(seed).integers(0, 96, size=(n, 8, 8), dtype=np.uint8)


def test_detector_pyod_interface(trained_run):
    run = load_run(trained_run(**AE))
    data = run.data()
    train, _ = data.split("train")
    det = AnomalyDetector(run, contamination=0.1).fit(train)
    assert det.decision_scores_.shape == (len(train),)
    assert det.threshold_ == pytest.approx(np.quantile(det.decision_scores_, 0.9))
    assert det.labels_.mean() == pytest.approx(0.1, abs=0.01)  # contamination sets the flagged share on fit data
    test, _ = data.split("test")
    x = np.concatenate([test.numpy()[:, 0], _odd_images(50)])  # (N, H, W) uint8: real digits, then odd images
    is_odd = np.r_[np.zeros(len(test)), np.ones(50)]
    scores = det.decision_function(x)
    assert auroc(scores, is_odd) > 0.9  # white images reconstruct far worse than digits
    pred = det.predict(x)
    assert set(np.unique(pred)) <= {0, 1} and pred[is_odd == 1].mean() > 0.9
    proba = det.predict_proba(x)
    assert proba.shape == (len(x), 2) and np.allclose(proba.sum(1), 1) and (proba >= 0).all() and (proba <= 1).all()
    # floats in [0, 1] and torch-style (N, C, H, W) give the same scores as uint8
    np.testing.assert_allclose(det.decision_function(x[:, None] / 255.0), scores, rtol=1e-5)
    # the recon score is the per-image MSE of the reconstruction
    import torch

    xt = torch.from_numpy(x[:5, None]).float() / 255
    with torch.no_grad():
        ref = (run.model.reconstruct(xt) - xt).pow(2).flatten(1).mean(1).numpy()
    np.testing.assert_allclose(scores[:5], ref, rtol=1e-5)


def test_vae_likelihood_scores(trained_run):
    run = load_run(trained_run(**VAE))
    test, _ = run.data().split("test")
    elbo = anomaly_scores(run.model, test, "elbo", samples=1)
    nll = anomaly_scores(run.model, test, "nll", samples=64)
    assert np.isfinite(elbo).all() and np.isfinite(nll).all()
    assert nll.mean() <= elbo.mean() + 1e-3  # the IWAE bound is tighter than the ELBO (Burda et al. 2016)
    det = AnomalyDetector(run.path, score_type="nll", samples=16).fit(test)
    assert auroc(det.decision_function(np.concatenate([test.numpy(), _odd_images(40)[:, None]])),
                 np.r_[np.zeros(len(test)), np.ones(40)]) > 0.9


def test_detector_errors(trained_run):
    from sklearn.exceptions import NotFittedError

    run = load_run(trained_run(**AE))
    odd = _odd_images(3)
    with pytest.raises(ConfigError, match="needs a VAE"):  # checked in fit: scikit-learn constructors only store
        AnomalyDetector(run, score_type="elbo").fit(odd)
    with pytest.raises(ConfigError, match="contamination"):
        AnomalyDetector(run, contamination=0.9).fit(odd)
    det = AnomalyDetector(run)
    with pytest.raises(NotFittedError, match="not fitted"):
        det.predict(odd)
    with pytest.raises(DataError, match="28x28 but the run was trained on 8x8"):
        det.fit(np.zeros((4, 28, 28), np.uint8))
    bad = np.full((4, 8, 8), 0.5)
    bad[0, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        det.fit(bad)
    with pytest.raises(DataError, match="no images"):
        det.fit(np.zeros((0, 8, 8), np.uint8))


def test_anomaly_cli_writes_scores(trained_run, tmp_path):
    path = trained_run(**AE)
    out = tmp_path / "scores.csv"
    assert main(["anomaly", str(path), "--out", str(out), "--contamination", "0.2", "--no-progress"]) == 0
    rows = list(csv.DictReader(out.open()))
    run = load_run(path)
    test, labels = run.data().split("test")
    assert len(rows) == len(test) and [int(r["label"]) for r in rows] == labels.tolist()
    assert [int(r["index"]) for r in rows] == run.data().splits["test"].tolist()  # rows of the data set
    scores = np.array([float(r["score"]) for r in rows])
    np.testing.assert_allclose(scores, anomaly_scores(run.model, test), rtol=1e-4)
    assert {r["is_anomaly"] for r in rows} <= {"0", "1"}
    # data from a file: N x H x W odd images are flagged
    np.save(tmp_path / "noise.npy", _odd_images(20))
    assert main(["anomaly", str(path), "--data", str(tmp_path / "noise.npy"), "--split", "all",
                 "--out", str(tmp_path / "n.csv"), "--no-progress"]) == 0
    assert all(r["is_anomaly"] == "1" for r in csv.DictReader((tmp_path / "n.csv").open()))
    # a file of one's own is scored whole by default (not a random test split of it)
    assert main(["anomaly", str(path), "--data", str(tmp_path / "noise.npy"), "--out", str(tmp_path / "w.csv"),
                 "--no-progress"]) == 0
    assert [int(r["index"]) for r in csv.DictReader((tmp_path / "w.csv").open())] == list(range(20))


def test_anomaly_cli_checks_the_output_before_scoring(trained_run, tmp_path, capsys):
    path = str(trained_run(**AE))
    (tmp_path / "dir.csv").mkdir()
    (tmp_path / "afile").write_text("x")
    for out in (tmp_path / "dir.csv", tmp_path / "afile" / "s.csv"):
        capsys.readouterr()
        assert main(["anomaly", path, "--out", str(out), "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("aekit: error: --out") and str(out) in err and "\n" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "dir.csv"]  # no temporary files left


def test_scores_of_float_and_uint8_images_agree(trained_run):
    run = load_run(trained_run(**AE))
    test, _ = run.data().split("test")
    ref = anomaly_scores(run.model, test)
    np.testing.assert_allclose(anomaly_scores(run.model, test.float() / 255), ref, rtol=1e-5)  # not divided twice
    np.testing.assert_allclose(anomaly_scores(run.model, test.numpy()[:, 0]), ref, rtol=1e-5)  # (N, H, W) numpy
    # numpy scalars are fine as parameters; a wrong type is a typed one-line error
    det = AnomalyDetector(run, contamination=np.float32(0.2), samples=np.int64(3)).fit(test)
    assert det.threshold_ == pytest.approx(np.quantile(det.decision_scores_, 0.8))
    with pytest.raises(ConfigError, match="seed"):
        AnomalyDetector(run, seed="a").fit(test)
    with pytest.raises(ConfigError, match="batch_size"):
        AnomalyDetector(run, batch_size=0).fit(test)


def test_one_class_bench_cli(tmp_path, data_dir):
    out, md = tmp_path / "bench.json", tmp_path / "bench.md"
    assert main(["anomaly-bench", "--dataset", "digits", "--model", "ae", "--latent-dim", "4", "--epochs", "5", "--batch-size", "16", "--lr", "0.005",
                 "--classes", "0,1", "--out", str(out), "--markdown", str(md)]) == 0
    result = json.loads(out.read_text())
    assert set(result["per_class"]) == {"0", "1"}
    assert all(50 < v <= 100 for v in result["per_class"].values())  # better than chance after a few epochs
    assert result["mean"] == pytest.approx(np.mean(list(result["per_class"].values())), abs=0.01)
    assert "| 0 |" in md.read_text() and "Deep SVDD" in md.read_text()
    assert main(["anomaly-bench", "--dataset", "digits", "--classes", "", "--out", str(tmp_path / "e.json")]) == 2
    assert not (tmp_path / "e.json").exists()


def test_one_class_run_keeps_its_one_class_data(tmp_path):
    """A per-class run kept by anomaly-bench reloads as it was trained: train/val of its class only, the
    whole test split; `aekit anomaly` on it fits the threshold on that class."""
    runs = tmp_path / "runs"
    assert main(["anomaly-bench", "--dataset", "digits", "--model", "ae", "--latent-dim", "4", "--epochs", "2",
                 "--classes", "3", "--runs", str(runs), "--out", str(tmp_path / "b.json")]) == 0
    run = load_run(runs / "class-3")
    data = run.data()
    for split in ("train", "val"):
        assert len(data.split(split)[1]) > 0 and (data.split(split)[1] == 3).all()
    assert set(data.split("test")[1].tolist()) == set(range(10))
    # the benchmark's AUROC is the one a user gets from the kept run and `aekit anomaly`
    assert main(["anomaly", str(runs / "class-3"), "--out", str(tmp_path / "s.csv"), "--no-progress"]) == 0
    rows = list(csv.DictReader((tmp_path / "s.csv").open()))
    got = 100 * auroc(np.array([float(r["score"]) for r in rows]), np.array([int(r["label"]) != 3 for r in rows]))
    assert got == pytest.approx(json.loads((tmp_path / "b.json").read_text())["per_class"]["3"], abs=0.01)


def test_one_class_bench_refuses_bad_settings_before_training(tmp_path, capsys):
    from sklearn.datasets import load_digits

    runs = tmp_path / "runs"
    base = ["anomaly-bench", "--dataset", "digits", "--model", "ae", "--epochs", "1", "--runs", str(runs)]
    for extra, words in ((["--score", "elbo", "--classes", "0"], "needs a VAE"),
                         (["--classes", "0,42"], "no class 42")):
        capsys.readouterr()
        assert main(base + extra) == 2
        assert words in capsys.readouterr().err
        assert not runs.exists()  # refused before the first training
    (runs / "class-0").mkdir(parents=True)
    assert main(base + ["--classes", "1,0"]) == 2
    assert "class-0 already exists" in capsys.readouterr().err and not (runs / "class-1").exists()
    d = load_digits()  # a test split with a single class: no AUROC can be measured
    keep = d.target < 2
    np.savez(tmp_path / "one.npz", x_train=d.images[keep].astype(np.uint8) * 15, y_train=d.target[keep],
             x_test=(d.images[d.target == 0] * 15).astype(np.uint8), y_test=np.zeros((d.target == 0).sum(), int))
    assert main(["anomaly-bench", "--dataset", str(tmp_path / "one.npz"), "--model", "ae", "--epochs", "1",
                 "--classes", "0", "--out", str(tmp_path / "one.json")]) == 2
    assert "needs images of class 0 and of other classes" in capsys.readouterr().err
    assert not (tmp_path / "one.json").exists()


def test_one_class_bench_checks_outputs_before_training(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    runs = tmp_path / "runs"
    for flag, bad in (("--out", tmp_path / "afile" / "b.json"), ("--markdown", tmp_path / "afile" / "b.md"),
                      ("--out", tmp_path)):
        capsys.readouterr()
        assert main(["anomaly-bench", "--dataset", "digits", "--model", "ae", "--epochs", "1", "--classes", "0",
                     "--runs", str(runs), flag, str(bad)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("aekit: error:") and flag in err and "\n" not in err, err
        assert not runs.exists()  # refused before any training


def test_benchmark_markdown_beside_deep_svdd():
    table = benchmark_markdown({"per_class": {0: 90.0, 1: 99.0}, "mean": 94.5,
                                "settings": {"model": "conv-ae", "score": "recon", "epochs": 2}})
    assert "| 0 | 90.0 | 98.0 |" in table and "| 1 | 99.0 | 99.7 |" in table
    assert "**94.5**" in table and "**98.8**" in table  # (98.0 + 99.7) / 2 rounded

"""Small runs stay small (issue 13): a figure of a subsample encodes only that subsample, and the FID classifier
is cached per exact training subset, so a subset run never hands its weaker classifier to later full-set FIDs."""

from __future__ import annotations

import shutil

from aekit.cli import main


def test_a_subsampled_figure_encodes_only_what_it_draws(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run("ae", 2), run)
    shutil.rmtree(run / "cache", ignore_errors=True)
    assert main(["plot", "latent", str(run), "--n", "50", "--out", str(tmp_path / "l.png")]) == 0
    assert sorted(p.name for p in (run / "cache").iterdir()) == ["codes-test-n50-seed0.npz"]
    import numpy as np

    with np.load(run / "cache" / "codes-test-n50-seed0.npz") as z:
        assert z["a"].shape == (50, 2)
    # a second figure of the same subsample reuses it; one over the whole split encodes the whole split
    assert main(["plot", "density", str(run), "--n", "50", "--out", str(tmp_path / "d.png")]) == 0
    assert len(list((run / "cache").iterdir())) == 1
    assert main(["plot", "density", str(run), "--out", str(tmp_path / "d.png")]) == 0
    assert (run / "cache" / "codes-test.npz").exists()


def test_the_fid_classifier_cache_is_keyed_by_the_training_subset(data_dir, tmp_path):
    from aekit.data import load_data
    from aekit.evaluate.fid import cache_path

    full, sub, sub2 = (load_data("digits", **kw) for kw in ({}, {"max_train_samples": 300}, {"max_train_samples": 300}))
    assert cache_path(sub, tmp_path) == cache_path(sub2, tmp_path)
    assert cache_path(full, tmp_path) != cache_path(sub, tmp_path)
    assert cache_path(full, tmp_path) != cache_path(full, tmp_path, {"epochs": 1})


def test_evaluate_says_which_metric_it_is_computing(trained_run, tmp_path, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(trained_run("ae", 2)), "--metrics", "mse,ssim", "--out", str(tmp_path / "e.json")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[:4] == ["evaluate: mse/bce/psnr/elbo ...", err[1], "evaluate: ssim ...", err[3]]
    assert err[1].startswith("evaluate: mse/bce/psnr/elbo done in") and err[3].startswith("evaluate: ssim done in")


def test_training_prints_one_line_per_epoch_and_says_why_it_stopped_early(tmp_path, data_dir, capsys):
    import re

    base = ["train", "--model", "vae", "--dataset", "digits", "--latent-dim", "2", "--no-progress", "--data-dir", str(data_dir)]
    assert main([*base, "--epochs", "2", "--out", str(tmp_path / "a")]) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("epoch ")]
    assert len(lines) == 2 and lines[0].startswith("epoch 1/2  train ") and lines[1].startswith("epoch 2/2")
    assert re.search(r"\(recon [\d.]+, kl [\d.]+\)  val [\d.]+  [\d.]+s$", lines[1]), lines[1]
    # a learning rate that overshoots after the first epochs: --patience 1 stops it, and says which epoch is kept
    assert main([*base, "--epochs", "40", "--patience", "1", "--lr", "0.05", "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    stop = re.search(r"stopped early at epoch (\d+): val_loss did not improve for 1 epochs; best epoch (\d+)", out)
    assert stop and int(stop.group(1)) < 40 and int(stop.group(2)) == int(stop.group(1)) - 1, out
    assert main([*base, "--epochs", "1", "--no-log-epochs", "--out", str(tmp_path / "c")]) == 0
    assert not any(l.startswith("epoch ") for l in capsys.readouterr().out.splitlines())


def test_default_images_spread_over_the_classes_of_class_ordered_data(tmp_path, data_dir, capsys):
    import json

    import numpy as np

    from aekit.data import load_data

    d = load_data("digits")
    x, y = d.images.numpy(), d.labels.numpy()
    order = np.argsort(y, kind="stable")  # every 0, then every 1, ...: the classes in blocks
    np.savez(tmp_path / "ordered.npz", x=x[order][:600], y=y[order][:600], x_test=x[order], y_test=y[order])
    run = tmp_path / "run"
    assert main(["train", "--model", "ae", "--dataset", str(tmp_path / "ordered.npz"), "--latent-dim", "2",
                 "--epochs", "1", "--no-progress", "--out", str(run)]) == 0
    assert main(["plot", "reconstruct", str(run)]) == 0
    shown = json.loads((run / "figures" / "reconstruct.json").read_text())["indices"]
    assert len(shown) == 10 and sorted(set(y[order][shown])) == list(range(10))  # one of each digit, not ten zeros


def test_umap_without_its_package_is_refused_before_any_work(trained_run, tmp_path, capsys):
    import importlib.util

    import pytest

    if importlib.util.find_spec("umap") is not None:
        pytest.skip("umap-learn is installed here")
    run = tmp_path / "run"
    shutil.copytree(trained_run("ae", 2), run)
    shutil.rmtree(run / "cache", ignore_errors=True)
    assert main(["plot", "latent", str(run), "--method", "umap"]) == 2
    err = capsys.readouterr().err
    assert "aekit[umap]" in err and "projecting" not in err and not (run / "cache").exists()

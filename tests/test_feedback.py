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

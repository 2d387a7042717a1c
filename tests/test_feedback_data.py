"""Issue 13, data and feedback: a train cap caps validation in proportion (recorded, so a run reloads the same
splits; old runs keep all of val), mixed image sizes in a folder are said out loud, the articles' two Gaussian
noises, and the collapse-to-the-mean-image warning measured on a healthy and a genuinely collapsed run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aekit.data import load_data
from aekit.data.noise import Noise, parse_noise
from aekit.data.splits import MIN_VAL_SAMPLES, make_splits, proportional_val_cap
from aekit.errors import ConfigError, DataError
from data_helpers import cli, copy_run, one_line, train_run, write_pngs

ROOT = Path(__file__).resolve().parents[1]
# 4,500 train images -> 500 val (0.1/0.9 x 4,500) instead of MNIST's 6,000
HEALTHY = ["--model", "ae", "--dataset", "mnist", "--latent-dim", "16", "--hidden-dims", "64", "--schedule", "none", "--epochs", "2",
           "--batch-size", "32", "--max-train-samples", "4500", "--no-progress", "--no-log-epochs"]


@pytest.fixture(scope="module")
def healthy(tmp_path_factory, data_dir):
    return train_run(tmp_path_factory.mktemp("healthy"), data_dir, *HEALTHY)


# ---- 1. validation capped with the train split ---------------------------------------------------------------


def test_a_train_cap_caps_val_in_proportion_recorded_and_reloaded(healthy, capsys):
    cfg = json.loads((healthy / "config.json").read_text())
    assert cfg["data"]["max_val_samples"] == 500 and cfg["data"]["sizes"] == {"train": 4500, "val": 500, "test": 10000}
    from aekit.session import RunSession

    data = RunSession.open(healthy).data  # what plot, report and serve reload
    fresh = load_data("mnist", max_train_samples=4500, max_val_samples=500)
    for split in ("train", "val", "test"):
        assert torch.equal(data.splits[split], fresh.splits[split])
    uncapped = load_data("mnist", max_train_samples=4500).splits
    assert set(data.splits["val"].tolist()) < set(uncapped["val"].tolist())  # a subset of the same val
    assert torch.equal(data.splits["train"], uncapped["train"])  # the val cap never moves train
    code, out, _ = cli(capsys, "evaluate", healthy, "--split", "val", "--metrics", "mse")
    assert code == 0 and json.loads((healthy / "eval.json").read_text())["n"] == 500


def test_an_old_run_without_the_key_keeps_all_of_val(healthy, tmp_path, capsys):
    old = copy_run(healthy, tmp_path, "eval.json")
    path = old / "config.json"
    cfg = json.loads(path.read_text())
    del cfg["data"]["max_val_samples"]  # as written before --max-val-samples existed
    path.write_text(json.dumps(cfg))
    from aekit.train import load_run

    assert len(load_run(old).data().splits["val"]) == 6000
    code, _, err = cli(capsys, "evaluate", old, "--split", "val", "--metrics", "mse")
    assert code == 0, err
    assert json.loads((old / "eval.json").read_text())["n"] == 6000


def test_proportional_cap_numbers_and_explicit_cap():
    assert proportional_val_cap(4500, 0.1) == 500
    assert proportional_val_cap(900, 0.1) == MIN_VAL_SAMPLES  # never too few to pick the best epoch by
    assert proportional_val_cap(None, 0.1) is None and proportional_val_cap(1000, 0.0) is None
    assert proportional_val_cap(1000, 1.5) is None and proportional_val_cap(True, 0.1) is None  # load_data refuses those
    d = load_data("digits", max_val_samples=50, seed=3)
    assert len(d.splits["val"]) == 50 and torch.equal(d.splits["train"], load_data("digits", seed=3).splits["train"])
    one_line(DataError, lambda: load_data("digits", max_val_samples=0), "max_val_samples", "positive integer")


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 400), vf=st.sampled_from([0.0, 0.1, 0.25, 0.5]), seed=st.integers(0, 2**32 - 1),
       mt=st.none() | st.integers(1, 500), mv=st.none() | st.integers(1, 500), own_test=st.booleans())
def test_capped_splits_are_disjoint_seeded_subsets(n, vf, seed, mt, mv, own_test):
    test = np.arange(0, n, 4) if own_test else None
    try:
        full = make_splits(n, test, vf, seed, None)
    except DataError:
        return  # an empty train split: refused with or without caps
    s, again = make_splits(n, test, vf, seed, mt, mv), make_splits(n, test, vf, seed, mt, mv)
    assert all(np.array_equal(s[k], again[k]) for k in s)  # seeded: the same arguments, the same splits
    for k, cap in (("train", mt), ("val", mv)):
        assert len(s[k]) == (len(full[k]) if cap is None else min(cap, len(full[k])))
        assert set(s[k]) <= set(full[k])
    assert np.array_equal(s["test"], full["test"])
    assert not (set(s["train"]) & set(s["val"])) and not (set(s["val"]) & set(s["test"]))


def test_readme_states_the_mnist_split_the_code_makes():
    d = load_data("mnist")
    assert {k: len(v) for k, v in d.splits.items()} == {"train": 54000, "val": 6000, "test": 10000}
    text = (ROOT / "README.md").read_text()
    assert "54k train / 6k val" in text and "10k test" in text and "50k/10k/10k" not in text


# ---- 2. a folder of mixed image sizes -------------------------------------------------------------------------


def test_mixed_sizes_in_a_folder_are_said_out_loud(tmp_path, capsys):
    root = tmp_path / "imgs"
    write_pngs(root / "a", 3, size=(10, 12))  # W x H: 3 images of 12x10 (H x W), the first sets the size
    write_pngs(root / "b", 2, size=(20, 16), seed=1)  # 2 of 16x20
    d = load_data(str(root))
    assert d.shape == (1, 12, 10) and len(d) == 5
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("aekit: warning:")
    for word in ("2 of 5 images", "12x10", "a/img000.png", "resized", "--image-size"):
        assert word in err[0], err[0]
    d = load_data(str(root), image_size=(16, 20))  # the user's choice: nothing to say
    assert d.shape == (1, 16, 20) and capsys.readouterr().err == ""
    write_pngs(tmp_path / "same", 4, size=(10, 12))
    load_data(str(tmp_path / "same"))
    assert capsys.readouterr().err == ""


# ---- 3. the articles' Gaussian noises --------------------------------------------------------------------------


def test_gaussian_noise_as_in_each_article():
    x = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0))  # (B, C, H, W)
    keras, habr = parse_noise("gaussian:0.5"), parse_noise("gaussian:0.5,0.5")
    assert (keras.level, keras.mean) == (0.5, 0.0) and (habr.level, habr.mean) == (0.5, 0.5)
    assert str(keras) == "gaussian:0.5" and str(habr) == "gaussian:0.5,0.5"
    # Keras blog: x + 0.5 * N(0, 1); Habr: x + K.random_normal(shape, mean=0.5, stddev=0.5); both clipped to [0, 1]
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(keras(x, torch.Generator().manual_seed(1)), (x + 0.5 * eps).clamp(0, 1))
    assert torch.allclose(habr(x, torch.Generator().manual_seed(1)), (x + 0.5 + 0.5 * eps).clamp(0, 1), atol=1e-6)
    zeros = torch.zeros(20000)
    assert habr(zeros).mean() > 0.45 > 0.25 > keras(zeros).mean()  # E clip(N(.5,.5)) = .5; E clip(N(0,.5)) ~ .2
    from aekit.registry import build_model

    dae = build_model("dae", input_shape=(1, 28, 28), latent_dim=2, noise="gaussian:0.5,0.5")
    assert dae.noise == habr and dae.train().corrupt(zeros.view(1, 1, 100, 200)).mean() > 0.45


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(["gaussian", "saltpepper", "mask", "none", "GAUSSIAN", "gauss", ""]),
       nums=st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32).map(repr),
                               st.sampled_from(["", "x", " 0.5", "1e-3", "-0"])), max_size=3),
       sep=st.sampled_from([":", "", "="]))
def test_any_noise_spec_parses_round_trip_or_is_a_one_line_config_error(kind, nums, sep):
    spec = kind + sep + ",".join(nums)
    try:
        n = parse_noise(spec)
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    assert isinstance(n, Noise) and parse_noise(str(n)) == n
    assert n.mean == 0 or n.kind == "gaussian"


@pytest.mark.parametrize("spec, words", [("gaussian:0.5,0.5,0.5", ["too many", "gaussian:STD,MEAN"]),
                                         ("mask:0.3,0.1", ["too many", "mask:FRACTION"]),
                                         ("gaussian:0.5,nan", ["mean", "finite"]),
                                         ("gaussian:0.5,x", ["not a number"])])
def test_bad_noise_specs(spec, words):
    one_line(ConfigError, lambda: parse_noise(spec), *words)


# ---- 4. collapse to the mean image ------------------------------------------------------------------------------


def test_collapsed_run_warns_healthy_run_does_not(healthy, tmp_path, capsys, data_dir):
    from aekit.train.collapse import THRESHOLD

    ratio = json.loads((healthy / "config.json").read_text())["result"]["spread_ratio"]
    assert ratio > 2 * THRESHOLD
    code, _, err = cli(capsys, "evaluate", healthy, "--split", "val", "--metrics", "mse", "--out", tmp_path / "e.json")
    assert code == 0 and json.loads((tmp_path / "e.json").read_text())["spread_ratio"] > 2 * THRESHOLD, err
    # lr 3: the first Adam steps kill every ReLU, so only the output bias learns: the mean image for every input
    code, out, err = cli(capsys, "train", *HEALTHY[:6], "--hidden-dims", "64", "--epochs", "1", "--lr", "3",
                         "--max-train-samples", "1000", "--no-progress", "--out", tmp_path / "c", "--data-dir", data_dir)
    assert code == 0, err
    collapsed = json.loads((tmp_path / "c" / "config.json").read_text())["result"]["spread_ratio"]
    assert collapsed < THRESHOLD / 4
    lines = [line for line in err.splitlines() if "collapsed" in line]
    assert len(lines) == 1 and f"{collapsed:.3f}" in lines[0]
    for word in ("--epochs", "--batch-size", "--lr"):
        assert word in lines[0]
    assert json.loads((tmp_path / "c" / "eval.json").read_text())["spread_ratio"] < THRESHOLD / 4

"""A family's own training defaults (``register(..., train=...)``): the ``vae`` trains 40 epochs unless told, as
measured for the time-to-quality goal (docs/benchmarks.md); every other family the dataclass's 20. ``aekit
train`` and :meth:`TrainConfig.for_model` start from them; a flag, a config file or an override wins."""

from __future__ import annotations

import json

import pytest
from data_helpers import cli

from aekit import TrainConfig, build_model
from aekit.registry import MODELS, list_models

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_for_model_applies_the_familys_defaults_under_the_callers_overrides():
    plain = TrainConfig()
    assert TrainConfig.for_model("vae").epochs == 40 != plain.epochs
    assert TrainConfig.for_model(build_model("vae", hidden_dims=(8,))).epochs == 40  # a built model: its name
    assert TrainConfig.for_model("vae", epochs=3, lr=5e-4).epochs == 3
    for name in list_models():  # the others keep every dataclass default
        if not MODELS[name].train:
            assert TrainConfig.for_model(name) == plain, name
    assert TrainConfig.for_model("vae").batch_size == plain.batch_size  # only the named fields differ


def test_aekit_train_starts_from_the_familys_epochs_and_a_flag_or_config_file_wins(tmp_path, capsys):
    common = ["--dataset", "digits", "--latent-dim", "2", "--hidden-dims", "16", "--max-train-samples", "128",
              "--no-progress"]
    code, _, err = cli(capsys, "train", "--model", "vae", *common, "--out", str(tmp_path / "default"))
    assert code == 0, err
    record = json.loads((tmp_path / "default" / "config.json").read_text())
    assert record["train"]["epochs"] == 40 and record["result"]["epochs_completed"] >= 1

    config = tmp_path / "train.yaml"
    config.write_text("epochs: 2\n")
    code, _, err = cli(capsys, "train", "--model", "vae", "--config", str(config), *common, "--out", str(tmp_path / "yaml"))
    assert code == 0, err
    assert json.loads((tmp_path / "yaml" / "config.json").read_text())["train"]["epochs"] == 2

    code, _, err = cli(capsys, "train", "--model", "ae", *common, "--epochs", "1", "--out", str(tmp_path / "ae"))
    assert code == 0, err
    assert json.loads((tmp_path / "ae" / "config.json").read_text())["train"]["epochs"] == 1


def test_models_listing_names_the_families_own_defaults(capsys):
    code, out, _ = cli(capsys, "models")
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert code == 0 and "[trains with --epochs 40 unless told]" in lines["vae"]
    assert "trains with" not in lines["ae"] and "trains with" not in lines["beta-vae"]

"""--weight-ema: Lightning's weight averaging in the engine. The run's model and its validation are the moving
average, the optimizer's own weights travel in the checkpoint, and a resumed run continues both exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from aekit.cli import main
from aekit.train.runs import read_metrics

COMMON = ["--model", "deep-ae", "--dataset", "digits", "--hidden-dims", "32", "--patience", "0", "--no-progress",
          "--schedule", "none", "--seed", "3"]


def train(capsys, out: Path, *argv) -> None:
    code = main(["train", *COMMON, *map(str, argv), "--out", str(out)])
    assert code == 0, capsys.readouterr().err


def checkpoint(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def test_the_model_is_the_average_and_validation_scores_it(tmp_path, capsys):
    train(capsys, tmp_path / "r", "--epochs", "2", "--weight-ema", "0.9")
    ck = checkpoint(tmp_path / "r")
    average, raw = ck["state_dict"], ck["current_model_state"]
    assert average.keys() == raw.keys()
    assert any(not torch.equal(average[k], raw[k]) for k in average if k.endswith("weight"))
    exported = load_file(tmp_path / "r" / "model.safetensors")
    for k, v in exported.items():
        assert torch.equal(v, average["model." + k]), k  # the run keeps the average, not the last raw weights
    # the last epoch's val_loss is the average model's: scoring the exported model on the validation split gives it
    import aekit

    run = aekit.load_run(tmp_path / "r")
    model = run.model.eval()
    x, y = run.data().split("val")
    from aekit.data import to_float

    with torch.no_grad():
        val = float(model.forward_batch(to_float(x), torch.as_tensor(y)).loss)
    assert read_metrics(tmp_path / "r" / "metrics.csv")[-1]["val_loss"] == pytest.approx(val, rel=1e-4)


def test_a_tiny_decay_follows_the_weights_and_a_large_one_lags(tmp_path, capsys):
    train(capsys, tmp_path / "a", "--epochs", "1", "--weight-ema", "1e-12")
    ck = checkpoint(tmp_path / "a")
    for k, v in ck["state_dict"].items():
        if v.is_floating_point():
            torch.testing.assert_close(v, ck["current_model_state"][k])
    train(capsys, tmp_path / "b", "--epochs", "1", "--weight-ema", "0.999")
    ck = checkpoint(tmp_path / "b")
    first = next(k for k in ck["state_dict"] if k.endswith("weight"))
    lag = (ck["state_dict"][first] - ck["current_model_state"][first]).abs().max()
    assert lag > 1e-4  # an average over ~1000 steps has barely left the initial weights after one short epoch


def test_resume_continues_the_average_and_the_raw_weights_exactly(tmp_path, capsys):
    train(capsys, tmp_path / "full", "--epochs", "4", "--weight-ema", "0.95")
    train(capsys, tmp_path / "half", "--epochs", "2", "--weight-ema", "0.95")
    assert main(["train", "--out", str(tmp_path / "half"), "--resume", "--epochs", "4", "--no-progress"]) == 0
    full, half = checkpoint(tmp_path / "full"), checkpoint(tmp_path / "half")
    for key in ("state_dict", "current_model_state"):
        for k, v in full[key].items():
            torch.testing.assert_close(half[key][k], v, rtol=1e-5, atol=1e-6)
    a, b = read_metrics(tmp_path / "full" / "metrics.csv"), read_metrics(tmp_path / "half" / "metrics.csv")
    assert [r["val_loss"] for r in b] == pytest.approx([r["val_loss"] for r in a], rel=1e-5)


def test_resumed_without_it_training_continues_from_the_optimizers_weights(tmp_path, capsys):
    train(capsys, tmp_path / "plain", "--epochs", "3")
    train(capsys, tmp_path / "r", "--epochs", "2", "--weight-ema", "0.9")
    assert main(["train", "--out", str(tmp_path / "r"), "--resume", "--epochs", "3", "--weight-ema", "0",
                 "--no-progress"]) == 0
    plain, resumed = checkpoint(tmp_path / "plain")["state_dict"], checkpoint(tmp_path / "r")["state_dict"]
    for k, v in plain.items():  # the average never steers training: without it the raw weights are these
        torch.testing.assert_close(resumed[k], v, rtol=1e-5, atol=1e-6)


def test_the_decay_is_per_batch_whatever_the_batch_groups(tmp_path, capsys):
    # --checkpoint-every 1 trains batch by batch (groups of 1) on the same trajectory as the default groups of 8
    train(capsys, tmp_path / "one", "--epochs", "3", "--weight-ema", "0.9", "--checkpoint-every", "1")
    train(capsys, tmp_path / "eight", "--epochs", "3", "--weight-ema", "0.9")
    one, eight = checkpoint(tmp_path / "one"), checkpoint(tmp_path / "eight")
    keys = [k for k in one["state_dict"] if k.endswith("weight")]
    for k in keys:
        torch.testing.assert_close(eight["current_model_state"][k], one["current_model_state"][k], rtol=1e-5, atol=1e-6)
    lag = sum(float((one["state_dict"][k] - one["current_model_state"][k]).norm()) for k in keys)  # exact per-step EMA
    apart = sum(float((eight["state_dict"][k] - one["state_dict"][k]).norm()) for k in keys)
    # a group's 8 batches move the average as 8 steps would (were it moved once per group with 0.9, it would sit
    # nearer the raw weights: a lag ~8x smaller, and `apart` close to `lag`)
    assert apart < 0.35 * lag, (apart, lag)


def test_precision_64_averages_in_float64(tmp_path, capsys):
    train(capsys, tmp_path / "r", "--epochs", "2", "--weight-ema", "0.9", "--precision", "64")
    ck = checkpoint(tmp_path / "r")
    first = next(k for k in ck["state_dict"] if k.endswith("weight"))
    assert ck["state_dict"][first].dtype == torch.float64 and ck["current_model_state"][first].dtype == torch.float64
    assert not torch.equal(ck["state_dict"][first], ck["current_model_state"][first])


def test_a_decay_of_1_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys):
    # every field's generated values: tests/test_options.py; this is the flag's own message
    code = main(["train", *COMMON, "--epochs", "1", "--weight-ema", "1", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "weight_ema must be in [0, 1)" in err.replace("weight-ema", "weight_ema"), err
    assert not (tmp_path / "r").exists()

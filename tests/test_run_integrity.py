"""Run folders are data the user owns: damaged ones give one-line errors, moved or copied ones resume with their
own checkpoints, a failed resume changes nothing, and the CLI's one error boundary holds for YAML of any type."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aekit.cli import describe
from data_helpers import cli, copy_run, snapshot, train_run

BASE = ["--model", "ae", "--dataset", "digits", "--latent-dim", "2", "--hidden-dims", "16", "--no-progress"]


@pytest.fixture(scope="module")
def run2(tmp_path_factory, data_dir):
    """A finished 2-epoch run, copied fresh for each test that damages it."""
    return train_run(tmp_path_factory.mktemp("integrity"), data_dir, *BASE, "--epochs", "2")


@pytest.fixture
def run_copy(run2, tmp_path):
    return copy_run(run2, tmp_path)


DAMAGE = {
    "format_version": lambda c: {**c, "format_version": "x"},
    "data-not-object": lambda c: {**c, "data": "digits"},
    "hidden_dims": lambda c: {**c, "model": {**c["model"], "config": {**c["model"]["config"], "hidden_dims": "abc"}}},
    "model-null": lambda c: {**c, "model": None},
    "shape": lambda c: {**c, "data": {**c["data"], "shape": [1, "x", 8]}},
    "unknown-model": lambda c: {**c, "model": {**c["model"], "name": "no-such"}},
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("command", [["evaluate"], ["summary"], ["plot", "curves"], ["report"],
                                     ["train", "--resume", "--out"], ["encode", "--out", "codes.npy"],
                                     ["denoise", "--out", "clean.npy"], ["anomaly", "--out", "scores.csv"], ["export"]])
def test_damaged_config_json_is_one_line_exit_2_for_every_reader(run_copy, damage, command, capsys):
    path = run_copy / "config.json"
    path.write_text(json.dumps(DAMAGE[damage](json.loads(path.read_text()))))
    before = snapshot(run_copy.parent)
    if command[-1] == "--out":
        argv = [*command, run_copy, "--no-progress"]
    elif "--out" in command:  # outputs beside the run: nothing may appear there either
        argv = [command[0], run_copy, "--out", run_copy.parent / command[-1], "--no-progress"]
    else:
        argv = [*command, run_copy]
    code, _, err = cli(capsys, *argv)
    assert code == 2, err
    assert err.startswith("aekit: error:") and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert snapshot(run_copy.parent) == before  # nothing changed on disk


@pytest.mark.parametrize("content", [b"\x00\xff\x10garbage", b"epoch,train_loss\n0,abc\n", b"epoch,train_loss\n0,1,2,3\n"])
@pytest.mark.parametrize("command", [["plot", "curves"], ["report"]])
def test_garbled_metrics_csv_is_one_line_exit_2(run_copy, content, command, capsys):
    (run_copy / "metrics.csv").write_bytes(content)
    code, _, err = cli(capsys, *command, run_copy)
    last = err.replace("\r", "\n").strip().splitlines()[-1]  # after a cleared progress bar, if one was drawn
    assert code == 2 and last.startswith("aekit: error:") and "metrics.csv is damaged" in last, err
    assert err.count("aekit: error:") == 1 and "Traceback" not in err


def test_damaged_last_checkpoints_refuse_resume_and_keep_the_finished_record(run_copy, capsys):
    # last.ckpt alone damaged falls back to last.prev.ckpt (tests/test_fault_tolerance.py); both: nothing to resume
    for name in ("last.ckpt", "last.prev.ckpt"):
        (run_copy / "checkpoints" / name).write_bytes(b"PK\x03\x04 truncated")
    before = snapshot(run_copy)
    code, _, err = cli(capsys, "train", "--resume", "--out", run_copy, "--epochs", "3", "--no-progress")
    assert code == 2 and "last.ckpt is damaged" in err and "last.prev.ckpt" in err and len(err.strip().splitlines()) == 1
    assert snapshot(run_copy) == before
    assert json.loads((run_copy / "config.json").read_text())["status"] == "finished"  # not flipped to running


@pytest.mark.parametrize("how", ["mv", "cp"])
def test_a_moved_or_copied_run_resumes_with_its_own_checkpoints(run2, tmp_path, how, capsys):
    src = tmp_path / "src"
    shutil.copytree(run2, src)
    dest = tmp_path / "elsewhere" / "run"
    dest.parent.mkdir()
    if how == "mv":
        shutil.move(src, dest)
    else:
        shutil.copytree(src, dest)
        # poison the original: a copy that reads the original's best.ckpt would now fail or differ
        for f in (src / "checkpoints").iterdir():
            f.write_bytes(b"not a checkpoint")
    code, out, err = cli(capsys, "train", "--resume", "--out", dest, "--epochs", "4", "--no-progress")
    assert code == 0, err
    cfg = json.loads((dest / "config.json").read_text())
    assert cfg["status"] == "finished" and cfg["result"]["epochs_completed"] == 4
    rows = [r for r in (dest / "metrics.csv").read_text().splitlines()[1:] if r]
    assert len(rows) == 4
    # the exported weights are the best epoch's by the recorded validation loss, from this folder's best.ckpt
    import torch
    from safetensors.torch import load_file

    best = torch.load(dest / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    saved = load_file(str(dest / "model.safetensors"))
    for k, v in best["state_dict"].items():
        assert torch.equal(saved[k.removeprefix("model.")], v)
    losses = [float(r.split(",")[cfg_col(dest, "val_loss")]) for r in rows]
    assert best["epoch"] == min(range(4), key=lambda i: losses[i])


def cfg_col(run: Path, name: str) -> int:
    return (run / "metrics.csv").read_text().splitlines()[0].split(",").index(name)


def test_a_run_killed_before_its_first_checkpoint_starts_over_on_resume(run_copy, capsys):
    shutil.rmtree(run_copy / "checkpoints")
    (run_copy / "model.safetensors").unlink()
    (run_copy / "metrics.csv").unlink()
    cfg = json.loads((run_copy / "config.json").read_text())
    (run_copy / "config.json").write_text(json.dumps({**cfg, "status": "running"}))
    code, out, err = cli(capsys, "train", "--resume", "--out", run_copy, "--no-progress")
    assert code == 0, err
    assert "starting it over" in out and (run_copy / "model.safetensors").exists()


def test_precision_64_runs_end_to_end(tmp_path, data_dir, capsys):
    out = tmp_path / "r64"
    code, _, err = cli(capsys, "train", *BASE, "--epochs", "1", "--precision", "64", "--out", out)
    assert code == 0, err
    assert json.loads((out / "eval.json").read_text())["mse"] > 0
    code, _, err = cli(capsys, "evaluate", out)
    assert code == 0, err


yaml_values = st.one_of(st.text(max_size=6), st.integers(-10**25, 10**25), st.floats(), st.booleans(), st.none(),
                        st.lists(st.one_of(st.integers(-3, 3), st.text(max_size=2)), max_size=3),
                        st.dictionaries(st.text(max_size=2), st.integers(), max_size=1))
yaml_keys = st.sampled_from(["lr", "latent_dim", "hidden_dims", "model", "seed", "weight_decay", "strategy",
                             "batch_norm", "beta", "schedule", "dataset", "out", "noise", "val_fraction"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=yaml_keys, value=yaml_values)
def test_yaml_value_of_any_type_is_one_line_or_trains(key, value, tmp_path_factory, capsys, data_dir):
    folder = tmp_path_factory.mktemp("yaml")
    cfg = folder / "run.yaml"
    out = folder / "run"
    opts = {"model": "ae", "dataset": "digits", "epochs": 1, "hidden_dims": [8], "out": str(out), key: value}
    cfg.write_text(yaml.safe_dump(opts))
    cwd = os.getcwd()
    os.chdir(folder)  # a generated `out` (a relative path) lands in the test's folder, not in the project
    try:
        code, _, err = cli(capsys, "train", "--config", cfg, "--no-progress", "--max-train-samples", "64")
    finally:
        os.chdir(cwd)
    if key == "out" and code == 0:
        return
    if code == 0:
        assert (out / "model.safetensors").exists()
    else:
        assert code == 2, err
        assert err.startswith("aekit: error:") and len(err.strip().splitlines()) == 1, err
        if "training diverged" in err:  # a legal value that diverges: the folder stays, never marked finished
            assert json.loads((out / "config.json").read_text())["status"] == "running"
            assert not (out / "model.safetensors").exists()
        else:  # refused up front: nothing written
            assert not out.exists() or not any(out.iterdir())


def test_binary_config_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bin.yaml"
    bad.write_bytes(bytes(range(256)))
    code, _, err = cli(capsys, "train", "--config", bad)
    assert code == 2 and "not text" in err


def test_an_internal_error_is_one_line_with_exit_1():
    code, text = describe(ZeroDivisionError("division by zero"))
    assert code == 1 and "--debug" in text and "ZeroDivisionError" in text and "\n" not in text
    assert describe(MemoryError())[0] == 2


@pytest.mark.parametrize("extra", [[], ["--on-nan", "skip"]])
def test_a_diverging_run_stops_with_one_line_and_is_never_marked_finished(tmp_path, capsys, extra):
    out = tmp_path / "nan"
    code, _, err = cli(capsys, "train", *BASE, "--loss", "mse", "--lr", "1e20", "--epochs", "2", "--out", out, *extra)
    assert code == 2 and "training diverged" in err and len(err.strip().splitlines()) == 1, err
    assert json.loads((out / "config.json").read_text())["status"] == "running"
    assert not (out / "model.safetensors").exists() and not (out / "eval.json").exists()


def test_on_nan_skip_counts_skipped_steps(run2, tmp_path, capsys):
    header = (run2 / "metrics.csv").read_text().splitlines()[0]
    assert "skipped_steps" not in header  # only counted when asked for
    code, _, err = cli(capsys, "train", *BASE, "--epochs", "1", "--on-nan", "skip", "--out", tmp_path / "s")
    assert code == 0, err
    lines = (tmp_path / "s" / "metrics.csv").read_text().splitlines()
    assert float(lines[1].split(",")[lines[0].split(",").index("skipped_steps")]) == 0.0


def test_val_fraction_0_without_a_test_split_trains_and_says_there_is_no_test(tmp_path, capsys, data_dir, recwarn):
    """digits has no test split of its own: --val-fraction 0 leaves it none, so the run finishes without test
    metrics and says so (it used to train, then fail with 'split test is empty' and exit 2; found by Hypothesis)."""
    code, out, err = cli(capsys, "train", "--model", "ae", "--dataset", "digits", "--epochs", "1", "--hidden-dims", "8",
                         "--val-fraction", "0", "--max-train-samples", "64", "--no-progress", "--data-dir", data_dir,
                         "--out", tmp_path / "run")
    assert code == 0, err
    assert (tmp_path / "run" / "model.safetensors").exists() and not (tmp_path / "run" / "eval.json").exists()
    assert "no test split" in err and f"run folder: {tmp_path / 'run'}" in out
    # Lightning's "you defined a validation_step but have no val_dataloader" is no news after --val-fraction 0
    assert not [w for w in recwarn if "val_dataloader" in str(w.message)], [str(w.message) for w in recwarn]

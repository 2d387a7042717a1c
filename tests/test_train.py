"""Training through the real CLI and Lightning: every model on MNIST and on an image folder, run folders,
resume after kill -9, determinism, DDP, config files, and the one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import aekit
import aekit.registry
from aekit.cli import main
from aekit.registry import list_models
from aekit.train.runs import read_metrics

AEKIT = str(Path(sys.executable).with_name("aekit"))
SMALL_CONV = ["--filters", "8,16", "--kernel-sizes", "3,3", "--strides", "2,2"]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def png_folder(tmp_path_factory) -> Path:
    """A tiny real image folder: two classes of 12x12 PNGs (bars and blobs)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("pngs")
    rng = np.random.default_rng(0)
    for cls in ("bars", "blobs"):
        (root / cls).mkdir()
        for i in range(24):
            img = np.zeros((12, 12), np.uint8)
            if cls == "bars":
                img[:, rng.integers(0, 10) :][:, :2] = 255
            else:
                r, c = rng.integers(2, 10, 2)
                img[r - 2 : r + 2, c - 2 : c + 2] = 200
            Image.fromarray(img).save(root / cls / f"{i}.png")
    return root


@pytest.mark.parametrize("model", list(list_models()))
def test_every_model_trains_on_mnist_from_the_cli(model, tmp_path, capsys, data_dir):
    out = tmp_path / "run"
    has = aekit.registry.get(model).cls.Config.__dataclass_fields__  # a family without dense layers takes no --hidden-dims
    extra = SMALL_CONV if "conv" in model else ["--hidden-dims", "64"] if model != "ae" and "hidden_dims" in has else []
    code, stdout, err = run_cli(capsys, "train", "--model", model, "--dataset", "mnist", "--epochs", "1",
                                "--max-train-samples", "512", "--val-fraction", "0.01", "--latent-dim", "4",
                                "--out", out, "--no-progress", *extra)
    assert code == 0, err
    assert f"run folder: {out}" in stdout and "mse" in stdout
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["status"] == "finished" and cfg["model"]["name"] == model
    assert cfg["data"]["shape"] == [1, 28, 28] and cfg["data"]["sizes"]["train"] == 512
    assert cfg["format_version"] == 1 and cfg["versions"]["torch"] == torch.__version__
    assert (out / "model.safetensors").stat().st_size > 0
    assert (out / "checkpoints" / "best.ckpt").exists() and (out / "checkpoints" / "last.ckpt").exists()
    rows = read_metrics(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == [0] and np.isfinite(rows[0]["val_loss"])
    ev = json.loads((out / "eval.json").read_text())
    assert ev["n"] == 10000 and 0 < ev["mse"] < 0.3
    run = aekit.load_run(out)
    x = run.data().batches("test", 8).__next__()[0]
    assert run.model.encode(x).shape == (8, *run.model.code_shape) and run.model.code_shape[0] == 4


@pytest.mark.parametrize("model", list(list_models()))
def test_every_model_trains_on_an_image_folder(model, png_folder, tmp_path, capsys):
    extra = ["--filters", "4,8", "--kernel-sizes", "3,3", "--strides", "2,2"] if "conv" in model else []
    code, _, err = run_cli(capsys, "train", "--model", model, "--dataset", png_folder, "--epochs", "2",
                           "--batch-size", "8", "--out", tmp_path / "r", "--no-progress", *extra)
    assert code == 0, err
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["data"]["shape"] == [1, 12, 12] and sorted(cfg["data"]["class_names"]) == ["bars", "blobs"]
    assert len(read_metrics(tmp_path / "r" / "metrics.csv")) == 2


def test_training_lowers_the_loss_and_the_best_weights_are_exported(trained_run):
    run = aekit.load_run(trained_run("deep-ae", 2, epochs=3))
    rows = run.metrics()
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert {"train_loss_recon", "train_mse", "val_loss", "val_mse", "seconds", "lr"} <= set(rows[0])
    best = min(rows, key=lambda r: r["val_loss"])
    assert run.config["result"]["best_epoch"] == int(best["epoch"])
    assert run.config["result"]["best_val_loss"] == pytest.approx(best["val_loss"], rel=1e-4)
    # the exported weights are the best checkpoint's, and reproduce its validation loss
    from aekit.evaluate import evaluate

    data = run.data()
    assert not run.model.training
    assert evaluate(run.model, data, "val")["loss"] == pytest.approx(best["val_loss"], rel=1e-3)


def test_without_a_validation_split_the_last_epoch_is_kept_and_nothing_stops_early(tmp_path, capsys, data_dir):
    """--val-fraction 0: nothing is held out, so the run keeps the weights its last epoch ended with and
    --patience does not apply. The training loss is no yardstick: under a KL warm-up it is lowest early in the
    warm-up and rises while the KL weight does, so picking and stopping on it kept an early epoch's weights (an hvae trained 338 epochs on all of MNIST kept its epoch 3: 127.1 nats of IWAE NLL; its last, 82.9)."""
    from safetensors.torch import load_file

    out = tmp_path / "r"
    # 20,000 images an epoch at lr 3e-3: the reconstruction has nearly converged when the KL weight climbs
    code, _, err = run_cli(capsys, "train", "--model", "vae", "--dataset", "mnist", "--max-train-samples", "20000",
                           "--val-fraction", "0", "--kl-warmup", "4", "--epochs", "5", "--patience", "1", "--lr", "3e-3",
                           "--hidden-dims", "64", "--latent-dim", "16", "--no-progress", "--data-dir", data_dir, "--out", out)
    assert code == 0, err
    rows = read_metrics(out / "metrics.csv")
    assert len(rows) == 5  # the train loss rises with the warm-up, and training went on
    assert min(range(5), key=lambda i: rows[i]["train_loss"]) < 3  # the old yardstick picked it, and stopped
    result = json.loads((out / "config.json").read_text())["result"]
    assert result["best_epoch"] == 4 and "best_train_loss" not in result and result["stopped_by"] is None
    last = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 4
    kept = load_file(out / "model.safetensors")
    assert all(torch.equal(kept[k.removeprefix("model.")], v) for k, v in last["state_dict"].items())


def test_same_seed_gives_the_same_weights(tmp_path, capsys):
    for name in ("a", "b", "c"):
        seed = "1" if name == "c" else "0"
        assert run_cli(capsys, "train", "--model", "vae", "--dataset", "digits", "--epochs", "2", "--seed", seed,
                       "--hidden-dims", "32", "--out", tmp_path / name, "--no-progress")[0] == 0
    a, b, c = ((tmp_path / n / "model.safetensors").read_bytes() for n in "abc")
    assert a == b and a != c


def test_resume_after_kill_9_keeps_every_epoch(tmp_path, data_dir):
    """A real kill -9 in the middle of training, then --resume: the epochs in metrics.csv run 0..N-1 once each."""
    out = tmp_path / "killed"
    env = {**os.environ, "AEKIT_DATA": str(data_dir)}
    proc = subprocess.Popen([AEKIT, "train", "--model", "deep-ae", "--dataset", "digits", "--epochs", "1000",
                             "--patience", "0", "--out", str(out),
                             "--no-progress"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(read_metrics(out / "metrics.csv")) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(read_metrics(out / "metrics.csv"))
    assert done >= 2, "training never reached epoch 2"
    assert not (out / "model.safetensors").exists()
    target = done + 2
    res = subprocess.run([AEKIT, "train", "--out", str(out), "--resume", "--epochs", str(target), "--no-progress"],
                         env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    epochs = [int(r["epoch"]) for r in read_metrics(out / "metrics.csv")]
    assert epochs == list(range(target))
    run = aekit.load_run(out)
    assert run.config["status"] == "finished" and run.config["train"]["epochs"] == target


def test_resume_matches_an_unbroken_run(tmp_path, capsys):
    # constant lr: a cosine over 2 epochs is not the first half of one over 4 (test_cosine_follows_the_epochs_of_the_session)
    common = ["--model", "deep-ae", "--dataset", "digits", "--hidden-dims", "32", "--patience", "0", "--no-progress",
              "--schedule", "none"]
    assert run_cli(capsys, "train", *common, "--epochs", "4", "--out", tmp_path / "full")[0] == 0
    assert run_cli(capsys, "train", *common, "--epochs", "2", "--out", tmp_path / "half")[0] == 0
    assert run_cli(capsys, "train", "--out", tmp_path / "half", "--resume", "--epochs", "4", "--no-progress")[0] == 0
    full, half = read_metrics(tmp_path / "full" / "metrics.csv"), read_metrics(tmp_path / "half" / "metrics.csv")
    assert [r["epoch"] for r in half] == [0, 1, 2, 3]
    for a, b in zip(full, half):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)


def test_config_file_with_flags_overriding(tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("model: vae\ndataset: digits\nlatent-dim: 3\nhidden_dims: [16]\nepochs: 1\nbeta: 2.0\n")
    assert run_cli(capsys, "train", "--config", cfg, "--epochs", "2", "--out", tmp_path / "r", "--no-progress")[0] == 0
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["model"]["config"]["latent_dim"] == 3 and saved["model"]["config"]["beta"] == 2.0
    assert saved["model"]["config"]["hidden_dims"] == [16] and saved["train"]["epochs"] == 2


def test_bf16_mixed_precision_trains(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "--model", "conv-ae", "--dataset", "digits", "--epochs", "1",
                           "--precision", "bf16-mixed", *SMALL_CONV, "--out", tmp_path / "r", "--no-progress")
    assert code == 0, err
    assert json.loads((tmp_path / "r" / "config.json").read_text())["train"]["precision"] == "bf16-mixed"
    assert np.isfinite(read_metrics(tmp_path / "r" / "metrics.csv")[0]["train_loss"])


def test_dynamic_binarization_feeds_binary_batches():
    from aekit.data import load_data
    from aekit.train.loader import BatchLoader

    data = load_data("digits")
    x, _ = next(iter(BatchLoader(data, "train", 64, shuffle=True, binarize="dynamic")))
    assert set(torch.unique(x).tolist()) <= {0.0, 1.0}
    x2, _ = next(iter(BatchLoader(data, "train", 64, shuffle=True, binarize="none")))
    assert len(torch.unique(x2)) > 2


def test_a_last_training_batch_of_one_image_is_left_out_so_batch_norm_trains(tmp_path, capsys):
    """129 training images in batches of 128: batch norm cannot normalise the lone 129th (it was an internal
    error); the shuffle leaves out another image each epoch. Validation keeps every image."""
    from aekit.data import load_data
    from aekit.train.loader import BatchLoader

    data = load_data("digits", max_train_samples=129)
    train = BatchLoader(data, "train", 128, shuffle=True)
    assert len(train) == 1 and [len(x) for x, _ in train] == [128]
    assert [len(x) for x, _ in BatchLoader(data, "train", 64, shuffle=True)] == [64, 64]  # 129 % 64 == 1 too
    assert sum(len(x) for x, _ in BatchLoader(data, "val", 128, shuffle=False)) == len(data.splits["val"])
    code, _, err = run_cli(capsys, "train", "--model", "vae", "--batch-norm", "--hidden-dims", "16", "--dataset", "digits",
                           "--max-train-samples", "129", "--batch-size", "128", "--epochs", "1", "--out", tmp_path / "r",
                           "--no-progress")
    assert code == 0, err


# DDP on two CPU processes: tests/test_ddp.py (the run folder, rank 0 alone writing, equality with one process)


# --- bad input: one line on stderr, exit 2, nothing written ---------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["train", "--model", "transformer", "--dataset", "digits"], "unknown model 'transformer'"),
    (["train", "--model", "ae", "--dataset", "no-such-set"], "no-such-set"),
    (["train", "--model", "ae", "--dataset", "digits", "--beta", "2"], "--beta does not apply to model 'ae'"),
    (["train", "--model", "ae", "--dataset", "digits", "--epochs", "0"], "--epochs must be a positive integer"),
    (["train", "--model", "ae"], "needs --model and --dataset"),
    (["train", "--model", "ae", "--dataset", "digits", "--noise", "pink:2"], "noise"),
    (["train", "--model", "vae", "--dataset", "digits", "--loss", "mse", "--binarize", "dynamic"], "--binarize needs --loss bce"),
    (["train", "--config", "missing.yaml"], "missing.yaml does not exist"),
    (["evaluate", "no/such/run"], "does not exist"),
    (["summary", "nope-model"], "unknown model"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert message in err and err.startswith("aekit: error:") and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--hidden-dims", "a,b"])
    assert info.value.code == 2
    assert "comma-separated integers" in capsys.readouterr().err


def test_bad_config_file_keys(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("model: ae\ndataset: digits\nlearning_rate: 3\n")
    code, _, err = run_cli(capsys, "train", "--config", cfg)
    assert code == 2 and "unknown option(s) learning_rate" in err
    cfg.write_text("model: [ae\n")
    code, _, err = run_cli(capsys, "train", "--config", cfg)
    assert code == 2 and "not valid YAML" in err


def test_existing_run_is_not_overwritten(trained_run, capsys):
    path = trained_run("deep-ae", 2, epochs=3)
    before = (path / "model.safetensors").read_bytes()
    code, _, err = run_cli(capsys, "train", "--model", "ae", "--dataset", "digits", "--out", path)
    assert code == 2 and "already exists" in err and "--resume" in err
    assert (path / "model.safetensors").read_bytes() == before


def test_resume_without_checkpoint_or_with_other_options(tmp_path, trained_run, capsys):
    code, _, err = run_cli(capsys, "train", "--out", tmp_path / "none", "--resume")
    assert code == 2 and "does not exist" in err
    path = trained_run("deep-ae", 2, epochs=3)
    code, _, err = run_cli(capsys, "train", "--out", path, "--resume", "--latent-dim", "5")
    assert code == 2 and "--latent-dim differs" in err


def test_damaged_or_foreign_run_folders(trained_run, tmp_path, capsys):
    import shutil

    src = trained_run("deep-ae", 2, epochs=3)
    damaged = tmp_path / "damaged"
    shutil.copytree(src, damaged)
    (damaged / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    code, _, err = run_cli(capsys, "evaluate", damaged)
    assert code == 2 and "damaged" in err and err.count("\n") == 1
    with pytest.raises(aekit.RunError, match="damaged"):
        aekit.load_run(damaged)

    foreign = tmp_path / "foreign"  # weights of a deep-ae under the config of a vae
    shutil.copytree(src, foreign)
    cfg = json.loads((foreign / "config.json").read_text())
    cfg["model"] = aekit.registry.model_to_dict(aekit.build_model("vae", input_shape=(1, 8, 8), latent_dim=2))
    (foreign / "config.json").write_text(json.dumps(cfg))
    code, _, err = run_cli(capsys, "summary", foreign)
    assert code == 2 and "does not fit model 'vae'" in err

    (foreign / "config.json").write_text("{not json")
    code, _, err = run_cli(capsys, "evaluate", foreign)
    assert code == 2 and "not valid JSON" in err


def test_evaluate_writes_eval_json_with_iwae(trained_run, capsys):
    path = trained_run("vae", 2)
    code, out, _ = run_cli(capsys, "evaluate", path, "--iwae-samples", "20", "--max-samples", "100")
    assert code == 0
    ev = json.loads((path / "eval.json").read_text())
    assert ev["n"] == 100 and ev["iwae_samples"] == 20
    assert ev["nll_iwae"] <= -ev["elbo"] + 1.0  # the IWAE bound is tighter than the ELBO (up to noise)


def test_summary_and_models_listing(trained_run, capsys):
    code, out, _ = run_cli(capsys, "models")
    assert code == 0 and all(name in out for name in list_models())
    code, out, _ = run_cli(capsys, "summary", trained_run("vae", 2))
    assert code == 0 and "Total params:" in out and "to_stats (Linear)" in out
    model = aekit.load_run(trained_run("vae", 2)).model
    assert f"Total params: {sum(p.numel() for p in model.parameters()):,}" in out
    code, out, _ = run_cli(capsys, "summary", "conv-ae", "--input-shape", "3x32x32")
    assert code == 0 and "(None, 3, 32, 32)" in out


def test_help_is_fast_and_does_not_import_torch():
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "aekit.cli", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "train" in res.stdout
    assert "torch" not in {line.split("|")[-1].strip().split(".")[0] for line in res.stderr.splitlines()[1:]}


def test_run_files_get_ordinary_permissions(trained_run):
    import os
    import stat

    path = trained_run("ae", 2)
    mask = os.umask(0o022)
    os.umask(mask)
    for name in ("config.json", "model.safetensors", "metrics.csv"):
        mode = stat.S_IMODE((path / name).stat().st_mode)
        assert mode == 0o666 & ~mask, (name, oct(mode))  # not mkstemp's 0600


def test_threads_option_caps_torch_and_child_processes(monkeypatch, capsys):
    import os

    import torch

    from aekit.cli import main

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)  # restored after the test
    before = torch.get_num_threads()
    try:
        assert main(["--threads", "1", "models"]) == 0
        assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
    finally:
        torch.set_num_threads(before)
    with pytest.raises(SystemExit) as exc:
        main(["--threads", "0", "models"])
    assert exc.value.code == 2 and "--threads: expected a whole number >= 1" in capsys.readouterr().err


def test_max_minutes_stops_before_an_epoch_past_the_budget(tmp_path, capsys, data_dir):
    """--max-minutes: training stops at an epoch's end when one more epoch would end past the budget; the run
    finishes normally (weights, test metrics) and says why it stopped, in stdout and config.json."""
    from data_helpers import cli

    out = tmp_path / "run"
    code, stdout, err = cli(capsys, "train", "--model", "ae", "--dataset", "digits", "--epochs", "500", "--max-minutes",
                            "0.02", "--patience", "0", "--hidden-dims", "8", "--no-progress", "--data-dir", data_dir,
                            "--out", out)
    assert code == 0, err
    result = json.loads((out / "config.json").read_text())["result"]
    assert result["stopped_by"] == "max_minutes" and 1 <= result["epochs_completed"] < 500
    assert result["wall_seconds_last_session"] < 0.02 * 60 + 5  # the budget, plus Lightning's own start and end
    assert "stopped at the time budget" in stdout and (out / "model.safetensors").exists() and (out / "eval.json").exists()
    code, _, err = cli(capsys, "train", "--model", "ae", "--dataset", "digits", "--max-minutes", "-1",
                       "--data-dir", data_dir, "--out", tmp_path / "bad")
    assert code == 2 and "--max-minutes must be >= 0" in err and not (tmp_path / "bad").exists()


def test_cosine_follows_the_epochs_of_the_session(tmp_path, capsys):
    """The default schedule decays the lr to 0 over --epochs; a run resumed with more epochs decays over the new
    total from where it stands (it does not climb back up after the first session's end)."""
    import math

    common = ["--model", "ae", "--dataset", "digits", "--hidden-dims", "16", "--latent-dim", "2", "--patience", "0",
              "--no-progress", "--lr", "0.01"]
    assert run_cli(capsys, "train", *common, "--epochs", "2", "--out", tmp_path / "r")[0] == 0
    assert run_cli(capsys, "train", "--out", tmp_path / "r", "--resume", "--epochs", "4", "--no-progress")[0] == 0
    lrs = [r["lr"] for r in read_metrics(tmp_path / "r" / "metrics.csv")]  # the lr each epoch trained with
    first = [0.01 * 0.5 * (1 + math.cos(math.pi * e / 2)) for e in range(2)]  # 0.01, 0.005
    then = [0.01 * 0.5 * (1 + math.cos(math.pi * e / 4)) for e in range(2, 4)]  # 0.005, 0.0015: over 4 now
    assert lrs == pytest.approx(first + then, abs=1e-9)

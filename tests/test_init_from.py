"""aekit train --init-from RUN: a new run that starts from a finished run's weights (fine-tuning, or a second
training on another objective), with fresh training options; what cannot fit is one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from aekit.cli import main

BASE = ["--dataset", "digits", "--patience", "0", "--no-progress"]


def cli(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("init") / "src"
    assert main(["train", "--model", "hvae", *BASE, "--hidden-dims", "32", "--latent-dim", "2", "--latent-dims", "4",
                 "--ladder-width", "16", "--epochs", "2", "--seed", "7", "--out", str(out)]) == 0
    return out


def params(run: Path, model) -> dict:
    """The run's trainable parameters (batch norm's running statistics move in any training step)."""
    state = load_file(run / "model.safetensors")
    return {k: state[k] for k, _ in model.named_parameters()}


def test_a_new_run_starts_from_the_weights_and_keeps_the_model_options(source, tmp_path, capsys):
    import aekit

    out = tmp_path / "ft"
    code, err = cli(capsys, "train", "--init-from", source, "--iwae-k", "5", "--kl-warmup", "0", "--lr", "1e-12",
                    "--epochs", "1", "--no-progress", "--out", out)
    assert code == 0, err
    cfg, old = json.loads((out / "config.json").read_text()), json.loads((source / "config.json").read_text())
    assert cfg["model"]["name"] == "hvae" and cfg["model"]["config"]["iwae_k"] == 5
    assert cfg["model"]["config"]["kl_warmup"] == 0  # the flags given change the options ...
    for key in ("hidden_dims", "latent_dim", "latent_dims", "ladder_width", "batch_norm"):
        assert cfg["model"]["config"][key] == old["model"]["config"][key], key  # ... the rest are the source's
    assert cfg["data"]["spec"] == "digits" and cfg["data"]["sizes"] == old["data"]["sizes"]  # its data and splits
    assert cfg["data"]["seed"] == old["data"]["seed"] == 7 and cfg["train"]["seed"] == 0  # its split's seed
    assert cfg["train"]["lr"] == 1e-12 and cfg["train"]["epochs"] == 1  # fresh training options
    assert cfg["init_from"]["run"] == str(source.absolute()) and cfg["init_from"]["epochs"] == 2
    import hashlib

    assert cfg["init_from"]["sha256"] == hashlib.sha256((source / "model.safetensors").read_bytes()).hexdigest()
    model = aekit.load_run(out).model
    got, want = params(out, model), params(source, model)
    for k in want:  # an lr of 1e-12 leaves the weights where they started: the source's
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-6)
    # and without --init-from the same options start elsewhere (the check above could not pass by chance)
    code, err = cli(capsys, "train", "--model", "hvae", *BASE, "--hidden-dims", "32", "--latent-dim", "2",
                    "--latent-dims", "4", "--ladder-width", "16", "--iwae-k", "5", "--lr", "1e-12", "--epochs", "1",
                    "--seed", "7", "--out", tmp_path / "fresh")
    assert code == 0, err
    fresh = params(tmp_path / "fresh", model)
    assert any((fresh[k] - want[k]).abs().max() > 1e-3 for k in want)


def test_resumed_before_its_first_checkpoint_it_starts_from_the_same_weights(source, tmp_path, capsys):
    import aekit

    out = tmp_path / "ft"
    assert cli(capsys, "train", "--init-from", source, "--lr", "1e-12", "--epochs", "1", "--no-progress",
               "--out", out)[0] == 0
    import shutil

    shutil.rmtree(out / "checkpoints")  # as if killed during its first epoch, before any checkpoint
    (out / "model.safetensors").unlink()
    (out / "metrics.csv").unlink()
    cfg = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**cfg, "status": "running"}))
    code, err = cli(capsys, "train", "--out", out, "--resume", "--no-progress")
    assert code == 0, err
    model = aekit.load_run(out).model
    got, want = params(out, model), params(source, model)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-6)
    assert json.loads((out / "config.json").read_text())["init_from"]["run"] == str(source.absolute())


@pytest.mark.parametrize("argv, words", [
    (["--hidden-dims", "16"], ["weights do not fit", "size mismatch", "layer sizes"]),
    (["--model", "vae"], ["is a 'hvae' run", "leave out --model"]),
    (["--resume"], ["--init-from starts a new run"]),
    (["--image-size", "16"], ["was trained on 1x8x8 images", "this data is 1x16x16"]),
], ids=["layer-size", "other-model", "with-resume", "image-shape"])
def test_what_cannot_start_from_the_run_is_one_line_exit_2_and_writes_nothing(source, argv, words, tmp_path, capsys):
    code, err = cli(capsys, "train", "--init-from", source, *argv, "--epochs", "1", "--out", tmp_path / "x")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("aekit: error:"), err
    for w in words:
        assert w in err, err
    assert not (tmp_path / "x").exists()


def test_a_folder_that_is_not_a_finished_run_is_refused(source, tmp_path, capsys):
    code, err = cli(capsys, "train", "--init-from", tmp_path / "nope", "--out", tmp_path / "x")
    assert code == 2 and "--init-from: run folder" in err and not (tmp_path / "x").exists()
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.json").write_text((source / "config.json").read_text())
    code, err = cli(capsys, "train", "--init-from", unfinished, "--out", tmp_path / "x")
    assert code == 2 and "needs a finished run" in err and not (tmp_path / "x").exists()
    staged = tmp_path / "staged"  # a finished run with a trained second stage (vq-vae's prior) is refused
    staged.mkdir()
    (staged / "model.safetensors").write_bytes((source / "model.safetensors").read_bytes())
    record = json.loads((source / "config.json").read_text())
    (staged / "config.json").write_text(json.dumps({**record, "stages": {"prior": {"status": "finished"}}}))
    code, err = cli(capsys, "train", "--init-from", staged, "--out", tmp_path / "x")
    assert code == 2 and "second stage (prior)" in err and not (tmp_path / "x").exists()

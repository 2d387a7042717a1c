"""VAE-GAN (Larsen et al. 2016): three networks, three optimizers through the engine's recipe hook.

Stability on real MNIST with the default stabilisers, the CLI run folder with three optimizer states that
--resume restores, --grad-clip and bf16-mixed with three optimizers, and the refusal to resume under another
optimizer layout."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import aekit
from aekit.cli import main
from aekit.registry import build_model
from aekit.train import TrainConfig
from aekit.train.runs import read_metrics

SMALL = ["--filters", "8,16", "--kernel-sizes", "3,3", "--strides", "2,2", "--disc-filters", "8,16"]
NAMES = ["encoder", "decoder", "discriminator"]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def optimizer_states(run: Path) -> list[dict]:
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return ckpt["optimizer_states"]


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a busy 2-core machine two oversubscribed threads ran the MNIST test 13x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 20, 17)])
def test_any_image_size_and_channel_count(shape):
    torch.manual_seed(0)
    model = build_model("vae-gan", input_shape=shape, latent_dim=5, filters=(8, 16), kernel_sizes=(3, 3), strides=(2, 2))
    x = torch.rand(4, *shape)
    out = model(x)
    assert out.x_hat.shape == x.shape and out.z.shape == (4, 5)
    assert set(out.terms) == {"recon", "pixel", "kl", "gan"}
    assert {"mse", "kl_nats", "disc_acc", "gan_dis"} <= set(out.stats)
    assert out.loss.item() == pytest.approx(sum(t.item() for t in out.terms.values()), rel=1e-5)
    feats, logits = model.disc(x)
    assert logits.shape == (4,) and feats.shape[0] == 4
    assert model.eval().sample(3, generator=torch.Generator().manual_seed(0)).shape == (3, *shape)
    # the feature layer is any discriminator conv: the first one's output has ceil(H/2) x ceil(W/2) cells
    first = build_model("vae-gan", input_shape=shape, latent_dim=5, feature_layer=1)
    c, h, w = shape
    assert first.disc(x)[0].shape == (4, 32 * math.ceil(h / 2) * math.ceil(w / 2))


def test_capabilities_and_optimizer_layout():
    model = build_model("vae-gan", input_shape=(1, 28, 28), latent_dim=4)
    assert model.has_prior and model.skip_reason("posterior") is None and model.skip_reason("prior") is None
    assert "likelihood" in model.skip_reason("likelihood")  # a feature-space loss: no pixel likelihood bound
    opts = model.make_optimizers(TrainConfig(lr=1e-3))
    assert list(opts) == NAMES
    groups = {name: {id(p) for g in o.param_groups for p in g["params"]} for name, o in opts.items()}
    assert groups["discriminator"] == {id(p) for p in model.disc.parameters()}
    assert groups["decoder"] == {id(p) for p in model.body.decoder.parameters()}
    assert not (groups["encoder"] & groups["decoder"]) and not (groups["encoder"] & groups["discriminator"])
    assert sum(map(len, groups.values())) == len(list(model.parameters()))  # every weight has one optimizer
    assert opts["discriminator"].param_groups[0]["lr"] == pytest.approx(1e-3 * model.config.disc_lr)


def test_equilibrium_rule_skips_the_side_that_wins():
    model = build_model("vae-gan", latent_dim=2)  # equilibrium 0.68, margin 0.35: mean cost inside [0.33, 1.03]
    t = torch.tensor
    assert model._equilibrium(t(0.7), t(0.6)) == (True, True)  # balanced: everyone trains
    assert model._equilibrium(t(0.1), t(0.3)) == (False, True)  # discriminator winning: it pauses
    assert model._equilibrium(t(0.9), t(1.5)) == (True, False)  # decoder winning: no adversarial gradient
    # reals easy (label smoothing keeps their cost near 0.1) while the fakes fool it: the discriminator trains
    assert model._equilibrium(t(0.1), t(1.5)) == (True, True)
    off = build_model("vae-gan", latent_dim=2, margin=0.0)
    assert off._equilibrium(t(0.01), t(5.0)) == (True, True)


def test_stays_stable_on_mnist_with_the_default_stabilisers(data_dir, tmp_path):
    """A few hundred steps on real MNIST through the engine: every loss stays finite, and after the first
    epoch the discriminator neither wins outright nor gives up (accuracy on real vs fake inside (0.05, 0.95))."""
    data = aekit.load_data("mnist", max_train_samples=1024, val_fraction=0.05, data_dir=data_dir)
    torch.manual_seed(0)
    model = build_model("vae-gan", input_shape=data.shape, latent_dim=8, filters=(16, 32), kernel_sizes=(3, 3),
                        strides=(2, 2), disc_filters=(16, 32, 64))  # smaller nets; every loss option is the default
    run = aekit.fit(model, data, TrainConfig(epochs=5, batch_size=32, patience=0, progress=False, schedule="none"),
                    out=tmp_path / "r")  # calibrated at a constant lr
    rows = run.metrics()
    assert len(rows) == 5  # 5 x 31 = 155 steps
    for row in rows:
        assert all(math.isfinite(v) for v in row.values()), row
    for row in rows[1:]:  # after warm-up
        assert 0.05 < row["train_disc_acc"] < 0.95, row
        assert row["train_dis_updates"] > 0.25 and row["train_gen_updates"] > 0.25  # no side is frozen for long
    assert rows[-1]["train_mse"] < 0.5 * rows[0]["train_mse"]  # and it learns to reconstruct
    assert rows[-1]["val_mse"] < 0.07


def test_cli_run_resume_restores_all_three_optimizers(tmp_path, capsys, data_dir):
    """Train through the CLI with --grad-clip, resume: every optimizer's Adam state carries on (its step count
    continues from the checkpoint's instead of restarting)."""
    out = tmp_path / "run"
    common = ["--no-progress", "--margin", "0", "--data-dir", data_dir]  # margin 0: every step updates all three
    code, stdout, err = run_cli(capsys, "train", "--model", "vae-gan", "--dataset", "mnist", "--max-train-samples", "256",
                                "--val-fraction", "0.05", "--batch-size", "64", "--epochs", "1", "--latent-dim", "4",
                                "--grad-clip", "1.0", "--out", out, *SMALL, *common)
    assert code == 0, err
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["train"]["optimizers"] == NAMES and cfg["train"]["grad_clip"] == 1.0
    steps = 256 // 64
    before = optimizer_states(out)
    assert len(before) == 3
    for state in before:
        assert state["state"] and all("exp_avg" in s and "exp_avg_sq" in s for s in state["state"].values())
        assert {float(s["step"]) for s in state["state"].values()} == {steps}
    disc_moment = before[2]["state"][0]["exp_avg"].clone()

    code, _, err = run_cli(capsys, "train", "--out", out, "--resume", "--epochs", "2", *common)
    assert code == 0, err
    after = optimizer_states(out)
    for state in after:
        assert {float(s["step"]) for s in state["state"].values()} == {2 * steps}  # restored, then stepped on
    assert not torch.equal(after[2]["state"][0]["exp_avg"], disc_moment)
    rows = read_metrics(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == [0, 1] and all(math.isfinite(r["train_loss"]) for r in rows)
    run = aekit.load_run(out)
    assert run.config["train"]["optimizers"] == NAMES and run.model.has_prior


def test_resume_under_another_optimizer_layout_is_refused(tmp_path, capsys, data_dir):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--model", "vae-gan", "--dataset", "digits", "--epochs", "1",
                           "--latent-dim", "2", "--out", out, "--no-progress", *SMALL)
    assert code == 0, err
    cfg = json.loads((out / "config.json").read_text())
    cfg["train"]["optimizers"] = ["model"]  # as if a one-optimizer recipe had written it
    (out / "config.json").write_text(json.dumps(cfg))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code, _, err = run_cli(capsys, "train", "--out", out, "--resume", "--epochs", "2", "--no-progress")
    assert code == 2 and err.startswith("aekit: error:") and err.count("\n") == 1
    assert "optimizers model" in err and "encoder, decoder, discriminator" in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # nothing written


def test_bf16_mixed_precision_trains(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "--model", "vae-gan", "--dataset", "digits", "--epochs", "1",
                           "--precision", "bf16-mixed", "--latent-dim", "2", "--out", tmp_path / "r", "--no-progress", *SMALL)
    assert code == 0, err
    row = read_metrics(tmp_path / "r" / "metrics.csv")[0]
    assert all(math.isfinite(row[k]) for k in ("train_loss", "train_loss_gan", "train_gan_dis", "val_loss"))
    assert len(optimizer_states(tmp_path / "r")) == 3


def test_several_devices_are_refused_up_front(tmp_path, capsys):
    """DDP wants every gradient from each backward pass; a three-optimizer recipe says so before writing."""
    code, _, err = run_cli(capsys, "train", "--model", "vae-gan", "--dataset", "digits", "--devices", "2",
                           "--strategy", "ddp", "--accelerator", "cpu", "--out", tmp_path / "r", "--no-progress", *SMALL)
    assert code == 2 and err.count("\n") == 1 and "3 optimizers" in err and "one device" in err
    assert not (tmp_path / "r").exists()

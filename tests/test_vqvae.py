"""VQ-VAE: grid shapes, the quantisers (straight-through gradients, EMA codebook, dead-code restarts, FSQ), and
the two stages end to end through the CLI on real MNIST: train, train-stage prior (and resume it), sample."""

from __future__ import annotations

import json
import math

import pytest
import torch

from aekit.cli import main
from aekit.errors import ConfigError, NoPriorError
from aekit.registry import build_model

@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are tiny: one thread runs them as fast as two, and a machine busy with other work does not
    stall it (two OpenMP threads wait on each other when one is descheduled)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


SMALL = {"hidden_channels": 16, "res_blocks": 1, "codebook_size": 64, "prior_width": 32, "prior_layers": 1,
         "prior_heads": 2, "prior_dropout": 0.0}


def small(**options):
    torch.manual_seed(0)
    return build_model("vq-vae", **{**SMALL, **options})


# --- shapes -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, downsample, grid", [
    ((1, 28, 28), 2, (7, 7)), ((3, 32, 32), 2, (8, 8)), ((3, 31, 17), 2, (7, 4)), ((1, 9, 5), 1, (4, 2)),
    ((2, 6, 6), 0, (6, 6)),
])
@pytest.mark.parametrize("quantizer", ["vq", "fsq"])
def test_code_grid_follows_the_input_size(shape, downsample, grid, quantizer):
    model = small(input_shape=shape, downsample=downsample, latent_dim=8, quantizer=quantizer)
    d = 8 if quantizer == "vq" else 4  # fsq: one channel per level of the default (8, 5, 5, 5)
    assert model.code_shape == (d, *grid)
    x = torch.rand(3, *shape)
    out = model(x)
    assert out.x_hat.shape == x.shape and out.z.shape == (3, d, *grid)
    model.eval()
    idx = model.encode_indices(x)
    assert idx.shape == (3, *grid) and idx.dtype == torch.long and 0 <= idx.min() and idx.max() < model.codebook_size
    # the three roads to an image agree: indices, quantised codes, and codes before quantisation (snapped)
    torch.testing.assert_close(model.decode_indices(idx), model.decode(model.encode(x)))
    torch.testing.assert_close(model.decode(model.encode_pre(x)), model.decode(model.encode(x)))


def test_mnist_default_is_a_7x7_grid_of_512_codes():
    model = build_model("vq-vae", input_shape=(1, 28, 28))
    assert model.code_shape == (64, 7, 7) and model.codebook_size == 512
    assert model.skip_reason("discrete") is None and model.skip_reason("flat") is not None


# --- the quantiser ------------------------------------------------------------------------------------------
def test_straight_through_gradient_reaches_the_encoder():
    model = small(input_shape=(1, 12, 12), latent_dim=4).train()
    x = torch.rand(4, 1, 12, 12)
    model(x)  # the first training batch initialises the codebook
    model.eval()  # no EMA update, so the codebook below is the one the forward pass used
    out = model(x)
    # the decoder saw codebook vectors (the forward value is quantised) ...
    q = model.quantizer.codes(model.quantizer.indices(model.encode_pre(x).detach()))
    torch.testing.assert_close(out.z.detach(), q)
    # ... yet the reconstruction loss alone back-propagates into the encoder's first conv
    out.terms["recon"].backward()
    grad = model.encoder[0].weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_stage_one_optimizer_leaves_the_prior_alone():
    from aekit.train import TrainConfig

    model = small(input_shape=(1, 8, 8))
    opt = model.make_optimizers(TrainConfig())["model"]
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert in_opt and not in_opt & {id(p) for p in model.prior.parameters()}
    assert all(not p.requires_grad for p in model.prior.parameters())


def test_ema_updates_move_each_used_code_toward_its_vectors():
    from aekit.models.vqvae import VectorQuantizer

    vq = VectorQuantizer(4, 2, commitment=0.25, decay=0.9, dead_threshold=0.0).train()
    vq.initialised.fill_(True)
    with torch.no_grad():
        vq.embed.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0], [-10.0, 10.0], [10.0, -10.0]]))
        vq.embed_sum.copy_(vq.embed)  # usage starts at 1 per code: the sums equal the codes
    z = torch.tensor([[1.0, 1.0], [3.0, 3.0]]).view(1, 2, 1, 2).permute(0, 3, 1, 2)  # (1, D=2, h=2, w=1)
    before = vq.embed.clone()
    vq.eval()
    vq(z)
    assert torch.equal(vq.embed, before)  # evaluation never moves the codebook
    vq.train()
    _, idx, terms = vq(z)
    assert idx.flatten().tolist() == [0, 0] and "codebook" not in terms  # EMA: no codebook loss
    # code 0: usage 0.9*1 + 0.1*2 = 1.1, sum 0.9*0 + 0.1*(4, 4) = (0.4, 0.4) -> about (0.36, 0.36)
    assert vq.embed[0].tolist() == pytest.approx([0.4 / 1.1, 0.4 / 1.1], rel=1e-3)
    torch.testing.assert_close(vq.embed[1:], before[1:], rtol=1e-3, atol=1e-3)  # unused codes stay (smoothing aside)


def test_dead_codes_are_restarted_at_encoder_outputs():
    model = small(input_shape=(1, 12, 12), latent_dim=4).train()
    x = torch.rand(8, 1, 12, 12)
    model(x)  # first batch: the codebook starts from encoder outputs
    vq = model.quantizer
    with torch.no_grad():
        vq.embed[3] = 1e3  # far from every encoder output: never chosen, its usage decays below the threshold
        vq.embed_sum[3] = 1e3 * vq.usage[3]
    model(x)
    flat = model.encode_pre(x).detach().permute(0, 2, 3, 1).reshape(-1, 4)
    assert torch.cdist(vq.embed[3:4], flat).min() < 1e-4  # restarted onto one of this batch's encoder outputs
    assert vq.usage[3] >= model.config.dead_code_threshold


def test_learned_codebook_without_ema_gets_a_codebook_loss():
    model = small(input_shape=(1, 8, 8), ema_decay=0.0)
    assert isinstance(model.quantizer.embed, torch.nn.Parameter)
    out = model(torch.rand(4, 1, 8, 8))
    assert set(out.terms) == {"recon", "commit", "codebook"}
    assert out.loss.item() == pytest.approx(sum(t.item() for t in out.terms.values()), rel=1e-5)
    out.terms["codebook"].backward()
    assert model.quantizer.embed.grad.abs().sum() > 0


def test_fsq_codes_sit_on_the_level_grid():
    model = small(input_shape=(1, 8, 8), downsample=1, quantizer="fsq", fsq_levels=(5, 4, 3)).eval()
    assert model.codebook_size == 60 and model.code_shape == (3, 4, 4)
    x = torch.rand(6, 1, 8, 8)
    z = model.encode(x)
    levels = torch.tensor([5.0, 4.0, 3.0]).view(1, 3, 1, 1)
    half = torch.floor(levels / 2)
    k = z * half
    assert torch.equal(k, k.round()) and (k >= -half).all() and (k <= half - (levels % 2 == 0).float()).all()
    assert torch.equal(model.snap(z), z)  # snapping is idempotent: decode takes codes before or after it
    every = torch.arange(60).view(1, 6, 10)
    assert torch.equal(model.quantizer.indices(model.quantizer.codes(every)), every)  # 60 distinct codes
    out = model.train()(x)
    assert set(out.terms) == {"recon"}  # no codebook to learn, nothing to commit to


def test_fsq_trains_on_one_batch():  # (the contract suite does the same for the default, vq)
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(16, 3, generator=g) @ torch.randn(3, 64, generator=g) > 0).float().view(16, 1, 8, 8)
    model = small(input_shape=(1, 8, 8), downsample=1, quantizer="fsq")
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    first = model(x).loss.item()
    for _ in range(60):
        out = model(x)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert model(x).loss.item() < 0.8 * first


# --- errors -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags, message", [
    (["--codebook-size", "0"], "--codebook-size must be in 2..65536, got 0"),
    (["--downsample", "4"], "--downsample 4 makes the code grid coarser than a 8x8 image"),
    (["--fsq-levels", "8,1"], "--fsq-levels must be one or more levels, each >= 2"),
    (["--fsq-levels", "64,64,64"], "--fsq-levels (64, 64, 64) give 262144 codes"),
    (["--ema-decay", "1"], "--ema-decay must be in [0, 1)"),
    (["--prior-heads", "3"], "--prior-heads (3) must divide prior_width (64)"),
])
def test_bad_vq_options_exit_2_with_one_line(tmp_path, capsys, data_dir, flags, message):
    out = tmp_path / "run"
    assert main(["train", "--model", "vq-vae", "--dataset", "digits", "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


# --- the two stages through the CLI, on MNIST ---------------------------------------------------------------
@pytest.fixture(scope="module")
def mnist_run(trained_run):
    flags = {k: v for k, v in SMALL.items()}
    return trained_run("vq-vae", 8, dataset="mnist", epochs=1, max_train_samples=2048, val_fraction=0.01, batch_size=32,
                       **flags)


def test_sampling_before_the_prior_is_trained_says_what_to_run(mnist_run, capsys):
    from aekit.train import load_run

    model = load_run(mnist_run).model
    assert not model.has_prior and model.skip_reason("prior") == model.prior_hint()
    with pytest.raises(NoPriorError, match=r"aekit train-stage RUN --stage prior"):
        model.sample(2)
    before = sorted(p.name for p in mnist_run.iterdir())
    out = mnist_run / "bits.json"
    assert main(["evaluate", str(mnist_run), "--metrics", "bits", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no prior yet: train it with `aekit train-stage RUN --stage prior`" in err
    assert main(["plot", "sample", str(mnist_run), "--n", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "`aekit train-stage RUN --stage prior`" in err
    assert sorted(p.name for p in mnist_run.iterdir()) == before  # nothing written


def test_train_stage_refuses_what_it_cannot_do(mnist_run, trained_run, capsys):
    assert main(["train-stage", str(trained_run("ae", 2)), "--epochs", "1"]) == 2
    assert "ae has no second stage to train" in capsys.readouterr().err
    assert main(["train-stage", str(mnist_run), "--stage", "decoder", "--epochs", "1"]) == 2
    assert "--stage decoder is not one of vq-vae's stages: prior" in capsys.readouterr().err
    assert main(["train-stage", str(mnist_run), "--resume", "--epochs", "1"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert not (mnist_run / "prior").exists()


def test_prior_stage_trains_samples_resumes_and_scores(mnist_run, capsys, tmp_path):
    from aekit.evaluate import evaluate_metrics
    from aekit.train import load_run

    weights_before = (mnist_run / "model.safetensors").read_bytes()
    assert main(["train-stage", str(mnist_run), "--epochs", "1", "--batch-size", "64", "--no-progress"]) == 0
    assert "prior stage, best epoch" in capsys.readouterr().out
    prior_dir = mnist_run / "prior"
    assert (prior_dir / "checkpoints" / "last.ckpt").exists() and (prior_dir / "metrics.csv").exists()
    record = json.loads((mnist_run / "config.json").read_text())
    assert record["status"] == "finished" and record["stages"]["prior"]["status"] == "finished"
    assert record["stages"]["prior"]["train"]["optimizers"] == ["prior"]
    assert (mnist_run / "model.safetensors").read_bytes() != weights_before

    model = load_run(mnist_run).model  # the prior comes back with the weights
    assert model.has_prior and model.skip_reason("prior") is None
    a = model.sample(5, generator=torch.Generator().manual_seed(0))
    b = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert a.shape == (5, 1, 28, 28) and torch.equal(a, b) and 0 <= a.min() and a.max() <= 1
    png = tmp_path / "samples.png"
    assert main(["plot", "sample", str(mnist_run), "--n", "6", "--out", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    data = load_run(mnist_run).data()
    idx = model.encode_indices(torch.rand(3, 1, 28, 28))
    nll = model.code_nll(idx)
    assert nll.shape == (3,) and torch.isfinite(nll).all() and (nll > 0).all()
    m = evaluate_metrics(model, data, "mse,codebook,bits", max_samples=300)
    assert 0 < m["mse"] < 0.2 and 1 < m["perplexity"] <= 64 and 0 < m["usage"] <= 1
    # a 7x7 grid of 64 codes holds at most 49 * 6 = 294 bits; a trained prior needs fewer
    assert 0 < m["bits_per_image"] < 49 * math.log2(64) and m["prior_nll"] == pytest.approx(m["bits_per_image"] * math.log(2))

    # again without --resume: refused; with it: continues from last.ckpt to 2 epochs in all
    assert main(["train-stage", str(mnist_run), "--epochs", "2"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["train-stage", str(mnist_run), "--resume", "--epochs", "2"]) == 0
    rows = (prior_dir / "metrics.csv").read_text().strip().splitlines()
    assert [float(r.split(",")[0]) for r in rows[1:]] == [0, 1]
    record = json.loads((mnist_run / "config.json").read_text())
    assert record["stages"]["prior"]["result"]["epochs_completed"] == 2
    assert record["stages"]["prior"]["train"]["batch_size"] == 64  # the recorded options, unless given again


def test_evaluate_skips_what_does_not_apply_with_a_reason(mnist_run, trained_run):
    from aekit.evaluate import default_metrics, evaluate_metrics
    from aekit.train import load_run

    run = load_run(mnist_run)
    bits = ("bits",) if run.model.has_prior else ()  # once the prior stage is trained
    assert default_metrics(run.model) == ("mse", "bce", "psnr", "ssim", "codebook", *bits)
    m = evaluate_metrics(run.model, run.data(), "mse,nll,kl,pca,codebook", max_samples=100, skip_inapplicable=True)
    assert set(m["skipped"]) == {"nll", "kl", "pca"} and "needs a VAE" in m["skipped"]["nll"]
    assert "codebook indices" in m["skipped"]["pca"] and 0 < m["usage"] <= 1
    vae = load_run(trained_run("vae", 2))
    with pytest.raises(ConfigError, match="metric codebook does not apply: vae has no discrete codebook"):
        evaluate_metrics(vae.model, vae.data(), "mse,codebook", max_samples=50)  # named one by one: an error


def test_bench_trains_the_prior_stage_and_reports_codebook_columns(tmp_path, capsys, data_dir):
    import csv

    out = tmp_path / "bench"
    assert main(["bench", "--dataset", "digits", "--models", "vq-vae", "--latent-dim", "8", "--epochs", "1",
                 "--data-dir", str(data_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "vq-vae: training its prior stage 1 epochs" in printed
    row = next(csv.DictReader(open(out / "leaderboard.csv")))
    assert row["model"] == "vq-vae" and 0 < float(row["mse"]) < 0.25
    assert 1 < float(row["perplexity"]) <= 512 and 0 < float(row["usage"]) <= 1
    assert float(row["bits_per_image"]) > 0 and float(row["fid_samples"]) > 0 and not row.get("nll_iwae")
    details = json.loads((out / "bench.json").read_text())["models"]["vq-vae"]
    assert "needs a VAE" in details["skipped"]["nll"]
    assert "codebook perplexity" in (out / "leaderboard.md").read_text()

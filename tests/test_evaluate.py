"""Metrics against hand-computable cases, the VAE likelihood options, and `aekit evaluate` end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from aekit.cli import main
from aekit.evaluate import active_units, iwae_nll, kl_per_dim, psnr_per_image, ssim_per_image
from aekit.evaluate.metrics import parse_metrics
from aekit.errors import ConfigError


# --- reconstruction metrics -------------------------------------------------------------------------------
def test_mse_and_psnr_of_known_images():
    x = torch.zeros(2, 1, 8, 8)
    x_hat = torch.stack([torch.full((1, 8, 8), 0.1), torch.full((1, 8, 8), 0.01)])  # MSE 1e-2 and 1e-4
    assert psnr_per_image(x_hat, x).tolist() == pytest.approx([20.0, 40.0], abs=1e-4)
    assert psnr_per_image(x_hat * 2, x, data_range=2.0).tolist() == pytest.approx([20.0, 40.0], abs=1e-4)


def test_ssim_of_an_image_with_itself_is_one_and_noise_lowers_it():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 28, 28, generator=g)
    assert ssim_per_image(x, x).tolist() == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)
    noisy = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    s = ssim_per_image(noisy, x)
    assert (s < 0.9).all() and (s > 0).all()
    small = torch.rand(2, 1, 8, 8, generator=g)  # digits size: the window shrinks to 7x7 instead of failing
    assert ssim_per_image(small, small).tolist() == pytest.approx([1.0, 1.0], abs=1e-5)


def test_parse_metrics_rejects_unknown_names():
    assert parse_metrics("mse, psnr,mse") == ("mse", "psnr")
    assert "fid" in parse_metrics("all")
    with pytest.raises(ConfigError, match="unknown metric ssm"):
        parse_metrics("mse,ssm")


# --- VAE metrics --------------------------------------------------------------------------------------------
def test_kl_per_dim_and_active_units_by_hand():
    mu = torch.stack([torch.linspace(-1, 1, 101), torch.full((101,), 0.3), torch.zeros(101)], 1)  # (101, 3)
    logvar = torch.zeros(101, 3)
    count, var = active_units(mu)
    assert count == 1 and var[0] == pytest.approx(float(torch.linspace(-1, 1, 101).var()))
    kl = kl_per_dim(mu, logvar)
    assert kl[2] == pytest.approx(0.0, abs=1e-7)  # q = prior
    assert kl[1] == pytest.approx(0.5 * 0.3**2, rel=1e-5)  # KL(N(m, 1) || N(0, 1)) = m^2 / 2


def _vae_and_batch(trained_run):
    from aekit.data import to_float
    from aekit.train import load_run

    run = load_run(trained_run("vae", 2))
    images, _ = run.data().split("test")
    return run.model, to_float(images[:64])


def test_iwae_with_one_sample_is_the_elbo_in_expectation(trained_run):
    model, x = _vae_and_batch(trained_run)
    xs = x.repeat(300, 1, 1, 1)  # 300 independent draws per image, in one pass
    iwae1 = -iwae_nll(model, xs, 1, generator=torch.Generator().manual_seed(0)).mean()  # E[log w], K = 1
    # the ELBO as the model's loss computes it: MC reconstruction + analytic KL, averaged over the draws
    torch.manual_seed(1)
    with torch.no_grad():
        elbo = model(xs).stats["elbo"]
    assert float(iwae1) == pytest.approx(float(elbo), rel=0.005)


def test_iwae_bound_tightens_with_more_samples(trained_run):
    model, x = _vae_and_batch(trained_run)
    nll = {k: float(iwae_nll(model, x, k, generator=torch.Generator().manual_seed(0)).mean()) for k in (1, 10, 200)}
    assert nll[1] > nll[10] > nll[200] > 0


def test_vae_kl_warmup_and_iwae_objective():
    from aekit import build_model

    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((32, 1, 8, 8), 0.3))
    m = build_model("vae", input_shape=(1, 8, 8), latent_dim=3, hidden_dims=(32,), kl_warmup=4)
    m.train()
    m.on_epoch_start(0, 10)  # weight 0: the training loss is the reconstruction alone
    out = m(x)
    assert out.loss.item() == pytest.approx(out.terms["recon"].item(), rel=1e-6)
    m.on_epoch_start(2, 10)
    out = m(x)
    assert out.loss.item() == pytest.approx((out.terms["recon"] + 0.5 * out.stats["kl_nats"]).item(), rel=1e-5)
    m.eval()  # validation scores the full bound whatever the schedule says
    out = m(x)
    assert out.loss.item() == pytest.approx((out.terms["recon"] + out.terms["kl"]).item(), rel=1e-5)

    torch.manual_seed(0)
    iw = build_model("vae", input_shape=(1, 8, 8), latent_dim=3, hidden_dims=(32,), iwae_k=8)
    opt = torch.optim.Adam(iw.parameters(), lr=3e-3)
    first = None
    for _ in range(40):
        out = iw(x)
        assert out.loss.item() == pytest.approx(float(out.terms["iwae"]), rel=1e-6)
        assert out.loss.item() == pytest.approx(-float(out.stats["iwae_bound"]), rel=1e-6)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        first = out.loss.item() if first is None else first
    assert out.loss.item() < first - 5  # the IWAE objective trains
    with pytest.raises(ConfigError, match="iwae_k"):
        build_model("vae", iwae_k=0)


# --- Fréchet distance, probes, PCA ---------------------------------------------------------------------------
def test_frechet_distance_is_zero_on_itself_and_grows_with_noise(data_dir):
    from aekit.data import load_data, to_float
    from aekit.evaluate.fid import feature_classifier, frechet_distance

    data = load_data("digits")
    net, info = feature_classifier(data, data_dir)
    assert info["test_accuracy"] > 0.5  # the feature net has learnt the digits
    assert feature_classifier(data, data_dir)[1]["cached"] is True
    real = to_float(data.split("test")[0])
    g = torch.Generator().manual_seed(0)
    d = [frechet_distance(net, real, (real + s * torch.randn(real.shape, generator=g)).clamp(0, 1)) for s in (0.0, 0.1, 0.3)]
    assert abs(d[0]) < 1e-2
    assert d[0] < d[1] < d[2]


def test_probes_on_informative_and_random_codes():
    from aekit.evaluate.probes import probe_scores

    rng = np.random.default_rng(0)
    ytr, yte = rng.integers(0, 4, 1500), rng.integers(0, 4, 300)
    code = lambda y: np.eye(4)[y] + 0.05 * rng.standard_normal((len(y), 4))  # noqa: E731
    good = probe_scores(code(ytr), ytr, code(yte), yte)
    assert good["probe_acc"] == 1.0 and good["knn_acc"] == 1.0 and good["probe_acc_100"] == 1.0
    assert set(good) == {"probe_acc", "knn_acc", "probe_acc_1000", "knn_acc_1000", "probe_acc_100", "knn_acc_100"}
    bad = probe_scores(rng.standard_normal((1500, 4)), ytr, rng.standard_normal((300, 4)), yte)
    assert bad["probe_acc"] < 0.4  # chance is 0.25


def test_pca_baseline_is_the_optimal_rank_k_reconstruction():
    from aekit.evaluate.pca import pca_baseline

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (300, 1, 6, 6), dtype=np.uint8)
    out = pca_baseline(images, images, 5)
    x = images.reshape(300, -1) / 255.0
    eig = np.sort(np.linalg.eigvalsh(np.cov(x, rowvar=False, bias=True)))[::-1]
    # Eckart-Young: the training MSE of the best rank-5 affine code is the sum of the discarded eigenvalues
    assert out["pca_mse"] == pytest.approx(eig[5:].sum() / x.shape[1], rel=1e-4)
    assert out["pca_components"] == 5


# --- the command ------------------------------------------------------------------------------------------
def test_evaluate_command_writes_every_metric(trained_run, tmp_path, capsys):
    run = trained_run("vae", 2)
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(run), "--metrics", "all", "--iwae-samples", "20", "--nll-samples", "50",
                 "--out", str(out)]) == 0
    m = json.loads(out.read_text())
    assert 0 < m["mse"] < 0.2 and 0 < m["ssim"] <= 1 and m["psnr"] > 5
    assert m["nll_iwae"] < -m["elbo"] + 5 and m["iwae_samples"] == 20 and m["nll_n"] == 50
    assert len(m["kl_per_dim"]) == 2 and m["kl"] == pytest.approx(sum(m["kl_per_dim"]), abs=1e-3)
    assert 0 <= m["active_units"] <= 2
    assert m["fid_samples"] > 0 and m["fid_recon"] > 0 and 0 <= m["classifier_acc_recon"] <= 1
    assert 0.1 < m["probe_acc"] <= 1 and "knn_acc_100" in m and m["pca_components"] == 2
    assert math.isfinite(m["pca_probe_acc"])


@pytest.mark.parametrize("argv, message", [
    (["--metrics", "mse,nope"], "unknown metric nope"),
    (["--metrics", "nll"], "need a VAE"),
    (["--iwae-samples", "10"], "need a VAE"),
])
def test_evaluate_bad_inputs_exit_2_with_one_line(trained_run, capsys, argv, message):
    run = trained_run("ae", 2)
    capsys.readouterr()  # what training printed when this test built the run (a collapse warning of a tiny ae)
    assert main(["evaluate", str(run), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("name", ["vae", "hvae"])
def test_iwae_after_trains_on_the_elbo_first_and_always_validates_on_the_k_sample_bound(name):
    from aekit import build_model

    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((16, 1, 8, 8), 0.3))
    m = build_model(name, input_shape=(1, 8, 8), latent_dim=3, hidden_dims=(32,), iwae_k=4, iwae_after=2)
    m.train()
    for epoch, objective in ((0, {"recon", "kl"}), (1, {"recon", "kl"}), (2, {"iwae"}), (5, {"iwae"})):
        m.on_epoch_start(epoch, 10)
        assert set(m(x).terms) == objective, epoch
    m.on_epoch_start(0, 10)
    m.eval()  # validation scores the k-sample bound in every epoch: one yardstick for the best checkpoint
    assert set(m(x).terms) == {"iwae"}
    for bad in ({"iwae_after": -1, "iwae_k": 4}, {"iwae_after": 3}):
        with pytest.raises(ConfigError, match="iwae_after"):
            build_model(name, **bad)


def test_iwae_after_switches_the_objective_in_a_real_run(tmp_path, capsys):
    """Through the CLI and Lightning: metrics.csv shows the ELBO's terms in the first epoch, the bound after."""
    import csv

    from data_helpers import cli

    out = tmp_path / "run"
    code, _, err = cli(capsys, "train", "--model", "vae", "--dataset", "digits", "--epochs", "2", "--iwae-k", "3",
                       "--iwae-after", "1", "--hidden-dims", "32", "--latent-dim", "2", "--no-progress", "--out", str(out))
    assert code == 0, err
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert rows[0]["train_loss_kl"] and not rows[0].get("train_loss_iwae")
    assert rows[1]["train_loss_iwae"] and not rows[1].get("train_loss_kl")
    assert rows[0]["val_loss"] and rows[1]["val_loss"]

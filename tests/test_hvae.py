"""hvae, the Ladder VAE (Sønderby et al. 2016): what the contract suite cannot check.

The importance weights are exactly log p(x, z_1..L) - log q(z_1..L | x) (checked against torch.distributions
for the same draw), the IWAE bound sits above the ELBO and tightens with K, the per-layer KLs and the warm-up
make up the loss, a real MNIST run through the CLI learns and its NLL evaluates, and bad options stop the CLI
in one line before anything is written."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from data_helpers import cli
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Bernoulli, Categorical, Independent, MixtureSameFamily, Normal

from aekit.errors import ConfigError
from aekit.models.hvae import HVAEConfig
from aekit.registry import build_model

SMALL = {"input_shape": (1, 8, 8), "hidden_dims": (32,), "ladder_width": 16, "latent_dim": 2}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def mixture(mu: torch.Tensor, logvar: torch.Tensor) -> MixtureSameFamily:
    """The equal-weight Gaussian mixture over components (K, D), by torch.distributions."""
    return MixtureSameFamily(Categorical(torch.ones(len(mu), dtype=mu.dtype)),
                             Independent(Normal(mu, torch.exp(0.5 * logvar)), 1))


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory, data_dir):
    """A 3-layer hvae trained for 3 short epochs on 3,000 dynamically binarised MNIST images, through the CLI,
    with the paper's batch norm and KL warm-up (without them the top layer collapses in so short a run)."""
    from aekit.cli import main

    out = tmp_path_factory.mktemp("hvae") / "run"
    argv = ["train", "--model", "hvae", "--dataset", "mnist", "--max-train-samples", "3000", "--epochs", "3",
            "--latent-dim", "4", "--latent-dims", "16,8", "--hidden-dims", "128", "--ladder-width", "64",
            "--binarize", "dynamic", "--lr", "3e-3", "--batch-norm", "--kl-warmup", "1", "--no-progress",
            "--out", str(out), "--data-dir", str(data_dir)]
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # a module fixture runs before one_thread: oversubscribed, it ran 15x slower
    try:
        assert main(argv) == 0
    finally:
        torch.set_num_threads(before)
    return out


@pytest.mark.parametrize("prior", ["standard", "vamp"])
def test_importance_weights_are_the_joint_over_the_posterior_for_a_fixed_draw(prior):
    torch.manual_seed(0)
    model = build_model("hvae", latent_dims=(5, 3), prior=prior, pseudo_inputs=4, **SMALL).double().eval()  # 5, 3, top 2
    x = torch.rand(4, 1, 8, 8, dtype=torch.float64).bernoulli()
    k = 3
    got = model.log_importance_weights(x, k, generator=torch.Generator().manual_seed(7))  # (k, B)

    # the same draw by hand: eps is drawn top layer first, as the top-down pass goes
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        est = model.bottom_up(x)  # [(mu_hat, logvar_hat)] bottom first
        mu, lv = est[-1]
        q = Normal(mu, torch.exp(0.5 * lv))
        z = q.loc + torch.randn((k, *mu.shape), generator=g, dtype=mu.dtype) * q.scale  # (k, B, 2)
        if prior == "vamp":  # p(z_3) = 1/K sum_k q(z_3 | u_k): the top posteriors at the pseudo-inputs
            top = mixture(*model.bottom_up(model.pseudo_inputs())[-1]).log_prob(z)
        else:
            top = Normal(0.0, 1.0).log_prob(z).sum(-1)
        log_w = top - q.log_prob(z).sum(-1)
        for layer in (1, 0):
            mu_p, lv_p = model.prior(layer, z)
            var_hat, var_p = est[layer][1].exp(), lv_p.exp()
            var_q = 1 / (1 / var_hat + 1 / var_p)  # precision weighting, as Sønderby et al. 2016 write it
            mu_q = (est[layer][0] / var_hat + mu_p / var_p) * var_q
            q, p = Normal(mu_q, var_q.sqrt()), Normal(mu_p, var_p.sqrt())
            z = mu_q + torch.randn(mu_q.shape, generator=g, dtype=mu.dtype) * var_q.sqrt()
            log_w += p.log_prob(z).sum(-1) - q.log_prob(z).sum(-1)
        logits = model.body.decoder(z.flatten(0, 1)).view(k, *x.shape)
        log_w += Bernoulli(logits=logits).log_prob(x.expand(k, *x.shape)).flatten(2).sum(-1)
    assert got.shape == (k, 4)
    torch.testing.assert_close(got, log_w, rtol=1e-9, atol=1e-9)


def test_forward_is_the_elbo_with_one_kl_per_layer_and_the_warmup_scales_it():
    torch.manual_seed(1)
    model = build_model("hvae", latent_dims=(5, 3), kl_warmup=4, **SMALL)
    x = torch.rand(6, 1, 8, 8)
    out = model(x)
    assert set(out.terms) == {"recon", "kl"} and out.z.shape == (6, 2)
    kls = [out.stats[f"kl_{i}"] for i in (1, 2, 3)]
    assert all(v > 0 for v in kls) and "kl_4" not in out.stats
    assert out.stats["kl_nats"].item() == pytest.approx(sum(kls).item(), rel=1e-5)
    assert out.stats["elbo"].item() == pytest.approx(-(out.terms["recon"] + out.stats["kl_nats"]).item(), rel=1e-5)
    model.on_epoch_start(1, 10)  # a quarter of the way through a 4-epoch warm-up
    out = model(x)
    assert out.terms["kl"].item() == pytest.approx(0.25 * out.stats["kl_nats"].item(), rel=1e-5)
    model.eval()  # validation scores the full bound, whatever the warm-up
    out = model(x)
    assert out.terms["kl"].item() == pytest.approx(out.stats["kl_nats"].item(), rel=1e-5)


def test_code_is_the_top_layer_and_decode_walks_the_prior_means():
    torch.manual_seed(2)
    model = build_model("hvae", latent_dims=(6,), **SMALL).eval()
    x = torch.rand(3, 1, 8, 8)
    mu, lv = model.posterior(x)
    assert model.code_shape == (2,) and torch.equal(model.encode(x), mu) and lv.shape == (3, 2)
    assert model.skip_reason("plane") is None and model.skip_reason("likelihood") is None
    z = torch.randn(3, 2)
    torch.testing.assert_close(model.decode(z), torch.sigmoid(model.body.decoder(model.prior(0, z)[0])))
    # sampling is ancestral: the lower layer is drawn, not its mean, so it differs from decode(prior draw)
    a = model.sample(5, generator=torch.Generator().manual_seed(0))
    b = model.decode(model.sample_prior(5, generator=torch.Generator().manual_seed(0)))
    assert a.shape == b.shape == (5, 1, 8, 8) and not torch.allclose(a, b)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(-5, 40), max_size=4).filter(lambda d: not d or min(d) < 1))
def test_bad_latent_dims_are_one_line_config_errors(dims):
    with pytest.raises(ConfigError) as info:
        HVAEConfig(latent_dims=tuple(dims))
    assert info.value.param == "latent_dims" and "\n" not in str(info.value)


@pytest.mark.parametrize("argv, words", [
    (["--latent-dims="], ["--latent-dims", "at least one layer"]),
    (["--latent-dims", "8,0"], ["--latent-dims", "8,0"]),
    (["--ladder-width", "0"], ["--ladder-width"]),
    (["--arch", "conv", "--encoder", "maxpool", "--pool-padding", "valid", "--filters", "4,4,4,4",
      "--kernel-sizes", "3,3,3,3", "--strides", "2,2,2,2"], ["8x8"]),  # the conv stack does not fit digits' 8x8
])
def test_bad_options_stop_the_cli_in_one_line_before_any_file(argv, words, tmp_path, data_dir, capsys):
    out = tmp_path / "run"
    code, _, err = cli(capsys, "train", "--model", "hvae", "--dataset", "digits", "--epochs", "1", "--no-progress",
                       "--data-dir", data_dir, "--out", out, *argv)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert all(w in err for w in words), err
    assert not out.exists()


def test_a_real_mnist_run_learns_and_its_iwae_bound_is_tighter_than_its_elbo(mnist_run, capsys):
    with open(mnist_run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    val = [float(r["val_loss"]) for r in rows]
    assert len(val) == 3 and val[-1] < val[0] - 5, val
    assert all(float(rows[-1][f"val_kl_{i}"]) > 0 for i in (1, 2, 3))  # every layer carries information

    code, out, err = cli(capsys, "evaluate", mnist_run, "--metrics", "elbo,nll", "--iwae-samples", "50",
                         "--nll-samples", "200", "--binarize", "static")
    assert code == 0, err
    m = json.loads((mnist_run / "eval.json").read_text())
    nll = m["nll_iwae"]
    # plausible for a few minutes of training on binarised MNIST (a trained Ladder VAE: ~82 nats; pixels
    # at 0.5: 543); the bound on the same 200 images beats the ELBO averaged over all test images only loosely
    assert math.isfinite(nll) and 70 < nll < 200, m
    assert nll < -m["elbo"] + 5, m


def test_the_iwae_bound_sits_above_the_elbo_and_tightens_with_k(mnist_run):
    import aekit
    from aekit.data import load_data, to_float

    model = aekit.load_run(mnist_run).model.eval()
    x = to_float(load_data("mnist").split("test")[0][:100]).bernoulli(generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    bounds = {}
    for k in (1, 10, 100):
        w = model.log_importance_weights(x, k, generator=g)  # (k, B)
        bounds[k] = (torch.logsumexp(w, 0) - math.log(k)).mean().item()
    assert bounds[1] < bounds[10] < bounds[100], bounds  # K = 1 is the ELBO
    assert bounds[100] - bounds[1] > 0.5, bounds


@pytest.mark.parametrize("options", [{"arch": "conv", "filters": (4, 8), "kernel_sizes": (3, 3), "strides": (2, 2)},
                                     {"batch_norm": False}])
def test_conv_body_and_no_batch_norm_give_the_same_contract(options):
    torch.manual_seed(3)
    model = build_model("hvae", input_shape=(1, 12, 10), latent_dim=3, latent_dims=(6, 4), hidden_dims=(32,),
                        ladder_width=16, **options)
    x = torch.rand(5, 1, 12, 10)
    out = model(x)
    assert out.x_hat.shape == x.shape and {"kl_1", "kl_2", "kl_3"} <= set(out.stats)
    model.eval()
    w = model.log_importance_weights(x, 4, generator=torch.Generator().manual_seed(0))
    assert w.shape == (4, 5) and torch.isfinite(w).all()
    assert model.decode(model.encode(x)).shape == x.shape


def test_the_iwae_k_objective_is_the_importance_weighted_bound_over_joint_draws():
    torch.manual_seed(4)
    model = build_model("hvae", latent_dims=(5,), iwae_k=5, **SMALL).eval()
    x = torch.rand(6, 1, 8, 8).bernoulli()
    torch.manual_seed(5)
    out = model(x)
    torch.manual_seed(5)  # the same draws: log_importance_weights without a generator takes the global stream
    w = model.log_importance_weights(x, 5)  # (5, 6)
    assert out.loss.item() == pytest.approx(-(torch.logsumexp(w, 0) - math.log(5)).mean().item(), rel=1e-5)
    assert set(out.terms) == {"iwae"} and {"kl_1", "kl_2", "elbo", "iwae_bound"} <= set(out.stats)
    model.train()
    model(x).loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# --- --prior vamp: a VampPrior on the top layer (Tomczak & Welling 2018) ------------------------------------
def test_vamp_top_prior_is_the_mixture_of_top_posteriors_at_the_pseudo_inputs():
    torch.manual_seed(3)
    model = build_model("hvae", latent_dims=(5,), prior="vamp", pseudo_inputs=3, **SMALL).double().eval()
    plain = build_model("hvae", latent_dims=(5,), **SMALL)
    assert model.skip_reason("learned_inputs") is None and plain.skip_reason("learned_inputs") is not None
    assert model.learned_inputs().shape == (3, 1, 8, 8) and 0 <= model.learned_inputs().min()
    with pytest.raises(ConfigError):
        plain.learned_inputs()
    with torch.no_grad():
        mu, logvar = model.bottom_up(model.pseudo_inputs())[-1]  # (K, 2) each
        axis = torch.linspace(-10, 10, 401, dtype=torch.float64)
        grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).view(-1, 2)
        log_p = model.log_prior(grid)
        torch.testing.assert_close(log_p, mixture(mu, logvar).log_prob(grid), rtol=0, atol=1e-6)
        assert log_p.exp().sum().item() * (20 / 400) ** 2 == pytest.approx(1.0, abs=1e-3)  # a density
        draws = model.sample_prior(20000, generator=torch.Generator().manual_seed(1))
        var = (logvar.exp() + mu.pow(2)).mean(0) - mu.mean(0).pow(2)  # the mixture's variance per dimension
        assert torch.allclose(draws.mean(0), mu.mean(0), atol=0.05) and torch.allclose(draws.var(0), var, rtol=0.05)


def test_vamp_top_prior_trains_its_pseudo_inputs_and_the_top_kl_is_the_sampled_estimate():
    torch.manual_seed(4)
    model = build_model("hvae", latent_dims=(5,), prior="vamp", pseudo_inputs=4, batch_norm=True, **SMALL)
    x = torch.rand(6, 1, 8, 8).bernoulli()
    out = model(x)
    out.loss.backward()
    assert model.pseudo.grad is not None and model.pseudo.grad.abs().sum() > 0  # the prior learns
    # the estimate log q(z|x) - log p(z) can be negative for one draw; the closed-form lower KL cannot
    assert out.stats["kl_1"] > 0 and math.isfinite(out.stats["kl_2"].item())
    assert out.stats["elbo"].item() == pytest.approx(-(out.terms["recon"] + out.stats["kl_nats"]).item(), rel=1e-5)
    # batch norm saw images and pseudo-inputs in one batch: in eval mode the separate pass gives the same components
    model.eval()
    with torch.no_grad():
        _, together = model.bottom_up_with_prior(x)
        torch.testing.assert_close(together, model.components())


@settings(max_examples=25, deadline=None)
@given(st.integers(-50, 0) | st.just(None), st.text(max_size=8).filter(lambda p: p not in ("standard", "vamp")))
def test_bad_vamp_options_are_one_line_config_errors(k, prior):
    with pytest.raises(ConfigError) as info:
        HVAEConfig(pseudo_inputs=k, prior="vamp") if k is not None else HVAEConfig(prior=prior)
    assert info.value.param == ("pseudo_inputs" if k is not None else "prior") and "\n" not in str(info.value)

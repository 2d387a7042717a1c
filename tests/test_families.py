"""What the contract suite cannot check of the issue-16 families: each one's own objective and prior.

iwae (the VAE on the k=5 bound), wae-mmd (MMD to the prior), beta-tc-vae (the KL split three ways), vamp-vae (a
mixture prior of learned pseudo-inputs) and cvae (labels through encoder, decoder and the training engine).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal
from torch.nn import functional as F

from aekit.cli import main
from aekit.data import load_data, to_float
from aekit.errors import ConfigError
from aekit.models.vae import log_normal
from aekit.registry import build_model

SMALL = {"input_shape": (1, 8, 8), "hidden_dims": (32,)}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def digits():
    """256 training images of scikit-learn's 8x8 digits (float in [0, 1]) and their labels."""
    x, y = load_data("digits").split("train")
    return to_float(x[:256]), y[:256]


def fit(model, x, steps: int, y=None, lr: float = 3e-3) -> list[float]:
    """Adam on one batch; the losses of every step."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    model.train()
    for _ in range(steps):
        out = model(x) if y is None else model.forward_batch(x, y)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    return losses


# --- iwae --------------------------------------------------------------------------------------------------
def test_iwae_presets_train_on_the_k5_importance_weighted_bound(digits):
    vae, dense, conv = build_model("vae"), build_model("iwae"), build_model("conv-iwae")
    assert type(dense) is type(vae) and type(conv) is type(vae)  # presets, not copies
    assert dense.config.iwae_k == 5 and conv.config.iwae_k == 5 and conv.config.arch == "conv"
    torch.manual_seed(0)
    model = build_model("iwae", latent_dim=3, **SMALL).eval()
    x = digits[0][:32]
    torch.manual_seed(1)
    out = model(x)
    torch.manual_seed(1)
    w = model.log_importance_weights(x, 5)  # the same five draws per image: (5, B)
    bound = (torch.logsumexp(w, 0) - math.log(5)).mean()
    assert out.loss.item() == pytest.approx(-bound.item(), rel=1e-5)
    assert out.stats["iwae_bound"] >= out.stats["elbo"]  # log-mean-exp >= mean, the same draws


# --- wae-mmd -----------------------------------------------------------------------------------------------
def test_imq_mmd_separates_distributions():
    from aekit.models.wae import imq_mmd

    g = torch.Generator().manual_seed(0)
    same = [imq_mmd(torch.randn(200, 4, generator=g), torch.randn(200, 4, generator=g)).item() for _ in range(5)]
    shifted = imq_mmd(torch.randn(200, 4, generator=g) + 1.0, torch.randn(200, 4, generator=g)).item()
    assert abs(np.mean(same)) < 0.02 and shifted > 0.3  # unbiased: about 0 for one distribution
    assert imq_mmd(torch.ones(1, 4), torch.zeros(1, 4)).item() == 0.0  # no pair in a one-image batch


def test_wae_mmd_pulls_the_codes_to_the_prior_and_samples_from_it(digits):
    from aekit.models.wae import imq_mmd

    x = digits[0][:128]
    prior = torch.randn(128, 2, generator=torch.Generator().manual_seed(1))
    result = {}
    for weight in (0.0, 10.0):  # the same AE without the penalty, for comparison
        torch.manual_seed(0)
        model = build_model("wae-mmd", latent_dim=2, mmd_weight=weight, **SMALL)
        with torch.no_grad():
            before = imq_mmd(model.eval().encode(x), prior).item()
        losses = fit(model, x, 100)
        with torch.no_grad():
            result[weight] = imq_mmd(model.eval().encode(x), prior).item()
        assert losses[-1] < losses[0]
    assert result[10.0] < before / 3 and result[10.0] < result[0.0] / 3
    out = model(x)
    assert out.terms["mmd"].item() == pytest.approx(10.0 * out.stats["mmd"].item(), rel=1e-5)
    assert model.has_prior and model.skip_reason("prior") is None
    s = model.sample(6, generator=torch.Generator().manual_seed(2))
    assert s.shape == (6, 1, 8, 8) and 0 <= s.min() and s.max() <= 1


# --- beta-tc-vae -------------------------------------------------------------------------------------------
def test_beta_tc_parts_sum_to_the_kl_and_vanish_at_the_prior():
    model = build_model("beta-tc-vae", latent_dim=3, **SMALL)
    g = torch.Generator().manual_seed(0)
    zeros = torch.zeros(64, 3)
    at_prior = model.decompose(torch.randn(64, 3, generator=g), zeros, zeros)  # q(z|x) = p(z) for every x
    for key, value in at_prior.items():
        assert value.abs().max().item() < 1e-4, key
    mu, logvar = torch.randn(64, 3, generator=g), 0.5 * torch.randn(64, 3, generator=g)
    z = mu + torch.randn(64, 3, generator=g) * torch.exp(0.5 * logvar)
    parts = model.decompose(z, mu, logvar)
    expected = log_normal(z, mu, logvar).sum(-1) - model.log_prior(z)  # log q(z|x) - log p(z), per image
    assert torch.allclose(sum(parts.values()), expected, atol=1e-4)


def test_total_correlation_is_high_for_correlated_codes_and_near_zero_otherwise():
    model = build_model("beta-tc-vae", latent_dim=3, **SMALL)
    g = torch.Generator().manual_seed(0)
    tc = {"corr": [], "ind": [], "broad": []}
    for _ in range(3):
        a = torch.randn(256, 1, generator=g)
        for name, mu, sd in (("corr", a.repeat(1, 3), 0.1), ("ind", torch.randn(256, 3, generator=g), 0.1),
                             ("broad", 0.3 * torch.randn(256, 3, generator=g), 1.0)):
            z = mu + sd * torch.randn(256, 3, generator=g)
            tc[name].append(model.decompose(z, mu, torch.full_like(mu, 2 * math.log(sd)))["tc"].mean().item())
    corr, ind, broad = (np.mean(tc[k]) for k in ("corr", "ind", "broad"))
    assert min(ind, broad) > -0.05 and abs(broad) < 0.2  # >= ~0; about 0 for independent, overlapping posteriors
    assert corr > ind + 1.5  # three dimensions holding one factor: a large total correlation


def test_beta_tc_weights_scale_their_terms_and_unit_weights_give_the_elbo(digits):
    x = digits[0][:64]
    torch.manual_seed(0)
    unit = build_model("beta-tc-vae", latent_dim=3, tc_weight=1.0, **SMALL).eval()
    torch.manual_seed(3)
    out = unit(x)
    assert set(out.terms) == {"recon", "mi", "tc", "dim_kl"}
    assert out.loss.item() == pytest.approx(-out.stats["elbo"].item(), rel=1e-5)
    heavy = build_model("beta-tc-vae", latent_dim=3, mi_weight=2.0, tc_weight=6.0, dim_kl_weight=0.5, **SMALL).eval()
    heavy.load_state_dict(unit.state_dict())
    torch.manual_seed(3)
    out6 = heavy(x)
    for key, w in (("mi", 2.0), ("tc", 6.0), ("dim_kl", 0.5)):
        assert out6.terms[key].item() == pytest.approx(w * out.terms[key].item(), rel=1e-4, abs=1e-6)


def test_beta_tc_trains_on_one_draw_and_has_no_importance_weighted_options(digits):
    with pytest.raises(ConfigError, match="iwae_k"):
        build_model("beta-tc-vae", iwae_k=5, **SMALL)
    model = build_model("beta-tc-vae", latent_dim=3, kl_warmup=2, **SMALL)
    model.on_epoch_start(1, 4)  # the VAE's epoch hook: warm-up half way, the objective stays the decomposed ELBO
    assert model.kl_weight == 0.5 and set(model(digits[0][:16]).terms) == {"recon", "mi", "tc", "dim_kl"}


# --- vamp-vae ----------------------------------------------------------------------------------------------
def brute_mixture(mu: torch.Tensor, logvar: torch.Tensor) -> MixtureSameFamily:
    k = len(mu)
    return MixtureSameFamily(Categorical(torch.ones(k)), Independent(Normal(mu, torch.exp(0.5 * logvar)), 1))


def test_mixture_log_density_matches_torch_distributions():
    from aekit.models.vamp import mixture_log_density

    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(3, 2, generator=g), 0.3 * torch.randn(3, 2, generator=g)
    z = 2 * torch.randn(4, 50, 2, generator=g)  # any leading dims, as the IWAE draws (k, B, D)
    want = brute_mixture(mu, logvar).log_prob(z)
    assert torch.allclose(mixture_log_density(z, mu, logvar), want, atol=1e-5)
    assert torch.allclose(mixture_log_density(z, mu, logvar, max_elements=7), want, atol=1e-5)  # chunked


def test_mixture_log_density_keeps_its_precision_at_a_vamp_priors_size():
    """K = 500 components of 32 dimensions with variances spread over e^-7..e^1, codes near and far from them:
    the expanded quadratic form (one matrix product) agrees with torch.distributions in float64 to 1e-3 nats."""
    from aekit.models.vamp import mixture_log_density

    g = torch.Generator().manual_seed(1)
    mu, logvar = torch.randn(500, 32, generator=g), 2 * torch.randn(500, 32, generator=g) - 3
    near = mu[torch.randint(500, (2000,), generator=g)] + 0.05 * torch.randn(2000, 32, generator=g)
    far = 1.5 * torch.randn(2000, 32, generator=g)
    for z in (near, far):
        want = brute_mixture(mu.double(), logvar.double()).log_prob(z.double())
        got = mixture_log_density(z, mu, logvar)
        assert got.dtype == torch.float32 and (got.double() - want).abs().max() < 1e-3


def test_vamp_prior_is_the_normalised_mixture_of_its_pseudo_input_posteriors():
    torch.manual_seed(0)
    model = build_model("vamp-vae", latent_dim=2, pseudo_inputs=3, **SMALL).eval()
    with torch.no_grad():
        mu, logvar = model.posterior(model.pseudo_inputs())  # the K components
        assert mu.shape == (3, 2)
        axis = torch.linspace(-10, 10, 501)
        grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).view(-1, 2)
        log_p = model.log_prior(grid)
        assert torch.allclose(log_p, brute_mixture(mu, logvar).log_prob(grid), atol=1e-4)
        assert log_p.exp().sum().item() * (20 / 500) ** 2 == pytest.approx(1.0, abs=1e-3)  # integrates to 1
        draws = model.sample_prior(20000, generator=torch.Generator().manual_seed(1))  # (n, D) from the mixture
        var = (logvar.exp() + mu.pow(2)).mean(0) - mu.mean(0).pow(2)  # the mixture's variance per dimension
        assert torch.allclose(draws.mean(0), mu.mean(0), atol=0.05)
        assert torch.allclose(draws.var(0), var, rtol=0.05)
        s = model.sample(5, generator=torch.Generator().manual_seed(2))
        assert s.shape == (5, 1, 8, 8) and 0 <= s.min() and s.max() <= 1


def test_vamp_importance_weights_use_the_mixture_and_the_nll_metric_works(digits):
    from aekit.evaluate import evaluate_metrics

    torch.manual_seed(0)
    model = build_model("vamp-vae", latent_dim=2, pseudo_inputs=5, **SMALL).eval()
    x = digits[0][:16]
    w = model.log_importance_weights(x, 3, generator=torch.Generator().manual_seed(5))  # (3, B)
    with torch.no_grad():  # the same draws by hand, with the brute-force mixture as p(z)
        mu, logvar = model.posterior(x)
        eps = torch.randn((3, *mu.shape), generator=torch.Generator().manual_seed(5))
        z = mu + eps * torch.exp(0.5 * logvar)  # (3, B, D)
        logits = model.decode_logits(z.flatten(0, 1))
        log_px = -F.binary_cross_entropy_with_logits(logits, x.repeat(3, 1, 1, 1), reduction="none").flatten(1).sum(1)
        prior = brute_mixture(*model.posterior(model.pseudo_inputs()))
        want = log_px.view(3, -1) + prior.log_prob(z) - log_normal(z, mu, logvar).sum(-1)
    assert torch.allclose(w, want, atol=1e-3)
    m = evaluate_metrics(model, load_data("digits"), ["elbo", "nll"], iwae_samples=20, nll_samples=40)
    assert math.isfinite(m["nll_iwae"]) and m["nll_iwae"] < -m["elbo"] + 1.0  # the IWAE bound is the tighter


# --- cvae --------------------------------------------------------------------------------------------------
def test_cvae_takes_labels_in_encoder_decoder_and_sample(digits):
    x, y = digits
    torch.manual_seed(0)
    model = build_model("cvae", latent_dim=2, **SMALL)
    assert model.skip_reason("conditional") is None and build_model("vae").skip_reason("conditional") is not None
    losses = fit(model, x, 40, y=y)
    assert losses[-1] < 0.9 * losses[0]
    model.eval()
    z = torch.zeros(10, 2)
    images = model.decode(z, torch.arange(10))  # one z, every class
    assert (images[:, None] - images[None]).abs().flatten(2).mean(2)[~torch.eye(10, dtype=bool)].min() > 1e-3
    assert not torch.equal(model.encode(x[:8], y[:8]), model.encode(x[:8]))  # the label reaches the encoder
    three = model.sample(4, generator=torch.Generator().manual_seed(1), labels=3)
    assert torch.equal(three, model.decode(model.sample_prior(4, torch.Generator().manual_seed(1)), 3))
    assert model.sample(3, labels=[0, 1, 2]).shape == (3, 1, 8, 8)
    with pytest.raises(ConfigError, match=r"label must be in 0\.\.9, got 10"):
        model.sample(2, labels=10)


def test_engine_passes_labels_to_a_conditional_model(digits):
    from aekit.train.config import TrainConfig
    from aekit.train.module import LitAutoencoder

    x, y = digits[0][:64], digits[1][:64]
    torch.manual_seed(0)
    model = build_model("cvae", latent_dim=2, **SMALL).eval()
    lit = LitAutoencoder(model, TrainConfig())
    torch.manual_seed(4)
    lit.validation_step((x, y), 0)
    logged = (lit._sums["val"][0] / lit._counts["val"]).item()
    torch.manual_seed(4)
    assert logged == pytest.approx(model.forward_batch(x, y).loss.item(), rel=1e-5)
    torch.manual_seed(4)
    assert abs(logged - model(x).loss.item()) > 1e-3  # not the label-free loss (same draws, zero label vector)


def test_cvae_trained_by_the_cli_uses_its_labels(trained_run):
    from aekit.train import load_run

    run = load_run(trained_run("cvae", latent_dim=2, epochs=3))
    assert run.config["model"]["name"] == "cvae"
    model = run.model.eval()
    images, labels = run.data().split("val")
    x = to_float(images)
    with torch.no_grad():
        def bce(y):
            return F.binary_cross_entropy(model.decode(model.encode(x, y), y), x, reduction="none").flatten(1).sum(1).mean()

        right, wrong = bce(labels), bce((labels + 1) % 10)
    assert right < wrong - 0.5  # trained with the labels: the true class reconstructs better than a wrong one


def test_cvae_refuses_data_it_cannot_learn_from(tmp_path, capsys, data_dir):
    npz = tmp_path / "plain.npz"
    np.savez(npz, x=np.random.default_rng(0).integers(0, 255, (40, 8, 8), dtype=np.uint8))  # no labels
    for dataset, extra, match in ((str(npz), [], "needs labelled data"),
                                  ("digits", ["--num-classes", "5"], "pass --num-classes 10")):
        out = tmp_path / f"run-{len(extra)}"
        code = main(["train", "--model", "cvae", "--dataset", dataset, "--epochs", "1", "--out", str(out),
                     "--no-progress", "--data-dir", str(data_dir), *extra])
        err = capsys.readouterr().err
        assert code == 2 and match in err and len(err.strip().splitlines()) == 1
        assert not out.exists()  # nothing written


def test_new_families_have_their_flags(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for flag in ("--mmd-weight", "--tc-weight", "--mi-weight", "--dim-kl-weight", "--pseudo-inputs", "--num-classes",
                 "--label-dropout"):
        assert flag in text, flag
    assert json.loads(json.dumps(build_model("cvae", num_classes=3).config.to_dict()))["num_classes"] == 3


@pytest.mark.parametrize("loss", ["bce", "mse"])
def test_importance_weights_score_k_draws_against_their_images_without_copies(loss):
    """log_likelihood broadcasts k draws (k, B, C, H, W) against the B images: the same value as each draw
    scored against its own copy of the image with torch's BCE (bce) or the Gaussian of sigma^2 = 1/2 (mse)."""
    from aekit.models.vae import GAUSSIAN_VARIANCE

    torch.manual_seed(0)
    model = build_model("vae", input_shape=(1, 6, 5), latent_dim=3, hidden_dims=(8,), loss=loss).eval()
    x = torch.rand(4, 1, 6, 5)  # grey levels: the general case, not only binary pixels
    logits = 3 * torch.randn(7, 4, 1, 6, 5)  # (k, B, C, H, W)
    got = model.log_likelihood(logits, x)
    flat, tgt = logits.flatten(0, 1), x.repeat(7, 1, 1, 1)  # k explicit copies
    if loss == "bce":
        want = -F.binary_cross_entropy_with_logits(flat, tgt, reduction="none").flatten(1).sum(1)
    else:
        want = (-(torch.sigmoid(flat) - tgt).pow(2).flatten(1).sum(1) / (2 * GAUSSIAN_VARIANCE)
                - 15 * math.log(2 * math.pi * GAUSSIAN_VARIANCE))
    assert got.shape == (7, 4)
    torch.testing.assert_close(got, want.view(7, 4), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", ["vae", "vamp-vae", "hvae"])
def test_kl_metric_is_the_models_own_kl(name, digits):
    """The kl metric of a family whose prior is not N(0, I) over its code (a VampPrior mixture, an hvae's
    hierarchy) is the KL its forward pass computes, not the posterior's closed form against N(0, I); the plain
    VAE's splits into per-dimension parts that sum to it."""
    from aekit.evaluate.suite import evaluate_metrics, model_kl

    data = load_data("digits")
    torch.manual_seed(0)
    model = build_model(name, input_shape=data.shape, latent_dim=3, **build_model(name).tiny_options)
    fit(model, digits[0], 30)  # away from the initial prior match, so the KLs differ
    m = evaluate_metrics(model, data, "kl", max_samples=200)
    images = data.split("test")[0][:200]
    own = model_kl(model, images, data.split("test")[1][:200], 500, 0)
    assert m["kl"] == pytest.approx(own, rel=1e-5)
    if name == "vae":
        assert m["kl"] == pytest.approx(sum(m["kl_per_dim"]), abs=1e-3)
    else:
        assert "kl_per_dim" not in m and "not N(0, I)" in m["skipped"]["kl_per_dim"]
        with torch.no_grad():
            mu, logvar = model.posterior(to_float(images))
        closed = float((0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)).sum(1).mean())
        assert abs(m["kl"] - closed) > 0.05  # what the metric used to report, and is not the model's KL

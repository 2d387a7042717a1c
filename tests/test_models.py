"""The contract suite: every registered model, the moment it registers, passes these checks."""

from __future__ import annotations

import json

import pytest
import torch

from aekit.errors import ConfigError, NoPriorError
from aekit.registry import build_model, get, list_models, model_from_dict, model_to_dict
from aekit.train.runs import load_weights, save_weights

MODELS = list(list_models())


def tiny(name: str, input_shape=(1, 8, 8), latent_dim=3):
    """A small config of each model: the generic checks need no per-model test code."""
    entry = get(name)
    torch.manual_seed(0)
    return build_model(name, input_shape=input_shape, latent_dim=latent_dim, **entry.cls.tiny_options)


def test_registry_lists_the_seed_models():
    assert {"ae", "deep-ae", "conv-ae", "dae", "sparse-ae", "vae", "conv-vae", "beta-vae"} <= set(MODELS)
    assert all(desc for desc in list_models().values())


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 12, 10), (1, 28, 28)])
def test_shapes_round_trip(name, shape):
    model = tiny(name, shape)
    x = torch.rand(5, *shape)
    out = model(x)
    assert out.x_hat.shape == x.shape and out.z.shape == (5, *model.code_shape)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert "mse" in out.stats and "mse" not in out.terms  # diagnostics are not parts of the loss
    assert out.loss.item() == pytest.approx(sum(t.item() for t in out.terms.values()), rel=1e-5, abs=1e-5)  # terms sum to it
    model.eval()
    z = model.encode(x)
    assert z.shape == (5, *model.code_shape)
    x_hat = model.decode(z)
    assert x_hat.shape == x.shape and 0 <= x_hat.min() and x_hat.max() <= 1


@pytest.mark.parametrize("name", MODELS)
def test_eval_encode_is_deterministic(name):
    model = tiny(name).eval()
    x = torch.rand(6, 1, 8, 8)
    assert torch.equal(model.encode(x), model.encode(x))


@pytest.mark.parametrize("name", MODELS)
def test_save_load_gives_equal_outputs(name, tmp_path):
    model = tiny(name).eval()
    spec = json.loads(json.dumps(model_to_dict(model)))  # through real JSON: tuples come back as lists
    save_weights(model, tmp_path / "model.safetensors")
    again = model_from_dict(spec)
    load_weights(again, tmp_path / "model.safetensors")
    again.eval()
    x = torch.rand(4, 1, 8, 8)
    assert again.config == model.config
    assert torch.equal(model.encode(x), again.encode(x))
    z = torch.randn(4, *model.code_shape)
    assert torch.equal(model.decode(z), again.decode(z))


@pytest.mark.parametrize("name", MODELS)
def test_config_json_round_trip(name):
    model = tiny(name)
    cfg = model.config
    assert type(cfg).from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


@pytest.mark.parametrize("name", MODELS)
def test_loss_falls_on_one_repeated_batch(name):
    model = tiny(name)
    g = torch.Generator().manual_seed(1)
    # images with a 3-d structure, so every model (even a 3-d linear code) has something to learn
    x = (torch.randn(16, 3, generator=g) @ torch.randn(3, 64, generator=g) > 0).float().view(16, 1, 8, 8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    torch.manual_seed(2)
    first = model(x).loss.item()
    for _ in range(60):
        out = model(x)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        assert all(torch.isfinite(t).all() for t in [*out.terms.values(), *out.stats.values()])
    torch.manual_seed(2)
    assert model(x).loss.item() < 0.9 * first


@pytest.mark.parametrize("name", MODELS)
def test_sample_from_prior_or_clear_error(name):
    model = tiny(name).eval()
    if model.has_prior:
        g = torch.Generator().manual_seed(3)
        a = model.sample(7, generator=g)
        b = model.sample(7, generator=torch.Generator().manual_seed(3))
        assert a.shape == (7, 1, 8, 8) and torch.equal(a, b)
    else:
        with pytest.raises(NoPriorError, match="no prior"):
            model.sample(7)


def test_presets_are_options_not_copies():
    assert type(build_model("beta-vae")) is type(build_model("vae"))
    assert build_model("beta-vae").config.beta == 4.0
    assert type(build_model("dae")) is type(build_model("ae"))
    assert build_model("dae").config.noise == "gaussian:0.5"


def test_denoising_corrupts_in_training_only():
    model = tiny("dae")
    x = torch.full((4, 1, 8, 8), 0.5)
    model.train()
    assert not torch.equal(model.corrupt(x), x)
    model.eval()
    assert torch.equal(model.corrupt(x), x)


def test_sparsity_term_is_the_l1_of_the_code():
    model = tiny("sparse-ae").eval()
    x = torch.rand(4, 1, 8, 8)
    out = model(x)
    z = model.encode(x)
    # the weight is per pixel (Keras's units); the loss is summed over the 64 pixels, so the penalty is too
    weight = get("sparse-ae").presets["sparsity"]
    assert out.terms["sparsity"].item() == pytest.approx(weight * 64 * z.abs().sum(1).mean().item(), rel=1e-5)


def test_vae_kl_is_zero_at_the_prior():
    model = tiny("vae").eval()
    with torch.no_grad():
        model.to_stats.weight.zero_()
        model.to_stats.bias.zero_()  # mu = 0, log sigma^2 = 0: q(z|x) is the prior
    assert model(torch.rand(3, 1, 8, 8)).terms["kl"].item() == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("loss", ["mse", "rmse", "bce"])
def test_losses_are_summed_over_pixels(loss):
    model = tiny("ae").eval()
    model.config  # noqa: B018
    m = build_model("ae", input_shape=(1, 8, 8), latent_dim=3, loss=loss, **get("ae").cls.tiny_options).eval()
    m.load_state_dict(model.state_dict())
    x = torch.rand(4, 1, 8, 8)
    out = m(x)
    err = (out.x_hat - x).pow(2).flatten(1)
    expected = {"mse": err.sum(1).mean(), "rmse": err.mean(1).sqrt().mean(),
                "bce": torch.nn.functional.binary_cross_entropy(out.x_hat, x, reduction="none").flatten(1).sum(1).mean()}[loss]
    assert out.terms["recon"].item() == pytest.approx(expected.item(), rel=1e-4)
    assert out.stats["mse"].item() == pytest.approx(err.mean().item(), rel=1e-5)


@pytest.mark.parametrize("bad, match", [
    ({"latent_dim": 0}, "latent_dim"),
    ({"loss": "l1"}, "loss"),
    ({"noise": "pink:3"}, "noise"),
    ({"arch": "rnn"}, "arch"),
    ({"dropout": 1.5}, "dropout"),
    ({"hidden_dimz": (3,)}, "hidden_dimz"),
])
def test_bad_config_is_a_one_line_config_error(bad, match):
    with pytest.raises(ConfigError, match=match) as info:
        build_model("ae", **bad)
    assert "\n" not in str(info.value)


def test_conv_options_of_the_articles():
    # upsampling decoder (TF2 article), max-pool encoder with SELU (QuickDraw/Keras articles), odd sizes
    for opts in [{"decoder": "upsample"}, {"encoder": "maxpool", "activation": "selu"}, {"batch_norm": True, "dropout": 0.25}]:
        m = build_model("conv-ae", input_shape=(1, 28, 28), **opts)
        assert m(torch.rand(2, 1, 28, 28)).x_hat.shape == (2, 1, 28, 28)
        m = build_model("conv-vae", input_shape=(3, 31, 17), **opts)
        assert m(torch.rand(2, 3, 31, 17)).x_hat.shape == (2, 3, 31, 17)
    with pytest.raises(ConfigError, match="one entry per conv layer"):
        build_model("conv-ae", filters=(8, 8), strides=(2,), kernel_sizes=(3, 3))

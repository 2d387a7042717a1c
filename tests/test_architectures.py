"""The articles' own architectures (issue 13): pure conv codes, Keras-like "same" padding for any kernel,
decoder widths apart from the encoder's, settable LeakyReLU slope and code activation, a sparse autoencoder
that is sparse (measured), Ng's KL sparsity, help on every flag and `aekit summary MODEL --flags`.

Old run folders must keep loading with the architecture they trained: the fingerprints below (every
parameter's name and shape, and every layer's type and settings) were recorded with the code before this
change (commit 82f4143, `git archive` of src/ on PYTHONPATH) and must not move.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import aekit
from aekit.cli import main
from aekit.errors import ConfigError
from aekit.models.blocks import SameConv2d
from aekit.registry import build_model, get, model_from_dict


def fingerprint(model) -> str:
    parts = [f"{k}:{tuple(v.shape)}" for k, v in model.state_dict().items()]
    parts += [f"{n}:{type(m).__name__}({m.extra_repr()})" for n, m in model.named_modules()
              if not list(m.children()) and not isinstance(m, nn.Identity)]
    return hashlib.sha1(";".join(parts).encode()).hexdigest()[:12]


def fail(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("aekit: error: ") and "\n" not in err, err
    return err


# ------------------------------------------------------------------------------------- old runs unchanged

BEFORE = {  # default presets on 1x28x28, recorded before the change
    "ae": "42b435396a9f", "deep-ae": "3f2ae0df00db", "conv-ae": "cd87e61ce70f", "dae": "3f2ae0df00db",
    "vae": "eb7be02ca651", "conv-vae": "96200ad56dd3", "beta-vae": "bb1bea5f6d58", "iwae": "bb1bea5f6d58",
    "conv-iwae": "96200ad56dd3", "vae-gan": "ba7f9a2c7779", "beta-tc-vae": "bb1bea5f6d58", "cvae": "6a878424fce9",
    "vamp-vae": "511cd5945db1", "wae-mmd": "4f8ee529370d",
}
BEFORE_OPTIONS = {  # odd kernels through every other path (max-pool, upsampling, batch norm, odd sizes)
    "80a728da4a26": dict(name="conv-ae", input_shape=(1, 28, 28), encoder="maxpool", decoder="upsample",
                         kernel_sizes=(5, 3, 3, 3), batch_norm=True, dropout=0.1),
    "9b2b673437a8": dict(name="conv-vae", input_shape=(3, 27, 29), strides=(2, 2, 2, 1), filters=(8, 8, 16, 16)),
    "ea6606cedd57": dict(name="deep-ae", input_shape=(1, 28, 28), batch_norm=True, dropout=0.2, activation="selu"),
}


def test_default_architectures_are_the_ones_old_runs_were_trained_with():
    for name, want in BEFORE.items():
        assert fingerprint(build_model(name, input_shape=(1, 28, 28))) == want, f"{name}'s default architecture moved"
    for want, options in BEFORE_OPTIONS.items():
        assert fingerprint(build_model(**options)) == want, options
    # sparse-ae changed on purpose (a batch-normalised ReLU code); a config.json written before names every field
    # of that time and none of the new ones: it builds the old net, and its per-image L1 weight keeps its effect
    old = {"input_shape": [1, 28, 28], "latent_dim": 2, "loss": "bce", "noise": "none", "arch": "dense",
           "hidden_dims": [512, 256], "filters": [32, 64, 64, 64], "kernel_sizes": [3, 3, 3, 3], "strides": [1, 2, 2, 1],
           "encoder": "strided", "decoder": "transpose", "activation": "relu", "batch_norm": False, "dropout": 0.0,
           "sparsity": 1e-4}
    model = model_from_dict({"name": "sparse-ae", "config": old}).eval()
    assert fingerprint(model) == "3f2ae0df00db"  # deep-ae's net, as sparse-ae was before
    x = torch.rand(5, 1, 28, 28)
    z = model.encode(x)
    assert model(x).terms["sparsity"].item() == pytest.approx(1e-4 * z.abs().sum(1).mean().item(), rel=1e-5)
    # ... and written again today it round-trips as it is
    again = model_from_dict({"name": "sparse-ae", "config": model.config.to_dict()})
    assert again.config == model.config
    # vae changed on purpose too (issue 16: 1024-512 GELU, was 512 ReLU); an old config.json names its net
    old_vae = {**{k: v for k, v in old.items() if k != "sparsity"}, "hidden_dims": [512], "beta": 1.0}
    assert fingerprint(model_from_dict({"name": "vae", "config": old_vae})) == "bb1bea5f6d58"


# ----------------------------------------------------------------------------------------- padding


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), k=st.integers(1, 8), s=st.integers(1, 4))
def test_same_padding_maps_n_to_ceil_n_over_s_for_any_kernel(n, k, s):
    conv = SameConv2d(1, 1, k, s, (n, n + 1))
    assert conv(torch.zeros(1, 1, n, n + 1)).shape[-2:] == (math.ceil(n / s), math.ceil((n + 1) / s))


@pytest.mark.parametrize("encoder", ["strided", "maxpool"])
@pytest.mark.parametrize("decoder", ["transpose", "upsample"])
def test_even_kernels_keep_sizes_without_a_warning(encoder, decoder):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = build_model("conv-ae", input_shape=(1, 28, 28), kernel_sizes=(2, 4, 2, 2), encoder=encoder, decoder=decoder)
        sizes = []
        hooks = [m.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[-2:])))
                 for m in model.body.features if isinstance(m, nn.Conv2d)]
        x = torch.rand(2, 1, 28, 28)
        out = model.decode(model.encode(x))
        for h in hooks:
            h.remove()
    assert not [str(w.message) for w in caught]
    # strides 1,2,2,1: Keras's "same" keeps 28 and halves 28 -> 14 -> 7 (a kernel of 2 grew 14 -> 15 before)
    want = [(28, 28), (14, 14), (7, 7), (7, 7)] if encoder == "strided" else [(28, 28), (28, 28), (14, 14), (7, 7)]
    assert sizes == want and model.body.last_shape == (64, 7, 7) and out.shape == x.shape


# -------------------------------------------------------------------------------------- conv codes

KERAS = ["--arch", "conv", "--code", "conv", "--encoder", "maxpool", "--decoder", "upsample", "--filters", "128,32,1",
         "--kernel-sizes", "7,2,7", "--strides", "2,2,1", "--code-activation", "relu"]
QUICKDRAW = ["--arch", "conv", "--code", "conv", "--encoder", "maxpool", "--pool-padding", "valid", "--filters",
             "16,32,64", "--kernel-sizes", "3,3,3", "--strides", "2,2,2", "--activation", "selu",
             "--code-activation", "selu"]


def test_summary_previews_the_articles_nets_with_their_keras_parameter_counts(capsys, tmp_path):
    """The Keras article's conv AE (7x7x1 code): encoder 128*49+128 + 32*128*4+32 + 32*49+1, decoder
    32*49+32 + 128*32*4+128 + 128*49+1 = 48,770 parameters; Géron's QuickDraw/Fashion net (3x3x64 code):
    23,296 + 23,233 = 46,529. `aekit summary MODEL` takes the same model flags as `aekit train`."""
    assert main(["summary", "ae", *KERAS]) == 0
    out = capsys.readouterr().out
    assert "code (1, 7, 7)" in out and "Total params: 48,770" in out and "(None, 32, 14, 14)" in out
    assert main(["summary", "ae", *QUICKDRAW]) == 0
    out = capsys.readouterr().out
    assert "code (64, 3, 3)" in out and "Total params: 46,529" in out
    assert "ConvTranspose2d" in out and "(None, 32, 7, 7)" in out  # 3 -> 7 as Keras's padding="valid"
    assert main(["summary", "conv-ae", "--input-shape", "3x32x32", "--latent-dim", "5"]) == 0
    assert "code (5,)" in capsys.readouterr().out
    assert "--code does not apply to model 'vae'" in fail(["summary", "vae", "--code", "conv"], capsys)
    assert "--code conv needs --arch conv" in fail(["summary", "ae", "--code", "conv"], capsys)
    run = tmp_path / "not-a-model-name"
    run.mkdir()
    assert "run folder" in fail(["summary", str(run), "--filters", "8"], capsys)


@pytest.fixture(scope="module")
def conv_code_runs(tmp_path_factory, data_dir):
    """Both articles' conv codes trained through `aekit train` on digits resized to 28x28 (the Keras net with
    16,8 channels instead of 128,32 to stay fast; the code is the same 7x7x1 map)."""
    root = tmp_path_factory.mktemp("conv-codes")
    keras = [a if a != "128,32,1" else "16,8,1" for a in KERAS]
    runs = {}
    for key, flags in (("keras", keras), ("quickdraw", QUICKDRAW)):
        out = root / key
        assert main(["train", "--model", "ae", "--dataset", "digits", "--image-size", "28", "--epochs", "4",
                     "--lr", "3e-3", "--batch-size", "64", "--patience", "0", "--no-progress", "--no-log-epochs",
                     "--out", str(out), "--data-dir", str(data_dir), *flags]) == 0
        runs[key] = out
    return runs


@pytest.mark.parametrize("key, shape", [("keras", (1, 7, 7)), ("quickdraw", (64, 3, 3))])
def test_conv_codes_train_from_the_cli_and_are_spatial_everywhere(conv_code_runs, key, shape, tmp_path, capsys):
    run = aekit.load_run(conv_code_runs[key])
    assert run.model.code_shape == shape and run.config["model"]["config"]["latent_dim"] == shape[0]
    rows = list(csv.DictReader(open(conv_code_runs[key] / "metrics.csv")))
    assert float(rows[-1]["val_loss"]) < float(rows[0]["val_loss"])
    x = run.data().split("test")[0][:6].float() / 255
    with torch.no_grad():
        z = run.model.encode(x)
        assert z.shape == (6, *shape) and run.model.decode(z).shape == x.shape
    ev = json.loads((conv_code_runs[key] / "eval.json").read_text())
    assert 0 < ev["mse"] < 0.08 and 0 <= ev["sparsity_zero_frac"] <= 1
    # scatter and densities take the flattened code; single-dimension sweeps say why they do not apply
    assert main(["plot", "latent", str(conv_code_runs[key]), "--out", str(tmp_path / "latent.png")]) == 0
    assert main(["plot", "density", str(conv_code_runs[key]), "--out", str(tmp_path / "density.png")]) == 0
    assert len(json.loads((tmp_path / "density.json").read_text())["mean"]) == math.prod(shape)
    assert f"spatial code {shape}" in fail(["plot", "traverse", str(conv_code_runs[key]), "--mode", "max"], capsys)
    # the reconstruction row shows each code as its maps (a (1, 7, 7) code is one 7x7 picture)
    from aekit.session import RunSession

    fig, _ = RunSession.open(conv_code_runs[key]).figure("reconstruct", {"n": 4})
    assert [ax.get_ylabel() for ax in fig.axes[:: len(fig.axes) // 3]] == ["original", "code " + "x".join(map(str, shape)),
                                                                            "reconstruction"]
    # the PCA baseline has as many numbers as the code (D*h*w), not D
    from aekit.evaluate import evaluate_metrics

    pca = evaluate_metrics(run.model, run.data(), ["pca"])
    assert pca["pca_components"] == math.prod(shape)


def test_the_explorer_serves_a_conv_code(conv_code_runs):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from aekit.serve.app import create_app

    run = aekit.load_run(conv_code_runs["keras"])
    c = TestClient(create_app(run))
    info = c.get("/api/info").json()
    assert info["code_shape"] == [1, 7, 7] and info["code_size"] == 49 and "not a flat vector" in info["features"]["flat"]
    z = c.get("/api/test/3").json()["z"]
    assert len(z) == 49 and c.post("/api/decode", json={"z": z}).status_code == 200


# ------------------------------------------------------------------------------- widths and activations


def test_decoder_filters_change_the_decoder_widths_only():
    base = build_model("conv-ae", input_shape=(1, 28, 28))
    wide = build_model("conv-ae", input_shape=(1, 28, 28), decoder_filters=(48, 24, 16))
    enc = lambda m: {k: v.shape for k, v in m.state_dict().items() if not k.startswith("body.decoder")}  # noqa: E731
    assert enc(wide) == enc(base)
    widths = lambda m: [(l.in_channels, l.out_channels) for l in m.body.decoder if isinstance(l, nn.ConvTranspose2d)]  # noqa: E731,E741
    assert widths(base) == [(64, 64), (64, 64), (64, 32), (32, 1)]  # the encoder's 32,64,64,64 mirrored
    assert widths(wide) == [(64, 48), (48, 24), (24, 16), (16, 1)]
    assert wide.decode(wide.encode(torch.rand(2, 1, 28, 28))).shape == (2, 1, 28, 28)
    with pytest.raises(ConfigError, match="decoder_filters needs one entry per decoder layer but the last"):
        build_model("conv-ae", decoder_filters=(8, 8))


def test_code_activation_and_leaky_slope():
    x = torch.rand(64, 1, 28, 28)
    linear = build_model("ae", input_shape=(1, 28, 28), latent_dim=32).eval()
    relu = build_model("ae", input_shape=(1, 28, 28), latent_dim=32, code_activation="relu").eval()
    with torch.no_grad():
        assert (linear.encode(x) < 0).any()
        z = relu.encode(x)
    assert (z >= 0).all() and (z == 0).any() and isinstance(relu.code_act, nn.ReLU)
    steep = build_model("conv-ae", leaky_slope=0.3)
    slopes = {m.negative_slope for m in steep.modules() if isinstance(m, nn.LeakyReLU)}
    assert slopes == {0.3}
    assert {m.negative_slope for m in build_model("conv-ae").modules() if isinstance(m, nn.LeakyReLU)} == {0.2}


# ---------------------------------------------------------------------------------------------- sparsity


def test_a_sparse_autoencoder_is_sparse(tmp_path, data_dir):
    """deep-ae and sparse-ae (L1 0.01 per pixel on a batch-normalised ReLU code), 16-d codes, the same 2,000
    MNIST images and 3 epochs. Measured: near-zero code values (under 1% of the batch's largest |value|) on the
    test set 0.0055 for deep-ae, 0.575 for sparse-ae (before this change the two were alike: 0.031 and 0.035
    after 5 epochs on 6,000 images); the L1 term is 18% of sparse-ae's loss; no unit is dead."""
    evals = {}
    for name in ("deep-ae", "sparse-ae"):
        out = tmp_path / name
        assert main(["train", "--model", name, "--dataset", "mnist", "--max-train-samples", "2000", "--epochs", "3",
                     "--latent-dim", "16", "--patience", "0", "--no-progress", "--no-log-epochs", "--out", str(out),
                     "--data-dir", str(data_dir)]) == 0
        evals[name] = json.loads((out / "eval.json").read_text())
        assert "train_sparsity_zero_frac" in next(csv.DictReader(open(out / "metrics.csv")))
    dense, sparse = evals["deep-ae"]["sparsity_zero_frac"], evals["sparse-ae"]["sparsity_zero_frac"]
    assert dense < 0.1 and sparse > 0.35 and sparse > 5 * dense, (dense, sparse)
    assert evals["sparse-ae"]["loss_sparsity"] > 0.05 * evals["sparse-ae"]["loss"]  # a real share of the loss
    # every unit lives: the zeros are sparse activity, not dead units (each unit is off on some images only)
    run = aekit.load_run(tmp_path / "sparse-ae")
    with torch.no_grad():
        z = run.model.encode(run.data().split("test")[0][:1000].float() / 255)  # (1000, 16)
    active = (z > 0.01 * z.max()).float().mean(0)  # (16,)
    assert (active > 0.02).all() and (active < 0.95).all(), active
    # the interpretation figure: each unit at its maximum changes the mean code's picture
    fig = tmp_path / "max.png"
    assert main(["plot", "traverse", str(tmp_path / "sparse-ae"), "--mode", "max", "--out", str(fig)]) == 0
    assert min(json.loads(fig.with_suffix(".json").read_text())["max"]) > 0


def test_kl_sparsity_is_ngs_penalty_and_drives_activations_to_rho(data_dir):
    """Ng's sparse AE: sum_j KL(rho || rho_j) over code units, rho_j the unit's mean sigmoid activation in the
    batch. 500 Adam steps on 1,000 MNIST images (hidden 128, 16-d sigmoid code), rho 0.05, weight 0.01 per
    pixel. Measured: mean activation 0.118 with the penalty vs 0.938 without (the unpenalised sigmoid code
    saturates), near-zero values 0.31 vs 0.003."""
    model = build_model("deep-ae", input_shape=(1, 8, 8), latent_dim=6, hidden_dims=(16,), code_activation="sigmoid",
                        sparsity_penalty="kl", sparsity=0.5, sparsity_target=0.1).eval()
    x = torch.rand(10, 1, 8, 8)
    with torch.no_grad():
        rho_j = model.encode(x).mean(0)  # (6,)
        kl = (0.1 * torch.log(0.1 / rho_j) + 0.9 * torch.log(0.9 / (1 - rho_j))).sum()
        assert model(x).terms["sparsity"].item() == pytest.approx(0.5 * 64 * kl.item(), rel=1e-4)
    with pytest.raises(ConfigError, match="needs code_activation sigmoid"):
        build_model("deep-ae", sparsity_penalty="kl", sparsity=1e-3, code_activation="relu")
    with pytest.raises(ConfigError, match=r"sparsity_target must be in \(0, 1\)"):
        build_model("deep-ae", sparsity_target=1.0)

    data = aekit.load_data("mnist", max_train_samples=1000)
    train, test = (data.split(s)[0][:1000].float() / 255 for s in ("train", "test"))

    def fit(**options):
        torch.manual_seed(0)
        m = build_model("deep-ae", input_shape=(1, 28, 28), latent_dim=16, hidden_dims=(128,),
                        code_activation="sigmoid", **options)
        opt = torch.optim.Adam(m.parameters(), lr=2e-3)
        g = torch.Generator().manual_seed(0)
        for _ in range(500):
            out = m(train[torch.randint(0, len(train), (64,), generator=g)])
            opt.zero_grad()
            out.loss.backward()
            opt.step()
        with torch.no_grad():
            return m.eval()(test).stats

    kl, plain = fit(sparsity_penalty="kl", sparsity=1e-2, sparsity_target=0.05), fit()
    assert kl["activation"] < 0.2 < 0.5 < plain["activation"]
    assert kl["sparsity_zero_frac"] > 0.15 > 0.05 > plain["sparsity_zero_frac"]


# ------------------------------------------------------------------------------------------------- words


def test_every_flag_of_every_command_has_help():
    from aekit.cli import build_parser

    def subcommands(parser):
        return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices

    missing = []
    for name in subcommands(build_parser("")):
        for action in subcommands(build_parser(name))[name]._actions:
            if not action.help and not isinstance(action, argparse._SubParsersAction):
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not missing
    train = subcommands(build_parser("train"))["train"].format_help()
    for flag in ("--kernel-sizes", "--strides", "--batch-norm", "--dropout", "--decoder-filters", "--leaky-slope",
                 "--code ", "--code-activation", "--code-norm", "--sparsity-penalty", "--sparsity-target", "--pool-padding"):
        assert flag in train, flag
    assert get("sparse-ae").presets["code_activation"] == "relu"

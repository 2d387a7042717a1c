"""Words (issue 13): ``--logger csv|tensorboard|mlflow`` (metrics.csv always; a missing package refused before any
work, naming its extra), an ``elbo`` that is the bound its name claims with the same value in metrics.csv and
eval.json, and error text in the CLI's spelling (``--shape 1x16x16``, ``--download``), not the Python API's."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import re

import numpy as np
import pytest
import torch

from data_helpers import cli, train_run

TINY = ["--dataset", "digits", "--max-train-samples", "300", "--epochs", "2", "--patience", "0", "--no-progress",
        "--batch-size", "64"]


def rows(run):
    return list(csv.DictReader(open(run / "metrics.csv")))


# ------------------------------------------------------------------------------------------------ --logger


@pytest.mark.parametrize("logger, package, folder", [("tensorboard", "tensorboard", "tensorboard"),
                                                     ("mlflow", "mlflow", "mlruns")])
def test_each_logger_logs_where_it_says_or_is_refused_naming_its_extra(logger, package, folder, tmp_path, data_dir, capsys):
    """Whichever state this environment is in: the package installed -> a real run logs each epoch to it (and
    metrics.csv); not installed -> exit 2 with one line naming the extra, before anything is written."""
    out = tmp_path / "run"
    argv = ["train", "--model", "ae", "--hidden-dims", "16", *TINY, "--logger", logger, "--out", out, "--data-dir", data_dir]
    if any(importlib.util.find_spec(m) is None for m in (package, "sqlalchemy")[: 1 + (logger == "mlflow")]):
        code, stdout, err = cli(capsys, *argv)
        assert code == 2 and stdout == "" and len(err.strip().splitlines()) == 1, err
        assert f"--logger {logger} needs the " in err and f"pip install 'aekit[{logger}]'" in err, err
        assert not out.exists() and not list(tmp_path.iterdir())  # refused before any data, model or folder
        return
    code, stdout, err = cli(capsys, *argv)
    assert code == 0, err
    assert "logging interval" not in stdout + err and "Warning" not in stdout + err  # Lightning's advice, muted
    assert len(rows(out)) == 2 and json.loads((out / "config.json").read_text())["train"]["logger"] == logger
    if logger == "tensorboard":
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(out / folder)).Reload()
        got = [e.value for e in events.Scalars("val_loss")]
        assert got == pytest.approx([float(r["val_loss"]) for r in rows(out)], rel=1e-6)  # one point per epoch
    else:
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{(out / folder / 'mlflow.db').absolute()}")
        (run,) = client.search_runs([client.get_experiment_by_name("aekit").experiment_id])
        got = [m.value for m in client.get_metric_history(run.info.run_id, "val_loss")]
        assert got == pytest.approx([float(r["val_loss"]) for r in rows(out)], rel=1e-6)


def test_the_default_logger_is_metrics_csv_alone_even_with_tensorboard_installed(tmp_path, data_dir, capsys):
    out = train_run(tmp_path, data_dir, "--model", "ae", "--hidden-dims", "16", *TINY)
    capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "config.json", "eval.json", "metrics.csv",
                                                     "model.safetensors"]
    assert json.loads((out / "config.json").read_text())["train"]["logger"] == "csv"


# ---------------------------------------------------------------------------------------------------- elbo


@pytest.fixture(scope="module")
def mse_vae(tmp_path_factory, data_dir):
    from aekit.cli import main

    out = train_run(tmp_path_factory.mktemp("mse"), data_dir, "--model", "vae", "--hidden-dims", "32", "--loss", "mse", *TINY)
    assert main(["evaluate", str(out), "--split", "val", "--metrics", "elbo", "--out", str(out / "val.json")]) == 0
    return out


def test_an_mse_vae_reports_the_gaussian_elbo_under_its_own_name_and_the_same_value_in_training_and_eval(mse_vae):
    """--loss mse is the Gaussian likelihood N(x; x_hat, I/2) less its constant (P/2) log pi: the stat is named
    elbo_gaussian (never plain 'elbo', which is the Bernoulli bound) and carries the constant, in metrics.csv and
    in eval.json alike; for the kept weights the two agree up to the one-sample noise of the estimate (the
    complaint was -57.7 in metrics.csv and -177.3 in eval.json)."""
    table = rows(mse_vae)
    assert "val_elbo_gaussian" in table[0] and "val_elbo" not in table[0] and "train_elbo" not in table[0]
    pixels = 64  # digits: 1x8x8
    for r in table:  # beta = 1: the loss is the negative bound less the constant, batch for batch
        assert -float(r["val_elbo_gaussian"]) == pytest.approx(float(r["val_loss"]) + pixels / 2 * math.log(math.pi), rel=1e-5)
    best = min(table, key=lambda r: float(r["val_loss"]))
    ev = json.loads((mse_vae / "val.json").read_text())
    assert "elbo" not in ev and ev["split"] == "val"
    assert ev["elbo_gaussian"] == pytest.approx(float(best["val_elbo_gaussian"]), rel=0.01)


@pytest.fixture()
def mse_batch(mse_vae):
    """(model, 64 val images, the elbo_gaussian stat of one forward pass with seed 5)."""
    import aekit
    from aekit.data import to_float

    run = aekit.load_run(mse_vae)
    model = run.model.eval()
    x = to_float(run.data().split("val")[0][:64])
    torch.manual_seed(5)
    with torch.no_grad():
        stat = model(x).stats["elbo_gaussian"]
    return model, x, stat


def test_the_gaussian_elbo_is_the_textbook_bound_on_a_batch(mse_batch):
    """Recomputed with torch.distributions: E_q[log N(x; x_hat, 1/2)] - KL(q || N(0, I)) with the same draw of z."""
    model, x, stat = mse_batch
    torch.manual_seed(5)
    with torch.no_grad():
        mu, logvar = model.posterior(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        x_hat = model.decode(z)
    log_px = torch.distributions.Normal(x_hat, math.sqrt(0.5)).log_prob(x).flatten(1).sum(1)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    kl = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(1)
    assert float(stat) == pytest.approx(float((log_px - kl).mean()), rel=1e-5)


def test_an_mse_vae_nll_is_the_gaussian_iwae_bound_under_its_own_name(mse_vae, mse_batch, capsys):
    """The IWAE NLL uses the likelihood the loss is (the same N(x; x_hat, 1/2) as elbo_gaussian), so with K = 1
    it is -elbo_gaussian for the same draw, and a larger K tightens it; it is named nll_iwae_gaussian."""
    import aekit
    from aekit.evaluate import evaluate_metrics

    model, x, stat = mse_batch
    run = aekit.load_run(mse_vae)
    with torch.no_grad():
        logits = model.decode_logits(model.encode(x))
    normal = torch.distributions.Normal(torch.sigmoid(logits), math.sqrt(0.5)).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(model.log_likelihood(logits, x), normal, rtol=1e-5)
    torch.manual_seed(5)
    one = model.log_importance_weights(x, 1)  # (1, B): the same draw, a Monte Carlo KL instead of the closed form
    assert float(one.mean()) == pytest.approx(float(stat), rel=0.02)
    m = evaluate_metrics(model, run.data(), "nll", split="val", iwae_samples=50, max_samples=64)
    assert "nll_iwae" not in m and m["nll_iwae_gaussian"] < -float(stat)
    code, _, err = cli(capsys, "evaluate", str(mse_vae), "--metrics", "nll", "--iwae-samples", "2", "--max-samples", "8")
    assert code == 0, err


def test_an_rmse_vae_has_no_likelihood_to_score_or_bound(capsys):
    """rmse is no log-likelihood: a likelihood score or NLL is refused in one line, in the CLI's spelling."""
    from aekit import build_model
    from aekit.anomaly import _check_likelihood_score
    from aekit.errors import ConfigError, cli_spelling

    model = build_model("vae", input_shape=(1, 8, 8), latent_dim=2, hidden_dims=(8,), loss="rmse")
    with pytest.raises(ConfigError) as exc:
        _check_likelihood_score(model, "nll")
    text = cli_spelling(str(exc.value), exc.value.param)
    assert "--loss bce or mse" in text and "--score recon" in text and "=" not in text
    with pytest.raises(ConfigError, match="no log-likelihood"):
        model.log_importance_weights(torch.rand(2, 1, 8, 8), 3)
    _check_likelihood_score(build_model("vae", input_shape=(1, 8, 8), latent_dim=2, hidden_dims=(8,), loss="mse"), "nll")


def test_the_bernoulli_elbo_keeps_its_name_and_rmse_has_none(digits_model_outputs):
    bce, rmse = digits_model_outputs
    assert "elbo" in bce and "elbo_gaussian" not in bce
    assert not {"elbo", "elbo_gaussian"} & set(rmse)


@pytest.fixture(scope="module")
def digits_model_outputs():
    from aekit import build_model

    x = torch.rand(8, 1, 8, 8)
    return [build_model("vae", input_shape=(1, 8, 8), hidden_dims=(8,), loss=loss).eval()(x).stats for loss in ("bce", "rmse")]


# ---------------------------------------------------------------------------------------------- CLI words

PYTHON_SPELLING = re.compile(r"\b[a-z_]+=|\(\d+, \d+|=True|=False")


@pytest.fixture(scope="module")
def flat_npy(tmp_path_factory):
    path = tmp_path_factory.mktemp("flat") / "flat.npy"
    np.save(path, np.random.default_rng(0).integers(0, 256, (40, 256), dtype=np.uint8))  # N x 256: 1x16x16 images
    return path


@pytest.mark.parametrize("argv, words", [
    (["--model", "ae", "--dataset", "{flat}"], ["--shape CxHxW", "--shape 1x16x16"]),
    (["--model", "ae", "--dataset", "{flat}", "--shape", "1x4x4"], ["--shape 1x4x4 has 16 values per sample"]),
    (["--model", "ae", "--dataset", "fashion-mnist", "--data-dir", "{empty}"], ["no data found", "--download"]),
    (["--model", "vae", "--dataset", "digits", "--iwae-k", "2", "--loss", "mse"], ["--iwae-k > 1 needs --loss bce"]),
    (["--model", "ae", "--dataset", "digits", "--code", "conv"], ["--code conv needs --arch conv"]),
    (["--model", "ae", "--dataset", "digits", "--hidden-dims", "16,0"], ["--hidden-dims must be positive, got 16,0"]),
    (["--model", "ae", "--dataset", "digits", "--val-fraction", "0.9999"], ["--val-fraction 0.9999", "smaller --val-fraction"]),
])
def test_errors_use_the_cli_spelling_of_options(argv, words, flat_npy, tmp_path, data_dir, capsys):
    (tmp_path / "empty").mkdir()
    argv = [a.format(flat=flat_npy, empty=tmp_path / "empty") for a in argv]
    if "--data-dir" not in argv:
        argv += ["--data-dir", str(data_dir)]
    code, _, err = cli(capsys, "train", *argv, "--out", tmp_path / "run")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    for w in words:
        assert w in err, (w, err)
    assert not PYTHON_SPELLING.search(err), err
    assert not (tmp_path / "run").exists()


def test_help_names_options_as_flags():
    from aekit.cli import build_parser

    parser = build_parser("train")
    sub = next(a for a in parser._actions if a.dest == "command" or hasattr(a, "choices") and isinstance(a.choices, dict))
    text = sub.choices["train"].format_help()
    assert "(--arch conv)" in text and "(--encoder strided)" in text and "--logger {csv,tensorboard,mlflow}" in text
    assert not re.search(r"\((arch|encoder)=", text)


def _option_values(flags):
    """(field name, a value of its type) over the training and VAE options that are flags of `aekit train`, as
    the Python API writes them."""
    from hypothesis import strategies as st

    from aekit.models.vae import VAEConfig
    from aekit.options import _kind, fields
    from aekit.train.config import TrainConfig

    def values(f, hint):
        kind, choices = _kind(hint), f.metadata.get("choices")
        if choices:
            return st.sampled_from(choices)
        return {"bool": st.booleans(), "int": st.integers(0, 10**6), "float": st.floats(1e-6, 1e6),
                "ints": st.lists(st.integers(1, 4096), min_size=1, max_size=4).map(tuple)}.get(kind)

    pairs = [(name, values(f, hint)) for cls in (TrainConfig, VAEConfig) for name, (f, hint) in fields(cls).items()]
    return st.one_of([st.tuples(st.just(name), s) for name, s in pairs if s is not None and name in flags])


@pytest.fixture(scope="module")
def train_parser():
    from aekit.cli import build_parser

    return build_parser("train")


def test_an_option_in_a_message_becomes_a_flag_that_parses_back_to_the_same_value(train_parser):
    """Property: ``name=value`` as a library message writes it (repr of the Python value) is rendered by the CLI
    as flag text that `aekit train` parses back to that value, with no '=' left."""
    import shlex

    from hypothesis import given, settings

    from aekit.errors import cli_spelling

    sub = next(a for a in train_parser._actions if isinstance(getattr(a, "choices", None), dict)).choices["train"]
    flags = {a.dest for a in sub._actions if a.option_strings}

    @settings(max_examples=150, deadline=None)
    @given(_option_values(flags))
    def check(pair):
        name, value = pair
        text = cli_spelling(f"use {name}={value!r} here", name)
        assert text.startswith("use --") and text.endswith(" here") and "=" not in text, text
        parsed = train_parser.parse_args(["train", *shlex.split(text[4:-5])])
        assert getattr(parsed, name) == value, (text, getattr(parsed, name))

    check()


def test_a_flag_a_command_lacks_is_an_error_not_a_prefix_of_another(tmp_path, capsys):
    """argparse would read `evaluate --data x.csv` as `--data-dir x.csv` and evaluate the run's own data."""
    code, _, err = cli(capsys, "evaluate", str(tmp_path), "--data", "x.csv")
    assert code == 2 and "unrecognized arguments: --data x.csv" in err
    code, _, err = cli(capsys, "plot", "latent", str(tmp_path), "--meth", "pca")
    assert code == 2 and "--meth" in err

"""Latent arithmetic as the articles do it: any signed combination of images and class means (`--expr`),
a - b with two images (the whiskers experiment subtracts), and never a silent third image."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aekit.cli import main
from aekit.errors import ConfigError
from aekit.explore import combine, parse_expr

TERM = st.one_of(st.integers(0, 999).map(str), st.sampled_from(["class:7", "class:cat", "class:hot air balloon"]))
WEIGHT = st.one_of(st.just(1.0), st.sampled_from([0.5, 2.0, 0.25, 3.0]))


@given(st.lists(st.tuples(st.booleans(), WEIGHT, TERM), min_size=1, max_size=6))
def test_parse_expr_reads_back_any_written_combination(terms):
    text = ""
    for i, (neg, w, t) in enumerate(terms):
        text += (" - " if neg else (" + " if i else "")) + ("" if w == 1.0 else f"{w:g}*") + t
    assert parse_expr(text) == [(-w if neg else w, t) for neg, w, t in terms]


@pytest.mark.parametrize("text", ["", "3 5", "3 -", "a - b", "3 + + 5", "nan*3", "class: - 3", "3 * 5", "- "])
def test_parse_expr_refuses_what_is_not_a_combination(text):
    with pytest.raises(ConfigError) as e:
        parse_expr(text)
    assert "--expr" in str(e.value) and "\n" not in str(e.value)


def run_plot(run, *argv):
    out = run / "figures" / "arith-test.png"
    assert main(["plot", "arithmetic", str(run), "--out", str(out), *argv]) == 0
    return json.loads(out.with_suffix(".json").read_text())


def test_two_images_are_a_minus_b_and_expr_is_the_same(trained_run):
    run = trained_run("ae", 2)
    two = run_plot(run, "--a", "3", "--b", "5")
    assert [t["weight"] for t in two["terms"]] == [1.0, -1.0]  # no silent --c
    codes = np.asarray(two["codes"])
    np.testing.assert_allclose(two["z"], codes[0] - codes[1], atol=1e-6)
    same = run_plot(run, "--expr", "3 - 5")
    np.testing.assert_allclose(same["z"], two["z"], atol=1e-6)


def test_expr_mixes_class_means_images_and_weights(trained_run):
    from aekit.train import load_run

    run = trained_run("ae", 2)
    got = run_plot(run, "--expr", "0.5*class:7 - class:1 + 12")
    r = load_run(run)
    data = r.data()
    images, labels = data.split("test")
    from aekit.explore import encode_all

    z = encode_all(r.model, images, 512)
    want = 0.5 * z[labels.numpy() == 7].mean(0) - z[labels.numpy() == 1].mean(0) + z[12]
    np.testing.assert_allclose(got["z"], want, atol=1e-4)
    assert got["expression"] == "0.5*mean of 7 - mean of 1 + #12"


def test_combine_is_the_weighted_sum_and_its_decoding(trained_run):
    from aekit.explore import decode_all
    from aekit.train import load_run

    model = load_run(trained_run("ae", 2)).model
    codes = np.random.default_rng(0).normal(size=(3, 2)).astype(np.float32)
    z, img = combine(model, codes, [2.0, -0.5, 1.0])
    np.testing.assert_allclose(z, 2 * codes[0] - 0.5 * codes[1] + codes[2], atol=1e-6)
    np.testing.assert_allclose(img, decode_all(model, z[None])[0], atol=1e-6)


@pytest.mark.parametrize("argv, words", [
    (["--a", "3"], "needs --a and --b"),
    (["--expr", "3 - 5", "--a", "1"], "one of --expr"),
    (["--expr", "class:99 - 1"], "not in"),
    (["--expr", "3 - 100000"], "out of range"),
])
def test_arithmetic_refusals_are_one_line(trained_run, capsys, argv, words):
    code = main(["plot", "arithmetic", str(trained_run("ae", 2)), *argv])
    err = capsys.readouterr().err
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1

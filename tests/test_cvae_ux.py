"""The conditional VAE where a user meets it (issue 16): `plot sample --label` and the per-class sample grid (also
in the report), the explorer's label switch (`/api/decode` with a label, `/api/styles`: one code under every
class), and family options that cannot work refused in one line before anything is written."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
import torch
from data_helpers import cli, snapshot, train_run, write_pngs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

PETS = ("cat", "dog", "owl")
TINY = ("--hidden-dims", "16", "--epochs", "1", "--no-progress")


def one_line(code, err) -> None:
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and re.match(r"aekit( [\w-]+)?: error: ", lines[0]) and "Traceback" not in err, err


@pytest.fixture(scope="module")
def pets(tmp_path_factory):
    """A class-folder source whose classes have names: pets/cat, pets/dog, pets/owl (12 8x8 images each)."""
    root = tmp_path_factory.mktemp("pets") / "pets"
    for i, name in enumerate(PETS):
        write_pngs(root / name, 12, size=(8, 8), seed=i)
    return root


@pytest.fixture(scope="module")
def cvae(tmp_path_factory, data_dir, pets):
    return train_run(tmp_path_factory.mktemp("cvae"), data_dir, "--model", "cvae", "--dataset", pets, "--latent-dim", 2, *TINY)


@pytest.fixture(scope="module")
def vae(trained_run):
    return trained_run("vae", 2)  # the run test_serve uses too


# ---- aekit plot sample ---------------------------------------------------------------------------------------

def test_label_draws_that_class_by_name_or_number_and_the_grid_has_a_row_per_class(cvae, tmp_path, capsys):
    code, _, err = cli(capsys, "plot", "sample", cvae, "--label", "dog", "--n", 6, "--out", tmp_path / "dog.png")
    assert code == 0, err
    numbers = json.loads((tmp_path / "dog.json").read_text())
    assert (numbers["label"], numbers["class_name"], numbers["n"]) == (1, "dog", 6)
    assert cli(capsys, "plot", "sample", cvae, "--label", 1, "--n", 6, "--out", tmp_path / "one.png")[0] == 0
    assert (tmp_path / "one.png").read_bytes() == (tmp_path / "dog.png").read_bytes()  # the same class, the same draws
    assert cli(capsys, "plot", "sample", cvae, "--label", 2, "--n", 6, "--out", tmp_path / "owl.png")[0] == 0
    assert (tmp_path / "owl.png").read_bytes() != (tmp_path / "dog.png").read_bytes()

    code, _, err = cli(capsys, "plot", "sample", cvae, "--out", tmp_path / "grid.png")
    assert code == 0, err
    grid = json.loads((tmp_path / "grid.json").read_text())
    assert grid["class_names"] == list(PETS) and grid["labels"] == [0, 1, 2] and grid["n"] == 8

    from aekit.session import RunSession

    s = RunSession.open(cvae, progress=False, use_cache=False)
    rows = [s.prior_samples(8, label=k) for k in range(3)]  # what the grid's rows are drawn from
    assert all(not np.allclose(rows[0], r) for r in rows[1:])  # the label reaches the decoder
    figures, skipped = s.report_figures(quick=True)
    assert "sample" not in skipped
    assert figures["sample"] == (tmp_path / "grid.png").read_bytes()  # the report shows the per-class grid


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from(["cvae", "vae"]),
       label=st.one_of(st.sampled_from([*PETS, "0", "2", "3", "-1", "Cat", "", " dog", "1e0", "99999999999999999999",
                                        "cat,dog", "²", "--1"]),
                       st.integers(-3, 5).map(str), st.text(max_size=6)))
def test_generated_labels_work_or_are_refused_in_one_line(cvae, vae, tmp_path_factory, capsys, which, label):
    """--label: a class of the run's data (a name, or a number 0..K-1) on a conditional model draws; anything
    else (another class, a model without labels) is one line, exit 2, and nothing written."""
    run = cvae if which == "cvae" else vae
    tmp = tmp_path_factory.mktemp("label")
    before = snapshot(run), snapshot(tmp)
    code, _, err = cli(capsys, "plot", "sample", run, f"--label={label}", "--n", 4, "--out", tmp / "s.png")
    v = label.strip()
    valid = which == "cvae" and (v in PETS or (v.isdecimal() and int(v) < len(PETS)))
    if valid:
        assert code == 0, err
        assert json.loads((tmp / "s.json").read_text())["class_name"] == PETS[PETS.index(v) if v in PETS else int(v)]
    else:
        one_line(code, err)
        assert "--label" in err
        assert (snapshot(run), snapshot(tmp)) == before


def test_a_grid_too_large_for_one_picture_is_refused_first(cvae, tmp_path, capsys):
    code, _, err = cli(capsys, "plot", "sample", cvae, "--n", 2000, "--out", tmp_path / "g.png")
    one_line(code, err)
    assert "2000 samples for each of 3 classes" in err and not list(tmp_path.iterdir())


# ---- the explorer's label switch -----------------------------------------------------------------------------

def pixels(data_url_or_png) -> np.ndarray:
    from PIL import Image

    raw = data_url_or_png if isinstance(data_url_or_png, bytes) else base64.b64decode(data_url_or_png.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(raw)), dtype=np.int16)


@pytest.fixture(scope="module")
def clients(cvae, vae):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from aekit.serve.app import create_app
    from aekit.train import load_run

    run = load_run(cvae)
    return run, TestClient(create_app(run, use_cache=False)), TestClient(create_app(load_run(vae), use_cache=False))


def test_styles_decode_one_code_under_every_class_and_decode_takes_a_label(clients):
    run, c, plain = clients
    info = c.get("/api/info").json()
    assert info["features"]["conditional"] is None and info["panels"]["styles"] is None
    assert "no label conditioning" in plain.get("/api/info").json()["panels"]["styles"]
    z = [0.7, -1.2]
    r = c.post("/api/styles", json={"z": z})
    assert r.status_code == 200, r.text
    row = r.json()["classes"]
    assert [k["name"] for k in row] == list(PETS) and [k["label"] for k in row] == [0, 1, 2]
    images = [pixels(k["image"]) for k in row]
    with torch.inference_mode():
        want = run.model.eval().decode(torch.tensor([z] * 3), torch.arange(3)).numpy()[:, 0]  # (3, 8, 8)
    for k in range(3):
        assert np.abs(images[k] - np.round(want[k] * 255)).max() <= 1  # the model's decode(z, k)
        for label in (k, PETS[k]):  # a label number or a class name
            d = c.post("/api/decode", json={"z": z, "label": label})
            assert d.status_code == 200, d.text
            assert np.abs(pixels(d.content) - images[k]).max() <= 1
    assert not np.array_equal(images[0], images[1])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(label=st.one_of(st.integers(-2**40, 2**40), st.integers(-2, 5), st.text(max_size=8), st.sampled_from(PETS),
                       st.floats(allow_nan=False, allow_infinity=False), st.booleans(), st.lists(st.integers(), max_size=2)))
def test_generated_labels_in_the_api_answer_or_say_why_in_one_line(clients, label):
    _, c, plain = clients
    r = c.post("/api/decode", json={"z": [0.0, 0.0], "label": label})
    ok = (isinstance(label, str) and label in PETS) or (type(label) is int and 0 <= label < 3)  # no 1.0, no true
    if ok:
        assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
    else:
        assert r.status_code == 422, (label, r.status_code)
        detail = r.json()["detail"]
        assert isinstance(detail, str) and "\n" not in detail and "label" in detail
    r = plain.post("/api/decode", json={"z": [0.0, 0.0], "label": label})
    assert r.status_code in (409, 422) and "\n" not in r.json()["detail"]


def test_a_model_without_labels_refuses_the_switch_in_one_line(clients):
    _, c, plain = clients
    for r in (plain.post("/api/styles", json={"z": [0.0, 0.0]}), plain.post("/api/decode", json={"z": [0.0, 0.0], "label": 1})):
        assert r.status_code == 409 and "no label conditioning" in r.json()["detail"]
    r = c.post("/api/styles", json={"z": [0.0, 0.0], "label": 1})
    assert r.status_code == 422 and "every class" in r.json()["detail"]
    assert c.post("/api/styles", json={"z": [0.0]}).status_code == 422  # the code is still checked


# ---- family options that cannot work ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sources(tmp_path_factory, pets):
    """Unlabelled sources (a folder of images with no class folders, a .npy of images) and the labelled pets."""
    root = tmp_path_factory.mktemp("unlabelled")
    write_pngs(root / "plain", 24, size=(8, 8))
    np.save(root / "x.npy", np.random.default_rng(0).integers(0, 256, (24, 8, 8), dtype=np.uint8))
    return {"folder": root / "plain", "npy": root / "x.npy", "pets": pets}


@pytest.mark.parametrize("model, source, flags, words", [
    ("cvae", "folder", [], "needs labelled data"),
    ("cvae", "npy", [], "needs labelled data"),
    ("cvae", "pets", ["--num-classes", "2"], "pass --num-classes 3"),
    ("vamp-vae", "pets", ["--pseudo-inputs", "0"], "--pseudo-inputs must be >= 1"),
    ("vamp-vae", "pets", ["--pseudo-inputs", "-3"], "--pseudo-inputs must be >= 1"),
])
def test_family_options_that_cannot_work_are_one_line(sources, data_dir, tmp_path, capsys, model, source, flags, words):
    out = tmp_path / "run"
    code, _, err = cli(capsys, "train", "--model", model, "--dataset", sources[source], "--out", out,
                       "--data-dir", data_dir, *TINY, *flags)
    one_line(code, err)
    assert words in err and not out.exists()


FAMILY_VALUES = {
    "cvae": {"--num-classes": ["-1", "0", "1", "2", "3", "7", "abc", "2.5", "99999999999999999999"],
             "--label-dropout": ["-0.1", "0", "0.5", "1", "nan", "inf", "x"]},
    "vamp-vae": {"--pseudo-inputs": ["-5", "0", "1", "3", "abc", "1e3", "-0", "99999999999999999999"]},
}


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), model=st.sampled_from(sorted(FAMILY_VALUES)), source=st.sampled_from(["folder", "npy", "pets"]))
def test_generated_family_option_values_train_or_say_why(sources, data_dir, tmp_path_factory, capsys, data, model, source):
    """A generated value of a family's own option on a labelled or unlabelled source: the run trains, or one line
    says what was wrong (exit 2) and no run folder exists. A cvae on unlabelled data, fewer --num-classes than
    the data has, and --pseudo-inputs <= 0 are always refused."""
    flag = data.draw(st.sampled_from(sorted(FAMILY_VALUES[model])), label="flag")
    value = data.draw(st.sampled_from(FAMILY_VALUES[model][flag]), label="value")
    out = tmp_path_factory.mktemp("family") / "run"
    code, _, err = cli(capsys, "train", "--model", model, "--dataset", sources[source], "--out", out,
                       "--data-dir", data_dir, *TINY, f"{flag}={value}")
    number = float(value) if re.fullmatch(r"-?\d+(\.\d+)?", value) else None
    must_fail = (model == "cvae" and source != "pets") or (flag == "--num-classes" and number is not None and number < 3) \
        or (flag == "--pseudo-inputs" and number is not None and number <= 0)
    if must_fail or code == 2:
        one_line(code, err)
        assert not out.exists()
    else:
        assert code == 0, err
        assert (out / "model.safetensors").exists()

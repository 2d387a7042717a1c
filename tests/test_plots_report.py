"""`aekit plot KIND RUN` and `aekit report RUN` through the real CLI on small digits runs: every KIND on a
2-D and a 16-D run, the numbers it writes, non-blank pictures, the projection cache and one-line errors."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from aekit.cli import main

# each KIND on one 2-D run and the 16-D run (slice3d needs >= 3 dims: its 2-D case is an error test below)
RUNS_2D = {"reconstruct": "conv-ae", "latent": "vae", "density": "ae", "sample": "ae", "manifold": "vae",
           "interpolate": "conv-ae", "arithmetic": "ae", "traverse": "vae", "denoise": "conv-ae", "curves": "ae",
           "defects": "vae"}
CASES = [(k, m, 2) for k, m in RUNS_2D.items()] + [(k, "ae", 16) for k in [*RUNS_2D, "slice3d"]]


def png_pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.float32)


def assert_non_blank(data: bytes) -> None:
    px = png_pixels(data)
    assert px.shape[0] > 100 and px.shape[1] > 100
    assert px.std() > 10, "the picture is (nearly) a single colour"


@pytest.mark.parametrize("kind,model,dim", CASES, ids=[f"{k}-{m}{d}" for k, m, d in CASES])
def test_plot_kind_writes_picture_and_numbers(trained_run, tmp_path, capsys, kind, model, dim):
    run = trained_run(model, dim)
    out = tmp_path / f"{kind}.png"
    assert main(["plot", kind, str(run), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(out)
    assert_non_blank(out.read_bytes())
    numbers = json.loads(out.with_suffix(".json").read_text())
    assert numbers["kind"] == kind
    if kind == "reconstruct":
        assert len(numbers["mse"]) == 10 and all(0 <= m < 0.5 for m in numbers["mse"])
    elif kind == "latent":
        pts = np.asarray(numbers["points"])
        assert pts.shape == (len(numbers["labels"]), 2) and len(pts) > 100
    elif kind == "density":
        assert len(numbers["std"]) == dim and all(hi >= lo for lo, hi in zip(numbers["min"], numbers["max"]))
    elif kind == "sample":  # the VAE samples its prior; a plain AE shows N(0, I) beside a fitted Gaussian
        assert numbers["sources"] == (["prior"] if model == "vae" else ["normal", "fitted"])
        if model != "vae":
            assert np.asarray(numbers["fitted"]).shape == (64, dim) and "no prior" in numbers["note"]
    elif kind == "manifold":
        assert numbers["shape"] == [15, 15] and numbers["dims"] == [0, 1]
    elif kind == "interpolate":
        assert np.asarray(numbers["codes"]).shape == (10, dim)
    elif kind == "arithmetic":
        codes, w = np.asarray(numbers["codes"]), [t["weight"] for t in numbers["terms"]]
        assert w == [1.0, -1.0, 1.0]  # the default example: a - b + c
        np.testing.assert_allclose(numbers["z"], codes[0] - codes[1] + codes[2], atol=1e-5)
    elif kind == "traverse":
        assert np.asarray(numbers["values"]).shape == (dim, 9)
    elif kind == "denoise":
        assert numbers["mean_psnr_noisy"] < 15  # gaussian:0.5 on [0, 1] pixels
    elif kind == "curves":
        assert [r["epoch"] for r in numbers["epochs"]] == [0, 1, 2]
    elif kind == "defects":
        assert numbers["area_ratio"] >= 1 and 0 <= numbers["gap_mass"] <= 1 and numbers["asymmetry"] >= 0
        assert np.mean(numbers["in_gap"]) == pytest.approx(numbers["gap_mass"]) and len(numbers["samples"]) == 2000
    elif kind == "slice3d":
        assert np.asarray(numbers["points"]).shape[1] == 3


def test_default_output_folder_and_cli_options(trained_run, capsys):
    run = trained_run("vae", 2)
    capsys.readouterr()  # the fixture's training output, when this test trains the run
    assert main(["plot", "manifold", str(run), "--range", "-2", "2", "--step", "0.5"]) == 0
    out = run / "figures" / "manifold.png"
    assert capsys.readouterr().out.strip() == str(out)
    numbers = json.loads(out.with_suffix(".json").read_text())
    assert numbers["shape"] == [9, 9] and numbers["xs"][0] == -2 and numbers["xs"][-1] == 2
    assert main(["plot", "arithmetic", str(run), "--classes", "1,7,4", "--out", str(run / "figures" / "am.png")]) == 0
    terms = json.loads((run / "figures" / "am.json").read_text())["terms"]
    assert [(t["weight"], t["term"]) for t in terms] == [(1.0, "class:1"), (-1.0, "class:7"), (1.0, "class:4")]
    assert main(["plot", "traverse", str(run), "--mode", "max", "--out", str(run / "figures" / "tm.png")]) == 0
    assert np.asarray(json.loads((run / "figures" / "tm.json").read_text())["codes"]).shape == (2, 2)
    assert main(["plot", "interpolate", str(run), "--a", "3", "--b", "9", "--steps", "5", "--mode", "slerp",
                 "--out", str(run / "figures" / "slerp.png")]) == 0
    assert main(["plot", "latent", str(trained_run("ae", 16)), "--dims", "3,5", "--n", "50",
                 "--out", str(run / "figures" / "dims.png")]) == 0
    assert len(json.loads((run / "figures" / "dims.json").read_text())["points"]) == 50


def test_tsne_projection_is_cached_per_weights(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run("ae", 16), run)
    argv = ["plot", "latent", str(run), "--method", "tsne", "--n", "120", "--out", str(tmp_path / "t.png")]
    assert main(argv) == 0
    cache = list((run / "cache").glob("projection-tsne-test-120-0.npz"))
    assert len(cache) == 1
    stamp, first = cache[0].stat().st_mtime_ns, json.loads((tmp_path / "t.json").read_text())["points"]
    assert main(argv) == 0
    assert cache[0].stat().st_mtime_ns == stamp  # read, not recomputed
    assert json.loads((tmp_path / "t.json").read_text())["points"] == first
    # new weights: the stale projection must not be reused
    from safetensors.torch import load_file, save_file

    state = {k: v * 1.5 for k, v in load_file(str(run / "model.safetensors")).items()}
    save_file(state, str(run / "model.safetensors"))
    assert main(argv) == 0
    assert cache[0].stat().st_mtime_ns != stamp
    assert json.loads((tmp_path / "t.json").read_text())["points"] != first


@pytest.mark.parametrize("model,dim,n_figures", [("vae", 2, 11), ("ae", 16, 12)])
def test_report_embeds_every_figure_offline(trained_run, model, dim, n_figures):
    from aekit.commands.explore import write_report
    from aekit.report import CAPTIONS

    path = write_report(trained_run(model, dim), quick=True, progress=False)
    assert path == trained_run(model, dim) / "report.html"
    html = path.read_text()
    uris = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    assert len(uris) == n_figures  # slice3d only for codes wider than 2
    for uri in uris:
        assert_non_blank(base64.b64decode(uri))
    assert not re.search(r"https?://", html)
    assert ("alt='slice3d'" in html) == (dim >= 3)
    shown = set(re.findall(r"<img alt='([\w-]+)'", html))
    for kind, caption in CAPTIONS.items():
        assert (caption.replace("'", "&#x27;") in html) == (kind in shown)
    # the figures that do not apply are listed with the model's one-line reason
    skipped = dict(re.findall(r"<li><b>([\w-]+)</b>: ([^<]+)</li>", html))
    assert set(skipped) | shown == set(CAPTIONS) and not set(skipped) & shown
    assert "discrete codebook" in skipped["codes"] and "discrete codebook" in skipped["swap"]
    if dim < 3:
        assert "3 code dimensions" in skipped["slice3d"]
    assert "train_loss" in html and model in html
    # it opens with the decoded plane and the latent map; the per-epoch table comes after the figures
    assert re.findall(r"<img alt='([\w-]+)'", html)[:3] == ["manifold", "latent", "reconstruct"]
    assert html.index("<h2>Metrics per epoch</h2>") > html.rindex("<img alt=")


def test_report_cli(trained_run, capsys):
    run = trained_run("conv-ae", 2)
    capsys.readouterr()
    assert main(["report", str(run), "--quick"]) == 0
    assert capsys.readouterr().out.strip() == str(run / "report.html")
    assert (run / "report.html").stat().st_size > 50_000


BAD = [
    (["plot", "heatmap", "{ae2}"], "unknown plot kind"),
    (["plot", "interpolate", "{ae2}", "--a", "99999"], "out of range"),
    (["plot", "reconstruct", "{ae2}", "--indices", "0,5000"], "out of range"),
    (["plot", "reconstruct", "{ae2}", "--indices", ","], "empty"),
    (["plot", "manifold", "{ae16}", "--dims", "0,16"], "out of range"),
    (["plot", "latent", "{ae16}", "--dims", "1,1"], "different"),
    (["plot", "latent", "{ae16}", "--method", "none"], "2-D"),
    (["plot", "slice3d", "{ae2}"], "3 code dimensions"),
    (["plot", "arithmetic", "{ae2}", "--classes", "cat,dog,1"], "not in"),
    (["plot", "arithmetic", "{ae2}", "--classes", "1,2"], "three classes"),
    (["plot", "curves", "{ae2}", "--steps", "3"], "does not apply"),
    (["plot", "interpolate", "{ae2}", "--mode", "max"], "linear or slerp"),
    (["plot", "denoise", "{ae2}", "--noise", "blur:3"], "unknown noise"),
    (["plot", "manifold", "{ae2}", "--range", "-5", "5", "--step", "0.01"], "larger --step"),
    (["plot", "codes", "{ae2}"], "ae has no discrete codebook"),  # a KIND the model cannot do: the model's reason
    (["plot", "swap", "{ae16}", "--cell", "1,1"], "ae has no discrete codebook"),
    (["plot", "latent", "{missing}"], "does not exist"),
    (["report", "{missing}"], "does not exist"),
]


@pytest.mark.parametrize("argv,message", BAD, ids=[f"{a[1]}-{m}" for a, m in BAD])
def test_bad_input_exits_2_with_one_line(trained_run, tmp_path, capsys, argv, message):
    paths = {"ae2": trained_run("ae", 2), "ae16": trained_run("ae", 16), "missing": tmp_path / "nope"}
    argv = [a.format(**paths) for a in argv] + ["--out", str(tmp_path / "x.png")] * (argv[0] == "plot")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("aekit: error:") and message in err[0], err
    assert not (tmp_path / "x.png").exists()

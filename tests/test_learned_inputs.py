"""Learned input-space images (the ``learned_inputs`` capability; VampPrior pseudo-inputs, Tomczak & Welling 2018):
the contract hook, `aekit plot learned-inputs` and the report's section, on tiny real runs (digits, 1 epoch)."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
import torch
from data_helpers import cli, copy_run, snapshot

pytestmark = pytest.mark.usefixtures("one_thread")

LEVELS = (0.2, 0.4, 0.6, 0.8)  # one flat grey per pseudo-input: easy to find in the rendered PNG


@pytest.fixture(scope="module")
def vamp(trained_run):
    return trained_run("vamp-vae", 2, epochs=1, hidden_dims="32", pseudo_inputs=4)


@pytest.fixture(scope="module")
def plain(trained_run):
    return trained_run("ae", 2, epochs=1, hidden_dims="32")


def png_pixels(data: bytes) -> np.ndarray:
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG"
    return np.asarray(img.convert("RGB")).astype(int)  # (H, W, 3)


def grey_count(px: np.ndarray, level: float) -> int:
    """Pixels drawn in the grey that matplotlib's gray map gives ``level`` (R = G = B = 255 * level, +-1)."""
    v = round(255 * level)
    grey = (px[..., 0] == px[..., 1]) & (px[..., 1] == px[..., 2])
    return int((grey & (np.abs(px[..., 0] - v) <= 1)).sum())


def set_pseudo_inputs(run, levels) -> None:
    """Rewrite the run's weights so pseudo-input k is a flat image of grey ``levels[k]`` (inside hardtanh's
    [0, 1], so pseudo_inputs() returns exactly these)."""
    from safetensors.torch import load_file, save_file

    weights = load_file(run / "model.safetensors")
    u = weights["pseudo"]  # (K, C, H, W)
    weights["pseudo"] = torch.tensor(levels, dtype=u.dtype).view(-1, 1, 1, 1).expand_as(u).contiguous()
    save_file(weights, run / "model.safetensors")


def test_the_hook_is_a_declared_capability():
    from aekit import build_model
    from aekit.errors import ConfigError
    from aekit.registry import MODELS, list_models

    list_models()  # registers the families
    assert [n for n, e in MODELS.items() if e.cls.capabilities.learned_inputs] == ["vamp-vae"]
    model = build_model("vamp-vae", **MODELS["vamp-vae"].cls.tiny_options)
    assert model.skip_reason("learned_inputs") is None
    u = model.learned_inputs()
    assert u.shape == (4, *model.input_shape) and not u.requires_grad
    assert torch.equal(u, model.pseudo_inputs())
    assert 0 <= float(u.min()) and float(u.max()) <= 1
    ae = build_model("ae")
    reason = ae.skip_reason("learned_inputs")
    assert reason == "ae has no learned input-space images (such as a VampPrior's pseudo-inputs)"
    with pytest.raises(ConfigError, match=re.escape(reason)):
        ae.learned_inputs()


def test_plot_shows_the_models_pseudo_inputs(vamp, tmp_path, capsys):
    run = copy_run(vamp, tmp_path)
    set_pseudo_inputs(run, LEVELS)
    from aekit.train import load_run

    assert load_run(run).model.learned_inputs().flatten(1).mean(1).tolist() == pytest.approx(LEVELS)
    found = {}
    for n in ("all", "2"):
        out = tmp_path / f"inputs-{n}.png"
        rc, stdout, err = cli(capsys, "plot", "learned-inputs", run, "--n", n, "--out", out)
        assert rc == 0, err
        assert stdout.strip() == str(out)
        numbers = json.loads(out.with_suffix(".json").read_text())
        assert numbers == {"kind": "learned-inputs", "count": 4, "shown": 4 if n == "all" else 2, "shape": [1, 8, 8]}
        px = png_pixels(out.read_bytes())
        found[n] = [grey_count(px, g) for g in LEVELS]
    # every pseudo-input is a block of its own grey (~5,000 screen pixels each; the title's anti-aliasing makes
    # ~10-20 of any grey); --n 2 shows the first two, in the model's order, and not the others
    assert min(found["all"]) >= 1000, found
    assert min(found["2"][:2]) >= 1000 and max(found["2"][2:]) < 100, found
    # the trained pseudo-inputs (near-black: they start at N(0.05, 0.01)) drew none of these greys
    out = tmp_path / "trained.png"
    assert cli(capsys, "plot", "learned-inputs", vamp, "--out", out)[0] == 0
    assert max(grey_count(png_pixels(out.read_bytes()), g) for g in LEVELS) < 100


def test_a_model_without_learned_inputs_is_refused_and_nothing_is_written(plain, tmp_path, capsys):
    before = snapshot(plain)
    out = tmp_path / "x.png"
    for argv in (("--out", out), ()):
        rc, stdout, err = cli(capsys, "plot", "learned-inputs", plain, *argv)
        assert rc == 2 and stdout == ""
        assert err == ("aekit: error: plot learned-inputs does not apply to this run: ae has no learned input-space "
                       "images (such as a VampPrior's pseudo-inputs)\n")
    assert not out.exists() and not out.with_suffix(".json").exists()
    assert snapshot(plain) == before  # no figures/, no cache


def test_the_report_embeds_the_plot_for_vamp_and_says_why_not_for_ae(vamp, plain, tmp_path, capsys):
    from aekit.commands.explore import write_report

    run = copy_run(vamp, tmp_path)
    page = write_report(run, quick=True, progress=False).read_text()
    m = re.search(r"<h2>learned-inputs</h2><figure><img alt='learned-inputs' src='data:image/png;base64,([^']+)'>", page)
    assert m, "no learned-inputs section"
    assert "pseudo-inputs u_k" in page  # its caption
    # the embedded picture is the one `aekit plot learned-inputs` draws
    out = tmp_path / "plot.png"
    assert cli(capsys, "plot", "learned-inputs", run, "--out", out)[0] == 0
    assert base64.b64decode(m.group(1)) == out.read_bytes()
    assert "<b>learned-inputs</b>" not in page

    ae = copy_run(plain, tmp_path / "ae")
    page = write_report(ae, quick=True, progress=False).read_text()
    assert "<h2>learned-inputs</h2>" not in page
    assert ("<li><b>learned-inputs</b>: ae has no learned input-space images (such as a VampPrior&#x27;s "
            "pseudo-inputs)</li>") in page

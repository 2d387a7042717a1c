"""The proof of the open design: a model family is one file and nothing else.

Two toy families are defined in this file and registered here (and removed again after the module), never
named anywhere in aekit: a continuous AE with a spatial code (D, h, w), and a discrete one with a
nearest-codebook quantiser whose training recipe has two optimizers (the autoencoder, and a per-cell
categorical prior over its codes). Each goes through the public entry points: `aekit train` (its config
fields are flags at once), `aekit evaluate`, every `aekit plot` KIND that applies (and the reason for each
that does not), `aekit report`, the explorer's HTTP API and the ONNX export, with real outputs checked.
"""

from __future__ import annotations

import base64
import io
import json
import re
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from aekit.cli import main
from aekit.errors import ConfigError, NoPriorError
from aekit.models.base import Autoencoder, Capabilities, ModelConfig, Output, adam
from aekit.options import opt


# ---------------------------------------------------------------------------------------- the toy families


def conv_pair(c: int, width: int, d: int) -> tuple[nn.Module, nn.Module]:
    """A stride-2 conv encoder to d channels and its transposed decoder: (B, c, H, W) <-> (B, d, H/2, W/2)."""
    enc = nn.Sequential(nn.Conv2d(c, width, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(width, d, 1))
    dec = nn.Sequential(nn.ConvTranspose2d(d, width, 4, stride=2, padding=1), nn.ReLU(), nn.Conv2d(width, c, 3, padding=1))
    return enc, dec


@dataclass(frozen=True)
class ToyGridConfig(ModelConfig):
    toy_width: int = opt(8, "channels of the toy conv layers")


class ToyGridAE(Autoencoder):
    """Continuous code on a grid: (latent_dim, H/2, W/2), no prior."""

    Config = ToyGridConfig
    tiny_options = {"toy_width": 4}

    def __init__(self, config: ToyGridConfig) -> None:
        super().__init__(config)
        c, h, w = config.input_shape
        self.enc, self.dec = conv_pair(c, config.toy_width, config.latent_dim)
        self.grid = ((h + 1) // 2, (w + 1) // 2)

    @property
    def code_shape(self) -> tuple[int, ...]:
        return (self.config.latent_dim, *self.grid)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.enc(x)  # (B, D, h, w)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        _, h, w = self.input_shape
        return self.dec(z)[..., :h, :w]  # (B, C, H, W)

    def forward(self, x: torch.Tensor) -> Output:
        z = self.encode(self.corrupt(x))
        logits = self.decode_logits(z)
        terms, stats = self.reconstruction_terms(logits, x)
        return Output(loss=sum(terms.values()), terms=terms, x_hat=torch.sigmoid(logits), z=z, stats=stats)


@dataclass(frozen=True)
class ToyVQConfig(ModelConfig):
    toy_codes: int = opt(16, "codebook entries of the toy quantiser")
    toy_prior: bool = opt(True, "fit the toy's code prior beside the autoencoder (a second optimizer)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.toy_codes < 2:
            raise ConfigError(f"toy_codes must be >= 2, got {self.toy_codes}", param="toy_codes")


class ToyVQ(Autoencoder):
    """Nearest-codebook quantiser (van den Oord et al. 2017, straight-through gradient) with an independent
    categorical prior per grid cell, trained by its own optimizer in the same step."""

    Config = ToyVQConfig
    capabilities = Capabilities(discrete=True, prior=True)
    tiny_options = {"toy_codes": 8}

    def __init__(self, config: ToyVQConfig) -> None:
        super().__init__(config)
        c, h, w = config.input_shape
        self.enc, self.dec = conv_pair(c, 8, config.latent_dim)
        self.grid = ((h + 1) // 2, (w + 1) // 2)
        self.codebook = nn.Embedding(config.toy_codes, config.latent_dim)
        self.prior_logits = nn.Parameter(torch.zeros(self.grid[0] * self.grid[1], config.toy_codes))  # (h*w, K)
        self.register_buffer("prior_steps", torch.zeros((), dtype=torch.long))

    @property
    def code_shape(self) -> tuple[int, ...]:
        return (self.config.latent_dim, *self.grid)

    @property
    def codebook_size(self) -> int:
        return self.config.toy_codes

    def encode_pre(self, x: torch.Tensor) -> torch.Tensor:
        return self.enc(x)  # (B, D, h, w)

    def _nearest(self, z: torch.Tensor) -> torch.Tensor:  # (B, D, h, w) -> (B, h, w)
        e = self.codebook.weight  # (K, D)
        flat = z.permute(0, 2, 3, 1).reshape(-1, e.shape[1])  # (B*h*w, D)
        d2 = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ e.T + e.pow(2).sum(1)  # (B*h*w, K)
        return d2.argmin(1).view(-1, *self.grid)

    def _lookup(self, idx: torch.Tensor) -> torch.Tensor:  # (B, h, w) -> (B, D, h, w)
        return self.codebook(idx).permute(0, 3, 1, 2)

    def encode_indices(self, x: torch.Tensor) -> torch.Tensor:
        return self._nearest(self.encode_pre(x))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self._lookup(self.encode_indices(x))

    def _dec(self, z: torch.Tensor) -> torch.Tensor:
        _, h, w = self.input_shape
        return self.dec(z)[..., :h, :w]

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self._dec(self._lookup(self._nearest(z)))  # any code snaps to the codebook first

    def decode_indices(self, idx: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self._dec(self._lookup(idx)))

    def forward(self, x: torch.Tensor) -> Output:
        ze = self.encode_pre(self.corrupt(x))  # (B, D, h, w)
        idx = self._nearest(ze)
        zq = self._lookup(idx)
        logits = self._dec(ze + (zq - ze).detach())  # straight-through estimator
        terms, stats = self.reconstruction_terms(logits, x)
        terms["codebook"] = (zq - ze.detach()).pow(2).sum((1, 2, 3)).mean()
        terms["commit"] = 0.25 * (ze - zq.detach()).pow(2).sum((1, 2, 3)).mean()
        p = torch.bincount(idx.flatten(), minlength=self.codebook_size).float() / idx.numel()
        stats["perplexity"] = torch.exp(-(p * p.clamp_min(1e-12).log()).sum()).detach()
        return Output(loss=sum(terms.values()), terms=terms, x_hat=torch.sigmoid(logits), z=zq, stats=stats)

    # -- the two-optimizer recipe: the autoencoder, then the prior on the (detached) indices ------------
    def make_optimizers(self, cfg) -> dict[str, torch.optim.Optimizer]:
        ae = [p for n, p in self.named_parameters() if n != "prior_logits"]
        opts = {"model": adam(ae, cfg)}
        if self.config.toy_prior:
            opts["prior"] = adam([self.prior_logits], cfg, lr_scale=10.0)
        return opts

    def training_step(self, x: torch.Tensor, y: torch.Tensor, step) -> Output:
        out = self(x)
        step("model", out.loss)
        with torch.no_grad():
            ze = self.encode_pre(x)
            idx = self._nearest(ze)
            # dead-code restart (Dhariwal et al. 2020): entries no cell chose move onto random encoder outputs
            dead = torch.bincount(idx.flatten(), minlength=self.codebook_size) == 0
            if dead.any():
                flat = ze.permute(0, 2, 3, 1).reshape(-1, ze.shape[1])  # (B*h*w, D)
                self.codebook.weight[dead] = flat[torch.randint(len(flat), (int(dead.sum()),), device=flat.device)]
        if self.config.toy_prior:
            nll = self.code_nll(idx).mean()
            step("prior", nll)
            self.prior_steps += 1
            out.stats["prior_nll"] = nll.detach()
        return out

    def prior_ready(self) -> bool:
        return bool(self.prior_steps > 0)

    def prior_hint(self) -> str:
        return f"{self.name}'s code prior is not trained; train the run again with --toy-prior"

    def code_nll(self, idx: torch.Tensor) -> torch.Tensor:  # (B, h, w) -> (B,) nats
        logp = self.prior_logits.log_softmax(-1)  # (h*w, K)
        flat = idx.flatten(1)  # (B, h*w)
        return -logp.unsqueeze(0).expand(len(flat), -1, -1).gather(2, flat.unsqueeze(-1)).squeeze(-1).sum(1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        if not self.prior_ready():
            raise NoPriorError(self.prior_hint())
        probs = self.prior_logits.softmax(-1)  # (h*w, K)
        idx = torch.multinomial(probs, n, replacement=True, generator=generator).T.reshape(n, *self.grid)
        return self.decode_indices(idx)


TOYS = {"toy-grid-ae": (ToyGridAE, "toy: continuous code on a (D, H/2, W/2) grid"),
        "toy-vq": (ToyVQ, "toy: nearest-codebook quantiser with a per-cell categorical prior")}


@pytest.fixture(scope="module")
def toys():
    """Register the toy families for this module only; other modules never see them."""
    from aekit.registry import MODELS, list_models, register

    list_models()  # the built-in families first
    for name, (cls, description) in TOYS.items():
        register(name, description)(cls)
    yield
    for name in TOYS:
        MODELS.pop(name, None)


@pytest.fixture(scope="module")
def runs(toys, tmp_path_factory, data_dir):
    """Three runs through `aekit train`: the grid AE, the VQ toy with its prior and without (--no-toy-prior)."""
    root = tmp_path_factory.mktemp("open-design")
    made = {}
    for key, model, extra in (("grid", "toy-grid-ae", ["--toy-width", "6"]), ("vq", "toy-vq", ["--toy-codes", "12"]),
                              ("vq-noprior", "toy-vq", ["--toy-codes", "12", "--no-toy-prior"])):
        out = root / key
        argv = ["train", "--model", model, "--dataset", "digits", "--latent-dim", "3", "--epochs", "5", "--lr", "5e-3",
                "--batch-size", "32", "--out", str(out), "--no-progress", "--data-dir", str(data_dir), *extra]
        assert main(argv) == 0
        made[key] = out
    return made


def fail(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("aekit: error: ") and "\n" not in err, err
    return err


def png_array(data: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG"
    return np.asarray(img)


# ------------------------------------------------------------------------------------------------ train


def test_config_fields_are_flags_and_the_recipe_is_recorded(runs, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = capsys.readouterr().out
    assert "--toy-codes" in help_text and "--toy-prior" in help_text and "--toy-width" in help_text
    vq = json.loads((runs["vq"] / "config.json").read_text())
    assert vq["model"]["name"] == "toy-vq"
    assert vq["model"]["config"]["toy_codes"] == 12 and vq["model"]["config"]["toy_prior"] is True
    assert vq["train"]["optimizers"] == ["model", "prior"]  # the two-optimizer recipe, as the engine ran it
    assert json.loads((runs["vq-noprior"] / "config.json").read_text())["train"]["optimizers"] == ["model"]
    assert json.loads((runs["grid"] / "config.json").read_text())["model"]["config"]["toy_width"] == 6
    # every loss term and stat went to metrics.csv; the prior's NLL fell while it trained
    import csv

    rows = list(csv.DictReader(open(runs["vq"] / "metrics.csv")))
    assert {"train_loss_recon", "train_loss_codebook", "train_loss_commit", "val_perplexity", "train_prior_nll"} <= set(rows[0])
    assert float(rows[-1]["train_prior_nll"]) < float(rows[0]["train_prior_nll"])
    assert float(rows[-1]["val_loss"]) < float(rows[0]["val_loss"])
    # the family's own validation, shown as its flag
    assert "--toy-codes must be >= 2" in fail(["train", "--model", "toy-vq", "--dataset", "digits", "--toy-codes", "1",
                                               "--out", str(runs["vq"].parent / "bad")], capsys)


def test_evaluate(runs, capsys):
    for key in ("grid", "vq"):
        assert main(["evaluate", str(runs[key])]) == 0
        ev = json.loads((runs[key] / "eval.json").read_text())
        assert 0 < ev["mse"] < 0.06 and ev["psnr"] > 12
        assert all(np.isfinite(v) for v in ev.values() if isinstance(v, float))


# ------------------------------------------------------------------------------------------------ plots

APPLIES = {
    "grid": {"reconstruct", "latent", "density", "slice3d", "sample", "interpolate", "arithmetic", "denoise", "curves"},
    "vq": {"reconstruct", "latent", "density", "slice3d", "sample", "interpolate", "arithmetic", "denoise", "curves",
           "codes", "swap"},
}


@pytest.mark.parametrize("key", ["grid", "vq"])
def test_every_applicable_plot_and_the_reasons_for_the_rest(runs, key, tmp_path, capsys):
    from aekit.session import KINDS, RunSession
    from aekit.train import load_run

    s = RunSession(load_run(runs[key]), progress=False)
    reasons = {k: s.skip_reason(k) for k in KINDS}
    assert {k for k, r in reasons.items() if r is None} == APPLIES[key]
    for kind in ("manifold", "traverse", "defects"):  # sweeps of single dimensions need a flat code
        assert "spatial code" in reasons[kind] and "not a flat vector" in reasons[kind]
    if key == "grid":
        assert "no discrete codebook" in reasons["codes"] and "no discrete codebook" in reasons["swap"]
    code_size = s.model.code_size
    for kind, reason in reasons.items():
        out = tmp_path / f"{kind}.png"
        if reason:  # `aekit plot` on a model that cannot do it: exit 2 with the reason, nothing written
            assert reason in fail(["plot", kind, str(runs[key]), "--out", str(out)], capsys)
            assert not out.exists()
            continue
        assert main(["plot", kind, str(runs[key]), "--out", str(out)]) == 0, kind
        px = png_array(out.read_bytes()).astype(float)
        assert px.shape[0] > 100 and px.std() > 10, kind
        numbers = json.loads(out.with_suffix(".json").read_text())
        assert numbers["kind"] == kind
        if kind == "latent":
            assert np.isfinite(numbers["points"]).all() and len(numbers["points"][0]) == 2
        elif kind == "density":
            assert len(numbers["mean"]) == code_size  # statistics of the flattened code
        elif kind == "interpolate":
            assert np.asarray(numbers["codes"]).shape == (10, code_size)
        elif kind == "arithmetic":
            codes, w = np.asarray(numbers["codes"]), [t["weight"] for t in numbers["terms"]]
            assert w == [1.0, -1.0, 1.0]  # the default example: a - b + c
            np.testing.assert_allclose(numbers["z"], codes[0] - codes[1] + codes[2], atol=1e-5)
        elif kind == "sample":
            assert numbers["sources"] == (["prior"] if key == "vq" else ["normal", "fitted"])
        elif kind == "codes":
            counts = np.asarray(numbers["counts"])
            n_test = len(s.split("test")[0])
            assert counts.shape == (12,) and counts.sum() == n_test * 4 * 4
            assert 1 <= numbers["perplexity"] <= 12 and numbers["used"] + numbers["dead"] == 12
        elif kind == "swap":
            assert numbers["cell"] == [2, 2] and len(numbers["entries"]) >= 1
            assert numbers["from"] == numbers["grid"][2][2] and numbers["from"] not in numbers["entries"]
            # the swapped cell's own pixels move more than the rest of the image: the code is local
            assert sum(numbers["inside"]) > sum(numbers["outside"]) > 0


def test_untrained_prior_says_how_to_train_it(runs, capsys):
    from aekit.session import RunSession
    from aekit.train import load_run

    s = RunSession(load_run(runs["vq-noprior"]), progress=False)
    assert not s.model.has_prior
    hint = "prior is not trained; train the run again with --toy-prior"
    assert hint in s.skip_reason("sample")
    assert hint in fail(["plot", "sample", str(runs["vq-noprior"])], capsys)
    with pytest.raises(NoPriorError, match="--toy-prior"):
        s.prior_samples(4)


def test_swap_options_and_errors(runs, tmp_path, capsys):
    out = tmp_path / "swap.png"
    assert main(["plot", "swap", str(runs["vq"]), "--a", "5", "--cell", "0,3", "--entries", "0,11", "--out", str(out)]) == 0
    numbers = json.loads(out.with_suffix(".json").read_text())
    assert numbers["a"] == 5 and numbers["cell"] == [0, 3] and numbers["entries"] == [0, 11]
    assert "outside the 4 x 4 code grid" in fail(["plot", "swap", str(runs["vq"]), "--cell", "4,0"], capsys)
    assert "codebook entries 0..11" in fail(["plot", "swap", str(runs["vq"]), "--entries", "12"], capsys)
    assert "does not apply to `plot swap`" in fail(["plot", "swap", str(runs["vq"]), "--steps", "3"], capsys)


# ----------------------------------------------------------------------------------------------- report


def test_report_embeds_what_applies_and_lists_the_rest(runs, capsys):
    for key in ("grid", "vq", "vq-noprior"):
        assert main(["report", str(runs[key]), "--quick"]) == 0
        html = (runs[key] / "report.html").read_text()
        shown = set(re.findall(r"<img alt='([\w-]+)'", html))
        skipped = dict(re.findall(r"<li><b>([\w-]+)</b>: ([^<]+)</li>", html))
        expected = APPLIES["vq" if key.startswith("vq") else "grid"] - ({"sample"} if key == "vq-noprior" else set())
        assert shown == expected and set(skipped).isdisjoint(shown) and len(shown) + len(skipped) == 16  # + features (tables), learned-inputs
        assert all(reason.strip() for reason in skipped.values())
        for uri in re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html):
            assert png_array(base64.b64decode(uri)).astype(float).std() > 10
        if key == "vq-noprior":
            assert "--toy-prior" in skipped["sample"]
        assert not re.search(r"https?://", html)


# -------------------------------------------------------------------------------------------- serve API


def test_serve_api_of_a_spatial_continuous_code(runs):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from aekit.serve.app import create_app
    from aekit.train import load_run

    run = load_run(runs["grid"])
    c = TestClient(create_app(run))
    info = c.get("/api/info").json()
    assert info["code_shape"] == [3, 4, 4] and info["code_size"] == 48 and info["codebook"] is None
    assert "not a flat vector" in info["features"]["flat"] and "no discrete codebook" in info["features"]["discrete"]
    assert info["panels"]["sliders"] and info["panels"]["grid"] and "no prior" in info["panels"]["sample"]
    item = c.get("/api/test/3").json()
    assert len(item["z"]) == 48 and item["indices"] is None and len(item["xy"]) == 2
    got = png_array(c.post("/api/decode", json={"z": item["z"]}).content).astype(int)
    with torch.no_grad():
        want = run.model.decode(torch.tensor(item["z"]).view(1, 3, 4, 4))[0, 0].numpy()
    assert got.shape == (8, 8) and np.abs(got - np.rint(want * 255)).max() <= 1
    assert c.post("/api/decode", json={"z": [0.0] * 3}).status_code == 422
    assert c.get("/api/sample").status_code == 409
    assert c.post("/api/decode_indices", json={"indices": [[0] * 4] * 4}).status_code == 409
    morph = c.post("/api/morph", json={"a": 0, "b": 7, "steps": 5}).json()
    assert len(morph["frames"]) == len(morph["xy"]) == 5 and "codes" not in morph  # spatial: frames only
    arith = c.post("/api/arithmetic", json={"a": 0, "b": 1, "c": "4"}).json()
    assert len(arith["result"]["z"]) == 48 and np.isfinite(arith["result"]["z"]).all()


def test_serve_api_of_a_discrete_code(runs):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from aekit.serve.app import create_app
    from aekit.train import load_run

    run = load_run(runs["vq"])
    c = TestClient(create_app(run))
    info = c.get("/api/info").json()
    book = info["codebook"]
    assert book["size"] == 12 and book["grid"] == [4, 4] and sum(book["counts"]) == info["n_points"] * 16
    assert info["features"]["discrete"] is None and info["panels"]["grid"] is None and info["has_prior"] is True
    item = c.get("/api/test/2").json()
    grid = np.asarray(item["indices"])
    assert grid.shape == (4, 4) and ((grid >= 0) & (grid < 12)).all()
    # the grid editor: change one cell, decode, compare with the model
    edited = grid.copy()
    edited[1, 2] = (edited[1, 2] + 5) % 12
    r = c.post("/api/decode_indices", json={"indices": edited.tolist()})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    with torch.no_grad():
        want = run.model.decode_indices(torch.from_numpy(edited)[None])[0, 0].numpy()
        same = run.model.decode_indices(torch.from_numpy(grid)[None])[0, 0].numpy()
    got = png_array(r.content).astype(int)
    assert np.abs(got - np.rint(want * 255)).max() <= 1 and not np.allclose(want, same)
    for bad, message in (([[0] * 4] * 3, "shape"), ([[0] * 4] * 3 + [[0, 0, 0, 12]], "not a codebook entry"),
                         ([[0] * 4] * 3 + [[0, 0, 0, -1]], "not a codebook entry")):
        r = c.post("/api/decode_indices", json={"indices": bad})
        assert r.status_code == 422 and message in r.json()["detail"]
    # random samples from the trained prior: seeded, with the grid of the sample for the editor
    a, a2, b = (c.get(f"/api/sample?seed={s}").json() for s in (1, 1, 2))
    assert a == a2 and a["image"] != b["image"] and np.asarray(a["indices"]).shape == (4, 4)
    morph = c.post("/api/morph", json={"a": 0, "b": 9, "steps": 6, "mode": "slerp"}).json()
    assert len(morph["frames"]) == 6 and all(f.startswith("data:image/png;base64,") for f in morph["frames"])
    up = io.BytesIO()
    Image.fromarray(run.data().split("test")[0][2, 0].numpy()).save(up, "PNG")
    out = c.post("/api/upload", files={"file": ("x.png", up.getvalue(), "image/png")}).json()
    assert out["indices"] == item["indices"]  # the test image, uploaded, gets its own grid back
    # without a trained prior the page is told how to train it
    c2 = TestClient(create_app(load_run(runs["vq-noprior"])))
    r = c2.get("/api/sample?seed=1")
    assert r.status_code == 409 and "--toy-prior" in r.json()["detail"]
    assert "--toy-prior" in c2.get("/api/info").json()["sample_note"]


# ----------------------------------------------------------------------------------------------- export


@pytest.mark.parametrize("key", ["grid", "vq"])
def test_onnx_export_of_spatial_codes(runs, key, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from aekit.train import load_run

    assert main(["export", str(runs[key]), "--out", str(tmp_path)]) == 0
    info = json.loads((tmp_path / "export.json").read_text())
    assert info["code_shape"] == [3, 4, 4]
    run = load_run(runs[key])
    x = run.data().split("test")[0][:7].float() / 255
    enc = ort.InferenceSession(str(tmp_path / "encoder.onnx"), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(tmp_path / "decoder.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        z_ref = run.model.encode(x).numpy()
        x_ref = run.model.decode(torch.from_numpy(z_ref)).numpy()
    z = enc.run(None, {"image": x.numpy()})[0]
    assert z.shape == (7, 3, 4, 4) and np.isfinite(z).all()
    np.testing.assert_allclose(z, z_ref, atol=1e-4)
    np.testing.assert_allclose(dec.run(None, {"code": z_ref})[0], x_ref, atol=1e-4)
    assert x_ref.std() > 0.05


# ---------------------------------------------------------------------------------- the page, in a browser


def test_grid_editor_in_the_browser(runs, tmp_path):
    """Chromium (Playwright) on a live server of the discrete toy: the page opens the grid editor instead of
    sliders; clicking a cell and setting another entry redraws the image as the model decodes the edited grid."""
    import shutil
    import socket
    import threading
    import time

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("needs Debian's chromium on PATH (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    uvicorn = pytest.importorskip("uvicorn")
    from aekit.serve.app import create_app
    from aekit.train import load_run

    run = load_run(runs["vq"])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(run, allowed_hosts=["127.0.0.1"]), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    errors = []
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            page.wait_for_selector("body[data-ready='1']", timeout=20_000)
            page.wait_for_function("window.aekitBusy() === 0")
            assert page.locator("#grid-panel").is_visible() and page.locator("#sliders input").count() == 0
            assert "not a flat vector" in page.text_content("#sliders-note")
            cells = page.locator("#grid-cells button")
            assert cells.count() == 16
            grid = np.asarray(page.evaluate("() => grid"))
            assert grid.tolist() == page.evaluate("async () => (await (await fetch('/api/test/0')).json()).indices")
            assert [int(t) for t in cells.all_text_contents()] == grid.flatten().tolist()
            before = page.evaluate(PIXELS, "#grid-decoded")
            new = int((grid[1, 2] + 5) % 12)
            cells.nth(1 * 4 + 2).click()
            assert page.text_content("#grid-cell") == "1,2"
            page.fill("#grid-entry", str(new))
            page.click("#grid-set")
            page.wait_for_function("window.aekitBusy() === 0")
            assert cells.nth(6).text_content() == str(new) and "changed" in cells.nth(6).get_attribute("class")
            after = page.evaluate(PIXELS, "#grid-decoded")
            edited = grid.copy()
            edited[1, 2] = new
            with torch.no_grad():
                want = run.model.decode_indices(torch.from_numpy(edited)[None])[0, 0].numpy()
            got = np.asarray(after, dtype=int).reshape(8, 8, 4)[:, :, 0]
            assert after != before and np.abs(got - np.rint(want * 255)).max() <= 1
            page.fill("#grid-entry", "99")  # not a codebook entry: a one-line message, the grid unchanged
            page.click("#grid-set")
            page.wait_for_function("document.querySelector('#status').classList.contains('error')")
            assert "0..11" in page.text_content("#status") and cells.nth(6).text_content() == str(new)
            page.click("#random")  # a sample from the trained prior lands in the editor
            page.wait_for_function("document.querySelector('#original-caption').textContent.includes('prior')")
            page.wait_for_function("window.aekitBusy() === 0")
            page.screenshot(path=str(tmp_path / "grid-editor.png"), full_page=True)
            browser.close()
    finally:
        server.should_exit = True
        thread.join(5)
    assert not errors, errors


PIXELS = """(sel) => { const c = document.querySelector(sel);
    return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data); }"""

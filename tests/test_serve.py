"""The explorer's HTTP API (FastAPI TestClient, real trained runs): every endpoint, every bad input."""

import io
import json
import socket
import struct
import time
import zlib

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from aekit.serve.app import MAX_PIXELS, MAX_UPLOAD_BYTES, create_app, is_loopback  # noqa: E402
from aekit.train import load_run  # noqa: E402


@pytest.fixture(scope="module")
def ae(trained_run):
    run = load_run(trained_run("ae", 2))
    return run, TestClient(create_app(run))


@pytest.fixture(scope="module")
def vae(trained_run):
    run = load_run(trained_run("vae", 2))
    return run, TestClient(create_app(run))


def decode(run, z) -> np.ndarray:
    with torch.inference_mode():
        return run.model.decode(torch.tensor([z], dtype=torch.float32))[0].numpy()


def png_array(content: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(content))
    assert img.format == "PNG"
    return np.asarray(img)


def png(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def detail(r) -> str:
    d = r.json()["detail"]
    assert isinstance(d, str) and d  # one readable line, not a pydantic error list
    return d


# ------------------------------------------------------------------------------------------ page, info, map


def test_page_and_static_files_are_served_offline(ae):
    _, c = ae
    page = c.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/static/app.js" in page.text and "/static/style.css" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no CDN
    for name in ("app.js", "style.css", "index.html"):
        r = c.get(f"/static/{name}")
        assert r.status_code == 200 and "http://" not in r.text and "https://" not in r.text
    assert c.get("/docs").status_code == 404  # FastAPI's docs page would load a CDN


def test_info_describes_the_run(ae, vae):
    run, c = ae
    info = c.get("/api/info").json()
    assert info["model"] == "ae" and info["latent_dim"] == 2 and info["shape"] == [1, 8, 8]
    assert info["class_names"] == [str(k) for k in range(10)]
    assert info["has_prior"] is False and "no prior" in info["sample_note"]
    # what the page shows follows the model's capabilities: sliders (a flat code), no grid editor, no sampling
    assert info["code_shape"] == [2] and info["features"]["flat"] is None and info["features"]["plane"] is None
    assert "no discrete codebook" in info["features"]["discrete"] and info["codebook"] is None
    assert info["panels"]["sliders"] is None and info["panels"]["grid"] and info["panels"]["sample"]
    assert c.post("/api/decode_indices", json={"indices": [[0]]}).status_code == 409
    assert c.get("/api/test/0").json()["indices"] is None
    lo, hi = np.array(info["ranges"]["lo"]), np.array(info["ranges"]["hi"])
    assert lo.shape == (2,) and (hi > lo).all()
    # AE ranges come from the training codes: every test code lies inside them
    m = c.get("/api/map").json()
    xy = np.stack([m["x"], m["y"]], 1)
    assert ((xy >= lo - 1e-6) & (xy <= hi + 1e-6)).mean() > 0.95
    vinfo = vae[1].get("/api/info").json()
    assert vinfo["has_prior"] is True and vinfo["sample_note"] == ""
    assert vinfo["ranges"]["lo"] == [-3.0, -3.0] and vinfo["ranges"]["hi"] == [3.0, 3.0]  # ±3σ of the prior


def test_map_of_2d_codes_is_the_codes_themselves(ae):
    run, c = ae
    info, m = c.get("/api/info").json(), c.get("/api/map").json()
    n = info["n_points"]
    assert len(m["x"]) == len(m["y"]) == len(m["label"]) == n == len(run.data().splits["test"])
    assert info["projection"] == "identity" and info["map_is_latent"] is True
    item = c.get("/api/test/7").json()
    assert item["z"] == pytest.approx([m["x"][7], m["y"][7]], abs=1e-4)
    images, labels = run.data().split("test")
    with torch.inference_mode():
        z = run.model.encode(images[7:8].float() / 255)[0].tolist()
    assert item["z"] == pytest.approx(z, abs=1e-5) and item["label"] == int(labels[7])
    assert set(m["label"]) <= set(range(10))


# -------------------------------------------------------------------------------------------------- decode


def test_decode_returns_the_models_image_as_png(ae):
    run, c = ae
    r = c.post("/api/decode", json={"z": [0.3, -0.2]})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert len(r.content) < 2000  # small: the page upscales with CSS
    got = png_array(r.content).astype(int)
    want = np.rint(decode(run, [0.3, -0.2])[0] * 255).astype(int)
    assert got.shape == (8, 8) and np.abs(got - want).max() <= 1
    other = png_array(c.post("/api/decode", json={"z": [5.0, 5.0]}).content)
    assert not np.array_equal(got, other)


BAD_CODES = [
    ('{"z": [1.0]}', "has 1 values"),
    ('{"z": [1.0, 2.0, 3.0]}', "has 3 values"),
    ('{"z": []}', "has 0 values"),
    ('{"z": [NaN, 0.0]}', "NaN or infinity"),
    ('{"z": [0.0, Infinity]}', "NaN or infinity"),
    ('{"z": [-Infinity, 0.0]}', "NaN or infinity"),
    ('{"z": [1e400, 0.0]}', "NaN or infinity"),
    ('{"z": [1000.5, 0.0]}', "beyond"),
    ('{"z": [0.0, -2e3]}', "beyond"),
    ('{"z": "0.1,0.2"}', "z:"),
    ('{"z": [0.1, "x"]}', "z."),
    ('{"z": {"a": 1}}', "z:"),
    ('{"zz": [0.1, 0.2]}', "z:"),
    ("[0.1, 0.2]", "valid dictionary"),
    ("not json", "JSON"),
    ("", "body: field required"),
]


@pytest.mark.parametrize("body,message", BAD_CODES)
def test_decode_rejects_bad_codes_with_422_and_a_message(ae, body, message):
    _, c = ae
    before = c.post("/api/decode", json={"z": [0.1, 0.2]}).content
    r = c.post("/api/decode", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert message.lower() in detail(r).lower()
    assert c.post("/api/decode", json={"z": [0.1, 0.2]}).content == before  # still up and correct


def test_limit_is_inclusive_and_wrong_methods_and_routes_fail_cleanly(ae):
    _, c = ae
    assert c.post("/api/decode", json={"z": [1000.0, -1000.0]}).status_code == 200
    assert c.get("/api/decode").status_code == 405
    for path in ("/nope", "/api", "/api/nope", "/static/nope.js", "/api/test/1/other.png", "/index.html"):
        r = c.get(path)
        assert r.status_code == 404, path


# -------------------------------------------------------------------------------------------- test items


def test_test_image_endpoints(ae):
    run, c = ae
    images, labels = run.data().split("test")
    item = c.get("/api/test/4").json()
    assert item["index"] == 4 and item["label_name"] == str(int(labels[4]))
    assert 0 <= item["error"] < 1
    original = png_array(c.get("/api/test/4/image.png").content)
    assert np.array_equal(original, images[4, 0].numpy())
    recon = png_array(c.get("/api/test/4/recon.png").content).astype(int)
    assert np.abs(recon - np.rint(decode(run, item["z"])[0] * 255)).max() <= 1
    n = c.get("/api/info").json()["n_points"]
    for bad in (n, 10**9, -1):
        for suffix in ("", "/image.png", "/recon.png"):
            r = c.get(f"/api/test/{bad}{suffix}")
            assert r.status_code == 404 and "does not exist" in detail(r)
    for bad in ("abc", "1.5", "1e3"):
        assert c.get(f"/api/test/{bad}").status_code == 422


def test_a_map_of_a_subset_names_test_images_by_their_own_numbers(ae):
    """The map of a large test set shows a seeded subset; every endpoint still takes and gives the test split's
    own numbers (those of `aekit plot --indices` and the report), never positions on the map."""
    run, _ = ae
    c = TestClient(create_app(run, max_points=30, use_cache=False))
    images, labels = run.data().split("test")
    info, m = c.get("/api/info").json(), c.get("/api/map").json()
    ids = m["id"]
    assert info["n_points"] == len(ids) == 30 and info["n_test"] == len(images) and ids == sorted(ids) and ids[-1] >= 30
    k = ids[5]
    item = c.get(f"/api/test/{k}").json()
    assert item["index"] == k and item["label"] == int(labels[k]) and item["xy"] == pytest.approx([m["x"][5], m["y"][5]], abs=1e-4)
    assert np.array_equal(png_array(c.get(f"/api/test/{k}/image.png").content), images[k, 0].numpy())
    off = next(i for i in range(len(images)) if i not in set(ids))
    r = c.get(f"/api/test/{off}")
    assert r.status_code == 404 and "not on the map" in detail(r)
    morph = c.post("/api/morph", json={"a": ids[0], "b": k, "steps": 3, "mode": "linear"}).json()
    assert morph["ends"][1]["caption"].startswith(f"#{k} ")
    assert c.post("/api/morph", json={"a": off, "b": k, "steps": 3, "mode": "linear"}).status_code == 422


# -------------------------------------------------------------------------------------------------- sample


def test_random_sample_is_disabled_with_an_explanation_for_plain_aes(ae):
    _, c = ae
    r = c.get("/api/sample?seed=3")
    assert r.status_code == 409
    assert "no prior" in detail(r) and "vae" in detail(r)  # the reason, and the registered models that have one


def test_random_sample_from_a_vae_is_seeded(vae):
    _, c = vae
    a, b, a2 = (c.get(f"/api/sample?seed={s}").json()["z"] for s in (1, 2, 1))
    assert len(a) == 2 and a == a2 and a != b
    for bad in ("-1", "x", str(2**31)):
        assert c.get(f"/api/sample?seed={bad}").status_code == 422


# ------------------------------------------------------------------------------------- morph / arithmetic


def test_morph_strip_between_two_test_images(ae):
    run, c = ae
    za, zb = c.get("/api/test/0").json()["z"], c.get("/api/test/5").json()["z"]
    for mode in ("linear", "slerp"):
        out = c.post("/api/morph", json={"a": 0, "b": 5, "steps": 7, "mode": mode}).json()
        assert len(out["frames"]) == len(out["codes"]) == len(out["xy"]) == 7
        assert out["codes"][0] == pytest.approx(za, abs=1e-4) and out["codes"][-1] == pytest.approx(zb, abs=1e-4)
        first = png_array(io.BytesIO(__import__("base64").b64decode(out["frames"][0].split(",", 1)[1])).getvalue())
        assert np.abs(first.astype(int) - np.rint(decode(run, za)[0] * 255)).max() <= 1
    mid = c.post("/api/morph", json={"a": 0, "b": 5, "steps": 3}).json()["codes"][1]
    assert mid == pytest.approx(((np.array(za) + zb) / 2).tolist(), abs=1e-4)
    # a code and a class mean are operands too
    assert len(c.post("/api/morph", json={"a": [0.1, 0.2], "b": "3", "steps": 2}).json()["frames"]) == 2


@pytest.mark.parametrize("body,message", [
    ({"a": 0, "b": 1, "steps": 1}, "steps"),
    ({"a": 0, "b": 1, "steps": 65}, "steps"),
    ({"a": 0, "b": 1, "mode": "cubic"}, "mode"),
    ({"a": 0, "b": 10**6}, "does not exist"),
    ({"a": -1, "b": 1}, "does not exist"),
    ({"a": 0, "b": "no-such-class"}, "unknown class"),
    ({"a": [0.1], "b": 1}, "has 1 values"),
    ({"a": [1e9, 0.0], "b": 1}, "beyond"),
    ({"a": 0}, "b:"),
    ({"a": 0.5, "b": 1}, "a"),
])
def test_morph_rejects_bad_input(ae, body, message):
    _, c = ae
    r = c.post("/api/morph", json=body)
    assert r.status_code == 422 and message in detail(r)


def test_arithmetic_on_images_class_means_and_codes(ae):
    _, c = ae
    z = [np.array(c.get(f"/api/test/{i}").json()["z"]) for i in (0, 1, 2)]
    out = c.post("/api/arithmetic", json={"a": 0, "b": 1, "c": 2}).json()
    assert out["result"]["z"] == pytest.approx((z[0] - z[1] + z[2]).tolist(), abs=1e-5)
    assert len(out["inputs"]) == 3 and all(i["image"].startswith("data:image/png;base64,") for i in out["inputs"])
    assert out["result"]["xy"] == pytest.approx(out["result"]["z"], abs=1e-4)  # 2-D: the map is the code
    m = c.get("/api/map").json()
    mean3 = np.array([[x, y] for x, y, k in zip(m["x"], m["y"], m["label"]) if k == 3]).mean(0)
    out = c.post("/api/arithmetic", json={"a": "3", "b": [0.0, 0.0], "c": [0.0, 0.0]}).json()
    assert out["result"]["z"] == pytest.approx(mean3.tolist(), abs=1e-3)
    assert "class 3" in out["inputs"][0]["caption"]
    for body in ({"a": 0, "b": 1}, {"a": 0, "b": 1, "c": "x"}, {"a": 0, "b": [float("nan")] * 2, "c": 1}):
        r = c.post("/api/arithmetic", content=json.dumps(body), headers={"content-type": "application/json"})
        assert r.status_code == 422 and detail(r)


# -------------------------------------------------------------------------------------------------- upload


def test_upload_is_converted_like_the_training_data_and_placed_on_the_map(ae):
    run, c = ae
    images, _ = run.data().split("test")
    item = c.get("/api/test/9").json()
    # the 8x8 test image as a 32x32 RGB PNG: converted back to 1x8x8, its code lands near the test image's
    big = Image.fromarray(images[9, 0].numpy()).resize((32, 32), Image.Resampling.NEAREST).convert("RGB")
    out = c.post("/api/upload", files={"file": ("digit.png", png(big), "image/png")}).json()
    assert png_array(__import__("base64").b64decode(out["input"].split(",", 1)[1])).shape == (8, 8)
    spread = np.ptp(np.array(c.get("/api/info").json()["ranges"]["lo"] + c.get("/api/info").json()["ranges"]["hi"]))
    assert np.linalg.norm(np.array(out["z"]) - item["z"]) < 0.2 * spread
    assert out["xy"] == pytest.approx(out["z"], abs=1e-4)
    assert 0 <= out["percentile"] <= 100 and out["error"] >= 0
    # a blank image reconstructs worse than most digits: its percentile is high
    blank = c.post("/api/upload", files={"file": ("w.png", png(Image.new("L", (20, 20), 255)), "image/png")}).json()
    assert blank["error"] > out["error"] and blank["percentile"] > 50
    inverted = c.post("/api/upload", files={"file": ("w.png", png(Image.new("L", (20, 20), 255)), "image/png")},
                      data={"invert": "true"}).json()
    assert inverted["error"] < blank["error"]  # white -> black background


def test_upload_accepts_jpeg_gif_and_transparent_png(ae):
    _, c = ae
    rgba = Image.new("RGBA", (16, 16), (255, 255, 255, 0))
    for name, data, mime in (("a.jpg", png(Image.new("RGB", (30, 20), (90, 90, 90)), "JPEG"), "image/jpeg"),
                             ("a.gif", png(Image.new("P", (12, 12), 3), "GIF"), "image/gif"),
                             ("a.png", png(rgba), "image/png")):
        r = c.post("/api/upload", files={"file": (name, data, mime)})
        assert r.status_code == 200, (name, r.text)
        assert len(r.json()["z"]) == 2


NOISE = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height but holds a few bytes of pixels: the decompression-bomb shape."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_upload_limits(ae):
    _, c = ae
    ok = c.post("/api/decode", json={"z": [0.0, 0.0]}).content
    cases = [
        # too big: by the endpoint's own read, and by the declared/streamed body size before any parsing
        (("a.png", b"\x89PNG" + b"\0" * MAX_UPLOAD_BYTES, "image/png"), 413, "limit"),
        (("a.png", b"\0" * (3 * MAX_UPLOAD_BYTES), "image/png"), 413, "too large"),
        # not an image, or a type Pillow can read but we do not accept
        (("a.txt", b"hello, world", "text/plain"), 415, "PNG, JPEG or GIF"),
        (("a.png", b"", "image/png"), 415, "empty"),
        (("a.bmp", png(Image.new("L", (8, 8)), "BMP"), "image/bmp"), 415, "PNG, JPEG or GIF"),
        (("a.tif", png(Image.new("L", (8, 8)), "TIFF"), "image/tiff"), 415, "PNG, JPEG or GIF"),
        (("a.png", png(NOISE)[:300], "image/png"), 415, "decode"),  # truncated
        # decompression bombs: above our cap, and far above Pillow's own
        (("bomb.png", _png_header_only(4097, 4097), "image/png"), 413, "pixels"),
        (("bomb.png", _png_header_only(30000, 30000), "image/png"), 413, "pixels"),
    ]
    for file, status, message in cases:
        r = c.post("/api/upload", files={"file": file})
        assert r.status_code == status, (file[0], r.status_code, r.text)
        assert message in detail(r), (file[0], detail(r))
        assert c.post("/api/decode", json={"z": [0.0, 0.0]}).content == ok
    assert 4097 * 4097 > MAX_PIXELS
    assert c.post("/api/upload").status_code == 422  # no file at all
    assert c.post("/api/upload", data={"file": "/etc/passwd"}).status_code == 422  # a path is not a file


def test_streamed_body_without_length_is_capped(ae):
    _, c = ae

    def chunks():
        for _ in range(40):
            yield b"\0" * (128 * 1024)  # 5 MB in total, no Content-Length

    r = c.post("/api/decode", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert c.post("/api/decode", json={"z": [0.0, 0.0]}).status_code == 200


# -------------------------------------------------------------------------------------------------- safety


def test_no_endpoint_takes_a_file_path(ae):
    run, c = ae
    from fastapi.routing import APIRoute

    app = c.app
    for route in app.routes:
        assert ":path}" not in getattr(route, "path", "")
        if isinstance(route, APIRoute):
            names = {p.name for p in route.dependant.query_params + route.dependant.path_params}
            assert not names & {"path", "file", "filename", "dir", "run"}, route.path
    for probe in ("/static/../config.json", "/static/%2e%2e/app.py", "/static/..%2fapp.py", "/api/test/..%2f..%2fconfig.json",
                  f"/static/{run.path}/config.json"):
        assert c.get(probe).status_code == 404, probe
    assert c.get("/api/info?path=/etc/passwd").json()["run"] == run.path.name  # extra query ignored


def test_wider_codes_use_a_cached_pca_map(trained_run):
    import shutil

    run = load_run(trained_run("ae", 16))
    shutil.rmtree(run.path / "cache", ignore_errors=True)
    c = TestClient(create_app(run))
    info = c.get("/api/info").json()
    assert info["projection"] == "pca" and info["map_is_latent"] is False and len(info["ranges"]["lo"]) == 16
    # the session's cache, the one `aekit plot` uses too: codes, reconstruction errors, the projection
    (cache,) = (run.path / "cache").glob("projection-pca-test-*.npz")
    assert list((run.path / "cache").glob("codes-test-*.npz")) and list((run.path / "cache").glob("errors-test-*.npz"))
    stamp = cache.stat().st_mtime_ns
    t0 = time.perf_counter()
    c2 = TestClient(create_app(run))
    assert time.perf_counter() - t0 < 1.0  # reads the cache instead of encoding and projecting again
    assert cache.stat().st_mtime_ns == stamp
    assert c2.get("/api/map").json() == c.get("/api/map").json()
    # a test image uploaded lands on its own map position (the PCA is affine: exact)
    run_images, _ = run.data().split("test")
    item = c.get("/api/test/2").json()
    out = c.post("/api/upload", files={"file": ("x.png", png(Image.fromarray(run_images[2, 0].numpy())), "image/png")}).json()
    assert out["xy"] == pytest.approx(item["xy"], abs=1e-3)
    assert c.post("/api/decode", json={"z": [0.0] * 16}).status_code == 200
    assert c.post("/api/decode", json={"z": [0.0] * 2}).status_code == 422
    # a damaged cache is recomputed, not trusted
    cache.write_bytes(b"garbage")
    assert TestClient(create_app(run)).get("/api/map").json() == c.get("/api/map").json()


def test_conv_model_serves(trained_run):
    run = load_run(trained_run("conv-ae", 2))
    before = sorted((run.path / "cache").glob("*"))  # the shared run may hold other tests' caches
    c = TestClient(create_app(run, use_cache=False))
    assert png_array(c.post("/api/decode", json={"z": [0.1, 0.1]}).content).shape == (8, 8)
    assert len(c.post("/api/morph", json={"a": 1, "b": 2, "steps": 4}).json()["frames"]) == 4
    assert sorted((run.path / "cache").glob("*")) == before  # use_cache=False writes nothing


def test_trusted_hosts_refuse_dns_rebinding(trained_run):
    run = load_run(trained_run("ae", 2))
    c = TestClient(create_app(run, allowed_hosts=["127.0.0.1", "localhost"]), base_url="http://127.0.0.1")
    assert c.get("/api/info").status_code == 200
    assert c.get("/api/info", headers={"host": "evil.example"}).status_code == 400


def test_loopback_detection_and_the_cli_warning(trained_run, capsys):
    assert all(map(is_loopback, ("127.0.0.1", "localhost", "::1", "[::1]", "127.1.2.3")))
    assert not any(map(is_loopback, ("0.0.0.0", "192.168.1.4", "::", "example.com")))
    from aekit.cli import main

    holder = socket.socket()
    holder.bind(("0.0.0.0", 0))  # a busy port (listening, accepting nothing): the command fails to bind, exits 2
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        assert main(["serve", str(trained_run("ae", 2)), "--port", str(port)]) == 2
        err = capsys.readouterr().err
        assert "cannot listen" in err and "warning" not in err
        assert main(["serve", str(trained_run("ae", 2)), "--host", "0.0.0.0", "--port", str(port)]) == 2
        err = capsys.readouterr().err
        assert "warning" in err and "not loopback" in err and "cannot listen" in err
    finally:
        holder.close()

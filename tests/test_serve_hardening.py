"""The explorer server under load and the run folder's damaged parts: model calls run in worker threads, at
most ``compute_slots`` at once (the page and /api/info answer meanwhile, one more request waits or gets 503),
uploads are bounded before decoding, every spelling of "every interface" is treated like 0.0.0.0, a damaged
``RUN/cache/*.npz`` is rebuilt, and NaN weights are a one-line exit-2 error for every reader of the run.

Heavy requests are held inside the real model by a forward pre-hook on its decoder that waits on an Event the
test opens: in flight, deterministically, with no timing in any assertion."""

from __future__ import annotations

import io
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
from PIL import Image  # noqa: E402

from aekit.serve.app import MAX_PIXELS, MAX_UPLOAD_BYTES, create_app, is_every_interface, is_loopback  # noqa: E402
from aekit.train import load_run  # noqa: E402
from data_helpers import cli, copy_run, train_run  # noqa: E402

BASE = ["--model", "ae", "--dataset", "digits", "--latent-dim", "3", "--hidden-dims", "16", "--no-progress"]
WAIT = 60  # a safety net against a hang (a regression blocking the event loop), never a measured threshold


@pytest.fixture(scope="module")
def run3(tmp_path_factory, data_dir):
    """A finished 2-epoch AE with a 3-D code (so the map is a real projection), copied by tests that damage it."""
    return train_run(tmp_path_factory.mktemp("hardening"), data_dir, *BASE, "--epochs", "2")


@pytest.fixture
def run_copy(run3, tmp_path):
    return copy_run(run3, tmp_path, "cache")


@contextmanager
def live(app):
    """``app`` on a real uvicorn server (in a thread) on a free loopback port; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(WAIT)
        sock.close()


@contextmanager
def held_decoder(model):
    """Every decoder pass of the real model waits at its first layer until the test opens the gate; ``entered``
    counts the passes that reached it (so the test knows they are in flight, inside a worker thread)."""
    gate, entered = threading.Event(), threading.Semaphore(0)

    def hold(module, args):
        entered.release()
        if not gate.wait(WAIT):
            raise RuntimeError("the test never opened the gate")

    handle = model.body.decoder.register_forward_pre_hook(hold)
    try:
        yield gate, entered
    finally:
        gate.set()
        handle.remove()


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def one_json_line(r) -> str:
    """The body is one JSON object with one readable line under ``detail`` (what the page shows)."""
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert list(body) == ["detail"] and isinstance(body["detail"], str) and body["detail"]
    assert "\n" not in r.text and "\n" not in body["detail"] and "Traceback" not in r.text
    return body["detail"]


# ------------------------------------------------------------------------------------- compute off the loop


def test_cheap_requests_answer_while_every_compute_slot_is_busy_and_one_more_gets_503(run3):
    run = load_run(run3)
    app = create_app(run, compute_slots=2, busy_wait=0)
    limiter = app.state.compute_limiter
    z = {"z": [0.1, -0.2, 0.3]}
    with live(app) as url, ThreadPoolExecutor(4) as pool, held_decoder(run.model) as (gate, entered):
        heavy = [pool.submit(httpx.post, f"{url}/api/decode", json=z, timeout=WAIT),
                 pool.submit(httpx.post, f"{url}/api/morph", json={"a": 0, "b": 1, "steps": 3}, timeout=WAIT)]
        for _ in heavy:  # both are inside the model at once: they run in worker threads, not on the event loop
            assert entered.acquire(timeout=WAIT), "the second request never reached the model: the loop is blocked"
        assert limiter.borrowed_tokens == 2
        # the page, its static files and /api/info still answer, while both heavy requests are held
        info = httpx.get(f"{url}/api/info", timeout=WAIT)
        assert info.status_code == 200 and info.json()["limits"]["compute_slots"] == 2
        assert httpx.get(f"{url}/", timeout=WAIT).status_code == 200
        assert httpx.get(f"{url}/static/app.js", timeout=WAIT).status_code == 200
        assert httpx.get(f"{url}/api/map", timeout=WAIT).status_code == 200
        assert httpx.get(f"{url}/api/test/3/image.png", timeout=WAIT).status_code == 200  # no model call, no slot
        assert not any(f.done() for f in heavy)
        # any further model call is refused at once (busy_wait 0) with one JSON line, not queued
        small = png(Image.new("L", (16, 16), 40))
        for r in (httpx.post(f"{url}/api/decode", json=z, timeout=WAIT),
                  httpx.post(f"{url}/api/upload", files={"file": ("a.png", small, "image/png")}, timeout=WAIT),
                  httpx.post(f"{url}/api/arithmetic", json={"a": 0, "b": 1, "c": 2}, timeout=WAIT),
                  httpx.get(f"{url}/api/test/2/recon.png", timeout=WAIT)):
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
            assert one_json_line(r).startswith("busy: 2 requests are already computing")
        assert not any(f.done() for f in heavy) and limiter.borrowed_tokens == 2
        gate.set()
        done = [f.result() for f in heavy]
        assert done[0].status_code == 200 and done[0].headers["content-type"] == "image/png"
        assert done[1].status_code == 200 and len(done[1].json()["frames"]) == 3
        assert limiter.borrowed_tokens == 0  # the slots are given back
        assert httpx.post(f"{url}/api/decode", json=z, timeout=WAIT).content == done[0].content


def test_a_request_beyond_the_bound_waits_for_a_slot_then_is_served(run3):
    run = load_run(run3)
    app = create_app(run, compute_slots=1, busy_wait=WAIT)
    limiter = app.state.compute_limiter
    z = {"z": [0.0, 0.5, -0.5]}
    with live(app) as url, ThreadPoolExecutor(2) as pool, held_decoder(run.model) as (gate, entered):
        first = pool.submit(httpx.post, f"{url}/api/decode", json=z, timeout=WAIT)
        assert entered.acquire(timeout=WAIT)
        second = pool.submit(httpx.post, f"{url}/api/decode", json=z, timeout=WAIT)
        deadline = time.monotonic() + WAIT
        while limiter.statistics().tasks_waiting < 1:  # the second one is queued for the only slot
            assert time.monotonic() < deadline and not second.done(), "the second request did not wait for the slot"
            time.sleep(0.01)
        assert httpx.get(f"{url}/api/info", timeout=WAIT).status_code == 200
        assert not first.done() and not second.done()
        gate.set()
        assert first.result().status_code == 200 and second.result().status_code == 200
        assert first.result().content == second.result().content
    assert limiter.borrowed_tokens == 0


# -------------------------------------------------------------------------------------------------- uploads


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height but holds a few bytes of pixels: decoding it would fail, so a 413
    naming its pixels shows the size was checked from the header, before any decoding."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_oversized_uploads_are_refused_with_one_json_line(run3):
    app = create_app(load_run(run3))
    with live(app) as url:
        for data, want in ((_png_header_only(5000, 5000), "5000x5000 pixels"),
                           (_png_header_only(4097, 4096), f"the limit is {MAX_PIXELS} pixels"),
                           (b"\x89PNG" + b"\0" * MAX_UPLOAD_BYTES, "limit"),  # bytes, read by the endpoint
                           (b"\0" * (2 * MAX_UPLOAD_BYTES), "too large")):  # the body, before any parsing
            r = httpx.post(f"{url}/api/upload", files={"file": ("a.png", data, "image/png")}, timeout=WAIT)
            assert r.status_code == 413, r.text
            assert want in one_json_line(r)
        assert app.state.compute_limiter.borrowed_tokens == 0
        ok = httpx.post(f"{url}/api/upload", files={"file": ("a.png", png(Image.new("L", (4096, 8))), "image/png")},
                        timeout=WAIT)
        assert ok.status_code == 200 and len(ok.json()["z"]) == 3


# ------------------------------------------------------------------------------------------ every interface


EVERY = ("", "*", "0.0.0.0", "0", "::", "[::]")


def test_every_spelling_of_every_interface_is_0_0_0_0():
    from aekit.commands.serve import listen

    assert all(map(is_every_interface, EVERY))
    assert not any(map(is_every_interface, ("127.0.0.1", "localhost", "::1", "192.168.1.4", "example.com")))
    assert not any(map(is_loopback, EVERY)) and is_loopback("127.1")
    for host in ("", "*", "0.0.0.0", "0"):
        sock = listen(host, 0)
        try:
            assert sock.getsockname()[0] == "0.0.0.0", host
        finally:
            sock.close()


@pytest.mark.parametrize("host", EVERY)
def test_serve_warns_for_every_spelling_of_every_interface(run3, host, capsys):
    holder = socket.socket()
    holder.bind(("0.0.0.0", 0))  # a busy port: the command warns, then fails to bind and exits 2
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        code, _, err = cli(capsys, "serve", run3, "--host", host, "--port", port)
        assert code == 2
        assert err.count("aekit: warning:") == 1 and "binds every interface, like 0.0.0.0" in err
        assert "no authentication" in err and "aekit: error: cannot listen" in err
        code, _, err = cli(capsys, "serve", run3, "--port", port)  # the default, loopback: no warning
        assert code == 2 and "warning" not in err and "cannot listen" in err
    finally:
        holder.close()


def test_serve_with_an_empty_host_listens_on_every_interface(run3):
    """`aekit serve --host ''`, a real process: the warning, a URL the browser can open, and an answer on the
    loopback address under any Host name (as for 0.0.0.0: the DNS-rebinding guard is for loopback only)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "aekit", "serve", str(run3), "--host", "", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()  # "explorer for RUN (ae) ready in ... s: http://127.0.0.1:PORT/"
        assert "ready in" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
        url = line.strip().rsplit(" ", 1)[-1]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/")
        r = httpx.get(f"{url}api/info", headers={"host": "my-machine.lan"}, timeout=WAIT)
        assert r.status_code == 200 and r.json()["model"] == "ae"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=WAIT)
    assert "aekit: warning: --host '' is not loopback: it binds every interface, like 0.0.0.0" in err


# ------------------------------------------------------------------------------------------ damaged caches


DAMAGE = {
    "empty": lambda b: b"",
    "truncated": lambda b: b[: len(b) // 2],
    "garbage": lambda b: bytes(np.random.default_rng(0).integers(0, 256, len(b), dtype=np.uint8)),
}


def damage_all(cache: Path, how: str) -> list[str]:
    names = sorted(p.name for p in cache.glob("*.npz"))
    for name in names:
        (cache / name).write_bytes(DAMAGE[how]((cache / name).read_bytes()))
    return names


def assert_rebuilt(cache: Path, names: list[str]) -> None:
    for name in names:
        with np.load(cache / name, allow_pickle=False) as f:
            assert "key" in f.files and len(f.files) > 1, name


def test_serve_rebuilds_an_empty_truncated_or_garbage_cache(run_copy):
    from fastapi.testclient import TestClient

    first = TestClient(create_app(load_run(run_copy)))
    want = first.get("/api/map").json()
    assert first.get("/api/info").json()["projection"] == "pca"
    cache = run_copy / "cache"
    for how in DAMAGE:
        names = damage_all(cache, how)
        assert any(n.startswith("projection-pca") for n in names) and any(n.startswith("codes-") for n in names)
        c = TestClient(create_app(load_run(run_copy)))  # must not trust (or crash on) the damaged files
        assert c.get("/api/map").json() == want, how
        assert c.post("/api/decode", json={"z": [0.0, 0.0, 0.0]}).status_code == 200
        assert_rebuilt(cache, names)


def test_plot_tsne_rebuilds_an_empty_truncated_or_garbage_cache(run_copy, tmp_path, capsys):
    argv = ["plot", "latent", run_copy, "--method", "tsne", "--n", "80"]
    code, _, err = cli(capsys, *argv, "--out", tmp_path / "first.png")
    assert code == 0, err
    want = json.loads((tmp_path / "first.json").read_text())["points"]
    cache = run_copy / "cache"
    assert list(cache.glob("projection-tsne-*.npz"))
    for how in DAMAGE:
        names = damage_all(cache, how)
        code, _, err = cli(capsys, *argv, "--out", tmp_path / f"{how}.png")
        assert code == 0, (how, err)
        assert "projecting 80 codes with tsne" in err  # recomputed, not read from the damaged file
        got = json.loads((tmp_path / f"{how}.json").read_text())["points"]
        assert np.allclose(got, want, atol=1e-4), how
        assert_rebuilt(cache, names)


# --------------------------------------------------------------------------------------------- NaN weights


@pytest.mark.parametrize("command", [["serve", "RUN", "--port", "0"], ["report", "RUN", "--quick"],
                                     ["plot", "reconstruct", "RUN"], ["evaluate", "RUN"], ["summary", "RUN"]])
def test_nan_weights_are_one_line_exit_2_for_every_reader(run_copy, command, capsys):
    from safetensors.torch import load_file, save_file

    path = run_copy / "model.safetensors"
    state = load_file(str(path))
    name = sorted(k for k, v in state.items() if v.is_floating_point())[0]
    flat = state[name].view(-1)
    flat[:2] = float("nan")
    flat[2] = float("inf")
    save_file(state, str(path))
    total = sum(v.numel() for v in state.values() if v.is_floating_point())
    before = sorted(p.name for p in run_copy.rglob("*"))
    code, out, err = cli(capsys, *(run_copy if a == "RUN" else a for a in command))
    assert code == 2, err
    assert err.startswith("aekit: error:") and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"model.safetensors holds non-finite weights (3 of {total} values); retrain or resume" in err
    assert sorted(p.name for p in run_copy.rglob("*")) == before  # no figure, report or cache written

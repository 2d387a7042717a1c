"""The explorer page in a real browser: Playwright drives Debian's Chromium (headless) against a live uvicorn
server on 127.0.0.1. CI installs chromium with apt-get; without it these tests skip and say why."""

import shutil
import socket
import threading
import time

import pytest

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium on PATH (apt-get install -y "
                                                        "chromium); .ci/run installs it")
sync_api = pytest.importorskip("playwright.sync_api")
uvicorn = pytest.importorskip("uvicorn")

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def server(trained_run):
    """A live uvicorn server (in a thread) on a free loopback port, serving a tiny 2-D AE run."""
    yield from serve(trained_run("ae", 2))


@pytest.fixture(scope="module")
def cvae_server(trained_run):
    """The same for a conditional VAE (the run test_families trains too)."""
    yield from serve(trained_run("cvae", 2))


def serve(run_path):
    from aekit.serve import create_app
    from aekit.train import load_run

    app = create_app(load_run(run_path), allowed_hosts=["127.0.0.1"])
    sock = socket.socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as `aekit serve` does (no 40 ms Nagle stalls)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    server.should_exit = True
    thread.join(5)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    yield from open_page(browser, server)


def open_page(browser, server):
    ctx = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = ctx.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
    page.goto(server)
    page.wait_for_selector("body[data-ready='1']", timeout=10_000)
    quiet(page)
    yield page
    status_error = page.locator("#status.error").count() and page.text_content("#status")
    ctx.close()
    assert not errors, errors
    assert not status_error, status_error


def quiet(page):
    page.wait_for_function("window.aekitBusy() === 0", timeout=10_000)


def pixels(page, selector: str) -> list[int]:
    return page.evaluate("""(sel) => { const c = document.querySelector(sel);
        return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data); }""", selector)


def version(page, selector: str) -> int:
    return int(page.eval_on_selector(selector, "c => c.dataset.version"))


def test_slider_drag_redraws_the_decoded_image_one_request_at_a_time(page, tmp_path):
    page.screenshot(path=str(tmp_path / "loaded.png"))
    assert page.locator("#sliders input[type=range]").count() == 2
    before, v0 = pixels(page, "#decoded"), version(page, "#decoded")
    assert len(before) == 8 * 8 * 4 and len(set(before)) > 2  # a real image, not a blank canvas

    in_flight, peak = [0], [0]

    def started(req):
        if req.url.endswith("/api/decode"):
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])

    def ended(req):
        if req.url.endswith("/api/decode"):
            in_flight[0] -= 1

    page.on("request", started)
    page.on("requestfinished", ended)
    page.on("requestfailed", ended)
    box = page.locator("#z0").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + 2, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] - 2, y, steps=25)  # a fast drag: 25 input events
    page.mouse.up()
    quiet(page)
    after = pixels(page, "#decoded")
    assert after != before
    assert version(page, "#decoded") > v0
    assert peak[0] == 1  # coalesced: never two decodes in flight
    # the canvas shows the decode of the slider's final value (the latest value won)
    z = page.evaluate("() => z")  # the code sent last (slider values snap to their step)
    expected = page.evaluate("""async (z) => {
        const r = await fetch('/api/decode', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                             body: JSON.stringify({z})});
        const bmp = await createImageBitmap(await r.blob());
        const c = new OffscreenCanvas(bmp.width, bmp.height); c.getContext('2d').drawImage(bmp, 0, 0);
        return Array.from(c.getContext('2d').getImageData(0, 0, bmp.width, bmp.height).data); }""", z)
    assert after == expected
    page.screenshot(path=str(tmp_path / "slider.png"))


def test_hovering_the_map_changes_the_preview_and_click_pins(page, tmp_path):
    box = page.locator("#map").bounding_box()
    seen = []
    for fx, fy in ((0.2, 0.2), (0.8, 0.8), (0.2, 0.8)):
        v = version(page, "#preview")
        page.mouse.move(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
        page.wait_for_function("v => Number(document.querySelector('#preview').dataset.version) > v", arg=v)
        quiet(page)
        seen.append(pixels(page, "#preview"))
    assert seen[0] != seen[1] or seen[1] != seen[2]
    assert "z = (" in page.text_content("#hover-info")
    page.screenshot(path=str(tmp_path / "hover.png"))
    # click pins the hovered code into the sliders, which redraw the decoded image to match the preview
    z_before = page.input_value("#z0")
    page.mouse.click(box["x"] + 0.8 * box["width"], box["y"] + 0.3 * box["height"])
    quiet(page)
    assert page.input_value("#z0") != z_before


def test_morph_strip_has_one_frame_per_step(page, tmp_path):
    page.fill("#morph-a", "3")
    page.fill("#morph-b", "11")
    page.locator("#morph-steps").fill("9")
    assert page.text_content("#morph-steps-out") == "9"
    page.select_option("#morph-mode", "slerp")
    page.click("#morph-run")
    page.wait_for_function("document.querySelectorAll('#morph-strip img').length === 9")
    page.wait_for_function("[...document.querySelectorAll('#morph-strip img')].every(i => i.complete && i.naturalWidth === 8)")
    srcs = page.eval_on_selector_all("#morph-strip img", "imgs => imgs.map(i => i.src)")
    assert len(set(srcs)) > 1  # the frames differ along the path
    page.screenshot(path=str(tmp_path / "morph.png"), full_page=True)


def test_random_is_disabled_for_a_plain_ae_and_upload_and_arithmetic_work(page, tmp_path):
    assert page.locator("#random").is_disabled()
    assert not page.locator("#label-panel").is_visible()  # no label switch for a model that takes no labels
    assert "no prior" in page.get_attribute("#random", "title")
    assert page.locator("#sample-note").is_visible()
    page.fill("#arith-a", "2")
    page.fill("#arith-b", "0")
    page.fill("#arith-c", "5")
    page.click("#arith-run")
    page.wait_for_function("document.querySelectorAll('#arith-out img').length === 4")
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (24, 24), 0).save(buf, "PNG")
    page.set_input_files("#upload-file", files=[{"name": "black.png", "mimeType": "image/png", "buffer": buf.getvalue()}])
    page.wait_for_function("document.querySelector('#upload-info').textContent.includes('%')")
    assert page.locator("#upload-out img").count() == 2
    quiet(page)
    page.screenshot(path=str(tmp_path / "upload.png"), full_page=True)


def test_label_switch_decodes_one_code_under_every_class(browser, cvae_server, tmp_path):
    """A conditional model: a row of the sliders' code decoded under each class, and a select that re-decodes
    the code under one class (the same picture as that class's place in the row)."""
    page = next(gen := open_page(browser, cvae_server))
    assert page.locator("#label-panel").is_visible()
    page.wait_for_function("document.querySelectorAll('#styles img').length === 10")
    row = page.eval_on_selector_all("#styles img", "imgs => imgs.map(i => i.src)")
    assert len(set(row)) > 1  # the label changes the picture
    v = version(page, "#decoded")
    page.select_option("#label-select", "7")
    page.wait_for_function("v => Number(document.querySelector('#decoded').dataset.version) > v", arg=v)
    quiet(page)
    shown = page.evaluate("""() => { const c = document.querySelector('#decoded'), o = document.createElement('canvas');
        o.width = c.width; o.height = c.height; o.getContext('2d').drawImage(c, 0, 0); return o.toDataURL(); }""")
    a, b = page.evaluate("""async (srcs) => Promise.all(srcs.map(async (src) => { const i = new Image(); i.src = src;
        await i.decode(); const c = new OffscreenCanvas(i.width, i.height); c.getContext('2d').drawImage(i, 0, 0);
        return Array.from(c.getContext('2d').getImageData(0, 0, i.width, i.height).data); }))""",
                         [shown, page.eval_on_selector_all("#styles img", "i => i[7].src")])
    assert len(a) == len(b) == 8 * 8 * 4
    assert max(abs(x - y) for x, y in zip(a, b)) <= 1  # class 7 in the switch is class 7 of the row (PNG rounding)
    page.screenshot(path=str(tmp_path / "styles.png"), full_page=True)
    next(gen, None)  # closes the context and checks the page had no errors

"""Latent explorer latency against a live `aekit serve` (a real subprocess on 127.0.0.1).

For each run folder: startup (cold = no RUN/cache, warm = cached map) as printed by the server ("ready in
X s", measured after the run is loaded) and as seen from outside (spawn -> first /api/info answer, which adds
Python + torch import and loading the run), then the decode round trip request -> PNG:
  * http: a keep-alive httpx client posts a code and decodes the PNG with Pillow;
  * page: Chromium (if installed) runs fetch -> createImageBitmap -> drawImage on a canvas in the page.
Codes are drawn uniformly inside the sliders' ranges. Run it alone (under the shared lock on a shared box):

    flock /tmp/aekit-heavy.lock .venv/bin/python benchmarks/serve_latency.py /tmp/serve-bench/vae /tmp/serve-bench/conv-vae
"""

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def start(run: str, cold: bool) -> tuple[subprocess.Popen, str, float, float]:
    if cold:
        shutil.rmtree(Path(run) / "cache", ignore_errors=True)
    aekit = Path(sys.executable).with_name("aekit")
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(aekit), "serve", run, "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    line = proc.stdout.readline()
    m = re.search(r"ready in ([\d.]+) s: (http://\S+)", line)
    if not m:
        proc.kill()
        raise SystemExit(f"server did not start: {line}{proc.stdout.read()}")
    import httpx

    while True:
        try:
            if httpx.get(m.group(2) + "api/info", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.01)
    return proc, m.group(2), float(m.group(1)), time.perf_counter() - t0


def pct(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "mean_ms": round(float(np.mean(ms)), 2)}


def http_latency(url: str, n: int) -> dict[str, float]:
    import httpx
    from PIL import Image

    info = httpx.get(url + "api/info").json()
    lo, hi = np.array(info["ranges"]["lo"]), np.array(info["ranges"]["hi"])
    rng = np.random.default_rng(0)
    codes = rng.uniform(lo, hi, size=(n + 20, len(lo))).tolist()
    times = []
    with httpx.Client(base_url=url) as client:
        for i, z in enumerate(codes):
            t = time.perf_counter()
            r = client.post("/api/decode", json={"z": z})
            Image.open(io.BytesIO(r.content)).load()
            if i >= 20:  # warm-up excluded
                times.append((time.perf_counter() - t) * 1e3)
            assert r.status_code == 200
    return {**pct(times), "png_bytes": len(r.content)}


PAGE_LOOP = """async ([codes, warm]) => {
    const c = document.createElement('canvas'), ctx = c.getContext('2d'), times = [];
    for (let i = 0; i < codes.length; i++) {
        const t = performance.now();
        const r = await fetch('/api/decode', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                             body: JSON.stringify({z: codes[i]})});
        const bmp = await createImageBitmap(await r.blob());
        c.width = bmp.width; c.height = bmp.height; ctx.drawImage(bmp, 0, 0); bmp.close();
        if (i >= warm) times.push(performance.now() - t);
    }
    return times; }"""


def page_latency(url: str, n: int) -> dict[str, float] | None:
    chromium = shutil.which("chromium")
    if chromium is None:
        return None
    import httpx
    from playwright.sync_api import sync_playwright

    info = httpx.get(url + "api/info").json()
    lo, hi = np.array(info["ranges"]["lo"]), np.array(info["ranges"]["hi"])
    codes = np.random.default_rng(1).uniform(lo, hi, size=(n + 20, len(lo))).tolist()
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=args)
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        times = page.evaluate(PAGE_LOOP, [codes, 20])
        browser.close()
    return pct(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run folders (e.g. an MNIST vae and conv-vae)")
    ap.add_argument("-n", type=int, default=300, help="timed decode requests per run")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    import torch

    results = []
    for run in args.runs:
        row = {"run": run, "model": json.loads((Path(run) / "config.json").read_text())["model"]["name"]}
        for cold in (True, False):
            proc, url, ready, outside = start(run, cold)
            key = "cold" if cold else "warm"
            row[f"startup_{key}_s"] = round(ready, 3)
            row[f"spawn_to_first_answer_{key}_s"] = round(outside, 3)
            if not cold:
                row["http"] = http_latency(url, args.n)
                row["page"] = page_latency(url, args.n)
            proc.terminate()
            proc.wait(10)
        results.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n{os.cpu_count()} CPUs visible, torch {torch.__version__}, {args.n} timed decodes per run\n")
    print("| model | startup cold / warm (s) | spawn → first answer, warm (s) | http p50 / p95 (ms) | page p50 / p95 (ms) |")
    print("|---|---|---|---|---|")
    for r in results:
        page = f"{r['page']['p50_ms']} / {r['page']['p95_ms']}" if r["page"] else "no chromium"
        print(f"| {r['model']} | {r['startup_cold_s']} / {r['startup_warm_s']} | {r['spawn_to_first_answer_warm_s']} "
              f"| {r['http']['p50_ms']} / {r['http']['p95_ms']} | {page} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Encoding throughput (images/s) on 28x28 inputs: the encoders alone, torch vs onnxruntime, then the whole
``aekit encode`` command on the bundled MNIST (70,000 images, written to a memory-mapped .npy).

    .venv/bin/python benchmarks/encode_speed.py --n 60000 --cli

Encoder speed does not depend on the weights, so the first part times freshly built models (the same layers
as a trained run). ``--cli`` trains each model for one epoch on MNIST, then runs ``aekit encode`` with
``--backend torch``, ``onnx`` and ``auto`` and reports the command's own img/s line and its wall time
(process start, imports and data loading included).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from aekit.apply import OnnxEncoder, TorchEncoder, encode_images
from aekit.export import export_onnx
from aekit.registry import build_model


def rate(enc, images, batch_size) -> float:
    list(encode_images(enc, images[:batch_size], batch_size))  # warm up
    t = time.perf_counter()
    for _ in encode_images(enc, images, batch_size):
        pass
    return len(images) / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=60000)
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--models", default="ae,vae,conv-ae")
    p.add_argument("--cli", action="store_true", help="also time `aekit encode` end to end on MNIST")
    a = p.parse_args()
    images = torch.randint(0, 256, (a.n, 1, 28, 28), dtype=torch.uint8)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {a.n} images, batch {a.batch_size}")
    for name in a.models.split(","):
        torch.manual_seed(0)
        m = build_model(name, input_shape=(1, 28, 28), latent_dim=16).eval()
        with tempfile.TemporaryDirectory() as tmp:
            onnx_enc = OnnxEncoder(export_onnx(m, tmp, parts=("encoder",))["encoder"])
            t, o = rate(TorchEncoder(m), images, a.batch_size), rate(onnx_enc, images, a.batch_size)
        print(f"{name:8s} torch {t:>10,.0f} img/s   onnxruntime {o:>10,.0f} img/s", flush=True)
    if a.cli:
        with tempfile.TemporaryDirectory() as tmp:
            for name in a.models.split(","):
                cli_encode(name, Path(tmp))


def cli_encode(name: str, tmp: Path) -> None:
    aekit = [sys.executable, "-m", "aekit"]
    run = tmp / name
    subprocess.run([*aekit, "train", "--model", name, "--dataset", "mnist", "--epochs", "1", "--latent-dim", "16",
                    "--no-progress", "--out", str(run)], check=True, capture_output=True)
    for backend in ("torch", "onnx", "auto"):
        t = time.perf_counter()
        r = subprocess.run([*aekit, "encode", str(run), "--split", "all", "--backend", backend, "--no-progress",
                            "--out", str(tmp / f"{name}-{backend}.npy")], check=True, capture_output=True, text=True)
        wall = time.perf_counter() - t
        m = re.search(r"with (\w+) \(([\d,]+) img/s\)", r.stdout)
        print(f"aekit encode {name:8s} --backend {backend:5s} -> {m.group(1):5s} {m.group(2):>9s} img/s  "
              f"(70,000 images; command wall {wall:.1f} s)", flush=True)


if __name__ == "__main__":
    main()

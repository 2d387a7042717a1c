"""Encoding throughput (images/s) of untrained-but-real aekit models on 28x28 inputs, torch vs onnxruntime.

    flock /tmp/aekit-heavy.lock .venv/bin/python benchmarks/encode_speed.py --n 60000

Speed does not depend on the weights, so freshly built models are timed (same layers as a trained run).
"""

from __future__ import annotations

import argparse
import tempfile
import time

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


if __name__ == "__main__":
    main()

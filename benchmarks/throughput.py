"""Training throughput: aekit's Lightning trainer against a bare PyTorch loop on the same net and data.

    python benchmarks/throughput.py [--epochs 3] [--samples 50000] [--conv]

The MLP VAE is 784-512-16 (batch 128, Adam 1e-3), both paths in one process on the same MNIST training
images. The bare loop holds the float images in memory and gathers one batch per index slice; aekit holds
uint8 and converts per batch (its real data path). Images/s count training epochs only (aekit's epoch time
comes from metrics.csv, which measures the training epoch; no validation split is used). The first epoch of
each path is a warm-up and is dropped. ``--conv`` also times conv-ae (32,64,64,64 filters) with
``--precision bf16-mixed`` against the same bare loop in fp32.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

import aekit
from aekit.data import load_data, to_float
from aekit.train import TrainConfig


def bare_epochs(model, x: torch.Tensor, epochs: int, batch_size: int = 128, autocast: bool = False) -> list[float]:
    """The loop a PyTorch user would write: shuffle, slice, forward, backward, step. Seconds per epoch."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    times = []
    for epoch in range(epochs):
        g = torch.Generator().manual_seed(epoch)
        perm = torch.randperm(len(x), generator=g)
        t0 = time.perf_counter()
        for i in range(0, len(x), batch_size):
            xb = x[perm[i : i + batch_size]]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = model(xb).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    return times


def aekit_epochs(model, data, epochs: int | TrainConfig, precision: str = "32", progress: bool = False) -> list[float]:
    """Seconds of each epoch of aekit's engine (a TrainConfig, or the epochs of this benchmark's settings)."""
    cfg = epochs if isinstance(epochs, TrainConfig) else TrainConfig(
        epochs=epochs, batch_size=128, lr=1e-3, patience=0, precision=precision, progress=progress)
    with tempfile.TemporaryDirectory() as tmp:
        run = aekit.fit(model, data, cfg, out=f"{tmp}/run")
        return [r["seconds"] for r in run.metrics()]


def rate(n: int, times: list[float]) -> float:
    return n / statistics.median(times[1:] if len(times) > 1 else times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--samples", type=int, default=50000)
    ap.add_argument("--conv", action="store_true", help="also time conv-ae with bf16-mixed")
    ap.add_argument("--progress", action="store_true", help="aekit with its progress bar on")
    args = ap.parse_args()

    data = load_data("mnist", val_fraction=0.0, max_train_samples=args.samples)
    x = to_float(data.split("train")[0])  # (N, 1, 28, 28) float32, in memory
    n = len(x)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {n} training images, batch 128")

    def build(name, **kw):
        torch.manual_seed(0)
        return aekit.build_model(name, input_shape=(1, 28, 28), latent_dim=16, **kw)

    vae = dict(hidden_dims=(512,))
    # interleave the two paths so a busy machine slows both alike
    bare1 = bare_epochs(build("vae", **vae), x, args.epochs)
    ours = aekit_epochs(build("vae", **vae), data, args.epochs, progress=args.progress)
    bare2 = bare_epochs(build("vae", **vae), x, args.epochs)
    b = max(rate(n, bare1), rate(n, bare2))
    a = rate(n, ours)
    print(f"MLP VAE 784-512-16: bare loop {b:,.0f} img/s | aekit {a:,.0f} img/s | ratio {a / b:.2f}")

    if args.conv:
        bare = bare_epochs(build("conv-ae"), x, max(2, args.epochs - 1))
        bf16 = aekit_epochs(build("conv-ae"), data, max(2, args.epochs - 1), precision="bf16-mixed", progress=args.progress)
        fp32 = aekit_epochs(build("conv-ae"), data, max(2, args.epochs - 1), precision="32", progress=args.progress)
        b, a16, a32 = rate(n, bare), rate(n, bf16), rate(n, fp32)
        print(f"conv-ae: bare fp32 {b:,.0f} img/s | aekit fp32 {a32:,.0f} img/s ({a32 / b:.2f}x) | "
              f"aekit bf16-mixed {a16:,.0f} img/s ({a16 / b:.2f}x)")


if __name__ == "__main__":
    main()

"""Training throughput: aekit's engine against the minimal loop a PyTorch user writes, on the same MNIST images.

    python benchmarks/throughput.py [--repeats 5] [--epochs 2] [--samples 50000] [--threads 1] [--conv]

The arms (``--arms``; by default all but ``module``), 784-512-16 MLP VAE, batch 128, Adam 1e-3, run one after
the other in each round (A/B/C, then C/B/A) so a busy machine slows them alike, one process,
``torch.set_num_threads`` fixed:

- ``minimal``: a plain ``nn.Module`` with the same layers (Linear 784-512, ReLU, Linear 512-32; 16-512-784),
  the loss written inline (BCE with logits summed per image + analytic KL, mean over the batch), plain
  ``torch.optim.Adam``, float images in memory, one ``randperm`` shuffle per epoch. No diagnostics, no checkpoints:
  what a careful PyTorch user writes, and the figure the engine is held to (issue 16: >= 0.95x).
- ``minimal-fused``: the same with ``Adam(fused=True)``, the optimizer aekit uses: the like-for-like baseline
  (what is left between it and ``aekit`` is the engine and the diagnostics).
- ``module``: the ``minimal-fused`` loop over aekit's own ``vae`` module (its ``Output``: terms, and stats on
  every ``STATS_EVERY``-th batch as the engine asks for them). Its gap to ``minimal-fused`` is what the model's
  loss and diagnostics cost; the gap from it to ``aekit`` is the engine's.
- ``module-all-stats``: the same with the diagnostics computed on every batch (as before issue 16): its gap to
  ``module`` is what computing them every step would cost.
- ``aekit``: ``aekit.fit`` with the CLI's defaults (progress bar and epoch lines on, last.ckpt and best.ckpt
  written every epoch, metrics.csv), no validation split. Its epoch is timed from one epoch's start to the
  next's (the last: to the end of training), so checkpoint writes and the CSV count.

Each arm's first epoch is a warm-up and is dropped. Every epoch is timed twice: wall clock, and the process's
CPU time (``time.process_time``), which on a shared machine leaves out the time other jobs held the cores (with
one torch thread it is the work done; it also leaves out waits such as fsync, which the wall clock keeps). The
figure is the median over rounds of each round's ratio (the arms of a round ran back to back, so a load that
changes between rounds cancels). ``--conv`` also times conv-ae in fp32 and bf16-mixed against the module loop
(see docs/benchmarks.md, Precision).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time

import torch
from torch import nn
from torch.nn import functional as F

import aekit
from aekit.data import load_data, to_float
from aekit.train import TrainConfig
from aekit.train.module import STATS_EVERY


class MinimalVAE(nn.Module):
    """The user's own VAE (pytorch/examples vae/main.py, at 784-512-16): the same layers as aekit's ``vae``."""

    def __init__(self, d_in: int = 784, hidden: int = 512, latent: int = 16) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent))
        self.dec = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, d_in))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)  # (B, 784)
        mu, logvar = self.enc(x).chunk(2, dim=1)  # (B, 16) each
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        logits = self.dec(z)  # (B, 784)
        bce = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())  # Kingma & Welling 2014, appendix B
        return (bce + kl) / x.shape[0]  # nats per image


def clock() -> tuple[float, float]:
    """(wall, CPU) seconds now."""
    return time.perf_counter(), time.process_time()


def minimal_epochs(x: torch.Tensor, epochs: int, batch_size: int = 128, fused: bool = False) -> list[tuple[float, float]]:
    """(wall, CPU) seconds per epoch of the minimal user loop (the epoch's loss sum stays a tensor, never synced).
    ``fused``: Adam's fused kernel, which aekit uses (``models.base.adam``); off, torch's default Adam."""
    torch.manual_seed(0)
    model = MinimalVAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused)
    times = []
    for _ in range(epochs):
        w0, c0 = clock()
        total = torch.zeros(())
        for idx in torch.randperm(len(x)).split(batch_size):
            loss = model(x[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach()
        w1, c1 = clock()
        times.append((w1 - w0, c1 - c0))
    return times


def bare_epochs(model, x: torch.Tensor, epochs: int, batch_size: int = 128, autocast: bool = False,
                cpu: bool = False, fused: bool = False, stats_every: int = 1) -> list:
    """The user loop over an aekit module: shuffle, slice, forward (its Output), backward, step. Seconds per epoch
    (with ``cpu``: (wall, CPU) seconds). ``fused``: Adam's fused kernel, as aekit's engine uses; ``stats_every``:
    the model computes its diagnostics on every such batch only (``Trainable.diagnose``), as in the engine."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused)
    model.train()
    times = []
    for epoch in range(epochs):
        g = torch.Generator().manual_seed(epoch)
        perm = torch.randperm(len(x), generator=g)
        w0, c0 = clock()
        for i in range(0, len(x), batch_size):
            xb = x[perm[i : i + batch_size]]
            model.diagnose = (i // batch_size) % stats_every == 0
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = model(xb).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        w1, c1 = clock()
        times.append((w1 - w0, c1 - c0) if cpu else w1 - w0)
    return times


@contextlib.contextmanager
def epoch_clock(marks: list[float]):
    """Record when each training epoch starts and when training ends (LitAutoencoder's hooks, wrapped for the
    benchmark only): epoch k lasts from its start to epoch k+1's, checkpoint writes and metrics.csv included."""
    from aekit.train.module import LitAutoencoder

    start, end = LitAutoencoder.on_train_epoch_start, LitAutoencoder.on_train_end

    def on_start(self):
        marks.append(clock())
        start(self)

    def on_end(self):
        end(self)
        marks.append(clock())

    LitAutoencoder.on_train_epoch_start, LitAutoencoder.on_train_end = on_start, on_end
    try:
        yield marks
    finally:
        LitAutoencoder.on_train_epoch_start, LitAutoencoder.on_train_end = start, end


def aekit_epochs(model, data, epochs: int | TrainConfig, precision: str = "32", progress: bool = False,
                 whole: bool = False) -> list[float]:
    """Seconds of each epoch of aekit's engine (a TrainConfig, or the epochs of this benchmark's settings): the
    training epoch as metrics.csv's ``seconds`` has it, or with ``whole`` (wall, CPU) seconds from one epoch's
    start to the next's (checkpoint writes and metrics.csv included)."""
    cfg = epochs if isinstance(epochs, TrainConfig) else TrainConfig(
        epochs=epochs, batch_size=128, lr=1e-3, patience=0, precision=precision, progress=progress, schedule="none")
    with tempfile.TemporaryDirectory() as tmp, epoch_clock([]) as marks:
        run = aekit.fit(model, data, cfg, out=f"{tmp}/run")
    if whole:
        return [(b[0] - a[0], b[1] - a[1]) for a, b in zip(marks, marks[1:])]
    return [r["seconds"] for r in run.metrics()]


def rate(n: int, times: list[float]) -> float:
    return n / statistics.median(times[1:] if len(times) > 1 else times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="rounds of the arms, alternating which goes first")
    ap.add_argument("--epochs", type=int, default=2, help="epochs per arm and round (the first is dropped)")
    ap.add_argument("--samples", type=int, default=50000)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (fixed for every arm)")
    ap.add_argument("--no-progress", action="store_true", help="aekit with its progress bar and epoch lines off")
    ap.add_argument("--arms", default="minimal,minimal-fused,aekit",
                    help="comma-separated, of minimal, minimal-fused, module, module-all-stats, aekit")
    ap.add_argument("--conv", action="store_true", help="also time conv-ae with bf16-mixed")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    data = load_data("mnist", val_fraction=0.0, max_train_samples=args.samples)
    x = to_float(data.split("train")[0])  # (N, 1, 28, 28) float32, in memory
    n = len(x)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {n} training images, batch 128, "
          f"{args.repeats} rounds x {args.epochs} epochs per arm (first dropped)", flush=True)

    def build(name, **kw):
        torch.manual_seed(0)
        if name == "vae":  # the minimal loop's net (784-512-16 ReLU), not the vae preset's 1024-512 GELU default
            kw = {"hidden_dims": (512,), "activation": "relu", **kw}
        return aekit.build_model(name, input_shape=(1, 28, 28), latent_dim=16, **kw)

    progress = not args.no_progress
    arms = {
        "minimal": lambda: minimal_epochs(x, args.epochs),
        "minimal-fused": lambda: minimal_epochs(x, args.epochs, fused=True),
        "module": lambda: bare_epochs(build("vae"), x, args.epochs, cpu=True, fused=True, stats_every=STATS_EVERY),
        "module-all-stats": lambda: bare_epochs(build("vae"), x, args.epochs, cpu=True, fused=True, stats_every=1),
        "aekit": lambda: aekit_epochs(build("vae"), data, TrainConfig(
            epochs=args.epochs, batch_size=128, lr=1e-3, patience=0, precision="32", progress=progress,
            log_epochs=progress, schedule="none"), whole=True),
    }
    chosen = [a for a in args.arms.split(",") if a]
    baselines = [b for b in ("minimal", "minimal-fused", "module", "module-all-stats") if b in chosen and "aekit" in chosen]
    rows: list[dict[str, tuple[float, float]]] = []
    for r in range(args.repeats):
        this = {}
        for arm in chosen if r % 2 == 0 else chosen[::-1]:  # A/B, then B/A: neither goes first every time
            times = arms[arm]()[1:]  # the first epoch is a warm-up
            this[arm] = (statistics.median(t[0] for t in times), statistics.median(t[1] for t in times))
        rows.append(this)
        print(f"round {r}: " + ", ".join(f"{a} {this[a][0]:.3f} s wall / {this[a][1]:.3f} s CPU" for a in chosen)
              + "".join(f"; aekit speed vs {b}: wall {this[b][0] / this['aekit'][0]:.3f}x, CPU {this[b][1] / this['aekit'][1]:.3f}x"
                        for b in baselines), flush=True)
    for a in chosen:
        wall, cpu = statistics.median(r[a][0] for r in rows), statistics.median(r[a][1] for r in rows)
        print(f"{a}: median epoch {wall:.3f} s wall ({n / wall:,.0f} img/s), {cpu:.3f} s CPU")
    for b in baselines:
        w = statistics.median(r[b][0] / r["aekit"][0] for r in rows)
        c = statistics.median(r[b][1] / r["aekit"][1] for r in rows)
        print(f"aekit against {b} (median of the rounds' ratios, >1: aekit faster): wall {w:.3f}x, CPU {c:.3f}x")

    if args.conv:
        bare = bare_epochs(build("conv-ae"), x, max(2, args.epochs - 1))
        bf16 = aekit_epochs(build("conv-ae"), data, max(2, args.epochs - 1), precision="bf16-mixed")
        fp32 = aekit_epochs(build("conv-ae"), data, max(2, args.epochs - 1), precision="32")
        b, a16, a32 = rate(n, bare), rate(n, bf16), rate(n, fp32)
        print(f"conv-ae: bare fp32 {b:,.0f} img/s | aekit fp32 {a32:,.0f} img/s ({a32 / b:.2f}x) | "
              f"aekit bf16-mixed {a16:,.0f} img/s ({a16 / b:.2f}x)")


if __name__ == "__main__":
    main()

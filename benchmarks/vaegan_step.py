"""VAE-GAN step cost: aekit's engine (LitAutoencoder + Lightning Trainer, three optimizers through the recipe
hook) against a bare PyTorch loop of the same three nets, optimizers and data, in one process.

    python benchmarks/vaegan_step.py [--epochs 3] [--samples 10000] [--latent-dim 16]

Both paths run the model's own ``training_step`` (the same losses, equilibrium rule and three Adam optimizers
from ``make_optimizers``); the bare loop's ``step`` is what a PyTorch user writes: zero the optimizer's
gradients, back-propagate into its parameters, step. aekit adds Lightning's manual-optimisation plumbing, its
uint8 batch loader and the per-epoch bookkeeping. Images/s count training epochs only (aekit's epoch time is the
``seconds`` column of metrics.csv; no validation split); each path's first epoch is a warm-up and is dropped, and
the bare loop runs before and after aekit so that a busy machine slows both alike.
"""

from __future__ import annotations

import argparse
import time

import torch

import aekit
from aekit.data import load_data, to_float
from aekit.train import TrainConfig
from throughput import aekit_epochs, rate  # the same timing as the single-optimizer benchmark (same folder)


def bare_epochs(model, x: torch.Tensor, cfg: TrainConfig, epochs: int) -> list[float]:
    """Shuffle, slice, and the model's three-optimizer step with plain autograd. Seconds per epoch."""
    opts = model.make_optimizers(cfg)
    params = {name: [p for g in o.param_groups for p in g["params"]] for name, o in opts.items()}

    def step(name: str, loss: torch.Tensor, retain_graph: bool = False) -> None:
        opts[name].zero_grad(set_to_none=True)
        loss.backward(retain_graph=retain_graph, inputs=params[name])
        opts[name].step()

    model.train()
    y = torch.zeros(cfg.batch_size, dtype=torch.long)
    times = []
    for epoch in range(epochs):
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
        t0 = time.perf_counter()
        for i in range(0, len(x), cfg.batch_size):
            model.training_step(x[perm[i : i + cfg.batch_size]], y, step)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--samples", type=int, default=10000)
    ap.add_argument("--latent-dim", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args()

    data = load_data("mnist", val_fraction=0.0, max_train_samples=args.samples)
    x = to_float(data.split("train")[0])  # (N, 1, 28, 28) float32, in memory
    n = len(x)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, patience=0, progress=False)

    def build():
        torch.manual_seed(0)
        return aekit.build_model("vae-gan", input_shape=data.shape, latent_dim=args.latent_dim)

    sizes = {name: sum(p.numel() for g in o.param_groups for p in g["params"]) for name, o in build().make_optimizers(cfg).items()}
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {n} MNIST training images, batch {cfg.batch_size}; "
          f"vae-gan latent {args.latent_dim}, parameters {sizes}")
    bare1 = bare_epochs(build(), x, cfg, args.epochs)
    ours = aekit_epochs(build(), data, cfg)
    bare2 = bare_epochs(build(), x, cfg, args.epochs)
    b, a = max(rate(n, bare1), rate(n, bare2)), rate(n, ours)
    steps = -(-n // cfg.batch_size)
    print(f"vae-gan (3 optimizers): bare loop {b:,.0f} img/s ({n / b / steps * 1000:.0f} ms/step) | "
          f"aekit {a:,.0f} img/s ({n / a / steps * 1000:.0f} ms/step) | ratio {a / b:.2f}")


if __name__ == "__main__":
    main()

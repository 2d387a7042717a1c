"""How fast the IWAE NLL evaluates, and what bf16 would change: the arms score the same images with the same
seeded draws, one after the other in one process.

    python benchmarks/iwae_eval.py RUN [--k 5000] [--n 200] [--threads 2] [--arms old,fp32,bf16]

``RUN`` is a VAE run folder (a Bernoulli decoder: loss bce); its test split is binarised as `aekit evaluate
--binarize static` does. The arms:

- ``old``: the code before issue 16's change: the k draws' targets expanded to (k*B, C, H, W) copies and
  ``binary_cross_entropy_with_logits``, chunks of 2**25 logits (128 MB in fp32), batches of 500 images.
- ``fp32``: aekit's :func:`aekit.evaluate.basic.iwae_nll` as it is (broadcast targets, ``x l - softplus(l)``,
  model calls of ``IWAE_CHUNK_ELEMENTS`` logits, at least ``MIN_DRAWS`` draws per image and call so the encoder
  runs rarely: without the image groups, 2**20 logits per call for a batch of 500 images is 2 draws per call,
  and the encoder's share made the whole 1.5x slower).
- ``bf16``: the same under ``torch.autocast("cpu", bfloat16)``: the decoder's matmuls in bf16, the likelihood in
  fp32. Its NLL is compared with fp32's on the same draws (issue 16: bf16 only where within 0.05 nats).
- ``chunk=N``: fp32 with chunks of N logits (to pick ``IWAE_CHUNK_ELEMENTS``).
- ``raw``: fp32 on the raw weights of a run trained with ``--weight-ema``: the run's model is the moving
  average, and ``checkpoints/last.ckpt`` keeps the weights the optimizer left (``current_model_state``).

Prints seconds per image, the projected time for the 10,000-image test set, and the NLL of each arm.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time

import torch
from torch.nn import functional as F


def old_weights(model, x, k, generator):
    """log p(x, z_k) - log q(z_k|x), (k, B), as the code before the change computed it (the 'old' arm)."""
    from aekit.models.vae import LOG_2PI

    mu, logvar = model.posterior(x)
    std = torch.exp(0.5 * logvar)
    eps = torch.randn((k, *mu.shape), generator=generator, dtype=mu.dtype)
    z = mu + eps * std
    logits = model.decode_logits(z.flatten(0, 1))  # (k*B, C, H, W)
    tgt = x.unsqueeze(0).expand(k, *x.shape).flatten(0, 1)  # k copies of the images
    log_px_z = -F.binary_cross_entropy_with_logits(logits, tgt, reduction="none").flatten(1).sum(1).view(k, -1)
    log_qz = -0.5 * (eps.pow(2) + LOG_2PI + logvar).sum(-1)
    return log_px_z + model.log_prior(z) - log_qz


@torch.no_grad()
def old_nll(model, x, k, generator, max_elements=2**25):
    from aekit.evaluate.basic import log_mean_exp

    chunk = max(1, min(k, max_elements // (x[0].numel() * x.shape[0])))
    parts, done = [], 0
    while done < k:
        c = min(chunk, k - done)
        parts.append(old_weights(model, x, c, generator))
        done += c
    return -log_mean_exp(torch.cat(parts, 0), dim=0)


def score(arm: str, model, images: torch.Tensor, k: int, seed: int) -> tuple[float, float]:
    """(mean NLL, seconds) of one arm over the images, batches of 500 as `aekit evaluate` uses for K = 5000."""
    from aekit.evaluate.basic import iwae_nll

    g = torch.Generator().manual_seed(seed)
    total, t0 = 0.0, time.perf_counter()
    for start in range(0, len(images), 500):
        x = images[start : start + 500]
        if arm == "old":
            nll = old_nll(model, x, k, g)
        elif arm.startswith("chunk="):
            nll = iwae_nll(model, x, k, generator=g, max_elements=int(arm.split("=")[1]))
        else:
            ctx = torch.autocast("cpu", dtype=torch.bfloat16) if arm == "bf16" else contextlib.nullcontext()
            with ctx:
                nll = iwae_nll(model, x, k, generator=g)
        total += nll.double().sum().item()
    return total / len(images), time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a VAE run folder (loss bce)")
    p.add_argument("--k", type=int, default=5000, help="importance samples (default 5000)")
    p.add_argument("--n", type=int, default=200, help="first N test images (default 200)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--arms", default="old,fp32,bf16", help="comma list: old, fp32, bf16, chunk=N, raw")
    p.add_argument("--out", default=None, help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from aekit.data import to_float
    from aekit.train import load_run

    run = load_run(args.run)
    model = run.model.eval()
    images, _ = run.data().split("test")
    gb = torch.Generator().manual_seed(0 + 7919)  # the same draw as `aekit evaluate --binarize static --seed 0`
    images = (torch.rand(images.shape, generator=gb) < to_float(images)).float()[: args.n]
    rows = {}
    for arm in args.arms.split(","):
        if arm == "raw":  # the optimizer's own weights, beside the moving average the run kept
            import copy
            from pathlib import Path

            ck = torch.load(Path(args.run) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
            if "current_model_state" not in ck:
                p.error(f"--arms raw: {args.run} was not trained with --weight-ema (last.ckpt holds one set of weights)")
            state = ck["current_model_state"]  # last.ckpt's: the run's model when it has no validation split
            raw = copy.deepcopy(model)
            raw.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})
            nll, secs = score("fp32", raw.eval(), images, args.k, seed=0)
        else:
            nll, secs = score(arm, model, images, args.k, seed=0)
        rows[arm] = {"nll": nll, "seconds": secs, "s_per_image": secs / len(images),
                     "projected_10k_min": secs / len(images) * 10_000 / 60}
        print(f"{arm:>14}: NLL {nll:.4f}  {secs:.1f} s  {secs / len(images):.4f} s/image  "
              f"-> {rows[arm]['projected_10k_min']:.1f} min for 10,000", flush=True)
    if "fp32" in rows:
        for arm, row in rows.items():
            print(f"{arm} - fp32: {row['nll'] - rows['fp32']['nll']:+.4f} nats, "
                  f"{rows[arm]['seconds'] / rows['fp32']['seconds']:.2f}x the time")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"run": args.run, "k": args.k, "n": len(images), "threads": args.threads, "arms": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

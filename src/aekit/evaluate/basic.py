"""First-cut evaluation: reconstruction metrics for every model, ELBO and the IWAE bound for VAEs."""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from ..errors import ConfigError


def psnr_per_image(x_hat: torch.Tensor, x: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR in dB of each image: 10 log10(range^2 / MSE); (B,)."""
    mse = (x_hat - x).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return 10.0 * torch.log10(data_range**2 / mse)


def log_mean_exp(a: torch.Tensor, dim: int = 0) -> torch.Tensor:
    return torch.logsumexp(a, dim=dim) - math.log(a.shape[dim])


# Logits per model call: small enough that a call's logits (4 MB in fp32) stay in this CPU's cache between the
# decoder's last matmul and the likelihood's passes over them, large enough for efficient matmuls (~1,300 rows
# for MNIST). At least MIN_DRAWS draws per call, so the encoder, which each call runs once per image, costs at
# most 1/MIN_DRAWS of the decoder. Measured with benchmarks/iwae_eval.py (docs/benchmarks.md).
IWAE_CHUNK_ELEMENTS = 2**20
MIN_DRAWS = 64


@torch.no_grad()
def iwae_nll(model, x: torch.Tensor, k: int, generator: torch.Generator | None = None,
             max_elements: int = IWAE_CHUNK_ELEMENTS) -> torch.Tensor:
    """-log p(x) estimated with k importance samples (Burda et al. 2016), per image (B,), in nats.

    The images go in groups, each group's k draws in chunks of about ``max_elements`` logits per model call;
    every draw's log-weight is kept, (k, group), so memory stays bounded for k = 5000 and the log-mean-exp is
    exact."""
    rows = max(1, max_elements // max(x[0].numel(), 1))  # decodes per call
    draws = min(k, max(MIN_DRAWS, rows // len(x)))  # draws per call
    group = max(1, rows // draws)  # images per call
    nll = []
    for start in range(0, len(x), group):
        xs = x[start : start + group]
        parts, done = [], 0
        while done < k:
            c = min(draws, k - done)
            parts.append(model.log_importance_weights(xs, c, generator=generator))  # (c, group)
            done += c
        nll.append(-log_mean_exp(torch.cat(parts, 0), dim=0))
    return torch.cat(nll)


@torch.no_grad()
def evaluate(model, data, split: str = "test", *, iwae_samples: int = 0, batch_size: int = 500, binarize: str = "none",
             seed: int = 0, max_samples: int | None = None, on_batch=None) -> dict[str, float]:
    """Metrics over a split: per-pixel ``mse``, ``bce`` (nats/image), ``psnr`` (dB, mean over images), the
    model's loss terms and stats, among them a VAE's ELBO (one-sample estimate) from the same forward pass
    as in training, so it has the name and the value metrics.csv gives it (``elbo``: Bernoulli, loss bce;
    ``elbo_gaussian``: loss mse, :meth:`aekit.models.vae.VAE.bound`) and, with ``iwae_samples`` = K > 0,
    ``nll_iwae``. ``binarize="static"`` scores a seeded Bernoulli draw of the data (for likelihood numbers).
    ``on_batch(done, total)`` is called after each batch (images scored so far, images in all): progress."""
    from ..data import to_float

    if iwae_samples < 0:
        raise ConfigError(f"--iwae-samples must be >= 0, got {iwae_samples}")
    images, labels = data.split(split)
    if binarize != "none":
        # One seeded Bernoulli draw of the whole split, made before any slicing or sampling, so an image gets
        # the same binary version whatever max_samples, batch_size or K are (comparable across calls).
        gb = torch.Generator().manual_seed(seed + 7919)
        images = (torch.rand(images.shape, generator=gb) < to_float(images)).to(torch.uint8) * 255
    if max_samples is not None:
        images, labels = images[:max_samples], labels[:max_samples]
    if len(images) == 0:
        raise ConfigError(f"split {split!r} is empty")
    model.eval()
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    is_vae = model.skip_reason("likelihood") is None
    if iwae_samples and not is_vae:
        raise ConfigError(f"--iwae-samples needs a VAE; {model.name!r} has no likelihood")
    sums: dict[str, float] = {}
    n = 0
    for start in range(0, len(images), batch_size):
        x = to_float(images[start : start + batch_size]).to(device)
        torch.manual_seed(seed + start)  # the forward pass of a VAE samples z: keep the numbers repeatable
        out = model.forward_batch(x, labels[start : start + batch_size].to(device))  # a conditional model gets labels
        logits = model.decode_logits(model.encode(x))
        x_hat = torch.sigmoid(logits)
        b = x.shape[0]
        vals = {
            "mse": (x_hat - x).pow(2).flatten(1).mean(1).sum().item(),
            "bce": F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1).sum().item(),
            "psnr": psnr_per_image(x_hat, x).sum().item(),
            "loss": out.loss.item() * b,
        }
        for key, t in out.terms.items():  # the parts of the loss ...
            vals[f"loss_{key}"] = float(t) * b
        for key, t in out.stats.items():  # ... and the model's own diagnostics, under their names
            if key not in vals and key != "mse":
                vals[key] = float(t) * b
        if iwae_samples:  # named after the likelihood, like the ELBO: nll_iwae (Bernoulli), nll_iwae_gaussian
            vals[model.nll_key] = iwae_nll(model, x, iwae_samples, generator=g).sum().item()
        for key, v in vals.items():
            sums[key] = sums.get(key, 0.0) + v
        n += b
        if on_batch is not None:
            on_batch(n, len(images))
    result = {k: v / n for k, v in sums.items()}
    result["n"] = n
    if iwae_samples:
        result["iwae_samples"] = iwae_samples
    return result

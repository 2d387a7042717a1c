"""Collapse to the mean image: a run whose reconstructions are all (nearly) the same picture.

An autoencoder that has not yet learned to use its code (too few steps, too large a batch, too small a learning
rate) outputs the data's mean image for every input: the loss is already far below a random net's, so the curve
looks fine, but the reconstructions carry nothing of the input. The spread ratio says it in one number: the
mean over pixels of the std across images of the reconstructions, over the same for the inputs (1: as varied as
the data; ~0: one image for all).
"""

from __future__ import annotations

import torch

N_IMAGES = 256  # enough for a stable std per pixel (its relative error ~ 1/sqrt(2N) = 4%), cheap at the end of a run
# Below this the reconstructions vary less than a fifth as much as the inputs. Measured on MNIST (val, seed 0):
# healthy runs 0.44-0.70 (deep-ae/ae/vae/dae 5 epochs on 10k images: 0.54/0.54/0.47/0.67; the Habr conv AE, batch
# 128, 5 epochs on 3k: 0.70; ae-16 2 epochs on 4.5k: 0.44); collapsed ones 0.00-0.12 (lr 3, every ReLU dead: 0.000;
# that conv AE after 1 epoch, val MSE 0.09 = the mean image's: 0.113; ae after 8 steps: 0.088; lr 1e-6: 0.116).
THRESHOLD = 0.2


@torch.no_grad()
def spread_ratio(model, images: torch.Tensor, batch_size: int = 256) -> float | None:
    """std-across-images of reconstructions / of ``images`` (uint8 or float model input), each averaged over
    pixels; None when it says nothing (fewer than two images, or inputs that are all the same)."""
    from ..data import to_float

    if len(images) < 2:
        return None
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    xs, recons = [], []
    for start in range(0, len(images), batch_size):
        x = to_float(images[start : start + batch_size]).to(device)  # (B, C, H, W)
        recons.append(torch.sigmoid(model.decode_logits(model.encode(x))).float().cpu())  # (B, C, H, W)
        xs.append(x.float().cpu())
    model.train(was_training)
    x, x_hat = torch.cat(xs), torch.cat(recons)  # (N, C, H, W)
    spread_in = x.std(0).mean().item()  # std over images, then mean over pixels
    if spread_in <= 1e-8:
        return None
    return x_hat.std(0).mean().item() / spread_in


def spaced(x, n: int = N_IMAGES):
    """Up to ``n`` rows of ``x`` evenly spaced through it (class-ordered data still gives every class)."""
    return x if len(x) <= n else x[torch.linspace(0, len(x) - 1, n).round().long()]


def split_ratio(model, data, split: str) -> float | None:
    """:func:`spread_ratio` on up to N_IMAGES images spread through ``data``'s ``split`` (None if it is empty)."""
    idx = data.splits.get(split)
    if idx is None or len(idx) < 2:
        return None
    return spread_ratio(model, data.images[spaced(idx)])


def warning(ratio: float | None) -> str | None:
    """The one-line warning for a collapsed run, or None."""
    if ratio is None or ratio >= THRESHOLD:
        return None
    return (f"aekit: warning: the reconstructions have collapsed towards one image (spread ratio {ratio:.3f}: they "
            f"vary {ratio:.0%} as much as the inputs; healthy runs measure 0.4-0.7); try more --epochs, a smaller "
            "--batch-size or another --lr")

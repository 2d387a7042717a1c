"""Walks through the latent space: interpolation, arithmetic, traversals, the decoded grid, denoising.

Pure functions: codes and images in, numpy arrays and numbers out. Codes are flattened (``model.code_size``
numbers; a spatial (D, h, w) code is decoded in its own shape). Interpolation and arithmetic take any code,
best the continuous ``encode_pre`` one (a discrete model's ``decode`` snaps it to the codebook); the decoded
grid and the traversals sweep single dimensions of a flat code.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError
from .latent import as_unit, decode_all

MODES = ("linear", "slerp")


def _code(z, d: int, name: str) -> np.ndarray:
    """One code flattened to (d,)."""
    z = np.asarray(z, dtype=np.float32).reshape(-1)
    if z.shape != (d,):
        raise ConfigError(f"{name} must be a code of {d} numbers, got shape {np.shape(z)}")
    return z


def interpolate(model, z_a, z_b, steps: int = 10, mode: str = "linear") -> tuple[np.ndarray, np.ndarray]:
    """Codes (steps, code_size) from z_a to z_b and their images (steps, C, H, W). "slerp" follows the great
    circle (White 2016, "Sampling generative networks"), which keeps the norm typical of a Gaussian prior."""
    d = model.code_size
    a, b = _code(z_a, d, "z_a"), _code(z_b, d, "z_b")
    if mode not in MODES:
        raise ConfigError(f"unknown interpolation mode {mode!r}; use linear or slerp")
    if steps < 2:
        raise ConfigError(f"interpolation needs --steps >= 2, got {steps}")
    t = np.linspace(0.0, 1.0, steps, dtype=np.float64)[:, None]  # (S, 1)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    na, nb = np.linalg.norm(a64), np.linalg.norm(b64)
    omega = np.arccos(np.clip(a64 @ b64 / (na * nb), -1.0, 1.0)) if na > 0 and nb > 0 else 0.0
    if mode == "slerp" and np.sin(omega) > 1e-6:
        codes = (np.sin((1 - t) * omega) * a64 + np.sin(t * omega) * b64) / np.sin(omega)  # (S, D)
    else:  # linear, or slerp between (anti)parallel codes where it is undefined
        codes = (1 - t) * a64 + t * b64
    codes = codes.astype(np.float32)
    codes[0], codes[-1] = a, b  # exact ends, not (1-0)*a + 0*b rounding
    return codes, decode_all(model, codes)


def arithmetic(model, z_a, z_b, z_c) -> tuple[np.ndarray, np.ndarray]:
    """z = z_a - z_b + z_c (code_size,) and its image (C, H, W): "a is to b as ? is to c"."""
    return combine(model, [z_a, z_b, z_c], [1.0, -1.0, 1.0])


def combine(model, codes, weights) -> tuple[np.ndarray, np.ndarray]:
    """z = sum_i weights[i] * codes[i] (code_size,) and its image (C, H, W): any signed combination of codes,
    e.g. "smile - neutral + face" or the whiskers experiment's "cat - whiskers"."""
    d = model.code_size
    if len(codes) != len(weights) or not len(codes):
        raise ConfigError(f"a combination needs one weight per code, got {len(codes)} codes and {len(weights)} weights")
    z = sum(float(w) * _code(c, d, f"term {i + 1}") for i, (c, w) in enumerate(zip(codes, weights)))
    return z.astype(np.float32), decode_all(model, z[None].astype(np.float32))[0]


def parse_expr(text: str) -> list[tuple[float, str]]:
    """'a - b + c'-style text -> [(weight, term)]: terms joined by + and -, each ``[NUMBER*]TERM`` where TERM is
    an image number of the split (``12``) or a class (``class:7``, ``class:cat``). '3 - 5' -> [(1, '3'), (-1, '5')];
    '0.5*class:1 + 0.5*class:7' -> [(0.5, 'class:1'), (0.5, 'class:7')]."""
    import math
    import re

    src = text.strip()
    terms = []
    for m in re.finditer(r"\s*([+-]?)\s*([^+\-\s][^+\-]*?)\s*(?=[+-]|$)", src):
        sign, body = m.group(1), m.group(2).strip()
        if not sign and terms:
            raise ConfigError(f"--expr {text!r}: join the terms with + or -")
        weight, _, term = body.rpartition("*")
        try:
            w = float(weight) if weight else 1.0
        except ValueError:
            w = math.nan
        if not math.isfinite(w) or not term or not (term.isdigit() or term.startswith("class:") and len(term) > 6):
            raise ConfigError(f"--expr {text!r}: {body!r} is not a term; write image numbers (12) or classes "
                              "(class:7), with an optional weight (0.5*12), joined by + and -")
        terms.append((-w if sign == "-" else w, term))
    if not terms or "".join(m.group(0) for m in re.finditer(r"\s*([+-]?)\s*([^+\-\s][^+\-]*?)\s*(?=[+-]|$)", src)) != src:
        raise ConfigError(f"--expr {text!r} is not a combination like '3 - 5 + 8' or 'class:7 - class:1 + 12'")
    return terms


def class_means(codes, labels, classes) -> np.ndarray:
    """Mean code of each class in ``classes`` (k, D); a class with no code is an error."""
    codes, labels = np.asarray(codes), np.asarray(labels)
    out = []
    for k in classes:
        mask = labels == k
        if not mask.any():
            raise ConfigError(f"class {k} has no images in this selection; pick classes present in the data")
        out.append(codes[mask].mean(0))
    return np.stack(out).astype(np.float32)


def axis_values(lo: float, hi: float, step: float) -> np.ndarray:
    """lo, lo+step, ..., hi (inclusive, as the articles' grids): (-5, 5, 1) -> 11 values."""
    if not step > 0 or not hi >= lo:
        raise ConfigError(f"grid range needs lo <= hi and step > 0, got {lo} {hi} step {step}")
    big = float(np.finfo(np.float32).max)
    if max(abs(lo), abs(hi)) > big:
        raise ConfigError(f"grid range {lo} {hi} lies beyond what a float32 code holds (|value| <= {big:.3g})")
    # counted, not np.arange(lo, hi + step / 2, step): at 1e30 adding step/2 changes nothing, and arange is empty
    count = int(np.floor((hi - lo) / step + 0.5)) + 1
    return (lo + step * np.arange(count, dtype=np.float64)).astype(np.float32)


def prior_quantiles(n: int, tail: float = 0.05) -> np.ndarray:
    """n evenly spaced quantiles of N(0, 1): a grid that covers the prior's mass, not its empty tails."""
    from scipy.stats import norm

    return norm.ppf(np.linspace(tail, 1 - tail, n)).astype(np.float32)


def manifold(model, base, dims: tuple[int, int], xs, ys) -> tuple[np.ndarray, np.ndarray]:
    """Decode a grid over two code dimensions, the others held at ``base``: codes (len(ys), len(xs), D) and
    images (len(ys), len(xs), C, H, W); row 0 is the largest y, so the picture reads like a plot."""
    d = model.code_size
    base = _code(base, d, "base")
    i, j = _check_dims(dims, d, 2)
    xs, ys = np.asarray(xs, np.float32), np.asarray(ys, np.float32)[::-1]
    codes = np.tile(base, (len(ys), len(xs), 1))  # (R, Q, D)
    codes[:, :, i] = xs[None, :]
    codes[:, :, j] = ys[:, None]
    images = decode_all(model, codes.reshape(-1, d)).reshape(len(ys), len(xs), *model.input_shape)
    return codes, images


def traverse(model, base, lo, hi, steps: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """One row per code dimension, sweeping it from lo[i] to hi[i] with the others at ``base``:
    codes (D, steps, D) and images (D, steps, C, H, W)."""
    d = model.code_size
    base = _code(base, d, "base")
    lo, hi = _code(lo, d, "lo"), _code(hi, d, "hi")
    if steps < 2:
        raise ConfigError(f"a traversal needs --steps >= 2, got {steps}")
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)  # (S,)
    codes = np.tile(base, (d, steps, 1))  # (D, S, D)
    for k in range(d):
        codes[k, :, k] = lo[k] + t * (hi[k] - lo[k])
    return codes, decode_all(model, codes.reshape(-1, d)).reshape(d, steps, *model.input_shape)


def max_codes(base, maxima) -> np.ndarray:
    """The mean code with each dimension in turn set to its maximum: (D, D), row k differs from base at k."""
    base = np.asarray(base, np.float32)
    codes = np.tile(base, (len(base), 1))
    np.fill_diagonal(codes, np.asarray(maxima, np.float32))
    return codes


@torch.no_grad()
def denoise(model, images, noise, seed: int = 0) -> dict[str, np.ndarray]:
    """Corrupt clean images with ``noise`` (an aekit.data Noise), reconstruct the noisy input, and score both
    against the clean target: {"clean", "noisy", "output" (N, C, H, W), "psnr_noisy", "psnr_output" (N,)}."""
    from ..evaluate import psnr_per_image

    clean = as_unit(torch.as_tensor(images))
    if clean.ndim != 4 or len(clean) == 0:
        raise ConfigError(f"denoise needs a non-empty image batch (N, C, H, W), got shape {tuple(clean.shape)}")
    noisy = noise(clean.clone(), generator=torch.Generator().manual_seed(seed))
    model.eval()
    dev = next(model.parameters()).device
    out = model.decode(model.encode(noisy.to(dev))).float().cpu()
    return {"clean": clean.numpy(), "noisy": noisy.numpy(), "output": out.numpy(),
            "psnr_noisy": psnr_per_image(noisy, clean).numpy(), "psnr_output": psnr_per_image(out, clean).numpy()}


def _check_dims(dims, d: int, k: int) -> tuple[int, ...]:
    dims = tuple(int(x) for x in dims)
    if len(dims) != k or len(set(dims)) != k:
        raise ConfigError(f"need {k} different dimensions, got {','.join(map(str, dims)) or 'none'}")
    bad = [x for x in dims if not 0 <= x < d]
    if bad:
        raise ConfigError(f"dimension {bad[0]} is out of range: the code has dimensions 0..{d - 1}")
    return dims

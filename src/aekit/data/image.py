"""Resizing and channel conversion of uint8 (N, C, H, W) arrays."""

from __future__ import annotations

import numpy as np

from aekit.errors import DataError


def check_size(image_size) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise DataError(f"image_size must be two positive integers (H, W), got {image_size!r}", param="image_size") from None
    if h < 1 or w < 1:
        raise DataError(f"image_size must be two positive integers (H, W), got {image_size!r}", param="image_size")
    return (h, w)


def check_channels(channels) -> int:
    if channels not in (1, 3) or isinstance(channels, bool):
        raise DataError(f"channels must be 1 (gray) or 3 (RGB), got {channels!r}", param="channels")
    return int(channels)


def resize(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize every image to (H, W) with Pillow's bilinear filter, which antialiases when shrinking."""
    from PIL import Image

    from aekit.limits import require_memory

    h, w = size
    if x.shape[2:] == (h, w):
        return x
    require_memory(float(len(x)) * x.shape[1] * h * w, f"{len(x)} images resized to {h}x{w}", "use a smaller --image-size",
                   DataError)
    out = np.empty((len(x), x.shape[1], h, w), dtype=np.uint8)
    for i, img in enumerate(x):
        for c in range(x.shape[1]):  # one "L" image per channel keeps any channel count exact
            out[i, c] = np.asarray(Image.fromarray(img[c]).resize((w, h), Image.Resampling.BILINEAR))
    return out


def convert_channels(x: np.ndarray, channels: int) -> np.ndarray:
    """1 -> 3 repeats the gray plane; 3 -> 1 takes the luminance L = (299 R + 587 G + 114 B) / 1000
    (ITU-R 601-2, the formula of Pillow's convert("L")), vectorised instead of a per-image loop."""
    c = x.shape[1]
    if c == channels:
        return x
    if c == 1 and channels == 3:
        from aekit.limits import require_memory

        require_memory(3.0 * x.size, f"{len(x)} images converted to 3 channels", "keep them gray (--channels 1)", DataError)
        return np.repeat(x, 3, axis=1)
    if c == 3 and channels == 1:
        weights = np.array([299, 587, 114], dtype=np.uint32).reshape(1, 3, 1, 1)
        lum = (x.astype(np.uint32) * weights).sum(axis=1, keepdims=True)
        return ((lum + 500) // 1000).astype(np.uint8)  # +500: round to nearest
    raise DataError(f"cannot convert {c}-channel images to {channels} channels; use channels=1 or 3", param="channels")

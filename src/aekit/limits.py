"""Sizes are checked before memory is taken. Every operation whose size the user controls (images in one
picture, the array a resize or a reader would allocate, a model's training state) estimates its bytes first and
refuses with the figure when they exceed what the machine has now, instead of dying in the allocator (or being
killed by the kernel's OOM killer, which no ``except MemoryError`` catches). Torch-free, cheap to import."""

from __future__ import annotations

import os

from .errors import ConfigError

MAX_PICTURE_IMAGES = 4096  # one mosaic of 64 x 64 images is already past what a PNG page shows legibly
MAX_TITLED_IMAGES = 256  # rows of images each with its own axes and title (reconstruct, denoise, interpolate)


def available_memory() -> int:
    """Bytes of memory available to a new allocation (Linux MemAvailable; total RAM elsewhere)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.1f} GiB" if nbytes >= 2**28 else f"{nbytes / 2**20:.0f} MiB"


def require_memory(nbytes: float, what: str, fix: str, error: type[Exception] = ConfigError, share: float = 0.8) -> None:
    """Refuse (``error``, one line) when ``what`` would need more than ``share`` of the memory available now.
    ``nbytes`` may be a float: sizes from user input are multiplied out before any integer array exists."""
    avail = available_memory()
    if not nbytes <= share * avail:  # also catches nan/inf
        raise error(f"{what} would need {gib(nbytes)} of memory; {gib(avail)} is available: {fix}")


def require_picture(count: float, what: str, fix: str, cap: int = MAX_PICTURE_IMAGES) -> None:
    """Refuse a figure of more than ``cap`` images (documented caps, docs/errors.md)."""
    if not count <= cap:
        raise ConfigError(f"{what} would draw {count:,.0f} images; one picture of this kind holds at most {cap:,}: {fix}")


def check_batch(model, batch_size: int, training: bool = True) -> None:
    """Refuse a batch size whose forward (and backward) pass cannot fit: per sample, the values the model's
    forward produces (measured on the meta device when the model was built, ``model.activations_per_sample``;
    else the input and output images), float32, kept once more for the gradients when training."""
    import math

    pixels = math.prod(model.input_shape)
    per_sample = getattr(model, "activations_per_sample", None) or 4 * pixels
    need = 4.0 * batch_size * (per_sample + pixels) * (2 if training else 1)
    shape = "x".join(map(str, model.input_shape))
    require_memory(need, f"a batch of {batch_size} images of {shape} through {getattr(model, 'name', 'the model')}",
                   "use a smaller --batch-size (or --image-size)")

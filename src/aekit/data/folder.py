"""A folder of image files: one subfolder per class (labels = sorted subfolder index), or flat (no labels)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from aekit.data.sources import Raw, Request, source
from aekit.errors import DataError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS and not p.name.startswith(".")
    )


def load_folder(root: Path, image_size: tuple[int, int] | None = None, channels: int | None = None) -> Raw:
    """Read every image with Pillow at `image_size`, or else at the first file's size (sorted order), gray when
    every file is gray (or as `channels` says). Hidden files and other extensions are skipped. Without
    `image_size`, images of another size are resized with one warning line on stderr saying how many, to what
    size and the flag that chooses it (Keras's image_dataset_from_directory resizes everything silently; a
    refusal would make every folder of photos need a flag first)."""
    from PIL import Image, UnidentifiedImageError

    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    classes = [(d.name, _images_in(d)) for d in subdirs]
    classes = [(name, files) for name, files in classes if files]
    top = _images_in(root)
    if classes and top:
        raise DataError(
            f"{root}: has images both at the top ({top[0].name}, ...) and in class subfolders; "
            f"move them into a subfolder"
        )
    if classes:
        files = [f for _, fs in classes for f in fs]
        labels = np.concatenate([np.full(len(fs), i, dtype=np.int64) for i, (_, fs) in enumerate(classes)])
        names = [name for name, _ in classes]
    else:
        files, labels, names = top, np.full(len(top), -1, dtype=np.int64), []
    if not files:
        raise DataError(
            f"{root}: no images found; "
            f"expected {'/'.join(e[1:] for e in EXTENSIONS)} files, flat or one subfolder per class"
        )

    def open_image(path: Path, decode: bool = True):
        try:
            with Image.open(path) as img:
                if decode:
                    img.load()  # decode now, so a truncated file fails here, with its name
                return img
        except Image.DecompressionBombError as e:  # Pillow's guard against a small file that decodes to gigabytes
            raise DataError(f"image {path} is too large to decode safely ({e}); shrink or remove the file") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
            raise DataError(f"cannot read image {path}: {e}; fix or remove the file") from None

    if channels is None:
        # Image.open only reads the header, so this pass is cheap.
        channels = 1 if all(open_image(f, decode=False).mode in _GRAY_MODES for f in files) else 3
    if image_size is None:
        w, h = open_image(files[0], decode=False).size
    else:
        h, w = image_size
    mode = "L" if channels == 1 else "RGB"
    from aekit.limits import require_memory

    fix = "pass --image-size H[xW] to read them smaller" if image_size is None else "use a smaller --image-size"
    require_memory(float(len(files)) * channels * h * w, f"{len(files)} images of {channels}x{h}x{w} ({files[0].name} sets the size)"
                   if image_size is None else f"{len(files)} images of {channels}x{h}x{w}", fix, DataError)
    out = np.empty((len(files), channels, h, w), dtype=np.uint8)
    resized = 0
    for i, f in enumerate(files):
        img = open_image(f).convert(mode)  # RGBA/LA: alpha dropped; palette images expanded
        if img.size != (w, h):
            img = img.resize((w, h), Image.Resampling.BILINEAR)
            resized += 1
        a = np.asarray(img)
        out[i] = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)  # (C, H, W)
    if resized and image_size is None:  # the size was our choice, not the user's: say so
        print(f"aekit: warning: {root}: {resized} of {len(files)} images are not {h}x{w} (the size of {files[0].relative_to(root)}) "
              "and were resized to it; pass --image-size H[xW] to choose the size", file=sys.stderr, flush=True)
    return Raw(out, labels, names)


@source("folder", "a folder of images (png/jpg/bmp/gif), one subfolder per class or flat (unlabelled)",
        matches=Path.is_dir, path_hint="a folder of images", priority=-10)  # low: more specific folders first
def _load(req: Request) -> Raw:
    return load_folder(req.path, req.image_size, req.channels)

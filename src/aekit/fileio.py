"""Temporary files beside their destination, for write-then-rename (atomic) saves."""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path


@functools.cache
def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temp_beside(path: str | Path, suffix: str = "") -> Path:
    """Create an empty hidden temporary file in ``path``'s folder (made if missing) and return its path.
    It gets the permissions a plain ``open`` would give (mkstemp's own are 0600), so the renamed file
    reads like any other."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
    finally:
        os.close(fd)
    return Path(tmp)

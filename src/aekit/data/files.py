"""File plumbing shared by the sources: checksums and verified downloads (written through aekit.fileio)."""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

from aekit.errors import DataError
from aekit.fileio import atomic_path, sha256_file  # noqa: F401 — sha256_file: the sources' import of the one copy

_CHUNK = 1 << 20


def download(url: str, dest: Path, sha256: str | None, *, timeout: float = 60.0) -> Path:
    """Fetch `url` to `dest`, checking its sha256 before the file appears under its final name."""
    if not url.startswith(("http://", "https://")):
        raise DataError(f"refusing to download {url!r}: only http(s) URLs are supported")
    with atomic_path(dest) as tmp:
        h = hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
                while chunk := r.read(_CHUNK):
                    h.update(chunk)
                    f.write(chunk)
        except (urllib.error.URLError, OSError) as e:
            if isinstance(e, urllib.error.HTTPError):
                e.close()  # it holds the open response
            reason = f"HTTP {e.code} {e.reason}" if isinstance(e, urllib.error.HTTPError) else getattr(e, "reason", e)
            raise DataError(
                f"could not download {url}: {reason}; "
                f"check the network or put {dest.name} in {dest.parent} by hand"
            ) from None
        if sha256 is not None and h.hexdigest() != sha256:
            raise DataError(
                f"downloaded {url} has sha256 {h.hexdigest()}, expected {sha256}; the mirror serves a different "
                "file: try again later or place a verified copy by hand"
            )
    return dest

"""The one copy of file writing and image encoding: write-then-rename (atomic) saves of files and folders,
free-space checks, file checksums, and PNG bytes of an image array. Torch-free and cheap to import (Pillow is
imported where a PNG is made).

Every temporary file or folder is hidden beside its target and named ``.NAME.HOST-PID-XXXXXXXX[.suffix]``: it
is removed on every exit path Python sees (an exception, Ctrl-C, SIGTERM); one left by a process that was
SIGKILLed (or lost its machine) is removed, once that pid is gone, by the next process that writes into the
folder (and by any that writes the same target again).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import functools
import hashlib
import io
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

FREE_SPACE_MARGIN = 1 << 20  # bytes left over after a checked write: file system metadata, the .npy header


class DiskFullError(OSError):
    """Not enough free space for an output (errno ENOSPC); the CLI prints its message and exits 2."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.ENOSPC, message)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised while a temporary file or folder exists so that it is removed on the way out; like
    Ctrl-C, a request to stop (the CLI says ``aekit: terminated`` and exits 143)."""


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read 1 MiB at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def human_bytes(n: float) -> str:
    """1234567 -> '1.2 MB' (decimal units, as df -H and file managers show them)."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def check_free_space(path: str | Path, nbytes: int, margin: int = FREE_SPACE_MARGIN) -> None:
    """Refuse (:class:`DiskFullError`, nothing created) when ``path``'s file system has less than ``nbytes``
    plus ``margin`` free. Checked before a long write: a memory-mapped file on a full disk dies by SIGBUS, a
    streamed one only after the work is done."""
    path = Path(path)
    folder = path.parent
    while not folder.exists() and folder != folder.parent:  # the folder may not exist yet: its file system
        folder = folder.parent
    free = shutil.disk_usage(folder).free  # what an unprivileged writer may use (statvfs f_bavail)
    if free < nbytes + margin:
        raise DiskFullError(f"not enough free space for {path}: it needs {human_bytes(nbytes + margin)} "
                            f"({human_bytes(nbytes)} + {human_bytes(margin)} to spare) but {folder} has "
                            f"{human_bytes(free)} free; free some space or write elsewhere")


# ---------------------------------------------------------------- temporary files and folders


@functools.cache
def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "", os.uname().nodename)[:16] or "host"


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{_host()}-{os.getpid()}-"  # the pid at the time of the call: a fork has its own


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, under another user
        return True
    return True


# .TARGET.HOST-PID-XXXXXXXX[.suffix]: mkstemp/mkdtemp add 8 characters of [a-z0-9_]; a suffix (.npy,
# .codes.npy) may follow
_TEMP_NAME = re.compile(r"\.(.+)\.([A-Za-z0-9]+)-(\d+)-[a-z0-9_]{8}(?:\..*)?")


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Remove the temporary files and folders in ``folder`` left by dead processes of this host (a SIGKILL or a
    power cut skips every cleanup); returns what was removed. Temporaries of live processes, of other hosts
    (a shared file system) and names that only look alike are left alone."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:  # no folder yet, or not readable: nothing of ours there
        return removed
    for entry in entries:
        m = _TEMP_NAME.fullmatch(entry.name)
        if not m or m.group(2) != _host() or _alive(int(m.group(3))):
            continue
        _remove(entry.path)  # what cannot be removed (another writer was first, no permission) stays
        if not os.path.lexists(entry.path):
            removed.append(Path(entry.path))
    return removed


_written: dict[str, set[str]] = {}  # folder -> names this process has written there


def _clean_before_writing(path: Path) -> None:
    """Stale temporaries are looked for the first time this process writes into a folder, and again when it
    writes a target there a second time (a run's files, an export): not before every one of ten thousand
    PNG files, each scan reads the whole folder."""
    folder, name = os.path.abspath(path.parent), path.name
    names = _written.setdefault(folder, set())
    if not names or name in names:
        remove_stale_temps(folder)
    names.add(name)


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While a temporary exists, SIGTERM raises :class:`Terminated` in the main thread (so the ``except``
    around the write removes it) instead of ending the process on the spot. Only where SIGTERM has its default
    action: a handler someone else installed (a server's) is left in place."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def raise_terminated(signum, frame):
        raise Terminated()

    signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@functools.cache
def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temp_beside(path: str | Path, suffix: str = "") -> Path:
    """Create an empty hidden temporary file in ``path``'s folder (made if missing) and return its path.
    It gets the permissions a plain ``open`` would give (mkstemp's own are 0600), so the renamed file
    reads like any other. Stale temporaries of ``path`` from dead processes are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clean_before_writing(path)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=suffix, dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
    finally:
        os.close(fd)
    return Path(tmp)


def fsync(path: str | Path, folder: bool = False) -> None:
    """Flush a file's (or a folder's entries') data to the disk; a folder that cannot be fsynced (some file
    systems refuse) is passed over, a file that cannot is an error."""
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if folder else 0))
    try:
        os.fsync(fd)
    except OSError:
        if not folder:
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "", durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to fill (streamed writes, memory maps, downloads); on success it
    is flushed to the disk (fsync) and renamed onto ``path``, on any failure removed: a reader never sees half a
    file, and after a crash of the machine the name holds the old bytes or the new ones, never a torn file.
    ``durable=False`` skips the two fsyncs (about 10 ms per file): for many small files that can be made again
    (a folder of PNGs), where a crash of the machine may lose the last ones but a reader still never sees half a file."""
    with _sigterm_raises():
        tmp = temp_beside(path, suffix)
        try:
            yield tmp
            if durable:
                fsync(tmp)  # the bytes reach the disk before the name points at them
            os.replace(tmp, path)
            if durable:
                fsync(Path(path).parent, folder=True)  # and the rename itself is made durable
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            if not isinstance(exc, DiskFullError):  # a refusal before the write names its output already
                _name_output(exc, path)
            raise


def _name_output(exc: BaseException, path: Path) -> None:
    """A full disk, a quota or a file size limit met while writing ``path``'s temporary, raised again naming
    ``path``: a write's own error names no file, or the hidden temporary one."""
    if not isinstance(exc, OSError) or exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return
    if exc.filename is not None and not str(exc.filename).startswith(str(path.parent / _temp_prefix(path))):
        return  # about another file
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        raise DiskFullError(f"no space left on the device while writing {path}, which was left as it was; free "
                            "some space or write elsewhere") from exc
    raise OSError(exc.errno, f"{exc.strerror or exc} while writing {path}, which was left as it was") from exc


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a fresh hidden folder beside ``path`` to fill; on success it takes ``path``'s place in one rename
    (an existing folder is exchanged with it and removed only afterwards), on any failure it is removed: a
    reader sees the old folder or the new one, never a mix of the two."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clean_before_writing(path)
    with _sigterm_raises():
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), dir=path.parent))
        try:
            os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's own 0700 would stay with the folder once swapped in
            yield tmp
            _swap_in(tmp, path)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            _name_output(exc, path)
            raise


def _swap_in(new: Path, path: Path) -> None:
    """Put folder ``new`` in ``path``'s place; ``new`` is gone afterwards (it held the old folder last)."""
    if not os.path.lexists(path):
        os.rename(new, path)
        return
    if not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a folder, not replaced", str(path))
    if _exchange(new, path):  # atomic: ``path`` is the new folder, ``new`` now names the old one (or a link to it)
        _remove(new)
        return
    # No RENAME_EXCHANGE (not Linux, or a file system without it): the old folder steps aside to a temporary
    # name first; for a moment there is no folder, never a mixed one, and a kill in between leaves the old
    # folder as a stale temporary that the next write removes.
    aside = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), dir=path.parent))
    os.rename(path, aside)  # onto an empty folder: allowed by POSIX rename
    os.rename(new, path)
    _remove(aside)


def _remove(path: Path | str) -> None:
    """Remove a file, a link (not what it points to) or a folder tree; what cannot be removed stays."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically with Linux's renameat2(RENAME_EXCHANGE) (no Python API; glibc >= 2.28);
    False where the system or the file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2  # from <fcntl.h> and <linux/fs.h>
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def atomic_write(path: str | Path, data: bytes | str, durable: bool = True) -> None:
    """Write ``data`` (text is UTF-8 encoded) to ``path`` through :func:`atomic_path`."""
    with atomic_path(path, durable=durable) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)


def png_bytes(img, compress_level: int = 1) -> bytes:
    """One image as PNG bytes: (C, H, W) uint8, or floats in [0, 1] (clipped, rounded); grey for C = 1, RGB for
    C = 3. Level 1 zlib: these images are tiny, and the explorer makes one per request."""
    import numpy as np
    from PIL import Image

    a = np.asarray(img)
    if a.ndim != 3:
        raise ValueError(f"png_bytes needs one (C, H, W) image, got shape {a.shape}")
    if a.dtype != np.uint8:
        a = (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    pil = Image.fromarray(np.ascontiguousarray(a[0] if a.shape[0] != 3 else a.transpose(1, 2, 0)))
    buf = io.BytesIO()
    pil.save(buf, "PNG", compress_level=compress_level)
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    """PNG bytes as a ``data:`` URI, for pages that fetch nothing (the report, the explorer's JSON)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")

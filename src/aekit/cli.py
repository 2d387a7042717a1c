"""The ``aekit`` command. Parsing and file writing live here and in ``aekit.commands``; nothing deeper.

Each module in ``aekit.commands`` adds its subcommands through ``add_commands(subparsers)``; this file
finds them, so a new command group is one new file. Heavy libraries (torch, Lightning) are imported inside
the handlers, which keeps ``aekit --help`` and argument errors fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import __version__
from .commands._common import positive_int
from .errors import AekitError, Stopped


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the usage block is for --help, not for a typo. No abbreviated flags: a
    flag a command lacks must be an error, not a prefix of another (``evaluate --data x.csv`` silently read as
    ``--data-dir x.csv``)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with ``command`` (the word after ``aekit``), flags that need the model registry
    (and so torch) are built only for that command, which keeps ``aekit --help`` fast."""
    from . import commands
    from .commands import _common

    _common.BUILDING = command

    parser = Parser(
        prog="aekit",
        description="Train, evaluate and explore autoencoders. `aekit COMMAND --help` for each command.",
    )
    parser.add_argument("--version", action="version", version=f"aekit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N",
                        help="CPU threads for torch and onnxruntime (default: one per core); use 1 per process "
                             "when several aekit processes share the cores")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    modules = [importlib.import_module(f"{commands.__name__}.{m.name}") for m in pkgutil.iter_modules(commands.__path__)
               if not m.name.startswith("_")]
    for module in sorted(modules, key=lambda m: (getattr(m, "ORDER", 100), m.__name__)):
        module.add_commands(sub)
    return parser


def keep_freed_memory() -> None:
    """Stop glibc from handing large freed blocks back to the OS after every batch. A conv batch's activations
    (tens of MB) are allocated and freed thousands of times; by default each one is an mmap/munmap pair and
    its pages fault in again: `aekit evaluate` of a conv-VAE on the MNIST test set spent 47 of its 54 s in the
    kernel, and takes 26 s with this (measured, docs/benchmarks.md). The process keeps its peak heap instead.
    A no-op where the C library is not glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
        libc.mallopt(m_mmap_threshold, 1 << 30)
        libc.mallopt(m_trim_threshold, 1 << 30)
    except (OSError, AttributeError):
        pass


def set_threads(n: int) -> None:
    """Cap the CPU threads of torch, its OpenMP pool and onnxruntime at ``n`` (also for child processes)."""
    import os

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    if "torch" in sys.modules:  # already imported: the environment is read only at import
        sys.modules["torch"].set_num_threads(n)


def _command_word(argv: list[str]) -> str:
    i = 0
    while i < len(argv):
        if argv[i] == "--threads":
            i += 2
            continue
        if not argv[i].startswith("-"):
            return argv[i]
        i += 1
    return ""


def message(exc: AekitError) -> str:
    """The one-line message; a library error that names a config parameter is shown with its flag."""
    from .errors import cli_spelling

    return cli_spelling(str(exc), getattr(exc, "param", None))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_word(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    keep_freed_memory()
    if args.threads:
        set_threads(args.threads)
    try:
        result = args.func(args)
        return int(result or 0)
    except Stopped as exc:  # a training stopped by SIGINT/SIGTERM after saving its checkpoint: not an error
        _close_progress_bars()
        print(f"aekit: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM during a write (fileio.Terminated)
        _close_progress_bars()
        terminated = type(exc).__name__ == "Terminated"
        print(f"aekit: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 143 if terminated else 130
    except BaseException as exc:  # the one error boundary: one line, never a traceback (unless --debug)
        _close_progress_bars()  # first, for a traceback too: what follows starts on a line of its own
        if args.debug or isinstance(exc, SystemExit):
            raise
        code, text = describe(exc)
        print(f"aekit: error: {text}", file=sys.stderr)
        return code


def describe(exc: BaseException) -> tuple[int, str]:
    """(exit code, one-line message): 2 for bad input and the machine's limits (a missing file, a full disk,
    too little memory), 1 for an internal error, which is a bug to report."""
    if isinstance(exc, AekitError):
        return 2, message(exc)
    if isinstance(exc, OSError):  # a missing file, a folder where a file should be, no permission, a full disk ...
        where = f": {exc.filename}" if exc.filename else ""
        if getattr(exc, "filename2", None):  # a rename: the destination is what the user named
            where += f" -> {exc.filename2}"
        return 2, f"{exc.strerror or exc}{where}"
    if isinstance(exc, MemoryError) or "DefaultCPUAllocator: can't allocate memory" in str(exc):
        return 2, "not enough memory for this operation; use a smaller size, batch or data set"
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    return 1, f"internal error ({type(exc).__name__}: {first}); this is a bug: re-run with --debug for the traceback"


def _close_progress_bars() -> None:
    """End a half-drawn progress bar's line, so the error starts on a line of its own."""
    tqdm = sys.modules.get("tqdm")
    if tqdm is not None:
        for bar in list(getattr(tqdm.tqdm, "_instances", ())):
            try:
                bar.close()
            except Exception:  # a bar that cannot close must not hide the error
                pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

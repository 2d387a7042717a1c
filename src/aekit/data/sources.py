"""The source registry: ``@source("name", "description")`` on a loader function fills it; load_data looks
every spec up here, so a new data source is one new file (plus its import line in ``aekit/data/__init__.py``).

A source is either *named* (``mnist``, ``quickdraw:cat,dog`` — the text after ``:`` is its argument) or a
*path* source that claims files or folders by extension or predicate (``.npy``, a folder of images). A
loader gets one :class:`Request` (the spec, its argument or path, the data folder, the common options and
its own validated options) and returns a :class:`Raw`. Its own options are a frozen dataclass whose fields
use :func:`aekit.options.opt`; values are converted by the one typed path of :mod:`aekit.options`, and an
option the source does not declare is a one-line ConfigError naming the option and the source.

Torch-free and numpy-free, so ``aekit.data.list_sources()`` is cheap for help texts.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aekit.errors import ConfigError, DataError
from aekit.options import coerce

if TYPE_CHECKING:
    import numpy as np

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")  # no ":" (argument separator), "/" or "." (paths)


@dataclass
class Raw:
    """What a source hands to load_data: uint8 (N, C, H, W) array (maybe a memmap), int labels (-1 =
    unknown), class names, and the indices of the source's own test split (None when it has none).

    A source of another data kind (tables) sets ``finish(splits, name) -> data set``: load_data makes the
    splits and hands them over, so what must be fit on the training split only (a table's scaler) is; its
    ``images`` are then the raw samples, first axis N."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str] = field(default_factory=list)
    test: np.ndarray | None = None
    finish: Callable[[dict[str, np.ndarray], str], Any] | None = None


@dataclass(frozen=True)
class Request:
    """Everything a loader is given. ``argument`` is the text after ``name:`` ("cat,dog" in
    ``quickdraw:cat,dog``, None without a colon); ``path`` is set for path sources. ``image_size`` and
    ``channels`` are applied by load_data afterwards; a source that can read at that size (an image folder)
    may use them. ``options`` is the source's own options dataclass (None when it declares none)."""

    spec: str
    argument: str | None
    path: Path | None
    data_dir: Path
    seed: int
    image_size: tuple[int, int] | None
    channels: int | None
    options: Any = None


@dataclass(frozen=True)
class Source:
    """One registered source: how its spec is recognised, its loader and its options dataclass."""

    name: str
    description: str
    load: Callable[[Request], Raw]
    options: type | None = None  # frozen dataclass of this source's own options
    argument: str | None = None  # example text after "name:" ("cat,dog"); None: takes no argument
    aliases: tuple[str, ...] = ()
    matches: Callable[[Path], bool] | None = None  # set for path sources
    extensions: tuple[str, ...] = ()  # path sources matched by suffix (".npy")
    path_hint: str = ""  # how a path of this kind looks, for help and error messages
    priority: int = 0  # path sources: higher is asked first (a catch-all like "any folder" goes low)

    @property
    def is_path(self) -> bool:
        return self.matches is not None

    @property
    def usage(self) -> str:
        """How the spec is written: ``mnist``, ``quickdraw:cat,dog``, ``.npy``."""
        if self.is_path:
            return self.path_hint
        return f"{self.name}:{self.argument}" if self.argument is not None else self.name

    def option_fields(self) -> dict[str, tuple[dataclasses.Field, Any]]:
        """name -> (field, resolved type hint) of the source's own options."""
        if self.options is None:
            return {}
        hints = typing.get_type_hints(self.options)
        return {f.name: (f, hints[f.name]) for f in dataclasses.fields(self.options) if f.init}

    def make_options(self, given: dict[str, Any]) -> Any:
        """This source's options dataclass from raw values (Python, CLI text, YAML or JSON); None values count
        as not given. An option it does not declare is a ConfigError naming the option and the source."""
        given = {k: v for k, v in given.items() if v is not None}
        known = self.option_fields()
        for key in given:
            if key not in known:
                raise _not_applicable(key, self)
        values = {k: _coerce(k, *known[k], v) for k, v in given.items()}
        if self.options is None:
            return None
        try:
            return self.options(**values)
        except ConfigError:
            raise
        except ValueError as e:  # a plain one-line ValueError from __post_init__, as model configs raise
            raise ConfigError(f"data source {self.name!r}: {e}") from None


SOURCES: dict[str, Source] = {}


def source(
    name: str,
    description: str,
    *,
    options: type | None = None,
    argument: str | None = None,
    aliases: Iterable[str] = (),
    extensions: Iterable[str] = (),
    matches: Callable[[Path], bool] | None = None,
    path_hint: str | None = None,
    priority: int = 0,
) -> Callable[[Callable[[Request], Raw]], Callable[[Request], Raw]]:
    """Register ``fn(request) -> Raw`` as data source ``name``.

    Named source: ``@source("mnist", "...")``; with ``argument="cat,dog"`` the spec is ``name:TEXT``.
    Path source: ``extensions=(".npy",)`` claims existing files with that suffix, ``matches=pred`` claims
    any existing path ``pred`` accepts (``path_hint`` says how such a path looks). ``options`` is a frozen
    dataclass of the source's own options (fields made with :func:`aekit.options.opt`).
    """
    exts = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
    if matches is None and exts:
        def matches(p: Path, _exts=exts) -> bool:
            return p.is_file() and p.suffix.lower() in _exts
    if path_hint is None:
        path_hint = ", ".join(exts) if exts else name
    if options is not None and not (dataclasses.is_dataclass(options) and isinstance(options, type)):
        raise TypeError(f"data source {name!r}: options must be a dataclass type, got {options!r}")
    names = (name, *aliases)
    for n in names:
        if not _NAME.fullmatch(n):
            raise ValueError(f"data source name {n!r}: use lower-case letters, digits, '-' or '_'")
        if _lookup(n) is not None:
            raise RuntimeError(f"data source {n!r} registered twice")
    if matches is not None and argument is not None:
        raise ValueError(f"data source {name!r}: a path source takes no argument")

    def deco(fn: Callable[[Request], Raw]) -> Callable[[Request], Raw]:
        SOURCES[name] = Source(name, description, fn, options, argument, tuple(aliases), matches, exts,
                               path_hint, priority)
        return fn

    return deco


def unregister(name: str) -> None:
    """Remove a registered source (tests; a plugin that replaces a built-in one)."""
    if SOURCES.pop(name, None) is None:
        raise KeyError(f"no data source {name!r}")


def list_sources() -> dict[str, str]:
    """name -> one-line description: named sources, then path sources, each in registration order."""
    ordered = sorted(SOURCES.values(), key=lambda s: s.is_path)  # stable: keeps registration order
    return {s.name: s.description for s in ordered}


def get_source(name: str) -> Source:
    src = _lookup(name.lower())
    if src is None:
        raise DataError(f"unknown data source {name!r}; known: {', '.join(SOURCES)}")
    return src


def spec_help() -> str:
    """One line for a ``--dataset`` flag: ``mnist | ... | quickdraw:cat,dog | PATH (folder of images, .npy, ...)``."""
    named = [s.usage for s in SOURCES.values() if not s.is_path]
    paths = [s.usage for s in SOURCES.values() if s.is_path]
    return " | ".join(named + ([f"PATH ({', '.join(paths)})"] if paths else []))


def option_names() -> tuple[str, ...]:
    """Every source-specific option name, in registration order (for flags and config-file keys)."""
    out: list[str] = []
    for s in SOURCES.values():
        out += [k for k in s.option_fields() if k not in out]
    return tuple(out)


def resolve(spec: str) -> tuple[Source, str | None, Path | None]:
    """(source, argument, path) for a spec. A registered name wins over a same-named path (write ./mnist
    for the folder); otherwise an existing path goes to the first path source (by priority) that claims it."""
    name, sep, argument = spec.partition(":")
    named = _lookup(name.strip().lower())
    if named is not None and not named.is_path:
        if sep and named.argument is None:
            raise DataError(f"data source {named.name!r} takes nothing after ':', got {spec!r}; write {named.name}")
        return named, (argument.strip() if sep else None), None
    path = Path(spec).expanduser()
    if path.exists():
        for src in sorted((s for s in SOURCES.values() if s.is_path), key=lambda s: -s.priority):
            if src.matches(path):  # type: ignore[misc]
                return src, None, path
        kind = "folder" if path.is_dir() else f"file type {path.suffix.lower() or '(none)'}"
        raise DataError(f"{path}: unsupported {kind}; use a path to {_paths_hint()}")
    extensions = {e for s in SOURCES.values() for e in s.extensions}
    if path.suffix.lower() in extensions or "/" in spec or os.sep in spec:
        raise DataError(f"{path}: no such file or folder")
    raise DataError(f"unknown data spec {spec!r}; use one of {', '.join(_named_hints())}, or a path to {_paths_hint()}")


def _lookup(key: str) -> Source | None:
    for s in SOURCES.values():
        if key == s.name or key in s.aliases:
            return s
    return None


def _named_hints() -> list[str]:
    return [s.usage for s in SOURCES.values() if not s.is_path]


def _paths_hint() -> str:
    hints = [s.path_hint for s in SOURCES.values() if s.is_path]
    return ", ".join(hints[:-1]) + (" or " if len(hints) > 1 else "") + hints[-1] if hints else "a data file"


def _not_applicable(key: str, src: Source) -> ConfigError:
    users = [s.name for s in SOURCES.values() if key in s.option_fields()]
    takes = ", ".join(src.option_fields()) or "no options of its own"
    if users:
        return ConfigError(f"{key} does not apply to data source {src.name!r} (only to {', '.join(users)}); "
                           f"it takes {takes}", param=key)
    return ConfigError(f"{key} is not a data option; data source {src.name!r} takes {takes}", param=key)


def _coerce(name: str, f: dataclasses.Field, hint: Any, value: Any) -> Any:
    """aekit.options.coerce, with ``X | None`` read as ``X`` (None never reaches here: it means 'not given')."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0] if len(args) == 1 else hint
    return coerce(name, hint, value, f.metadata.get("choices"))

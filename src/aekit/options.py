"""Typed options from dataclass fields: the one validation path for CLI flags, YAML keys and config.json.

A config field carries its one-line help (and choices) in its metadata; :func:`coerce` turns a flag's text, a
YAML value or a JSON value into the field's declared type with one-line errors that name the parameter;
:func:`add_flags` makes argparse flags from the fields. Torch-free, so the CLI can import it at start-up.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, Iterable

from .errors import ConfigError, cli_spelling


def opt(default: Any, help: str, *, choices: Iterable[str] | None = None, metavar: str | None = None) -> Any:
    """A config field with its help line: ``beta: float = opt(1.0, "weight of the KL term")``."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": tuple(choices) if choices else None,
                                                        "metavar": metavar})


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _kind(hint: Any) -> str:
    """'bool' | 'int' | 'float' | 'str' | 'ints' (tuple of ints)."""
    if hint in (bool, int, float, str):
        return hint.__name__
    if typing.get_origin(hint) is tuple and all(a in (int, Ellipsis) for a in typing.get_args(hint)):
        return "ints"
    return "any"


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def coerce(name: str, hint: Any, value: Any, choices: tuple | None = None) -> Any:
    """``value`` (flag text, YAML or JSON value) as the declared type of field ``name``; ConfigError naming
    the parameter otherwise."""
    kind = _kind(hint)

    def bad(what: str) -> ConfigError:
        return ConfigError(f"{name} must be {what}, got {value!r}", param=name)

    if kind == "bool":
        if isinstance(value, bool):
            out = value
        elif isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            out = value.strip().lower() in _TRUE
        else:
            raise bad("true or false")
    elif kind == "int":
        if isinstance(value, bool):
            raise bad("an integer")
        if isinstance(value, int):
            out = value
        elif isinstance(value, float) and value.is_integer():
            out = int(value)
        elif isinstance(value, str):
            try:
                out = int(value.strip())
            except ValueError:
                raise bad("an integer") from None
        else:
            raise bad("an integer")
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise bad("a number")
        try:
            out = float(value)
        except ValueError:
            raise bad("a number") from None
        if out != out or out in (float("inf"), float("-inf")):
            raise bad("a finite number")
    elif kind == "str":
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise bad("a string")
        out = str(value)
    elif kind == "ints":
        if isinstance(value, str):
            parts = [t for t in value.replace(" ", "").replace("x", ",").split(",") if t]
        elif isinstance(value, (list, tuple)):
            parts = list(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            parts = [value]
        else:
            raise bad("comma-separated integers like 512,256")
        try:
            out = tuple(coerce(name, int, p) for p in parts)
        except ConfigError:
            raise bad("comma-separated integers like 512,256") from None
        fixed = [a for a in typing.get_args(hint) if a is not Ellipsis]
        if Ellipsis not in typing.get_args(hint) and len(out) != len(fixed):
            raise bad(f"{len(fixed)} integers")
    else:
        out = value
    if choices and out not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}", param=name)
    return out


def fields(cls: type) -> dict[str, tuple[dataclasses.Field, Any]]:
    hints = _hints(cls)
    return {f.name: (f, hints[f.name]) for f in dataclasses.fields(cls) if f.init}


def from_dict(cls: type, values: dict[str, Any], what: str | None = None):
    """Build the dataclass ``cls`` from a dict of raw values (CLI text, YAML, JSON), each checked and converted
    by :func:`coerce`; unknown keys are a ConfigError listing the known ones."""
    known = fields(cls)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown {what or cls.__name__} option(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}",
                          param=unknown[0])
    clean = {k: coerce(k, known[k][1], v, known[k][0].metadata.get("choices")) for k, v in values.items()}
    return cls(**clean)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_flags(group, classes: Iterable[type], *, skip: Iterable[str] = (), note: dict[str, str] | None = None) -> list[str]:
    """Add one flag per field of ``classes`` (first class to declare a field wins) to the argparse ``group``.
    Flags not given stay absent from the namespace (defaults are the dataclasses'). ``note[name]`` is appended
    to a field's help (e.g. the models it applies to). Returns the field names added."""
    added: list[str] = []
    skip = set(skip)
    classes = list(classes)
    names = [n for cls in classes for n in fields(cls)]  # helps mention options as the API spells them: as flags here
    for cls in classes:
        for name, (f, hint) in fields(cls).items():
            if name in skip or name in added:
                continue
            meta = f.metadata
            choices = meta.get("choices")
            default = f.default if f.default is not dataclasses.MISSING else None
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            help_ = (meta.get("help") or name.replace("_", " ")) + f" (default {shown if shown != '' else 'none'})"
            help_ = cli_spelling(cli_spelling(help_, names, bare=False), [n for n in names if "_" in n])
            if note and note.get(name):
                help_ += f" [{note[name]}]"
            kw: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS, "help": help_.replace("%", "%%")}
            if _kind(hint) == "bool":
                group.add_argument(flag(name), action=argparse.BooleanOptionalAction, **kw)
            else:
                def parse(text: str, _n=name, _h=hint, _c=choices) -> Any:
                    try:
                        return coerce(_n, _h, text, _c)
                    except ConfigError as exc:
                        raise argparse.ArgumentTypeError(str(exc).replace(f"{_n} must", "must", 1)) from None

                parse.__name__ = _kind(hint)  # argparse names the type in its messages
                metavar = meta.get("metavar") or ("{" + ",".join(map(str, choices)) + "}" if choices else
                                                   "N,N" if _kind(hint) == "ints" else name.upper())
                group.add_argument(flag(name), type=parse, metavar=metavar, **kw)
            added.append(name)
    return added

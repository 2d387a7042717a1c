"""Typed errors. Library code raises these with a message that says what was wrong and what to do;
the CLI prints the message as one line on stderr and exits with code 2."""


import re


class AekitError(Exception):
    """Base class of every error aekit raises on purpose (bad input, not a bug). ``param`` names the option(s)
    the message is about (a config field or load_data argument, or a tuple of them): the message is written the
    way the Python API spells them (``shape=(1, 16, 16)``, ``download=True``) and the CLI shows them as flags
    (``--shape 1x16x16``, ``--download``): :func:`cli_spelling`."""

    def __init__(self, message: str, param: str | tuple[str, ...] | None = None) -> None:
        super().__init__(message)
        self.param = param


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _flag_value(name: str, value: str) -> str:
    """``name=value`` as the CLI spells it: True -> ``--name``, False -> ``--no-name``, a tuple -> ``1x16x16``
    (shapes and sizes) or ``512,256`` (lists), quotes dropped."""
    if value == "True":
        return _flag(name)
    if value == "False":
        return "--no-" + _flag(name)[2:]
    if value.startswith("(") and value.endswith(")"):
        items = [t.strip() for t in value[1:-1].split(",") if t.strip()]
        value = ("x" if "shape" in name or "size" in name else ",").join(items)
    return f"{_flag(name)} {value.strip(chr(39) + chr(34))}"


def cli_spelling(text: str, params: str | tuple[str, ...] | list[str] | None, *, bare: bool = True) -> str:
    """``text`` with each option of ``params`` spelled as its CLI flag: ``name=value`` -> ``--name value``
    (see :func:`_flag_value`); with ``bare``, a name that opens the message (``lr must be > 0`` -> ``--lr must
    be > 0``) or has an underscore (``latent_dim``: no English word) -> ``--name``, and a tuple of integers the
    message quotes as what it got -> the flag's text (``got (512, 0)`` -> ``got 512,0``)."""
    if not params:
        return text
    names = (params,) if isinstance(params, str) else tuple(params)
    for name in sorted(names, key=len, reverse=True):  # hidden_dims before dims
        edge = r"(?<![\w.\-])" + re.escape(name)
        text = re.sub(edge + r"=(\([^)]*\)|'[^']*'|\"[^\"]*\"|[^\s,;:)]+)", lambda m, n=name: _flag_value(n, m[1]), text)
        if bare and ("_" in name or re.match(re.escape(name) + r"(?![\w\-=])", text)):
            text = re.sub(edge + r"(?![\w\-=])", _flag(name), text, count=0 if "_" in name else 1)
    text = re.sub(r"(--[\w-]+) '([^'\s]*)'", r"\1 \2", text)  # --score 'elbo' -> --score elbo
    if bare:  # "--hidden-dims must be positive, got (512, 0)" -> "got 512,0"
        first = names[0]
        sep = "x" if "shape" in first or "size" in first else ","
        text = re.sub(r"got \((-?\d+(?:, ?-?\d+)*),?\)", lambda m: "got " + sep.join(t.strip() for t in m[1].split(",")), text)
    return text


class DataError(AekitError, ValueError):
    """A dataset could not be found, read or trusted."""


class ConfigError(AekitError, ValueError):
    """A model, training or command option is invalid. ``param`` names the option (a config field); the CLI
    shows it as its flag (``lr must be > 0`` -> ``--lr must be > 0``)."""


class RunError(AekitError):
    """A run folder is missing, incomplete, damaged or belongs to something else."""


class NoPriorError(AekitError):
    """The model has no prior to sample from (a plain autoencoder)."""


class Stopped(AekitError):
    """Training stopped on request (SIGINT/Ctrl-C or SIGTERM, e.g. a pre-empted job) at the end of a step, after
    saving a checkpoint to resume from. ``exit_code`` is the shell's for that signal: 130 (SIGINT), 143 (SIGTERM)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code

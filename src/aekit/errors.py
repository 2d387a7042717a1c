"""Typed errors. Library code raises these with a message that says what was wrong and what to do;
the CLI prints the message as one line on stderr and exits with code 2."""


class AekitError(Exception):
    """Base class of every error aekit raises on purpose (bad input, not a bug)."""


class DataError(AekitError, ValueError):
    """A dataset could not be found, read or trusted."""


class ConfigError(AekitError, ValueError):
    """A model, training or command option is invalid. ``param`` names the option (a config field); the CLI
    shows it as its flag (``lr must be > 0`` -> ``--lr must be > 0``)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


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

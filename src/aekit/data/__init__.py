"""Data sets as uint8 images + labels + deterministic splits (ImageData), and input noise.

`load_data("mnist")` works offline; see `load_data` for the spec forms and `aekit.data.mnist` for where
MNIST is looked for. The data folder is $AEKIT_DATA, else ~/.cache/aekit.

Sources register like models: one file with a loader decorated by `@source("name", "description")` (see
`aekit.data.sources`), imported below. `list_sources()` gives name -> description. Importing this package
does not import torch (ImageData, to_float and the noise load it on first use), so help texts can list the
sources cheaply.
"""

from aekit.data.load import (DATA_DIR_ENV, DEFAULT_DATA_DIR, default_data_dir, load_data, option_names,
                             recorded_options)
from aekit.data.sources import Raw, Request, get_source, list_sources, source, spec_help, unregister

# The built-in sources: importing a file registers the sources it defines.
from aekit.data import mnist, digits, quickdraw, folder, idx, arrays, tables, packed  # noqa: E402,F401  isort: skip

_LAZY = {"ImageData": "base", "TableData": "base", "to_float": "base", "Noise": "noise", "parse_noise": "noise"}


def __getattr__(name: str):  # torch-backed names load on first use
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"aekit.data.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'aekit.data' has no attribute {name!r}")


__all__ = [
    "DATA_DIR_ENV",
    "DEFAULT_DATA_DIR",
    "ImageData",
    "Noise",
    "Raw",
    "Request",
    "TableData",
    "default_data_dir",
    "get_source",
    "list_sources",
    "load_data",
    "option_names",
    "parse_noise",
    "recorded_options",
    "source",
    "spec_help",
    "to_float",
    "unregister",
]

"""Data sets as uint8 images + labels + deterministic splits (ImageData), and input noise.

`load_data("mnist")` works offline; see `load_data` for the spec forms and `aekit.data.mnist` for where
MNIST is looked for. The data folder is $AEKIT_DATA, else ~/.cache/aekit.
"""

from aekit.data.base import ImageData, to_float
from aekit.data.load import DATA_DIR_ENV, DEFAULT_DATA_DIR, default_data_dir, load_data
from aekit.data.noise import Noise, parse_noise

__all__ = [
    "DATA_DIR_ENV",
    "DEFAULT_DATA_DIR",
    "ImageData",
    "Noise",
    "default_data_dir",
    "load_data",
    "parse_noise",
    "to_float",
]

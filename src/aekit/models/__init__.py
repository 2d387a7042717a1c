"""Autoencoder models. Importing this package registers every model family."""

from . import ae, vae  # noqa: F401  (registration side effect)
from . import vaegan  # noqa: F401  (registration side effect)
from . import vqvae  # noqa: F401  (registration side effect)
from . import betatc, cvae, vamp, wae  # noqa: F401  (registration side effect)
from . import hvae  # noqa: F401  (registration side effect)
from .base import Autoencoder, ModelConfig, Output

__all__ = ["Autoencoder", "ModelConfig", "Output"]

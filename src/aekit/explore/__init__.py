"""Latent-space exploration: pure functions from a model and arrays to arrays and numbers.

``aekit.plots`` draws their results, ``aekit plot`` / ``aekit report`` write them, the browser explorer serves
them. Nothing in here writes a file.
"""

from .defects import class_volumes, defects, gap_fraction
from .latent import decode_all, encode_all, fit_gaussian, latent_stats, project, sample_codes
from .ops import (arithmetic, axis_values, class_means, denoise, interpolate, manifold, max_codes, prior_quantiles,
                  traverse)

__all__ = ["arithmetic", "axis_values", "class_means", "class_volumes", "decode_all", "defects", "denoise",
           "encode_all", "fit_gaussian", "gap_fraction", "interpolate", "latent_stats", "manifold", "max_codes",
           "prior_quantiles", "project", "sample_codes", "traverse"]

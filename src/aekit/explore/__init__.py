"""Latent-space exploration: pure functions from a model and arrays to arrays and numbers.

``aekit.session`` feeds them a run's data and codes, ``aekit.plots`` draws their results, ``aekit plot`` /
``aekit report`` write them, the browser explorer serves them. Nothing in here writes a file.
"""

from .codes import cell_box, check_grid, code_usage, decode_indices_all, swap_codes
from .defects import class_volumes, defects, gap_fraction
from .latent import as_codes, as_unit, decode_all, encode_all, fit_gaussian, latent_stats, project, sample_codes
from .ops import (arithmetic, axis_values, class_means, combine, parse_expr, denoise, interpolate, manifold, max_codes, prior_quantiles,
                  traverse)

__all__ = ["arithmetic", "combine", "parse_expr", "as_codes", "as_unit", "axis_values", "cell_box", "check_grid", "class_means",
           "class_volumes", "code_usage", "decode_all", "decode_indices_all", "defects", "denoise", "encode_all",
           "fit_gaussian", "gap_fraction", "interpolate", "latent_stats", "manifold", "max_codes", "prior_quantiles",
           "project", "sample_codes", "swap_codes", "traverse"]

"""Latent-space exploration: pure functions from a model and arrays to arrays and numbers.

``aekit.session`` feeds them a run's data and codes, ``aekit.plots`` draws their results, ``aekit plot`` /
``aekit report`` write them, the browser explorer serves them. Nothing in here writes a file.
"""

from .codes import cell_box, check_grid, code_usage, decode_indices_all, swap_codes
from .defects import area_shares, class_volumes, defects, extent_asymmetry, gap_mass, sampler_draws
from .latent import as_codes, as_unit, decode_all, encode_all, fit_gaussian, latent_stats, pooled_stats, project, sample_codes
from .ops import (arithmetic, axis_values, class_means, combine, parse_expr, denoise, interpolate, manifold, max_codes, prior_quantiles,
                  traverse)

__all__ = ["arithmetic", "combine", "parse_expr", "as_codes", "as_unit", "axis_values", "cell_box", "check_grid", "class_means",
           "area_shares", "class_volumes", "code_usage", "decode_all", "decode_indices_all", "defects", "denoise", "encode_all",
           "extent_asymmetry", "fit_gaussian", "gap_mass", "sampler_draws", "interpolate", "latent_stats", "manifold", "pooled_stats", "max_codes", "prior_quantiles",
           "project", "sample_codes", "swap_codes", "traverse"]

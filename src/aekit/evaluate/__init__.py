"""Evaluation of trained models: numbers only (the CLI writes them).

- :func:`evaluate` — the first cut (mse, bce, psnr, loss terms, ELBO / IWAE for VAEs), used by ``aekit train``;
- :func:`evaluate_metrics` — any of :data:`METRICS` by name (``aekit evaluate --metrics``);
- FID-classifier (:mod:`.fid`), probes (:mod:`.probes`), the PCA baseline (:mod:`.pca`), the leaderboard
  (:mod:`.bench`, ``aekit bench``).
"""

from .basic import evaluate, iwae_nll, log_mean_exp, psnr_per_image
from .metrics import METRICS, active_units, kl_per_dim, parse_metrics, ssim_per_image
from .suite import default_metrics, evaluate_metrics

__all__ = ["evaluate", "evaluate_metrics", "default_metrics", "iwae_nll", "log_mean_exp", "psnr_per_image",
           "METRICS", "parse_metrics", "ssim_per_image", "kl_per_dim", "active_units"]

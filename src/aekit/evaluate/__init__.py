"""Evaluation metrics of a trained model (numbers only; the CLI writes them)."""

from .basic import evaluate, iwae_nll, log_mean_exp, psnr_per_image

__all__ = ["evaluate", "iwae_nll", "log_mean_exp", "psnr_per_image"]

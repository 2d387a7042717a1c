"""The PCA baseline at a model's code size: the best linear autoencoder (the optimal rank-k reconstruction in
squared error), reported beside every model as Hinton & Salakhutdinov (2006) do."""

from __future__ import annotations

import numpy as np


def _flat(images) -> np.ndarray:
    return np.asarray(images, dtype=np.float32).reshape(len(images), -1) / 255.0


def fit_pca(train_images, n_components: int, seed: int = 0):
    """scikit-learn PCA on uint8 images (N, C, H, W) scaled to [0, 1]."""
    from sklearn.decomposition import PCA

    x = _flat(train_images)
    k = min(n_components, x.shape[0], x.shape[1])
    return PCA(n_components=k, svd_solver="auto", random_state=seed).fit(x)


def pca_baseline(train_images, test_images, n_components: int, *, train_labels=None, test_labels=None,
                 probes: tuple[str, ...] = (), seed: int = 0) -> dict[str, float]:
    """Per-pixel test MSE and mean PSNR of the PCA reconstruction (unclipped, as in the literature), and with
    ``probes`` the probe / kNN accuracies on the PCA codes."""
    pca = fit_pca(train_images, n_components, seed)
    x = _flat(test_images)
    codes = pca.transform(x)
    x_hat = pca.inverse_transform(codes)
    per_image = ((x_hat - x) ** 2).mean(1)
    out = {
        "pca_components": int(pca.n_components_),
        "pca_mse": float(per_image.mean()),
        "pca_psnr": float((10 * np.log10(1.0 / np.clip(per_image, 1e-10, None))).mean()),
    }
    if probes and train_labels is not None and test_labels is not None:
        from .probes import probe_scores

        train_codes = pca.transform(_flat(train_images))
        scores = probe_scores(train_codes, train_labels, codes, test_labels, kinds=probes, seed=seed)
        out.update({f"pca_{k}": v for k, v in scores.items()})
    return out

"""MNIST with 100 labels: logistic regression on aekit codes vs PCA codes vs raw pixels.

    flock /tmp/aekit-heavy.lock .venv/bin/python benchmarks/fewlabels.py --epochs 10

The autoencoder and PCA are fitted on all training images without labels; the classifier sees 100 labelled
images (10 per digit, seeded); accuracy on the 10,000 MNIST test images.
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from aekit.data import load_data
from aekit.sklearn import AutoencoderTransformer


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="vae")
    p.add_argument("--latent-dim", type=int, default=16)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--labels", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    d = load_data("mnist")
    xtr, ytr = (t.numpy() for t in d.split("train"))
    xte, yte = (t.numpy() for t in d.split("test"))
    xtr, xte = xtr[:, 0], xte[:, 0]  # (N, 28, 28) uint8
    rng = np.random.default_rng(a.seed)
    few = np.concatenate([rng.choice(np.flatnonzero(ytr == c), a.labels // 10, replace=False) for c in range(10)])
    clf = lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))  # noqa: E731
    flat = lambda x: x.reshape(len(x), -1) / 255.0  # noqa: E731
    raw = clf().fit(flat(xtr[few]), ytr[few]).score(flat(xte), yte)
    pca = PCA(a.latent_dim, random_state=a.seed).fit(flat(xtr))
    pca_acc = clf().fit(pca.transform(flat(xtr[few])), ytr[few]).score(pca.transform(flat(xte)), yte)
    ae = AutoencoderTransformer(model=a.model, latent_dim=a.latent_dim, epochs=a.epochs, seed=a.seed).fit(xtr)
    ae_acc = clf().fit(ae.transform(xtr[few]), ytr[few]).score(ae.transform(xte), yte)
    print(f"{a.labels} labels: raw pixels {100 * raw:.1f}%  PCA-{a.latent_dim} {100 * pca_acc:.1f}%  "
          f"aekit {a.model}-{a.latent_dim} ({a.epochs} epochs) {100 * ae_acc:.1f}%")


if __name__ == "__main__":
    main()

"""MNIST with few labels: logistic regression on aekit codes vs PCA codes vs raw pixels.

    .venv/bin/python benchmarks/fewlabels.py --models vae,ae --epochs 10 --draws 10

The autoencoders and PCA are fitted on all 50,000 training images without labels; each classifier sees
``--labels`` labelled images (the same number per digit, drawn at random: ``--draws`` different draws, the
same draws for every feature set) and is scored on the 10,000 MNIST test images. Prints mean ± std over
the draws, and a markdown table with ``--markdown``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from aekit.data import load_data
from aekit.sklearn import AutoencoderTransformer


def accuracies(f_train, y_train, f_test, y_test, draws) -> np.ndarray:
    out = []
    for idx in draws:
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
        out.append(clf.fit(f_train[idx], y_train[idx]).score(f_test, y_test))
    return 100 * np.array(out)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", default="vae,ae")
    p.add_argument("--latent-dim", type=int, default=16)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--labels", type=int, default=100)
    p.add_argument("--draws", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--markdown", default=None, help="also write the table here")
    a = p.parse_args()
    d = load_data("mnist")
    xtr, ytr = (t.numpy() for t in d.split("train"))
    xte, yte = (t.numpy() for t in d.split("test"))
    xtr, xte = xtr[:, 0], xte[:, 0]  # (N, 28, 28) uint8
    rng = np.random.default_rng(a.seed)
    draws = [np.concatenate([rng.choice(np.flatnonzero(ytr == c), a.labels // 10, replace=False) for c in range(10)])
             for _ in range(a.draws)]
    flat = lambda x: x.reshape(len(x), -1) / 255.0  # noqa: E731
    rows = [("raw pixels (784)", "-", accuracies(flat(xtr), ytr, flat(xte), yte, draws))]
    t = time.perf_counter()
    pca = PCA(a.latent_dim, random_state=a.seed).fit(flat(xtr))
    rows.append((f"PCA-{a.latent_dim}", f"{time.perf_counter() - t:.1f}",
                 accuracies(pca.transform(flat(xtr)), ytr, pca.transform(flat(xte)), yte, draws)))
    for name in a.models.split(","):
        t = time.perf_counter()
        ae = AutoencoderTransformer(model=name, latent_dim=a.latent_dim, epochs=a.epochs, seed=a.seed).fit(xtr)
        fit_s = time.perf_counter() - t
        rows.append((f"aekit {name}-{a.latent_dim} ({a.epochs} epochs)", f"{fit_s:.0f}",
                     accuracies(ae.transform(xtr), ytr, ae.transform(xte), yte, draws)))
    lines = [f"| features ({a.labels} labels, {a.draws} draws) | unsupervised fit s | test accuracy % (mean ± std) | min | max |",
             "|---|---|---|---|---|"]
    lines += [f"| {n} | {s} | {acc.mean():.1f} ± {acc.std():.1f} | {acc.min():.1f} | {acc.max():.1f} |" for n, s, acc in rows]
    print("\n".join(lines))
    if a.markdown:
        with open(a.markdown, "w") as fh:
            fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

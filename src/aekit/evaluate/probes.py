"""Representation quality: a linear probe (logistic regression) and kNN on frozen codes, with all labels and
with few (1,000 / 100), the seeds' "pretrain when labelled pairs are few" question."""

from __future__ import annotations

import numpy as np

DEFAULT_BUDGETS = (None, 1000, 100)  # None: every training label


def _subset(n: int, budget: int | None, seed: int) -> np.ndarray:
    if budget is None or budget >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng([seed, budget]).choice(n, size=budget, replace=False))


def probe_scores(train_codes, train_labels, test_codes, test_labels, *, kinds=("probe", "knn"),
                 budgets=DEFAULT_BUDGETS, seed: int = 0, k: int = 5) -> dict[str, float]:
    """Test accuracy of classifiers fitted on codes of labelled training images.

    Keys: ``probe_acc`` / ``knn_acc`` (all labels) and ``probe_acc_1000``, ``knn_acc_100``... (a seeded random
    subset of that many labels). Codes are standardised first (fitted on the labelled subset) so the probe's
    L2 penalty treats every dimension alike."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xtr, ytr = np.asarray(train_codes, dtype=np.float64), np.asarray(train_labels)
    xte, yte = np.asarray(test_codes, dtype=np.float64), np.asarray(test_labels)
    keep_tr, keep_te = ytr >= 0, yte >= 0  # -1: unlabelled
    xtr, ytr, xte, yte = xtr[keep_tr], ytr[keep_tr], xte[keep_te], yte[keep_te]
    out: dict[str, float] = {}
    if len(np.unique(ytr)) < 2 or len(yte) == 0:
        return out
    for budget in budgets:
        idx = _subset(len(ytr), budget, seed)
        if budget is not None and budget >= len(ytr):
            continue  # the "all labels" figure already covers it
        suffix = "" if budget is None else f"_{budget}"
        x, y = xtr[idx], ytr[idx]
        if len(np.unique(y)) < 2:
            continue
        if "probe" in kinds:
            clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
            out[f"probe_acc{suffix}"] = float(clf.fit(x, y).score(xte, yte))
        if "knn" in kinds:
            clf = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=min(k, len(y))))
            out[f"knn_acc{suffix}"] = float(clf.fit(x, y).score(xte, yte))
    return out

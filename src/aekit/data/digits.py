"""scikit-learn's bundled 8×8 handwritten digits: a small real data set that loads offline in milliseconds."""

from __future__ import annotations

import numpy as np

from aekit.data.sources import Raw, Request, source


@source("digits", "scikit-learn's 8×8 handwritten digits, 1,797 images in 10 classes (offline, tiny)")
def load_digits(req: Request) -> Raw:
    """Values 0..16 scaled to 0..255."""
    from sklearn.datasets import load_digits as sk_load_digits

    d = sk_load_digits()
    x = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # (N, 1, 8, 8)
    return Raw(x, d.target.astype(np.int64), [str(c) for c in d.target_names])

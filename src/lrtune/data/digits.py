"""scikit-learn's handwritten digits: real data that ships with the package, the offline default."""

from __future__ import annotations

import numpy as np

from lrtune.data.splits import Splits, split_three_ways


def load_digits_splits(seed: int = 0) -> Splits:
    """1 797 8×8 images ``(N, 1, 8, 8)``, pixels in [0, 1], split 60/20/20 (stratified).

    The split depends on ``seed`` only, never on torch's or NumPy's global RNG.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    X = (bunch.images[:, None] / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    return split_three_ways(
        X, y, valid_fraction=0.2, test_fraction=0.2, seed=seed, stratify=True,
        task="classification", class_names=[str(c) for c in range(10)], name="digits",
    )

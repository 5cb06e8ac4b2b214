"""Datasets, in-memory batching and augmentation.

``load_dataset(name)`` returns :class:`Splits`; ``DATASETS`` lists the names:

* ``digits`` — scikit-learn's 8×8 digits, offline, the default;
* ``mnist``, ``fashion-mnist`` — the official IDX files, downloaded with sha256 verification
  into :func:`~lrtune.data.download.cache_dir` or read from ``data_dir``;
* ``facial-keypoints`` — Kaggle's ``training.csv`` from ``data_dir``, faces with all 15
  keypoints (seed 004); ``facial-keypoints-masked`` keeps every face, NaN for missing points;
* ``synthetic-faces`` — rendered faces with the same keypoints, offline.

Images are ``(N, 1, H, W)`` float32 in [0, 1] for every dataset.
"""

from __future__ import annotations

from lrtune.data.batching import TensorBatches, as_batches
from lrtune.data.idx import read_idx
from lrtune.data.splits import Splits


def _digits(seed: int = 0, data_dir=None) -> Splits:
    from lrtune.data.digits import load_digits_splits

    return load_digits_splits(seed=seed)


def _mnist(seed: int = 0, data_dir=None) -> Splits:
    from lrtune.data.mnist import MNIST, load_idx_dataset

    return load_idx_dataset(MNIST, data_dir=data_dir)


def _fashion_mnist(seed: int = 0, data_dir=None) -> Splits:
    from lrtune.data.mnist import FASHION_MNIST, load_idx_dataset

    return load_idx_dataset(FASHION_MNIST, data_dir=data_dir)


def _facial_keypoints(seed: int = 0, data_dir=None) -> Splits:
    from lrtune.data.keypoints import load_facial_keypoints

    return load_facial_keypoints(data_dir, missing="drop", seed=seed)


def _facial_keypoints_masked(seed: int = 0, data_dir=None) -> Splits:
    from lrtune.data.keypoints import load_facial_keypoints

    return load_facial_keypoints(data_dir, missing="mask", seed=seed)


def _synthetic_faces(seed: int = 0, data_dir=None) -> Splits:
    from lrtune.data.synthetic_faces import load_synthetic_faces

    return load_synthetic_faces(seed=seed)


DATASETS = {
    "digits": _digits,
    "mnist": _mnist,
    "fashion-mnist": _fashion_mnist,
    "facial-keypoints": _facial_keypoints,
    "facial-keypoints-masked": _facial_keypoints_masked,
    "synthetic-faces": _synthetic_faces,
}
OFFLINE_DATASETS = frozenset({"digits", "synthetic-faces"})  # built in: they read no data_dir


def load_dataset(name: str, *, seed: int = 0, data_dir=None) -> Splits:
    """Load a dataset by name (``digits`` is offline and the default)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(sorted(DATASETS))}")
    return DATASETS[name](seed=seed, data_dir=data_dir)


__all__ = ["DATASETS", "OFFLINE_DATASETS", "Splits", "TensorBatches", "as_batches", "load_dataset",
           "read_idx"]

"""Datasets, in-memory batching and augmentation.

``load_dataset(name)`` returns :class:`Splits`; ``DATASETS`` lists the names.
"""

from __future__ import annotations

from lrtune.data.batching import TensorBatches, as_batches
from lrtune.data.splits import Splits


def _digits(seed: int = 0, data_dir=None) -> Splits:
    from lrtune.data.digits import load_digits_splits

    return load_digits_splits(seed=seed)


DATASETS = {"digits": _digits}


def load_dataset(name: str, *, seed: int = 0, data_dir=None) -> Splits:
    """Load a dataset by name (``digits`` is offline and the default)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(sorted(DATASETS))}")
    return DATASETS[name](seed=seed, data_dir=data_dir)


__all__ = ["DATASETS", "Splits", "TensorBatches", "as_batches", "load_dataset"]

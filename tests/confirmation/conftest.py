"""Data for the confirmation tests (the plain reference runs are in ``sweep_reference``)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def data():
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(96, 6, generator=gen)
    y = (X[:, 0] > 0).long() + (X[:, 1] > 0).long()
    return X, y


@pytest.fixture
def data64(data):
    """The same data in float64, for equivalences that must not depend on float32 rounding."""
    return data[0].double(), data[1]

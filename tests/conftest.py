"""Shared fixtures: small, fast problems."""

from __future__ import annotations

import os

import matplotlib
import pytest
import torch
from torch import nn

matplotlib.use("Agg")
# Keras fixes its backend at first import and defaults to TensorFlow, which lrtune does not
# depend on: the suite (and the doctests of src/, collected after tests/) runs Keras on torch;
# tests/integrations/test_keras.py repeats its tests on JAX in a subprocess.
os.environ.setdefault("KERAS_BACKEND", "torch")


@pytest.fixture
def blobs():
    """A linearly separable 3-class problem: 240 samples, 8 features."""
    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 8, generator=gen) * 3
    y = torch.arange(240) % 3
    X = centers[y] + torch.randn(240, 8, generator=gen)
    return X, y


@pytest.fixture
def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))

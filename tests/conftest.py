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

# --doctest-modules would also collect every conftest.py as a module named ``conftest``; two of
# them then clash ("import file mismatch"), depending on the folders' order. They hold no
# doctests, and pytest still loads them as conftests.
collect_ignore_glob = ["conftest.py", "*/conftest.py"]


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


def _check_legends_clear(fig):
    """Assert every legend of ``fig`` lies inside the figure and off every axes and data line
    (in display coordinates, after drawing); return the legends."""
    from matplotlib.transforms import Bbox

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None] + fig.legends
    for legend in legends:
        box = legend.get_window_extent(renderer)
        assert fig.bbox.x0 - 1 <= box.x0 and box.x1 <= fig.bbox.x1 + 1, "legend off the figure"
        assert fig.bbox.y0 - 1 <= box.y0 and box.y1 <= fig.bbox.y1 + 1, "legend off the figure"
        for ax in fig.axes:
            frame = ax.get_window_extent(renderer)
            assert not box.overlaps(frame), f"a legend covers the axes {ax.get_title()!r}"
            for line in ax.get_lines():
                path = line.get_transform().transform_path(line.get_path())
                if len(path.vertices) == 0:
                    continue
                shown = Bbox.intersection(path.get_extents(), frame)
                assert shown is None or not box.overlaps(shown), \
                    f"a legend covers the line {line.get_label()!r}"
    return legends


@pytest.fixture
def figures():
    """A list to append matplotlib figures to; they are closed after the test."""
    from lrtune.plots import pyplot

    made = []
    yield made
    for fig in made:
        pyplot().close(fig)


@pytest.fixture
def legends_clear():
    """``legends_clear(fig)``: check that no legend of ``fig`` covers data; the legends."""
    return _check_legends_clear


def legend_texts(legend) -> list[str]:
    return [t.get_text() for t in legend.get_texts()]


@pytest.fixture
def texts_of():
    """``texts_of(legend)``: the labels of a legend's entries."""
    return legend_texts

"""Figures of datasets: a grid of samples with class names (seed 000), keypoints on faces (004)."""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import numpy as np

from lrtune.data.keypoints import unit_to_pixels
from lrtune.plots import pyplot


def _as_images(X) -> np.ndarray:
    """``(N, 1, H, W)`` or ``(N, H, W)`` tensors/arrays to ``(N, H, W)`` NumPy."""
    images = np.asarray(X.detach().cpu() if hasattr(X, "detach") else X, dtype=np.float32)
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.ndim != 3:
        raise ValueError(f"X must be grayscale images (N, 1, H, W) or (N, H, W), "
                         f"got shape {images.shape}")
    return images


def _save(fig, path: str | PathLike | None, dpi: int) -> None:
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi)


def plot_sample_grid(X, y, class_names=None, *, n_rows: int = 4, n_cols: int = 10,
                     path: str | PathLike | None = None, dpi: int = 300):
    """The first ``n_rows × n_cols`` images, each titled with its class name.

    Args:
        X: images ``(N, 1, H, W)`` or ``(N, H, W)``.
        y: integer labels.
        class_names: label -> name (``splits.class_names``); the label itself when None.
        n_rows, n_cols: grid size (fewer images fill fewer cells).
        path: where to save the PNG (folders are created); None to only return the figure.
        dpi: resolution of the saved file (the seed's 300 by default).

    Returns:
        The matplotlib figure.
    """
    plt = pyplot()
    images = _as_images(X)
    labels = np.asarray(y.cpu() if hasattr(y, "cpu") else y).astype(int)
    if n_rows <= 0 or n_cols <= 0:
        raise ValueError(f"n_rows and n_cols must be > 0, got {n_rows} and {n_cols}")
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.2 * n_cols, 1.5 * n_rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= len(images):
            continue
        ax.imshow(images[i], cmap="binary", interpolation="nearest")
        name = class_names[labels[i]] if class_names is not None else str(labels[i])
        ax.set_title(name, fontsize=8)
    fig.subplots_adjust(wspace=0.2, hspace=0.5)
    _save(fig, path, dpi)
    return fig


def plot_keypoints(X, y, predicted=None, *, n: int = 16, n_cols: int = 4,
                   path: str | PathLike | None = None, dpi: int = 150):
    """Faces with their keypoints (and a model's predictions when given) overlaid.

    Args:
        X: face images ``(N, 1, S, S)`` or ``(N, S, S)``.
        y: targets ``(N, 30)`` in unit coordinates (NaN points are not drawn).
        predicted: optional predictions in the same layout, drawn as crosses.
        n: how many faces (the first ``n``).
        n_cols: faces per row.
        path: where to save the PNG; None to only return the figure.
        dpi: resolution of the saved file.

    Returns:
        The matplotlib figure.
    """
    plt = pyplot()
    images = _as_images(X)[:n]
    size = images.shape[-1]
    true = unit_to_pixels(np.asarray(y[:n], dtype=np.float32).reshape(len(images), -1, 2), size)
    pred = None
    if predicted is not None:
        pred = np.asarray(predicted[:n].detach().cpu() if hasattr(predicted, "detach")
                          else predicted[:n], dtype=np.float32)
        pred = unit_to_pixels(pred.reshape(len(images), -1, 2), size)
    n_rows = -(-len(images) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.2 * n_cols, 2.2 * n_rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= len(images):
            continue
        ax.imshow(images[i], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.scatter(true[i, :, 0], true[i, :, 1], s=10, c="tab:red", marker="o",
                   label="keypoints")
        if pred is not None:
            ax.scatter(pred[i, :, 0], pred[i, :, 1], s=14, c="tab:cyan", marker="x",
                       label="predicted")
        ax.set_xlim(-0.5, size - 0.5)
        ax.set_ylim(size - 0.5, -0.5)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.25 / n_rows))
    _save(fig, path, dpi)
    return fig

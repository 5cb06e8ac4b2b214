"""The sweep's figure: final validation metric against lr, and every rate's curves."""

from __future__ import annotations

import math

import numpy as np

from lrtune.plots import pyplot


def _series(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def plot_sweep(result):
    """Left: final valid metric per rate on a log lr axis (chosen rate marked, diverged as x).
    Right: validation metric (solid) and training loss (dotted, right axis) against epochs."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    lrs = np.asarray(result.lrs, dtype=float)
    final = _series(result.final_metric)
    ok = np.isfinite(final)
    left.plot(lrs[ok], final[ok], "o-", color="tab:blue", label=f"final valid {result.metric}")
    if (~ok).any():
        finite = final[ok]
        y = (np.nanmin(finite) if result.mode == "max" else np.nanmax(finite)) if ok.any() else 0
        left.plot(lrs[~ok], np.full((~ok).sum(), y), "x", color="tab:red", ms=9, mew=2,
                  label="diverged")
    if result.chosen_index is not None:
        i = result.chosen_index
        tol = result.tolerance[i] if isinstance(result.tolerance, list) else result.tolerance
        left.plot([lrs[i]], [final[i]], "*", color="tab:orange", ms=16,
                  label=f"chosen: {lrs[i]:.3g}")
        left.axhspan(final[i] - tol if result.mode == "max" else final[i],
                     final[i] if result.mode == "max" else final[i] + tol,
                     color="tab:orange", alpha=0.1)
    left.set_xscale("log")
    left.set_xlabel("learning rate")
    left.set_ylabel(f"valid {result.metric} (final)")
    left.set_title(f"sweep of {len(lrs)} rates ({result.engine})")
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)

    cmap = plt.get_cmap("viridis")
    epochs = np.asarray(result.epochs, dtype=float)
    twin = right.twinx()
    for i, lr in enumerate(lrs):
        color = cmap(i / max(len(lrs) - 1, 1))
        right.plot(epochs, _series(result.valid_metric[i]), "-", color=color, lw=2 if
                   i == result.chosen_index else 1, label=f"{lr:.3g}")
        loss = _series(result.train_loss[i])
        if np.isfinite(loss).any():
            twin.plot(epochs, loss, ":", color=color, lw=1)
    right.set_xlabel("epoch")
    right.set_ylabel(f"valid {result.metric} (solid)")
    twin.set_ylabel("train loss (dotted)")
    finite_losses = [v for row in result.train_loss for v in row
                     if v is not None and math.isfinite(v)]
    if finite_losses and min(finite_losses) > 0:
        twin.set_yscale("log")
    right.set_title("learning curves per rate")
    right.legend(fontsize=7, title="lr", ncol=2)
    right.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig

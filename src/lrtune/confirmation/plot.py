"""The sweep's figure: final validation metric against lr, and every rate's curves."""

from __future__ import annotations

import math

import numpy as np

from lrtune.plots import legend_beside, pyplot


def _series(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _status(result, i: int) -> str:
    if i == result.chosen_index:
        return " (chosen)"
    if result.stopped[i]:
        return f" (stopped at step {result.stopped_step[i]})"
    return " (diverged)" if result.diverged[i] else ""


def _compared(result) -> tuple[list, str, str, str]:
    """What the choice compared: the scores, their mode (max/min), label and axis label."""
    if result.scores is None:  # a result saved before the choice rules
        return (result.final_metric, result.mode, f"final valid {result.metric}",
                f"valid {result.metric} (final)")
    mode = "min" if result.choice == "window" else result.mode
    return result.scores, mode, result.score_name, result.score_name


def _at_stop(result, i: int) -> float:
    """A stopped copy's validation score at its rung (the loss for the window rule)."""
    at = result.steps.index(result.stopped_step[i])
    curve = result.valid_loss if result.choice == "window" else result.valid_metric
    return curve[i][at]


def plot_sweep(result):
    """Three panels: the score the choice compared per rate on a log lr axis (chosen rate
    marked, its noise band shaded, diverged rates as x, rates stopped by halving as hollow
    circles at their score there); the valid metric and the training loss of every rate
    against epochs, one colour per rate, with one legend of rates for both."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    fig, (final_ax, metric_ax, loss_ax) = plt.subplots(
        1, 3, figsize=(15, 4.5), width_ratios=(1.1, 1, 1), layout="constrained")
    lrs = np.asarray(result.lrs, dtype=float)
    values, mode, name, ylabel = _compared(result)
    final = _series(values)
    ok = np.isfinite(final)
    final_ax.plot(lrs[ok], final[ok], "o-", color="tab:blue", label=name)
    if (~ok).any() and any(result.diverged):
        finite = final[ok]
        y = (np.nanmin(finite) if mode == "max" else np.nanmax(finite)) if ok.any() else 0
        gone = np.array(result.diverged)
        final_ax.plot(lrs[gone], np.full(gone.sum(), y), "x", color="tab:red", ms=9, mew=2,
                      label="diverged")
    stopped = [i for i in range(len(lrs)) if result.stopped[i]]
    if stopped:
        final_ax.plot(lrs[stopped], [_at_stop(result, i) for i in stopped], "o", mfc="none",
                      color="tab:gray", label="stopped early by halving\n(score at its rung)")
    if result.chosen_index is not None:
        i = result.chosen_index
        tol = result.tolerance[i] if isinstance(result.tolerance, list) else result.tolerance
        final_ax.plot([lrs[i]], [final[i]], "*", color="tab:orange", ms=16,
                      label=f"chosen: {lrs[i]:.3g}")
        final_ax.axhspan(final[i] - tol if mode == "max" else final[i],
                         final[i] if mode == "max" else final[i] + tol,
                         color="tab:orange", alpha=0.1, label=f"within noise ({tol:.2g})")
    final_ax.set_xscale("log")
    final_ax.margins(x=0.08)  # the chosen star is large: keep it off the spines
    final_ax.set_xlabel("learning rate")
    final_ax.set_ylabel(ylabel)
    final_ax.set_title(f"sweep of {len(lrs)} rates ({result.engine})")
    final_ax.grid(True, which="both", alpha=0.3)
    legend_beside(final_ax)

    cmap = plt.get_cmap("viridis")
    epochs = np.asarray(result.epochs, dtype=float)
    for i, lr in enumerate(lrs):
        style = dict(color=cmap(i / max(len(lrs) - 1, 1)),
                     lw=2.5 if i == result.chosen_index else 1.2,
                     marker="." if len(epochs) <= 20 else None,  # a lone point stays visible
                     label=f"{lr:.3g}{_status(result, i)}")
        metric_ax.plot(epochs, _series(result.valid_metric[i]), **style)
        loss_ax.plot(epochs, _series(result.train_loss[i]), **style)
    metric_ax.set_ylabel(f"valid {result.metric}")
    metric_ax.set_title(f"valid {result.metric} per rate")
    loss_ax.set_ylabel("train loss")
    loss_ax.set_title("train loss per rate")
    finite_losses = [v for row in result.train_loss for v in row
                     if v is not None and math.isfinite(v)]
    if finite_losses and min(finite_losses) > 0:
        loss_ax.set_yscale("log")
    for ax in (metric_ax, loss_ax):
        ax.set_xlabel("epoch")
        if np.all(epochs == np.round(epochs)):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, which="both", alpha=0.3)
    legend_beside(loss_ax, title="lr", fontsize=7,
                  ncol=1 if len(lrs) <= 16 else 2)  # the colours of both panels
    return fig

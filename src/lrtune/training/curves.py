"""The learning-curve figure of a run: losses and metrics per epoch, lr and momentum per step."""

from __future__ import annotations

from lrtune.plots import LR_LABEL, legend_beside, pyplot
from lrtune.training.history import History

METRIC_COLORS = ("tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan",
                 "tab:gray", "tab:red")


def plot_history(history: History):
    """One panel per scale, each with its legend beside it: train/valid loss per epoch, the
    validation metrics per epoch (when any), then the learning rate and the momentum (or Adam's
    beta1) of the first param group at every optimizer step (when recorded).

    Returns the matplotlib figure.
    """
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    epochs = history.column("epoch")
    metric_keys = [k for k in (history.epochs[0] if history.epochs else {})
                   if k.startswith("valid_") and k != "valid_loss"]
    batches = history.batches
    steps = [b["step"] for b in batches]
    has_momentum = bool(batches) and all(b["momentum"] is not None for b in batches)
    heights = [3.0] + [2.0] * bool(metric_keys) + [1.5] * bool(batches) + [1.5] * has_momentum
    fig, axes = plt.subplots(len(heights), 1, figsize=(8, 0.6 + sum(heights)),
                             height_ratios=heights, squeeze=False, layout="constrained")
    panels = iter(axes[:, 0])

    loss_ax = next(panels)
    best = None
    loss_ax.plot(epochs, history.column("train_loss"), "o-", color="tab:blue", label="train loss")
    if any(v is not None for v in history.column("valid_loss")):
        loss_ax.plot(epochs, history.column("valid_loss"), "o-", color="tab:orange",
                     label="valid loss")
        best = history.best("valid_loss")
    epoch_axes = [loss_ax]
    if metric_keys:
        metric_ax = next(panels)
        for key, color in zip(metric_keys, METRIC_COLORS * len(metric_keys), strict=False):
            metric_ax.plot(epochs, history.column(key), "s--", color=color,
                           label=key.replace("_", " "))
        metric_ax.set_ylabel("valid metric")
        epoch_axes.append(metric_ax)
    loss_ax.set_ylabel("loss")
    loss_ax.set_title("learning curves")
    for ax in epoch_axes:
        if best is not None:
            ax.axvline(best[0], color="0.5", ls="--", lw=1, label=f"best epoch {best[0]}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        legend_beside(ax)

    step_panels = [("lr", "tab:red", "-", LR_LABEL)] * bool(batches)
    if has_momentum:
        step_panels.append(("momentum", "tab:purple", "-", "momentum / beta1 (param group 0)"))
    for key, color, ls, label in step_panels:
        ax = next(panels)
        ax.plot(steps, [b[key] for b in batches], ls, color=color, label=label)
        ax.set_ylabel(key)
        ax.set_xlabel("optimizer step")
        ax.grid(True, alpha=0.3)
        legend_beside(ax)
    return fig

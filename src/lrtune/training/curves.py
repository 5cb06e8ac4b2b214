"""The learning-curve figure of a run: losses and metrics per epoch, lr and momentum per step."""

from __future__ import annotations

from lrtune.plots import pyplot
from lrtune.training.history import History


def plot_history(history: History):
    """Two panels: train/valid loss (+ valid metrics on a second axis) per epoch, and the
    learning rate (+ momentum) of every optimizer step. Returns the matplotlib figure."""
    plt = pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6.5), height_ratios=(3, 2))
    epochs = history.column("epoch")
    top.plot(epochs, history.column("train_loss"), "o-", color="tab:blue", label="train loss")
    if any(v is not None for v in history.column("valid_loss")):
        top.plot(epochs, history.column("valid_loss"), "o-", color="tab:orange", label="valid loss")
        best = history.best("valid_loss")
        if best is not None:
            top.axvline(best[0], color="0.5", ls="--", lw=1, label=f"best epoch {best[0]}")
    top.set_xlabel("epoch")
    top.set_ylabel("loss")
    top.grid(True, alpha=0.3)
    handles, labels = top.get_legend_handles_labels()
    metric_keys = [k for k in (history.epochs[0] if history.epochs else {})
                   if k.startswith("valid_") and k not in ("valid_loss",)]
    if metric_keys:
        right = top.twinx()
        for key in metric_keys:
            right.plot(epochs, history.column(key), "s--", color="tab:green", label=key)
        right.set_ylabel("metric")
        more = right.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    top.legend(handles, labels, fontsize=8)
    top.set_title("learning curves")

    batches = history.batches
    steps = [b["step"] for b in batches]
    bottom.plot(steps, [b["lr"] for b in batches], color="tab:red", label="lr")
    bottom.set_xlabel("optimizer step")
    bottom.set_ylabel("lr")
    bottom.grid(True, alpha=0.3)
    if batches and all(b["momentum"] is not None for b in batches):
        right = bottom.twinx()
        right.plot(steps, [b["momentum"] for b in batches], color="tab:purple", label="momentum")
        right.set_ylabel("momentum")
    fig.tight_layout()
    return fig

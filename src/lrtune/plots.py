"""Figures. matplotlib is imported here only, and lazily, with the non-interactive backend."""

from __future__ import annotations

import numpy as np

RULE_STYLES = {
    "steepest": ("tab:red", "v"),
    "valley": ("tab:green", "o"),
    "min_div_10": ("tab:purple", "s"),
    "half_turn": ("tab:orange", "D"),
}


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_finder(result, ax=None):
    """Loss against learning rate for a :class:`~lrtune.finder.result.FinderResult`."""
    plt = pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4.5))
    else:
        fig = ax.figure
    lrs = np.asarray(result.lrs)
    raw = np.asarray(result.losses)
    smooth = np.asarray(result.smoothed_losses)
    ax.plot(lrs, raw, color="0.7", lw=1, label=f"{result.monitor} loss (raw)")
    ax.plot(lrs, smooth, color="tab:blue", lw=2, label="smoothed")
    if len(smooth):
        ax.axhline(smooth.min(), color="0.4", ls="--", lw=1, label="minimum (smoothed)")
    for name, lr in result.suggestions.items():
        if lr is None:
            continue
        color, marker = RULE_STYLES.get(name, ("black", "x"))
        y = np.interp(np.log10(lr), np.log10(lrs), smooth) if len(lrs) else np.nan
        chosen = " ← suggested" if name == result.rule and result.suggested_lr else ""
        ax.plot([lr], [y], marker=marker, color=color, ms=9 if chosen else 7, ls="none",
                label=f"{name}: {lr:.2g}{chosen}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    if len(smooth):
        # keep the explosion at the end from flattening the interesting part
        top = max(smooth[0], np.percentile(raw, 90))
        bottom = min(raw.min(), smooth.min())
        ax.set_ylim(bottom - 0.05 * (top - bottom), top + 0.1 * (top - bottom))
    title = "learning-rate range test"
    if result.verdict != "ok":
        title += f": inconclusive ({result.reason.split(':')[0]})"
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig

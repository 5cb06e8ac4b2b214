"""Figures. matplotlib is imported here only, and lazily, with the non-interactive backend.

Every legend is drawn beside its axes (:func:`legend_beside`), never over the data, and every
figure lays itself out with matplotlib's constrained layout, which makes room for those legends.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

RULE_STYLES = {
    "steepest": ("tab:red", "v"),
    "valley": ("tab:green", "o"),
    "min_div_10": ("tab:purple", "s"),
    "half_turn": ("tab:orange", "D"),
}
COINCIDE_RTOL = 0.02  # suggestions this close are one marker: they would hide each other
LR_LABEL = "learning rate (param group 0)"  # what every per-step lr record holds


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def legend_beside(ax, handles=None, labels=None, **kwargs):
    """A legend to the right of ``ax``, outside it, so that it can never cover data.

    With a constrained-layout figure the axes shrink to make room for it.
    """
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    kwargs.setdefault("fontsize", 8)
    return ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                     borderaxespad=0.0, **kwargs)


def save_figure(fig, path: str | Path, dpi: int = 300) -> Path:
    """Write ``fig`` as a PNG (300 dpi, cropped to its content) and close it."""
    path = Path(path)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    pyplot().close(fig)
    return path


def coinciding(values: dict[str, float | None], rtol: float = COINCIDE_RTOL
               ) -> list[tuple[list[str], float]]:
    """Group the names whose values lie within ``rtol`` of each other, in ascending value.

    Each group is ``(names in their original order, value of its first name)``; ``None``
    values are left out.

    Examples:
        >>> coinciding({"steepest": 0.26, "valley": 0.05, "half_turn": 0.2601, "x": None})
        [(['valley'], 0.05), (['steepest', 'half_turn'], 0.26)]
    """
    order = {name: i for i, name in enumerate(values)}
    groups: list[list[str]] = []
    for name, v in sorted(((n, v) for n, v in values.items() if v is not None),
                          key=lambda item: item[1]):
        if groups and math.isclose(v, values[groups[-1][0]], rel_tol=rtol):
            groups[-1].append(name)
        else:
            groups.append([name])
    out = []
    for names in groups:
        names.sort(key=order.__getitem__)
        out.append((names, float(values[names[0]])))  # type: ignore[arg-type]
    return out


def _where(lr: float, lo: float, hi: float) -> str:
    """``""`` inside ``[lo, hi]``, else a note saying on which side of the sweep it lies."""
    if lr < lo * (1 - 1e-9):
        return " (below the swept range)"
    if lr > hi * (1 + 1e-9):
        return " (above the swept range)"
    return ""


def plot_finder(result, ax=None, *, confirmed_lr: float | None = None):
    """Loss against learning rate for a :class:`~lrtune.finder.result.FinderResult`.

    Suggestions that coincide share one marker and one legend entry
    (``"steepest = half_turn: 0.26"``); one outside the swept range appears in the legend only,
    so the x axis spans exactly the rates the sweep tried. ``confirmed_lr`` (the rate a
    confirmation by short training runs chose) is drawn as a vertical line.
    """
    plt = pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=(9, 4.5), layout="constrained")
    else:
        fig = ax.figure
    lrs = np.asarray(result.lrs, dtype=float)
    raw = np.asarray(result.losses, dtype=float)
    smooth = np.asarray(result.smoothed_losses, dtype=float)
    ax.plot(lrs, raw, color="0.7", lw=1, label=f"{result.monitor} loss (raw)")
    ax.plot(lrs, smooth, color="tab:blue", lw=2, label="smoothed")
    if len(smooth):
        ax.axhline(smooth.min(), color="0.4", ls="--", lw=1, label="minimum (smoothed)")
    lo, hi = (float(lrs.min()), float(lrs.max())) if len(lrs) else (0.0, math.inf)
    legend_only = []
    for names, lr in coinciding(result.suggestions):
        chosen = result.rule in names and result.suggested_lr is not None
        if chosen:
            lr = float(result.suggestions[result.rule])
        color, marker = RULE_STYLES.get(result.rule if chosen else names[0], ("black", "x"))
        outside = _where(lr, lo, hi)
        label = f"{' = '.join(names)}: {lr:.2g}{' ← suggested' if chosen else ''}{outside}"
        style = dict(marker=marker, color=color, ms=11 if chosen else 8, mfc="none", mew=2,
                     ls="none", label=label)
        if outside:
            legend_only.append(_handle(**style))
            continue
        y = np.interp(np.log10(lr), np.log10(lrs), smooth) if len(lrs) else np.nan
        ax.plot([lr], [y], **style)
    if confirmed_lr is not None:
        outside = _where(confirmed_lr, lo, hi)
        style = dict(color="black", ls="-.", lw=1.5,
                     label=f"confirmed by training: {confirmed_lr:.2g}{outside}")
        if outside:
            legend_only.append(_handle(**style))
        else:
            ax.axvline(confirmed_lr, **style)
    ax.set_xscale("log")
    if len(lrs):
        ax.set_xlim(lo, hi)  # the sweep's own range
    ax.set_xlabel(LR_LABEL)
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
    handles, labels = ax.get_legend_handles_labels()
    legend_beside(ax, handles + legend_only, labels + [h.get_label() for h in legend_only])
    ax.grid(True, which="both", alpha=0.3)
    return fig


def _handle(**style):
    """A legend entry drawn nowhere on the axes."""
    from matplotlib.lines import Line2D

    return Line2D([], [], **style)

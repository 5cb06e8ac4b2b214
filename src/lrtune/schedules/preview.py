"""Preview schedules before training: values per step, jump detection, a table and a plot."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from lrtune.schedules.presets import check_total_steps
from lrtune.schedules.primitives import Schedule

JUMP_RATIO = 4.0  # a change this many times both neighbouring changes is a jump ...
JUMP_MIN_FRACTION = 0.05  # ... if it also exceeds this fraction of the whole range


def schedule_values(schedules: Schedule | Mapping[str, Schedule],
                    total_steps: int) -> dict[str, list[float]]:
    """``{key: [value at step 0, 1, …, total_steps - 1]}`` (a bare schedule is ``lr``).

    Examples:
        >>> from lrtune.schedules import linear
        >>> schedule_values(linear(1.0, 0.0, 2), 3)
        {'lr': [1.0, 0.5, 0.0]}
    """
    check_total_steps(total_steps)
    if callable(schedules):
        schedules = {"lr": schedules}
    return {key: [float(s(t)) for t in range(total_steps)] for key, s in schedules.items()}


def find_jumps(values: Sequence[float]) -> list[int]:
    """Steps ``t`` where the value jumps between ``t - 1`` and ``t``.

    A jump is a change more than ``JUMP_RATIO`` times the changes on either side of it and
    more than ``JUMP_MIN_FRACTION`` of the range: a step decay, a warm restart, pieces of a
    join that do not meet; not a smooth curve, a kink or the start of a ramp (whose
    neighbouring changes are alike).

    Examples:
        >>> find_jumps([1.0] * 5 + [0.1] * 5)
        [5]
        >>> find_jumps([1.0, 1.0, 0.9, 0.7, 0.5, 0.3, 0.1, 0.1])
        []
    """
    v = np.asarray(values, dtype=np.float64)
    if v.size < 3:
        return []
    spread = float(np.nanmax(v) - np.nanmin(v))
    if not spread > 0:
        return []
    change = np.abs(np.diff(v))
    padded = np.concatenate([[0.0], change, [0.0]])
    neighbours = np.maximum(padded[:-2], padded[2:])
    big = (change > JUMP_RATIO * neighbours) & (change > JUMP_MIN_FRACTION * spread)
    return [int(i) + 1 for i in np.flatnonzero(big)]


def schedule_table(values: Mapping[str, Sequence[float]], rows: int = 11) -> str:
    """A compact text table: ``rows`` evenly spaced steps plus both sides of every jump.

    Examples:
        >>> print(schedule_table({"lr": [1.0, 1.0, 1.0, 0.1, 0.1]}, rows=2))
         step          lr
            0           1
            2           1
            3         0.1  <- jump: lr
            4         0.1
    """
    n = len(next(iter(values.values())))
    jumps = {key: set(find_jumps(v)) for key, v in values.items()}
    steps = {round(s) for s in np.linspace(0, n - 1, min(rows, n))}
    for found in jumps.values():
        steps |= found | {t - 1 for t in found}
    lines = [f"{'step':>5}" + "".join(f"{key:>12}" for key in values)]
    for t in sorted(steps):
        row = f"{t:>5}" + "".join(f"{v[t]:>12.4g}" for v in values.values())
        flagged = [key for key in values if t in jumps[key]]
        lines.append(row + (f"  <- jump: {', '.join(flagged)}" if flagged else ""))
    return "\n".join(lines)


def plot_schedule(schedules: Schedule | Mapping[str, Schedule], total_steps: int, *,
                  title: str | None = None, out: str | Path | None = None):
    """Draw every scheduled value over the steps, jumps marked; save a PNG when ``out`` is given.

    Args:
        schedules: one schedule (drawn as ``lr``) or ``{key: schedule}``.
        total_steps: steps ``0 .. total_steps - 1`` to draw.
        title: figure title.
        out: a ``.png`` path to write (300 dpi); the figure is then closed.

    Returns:
        The matplotlib figure (one panel per hyperparameter, sharing the step axis).
    """
    from lrtune.plots import legend_beside, pyplot, save_figure

    plt = pyplot()
    values = schedule_values(schedules, total_steps)
    fig, axes = plt.subplots(len(values), 1, sharex=True, squeeze=False, layout="constrained",
                             figsize=(7, 2.2 + 1.8 * len(values)))
    steps = np.arange(total_steps)
    for ax, (key, v) in zip(axes[:, 0], values.items(), strict=True):
        ax.plot(steps, v, color="tab:blue", lw=1.8, marker="." if total_steps <= 60 else None)
        jumps = find_jumps(v)
        for t in jumps:
            ax.axvline(t, color="tab:red", ls=":", lw=1)
        if jumps:
            ax.plot(jumps, [v[t] for t in jumps], "o", color="tab:red", ms=5,
                    label=f"jump ({len(jumps)})")
            legend_beside(ax)
        ax.set_ylabel(key)
        ax.grid(True, alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    if title:
        axes[0, 0].set_title(title)
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        save_figure(fig, out)
    return fig

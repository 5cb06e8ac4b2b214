"""Suggestion rules: pure functions of ``(lrs, losses)``.

Every rule takes the learning rates of the sweep and the *smoothed* loss at each of them
(see :func:`smooth_curve`) and returns one learning rate, or ``None`` when the curve gives the
rule nothing to work with. Rules look at ``x = log10(lr)`` and ``y = loss``; ``m`` is the index
of the minimum of ``y``.

- ``steepest``: the rate where the loss falls fastest per decade, ``argmin dy/dx`` over
  ``[0, m)`` (strictly before the minimum: never the minimum's own rate).
- ``valley``: the middle (in log-lr) of the longest run of consecutive decreases of ``y``.
- ``min_div_10``: a tenth of the rate at the minimum, ``lr[m] / 10``.
- ``half_turn`` (seed 000): half the rate where the loss turns up, ``lr[m] / 2``.

:func:`verdict` says whether the curve supports any suggestion at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

DEFAULT_RULE = "steepest"  # chosen by benchmarks/bench_finder_quality.py
MIN_RELATIVE_DROP = 0.05  # a curve that falls less than this (relative) is "flat"
MIN_DROP_OVER_NOISE = 3.0  # the fall must be this many noise standard deviations
MIN_POINTS = 8


def _xy(lrs, losses) -> tuple[np.ndarray, np.ndarray]:
    x = np.log10(np.asarray(lrs, dtype=np.float64))
    y = np.asarray(losses, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"lrs and losses must be 1-D of one length, got {x.shape} and {y.shape}")
    return x, y


def steepest(lrs, losses) -> float | None:
    """The rate of steepest descent of the loss with respect to log10(lr), before the minimum."""
    x, y = _xy(lrs, losses)
    m = int(np.argmin(y))
    if m < 2:
        return None
    slope = np.gradient(y[: m + 1], x[: m + 1])[:m]  # the minimum's own point is excluded
    i = int(np.argmin(slope))
    return float(lrs[i]) if slope[i] < 0 else None


def valley(lrs, losses) -> float | None:
    """The log-midpoint of the longest run of consecutive decreases of the loss."""
    _, y = _xy(lrs, losses)
    falling = np.diff(y) < 0
    best_start, best_len, start = 0, 0, None
    for i, down in enumerate([*falling, False]):
        if down and start is None:
            start = i
        elif not down and start is not None:
            if i - start > best_len:
                best_start, best_len = start, i - start
            start = None
    if best_len < 2:
        return None
    # the run covers points best_start .. best_start + best_len; take the middle point
    return float(lrs[best_start + best_len // 2])


def min_div_10(lrs, losses) -> float | None:
    """A tenth of the rate at which the loss is lowest."""
    _, y = _xy(lrs, losses)
    return float(lrs[int(np.argmin(y))]) / 10.0


def half_turn(lrs, losses) -> float | None:
    """Seed 000: half the rate at which the loss turns up (its minimum)."""
    _, y = _xy(lrs, losses)
    return float(lrs[int(np.argmin(y))]) / 2.0


DESCRIPTIONS = {
    "steepest": "the rate where the loss falls fastest per decade of learning rate",
    "valley": "the middle of the longest stretch over which the loss keeps falling",
    "min_div_10": "a tenth of the rate at which the loss is lowest",
    "half_turn": "half the rate at which the loss turns up (seed 000)",
}

RULES: dict[str, Callable[..., float | None]] = {
    "steepest": steepest,
    "valley": valley,
    "min_div_10": min_div_10,
    "half_turn": half_turn,
}


def smooth_curve(losses, window: float) -> np.ndarray:
    """Zero-lag Gaussian smoothing; ``window`` is the kernel's width in points (≈ 2 sigma).

    Centred, so the smoothed curve is not shifted towards higher rates the way an online
    exponential average is. Near the ends the kernel is renormalised over the points that
    exist (no padding), so one noisy first or last batch is not repeated into a fake slope.

    Examples:
        >>> smooth_curve([0.0, 0.0, 3.0, 0.0, 0.0], window=2).round(3).tolist()
        [0.232, 0.771, 1.208, 0.771, 0.232]
    """
    y = np.asarray(losses, dtype=np.float64)
    sigma = window / 2.0
    if sigma < 0.5 or len(y) < 3:
        return y.copy()
    radius = int(np.ceil(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    weighted = np.convolve(np.pad(y, radius), kernel, mode="valid")
    mass = np.convolve(np.pad(np.ones_like(y), radius), kernel, mode="valid")
    return weighted / mass


class Stop(NamedTuple):
    """Where and why a sweep stopped: what :func:`verdict` needs to give the right advice."""

    reason: str  # "finished", "diverged" or "non_finite"
    lr: float
    steps: int  # optimizer steps taken
    num_iters: int | None  # steps planned (None when unknown)

    @property
    def early(self) -> bool:
        return self.reason != "finished"

    def describe(self) -> str:
        """``"diverged at lr 0.3 after 240 of 300 steps"``."""
        planned = f" of {self.num_iters}" if self.num_iters else ""
        what = "finished" if self.reason == "finished" else f"{self.reason} at lr {self.lr:.3g}"
        return f"{what} after {self.steps}{planned} steps"


def verdict(lrs, raw_losses, smoothed, *, stop: Stop | None = None) -> tuple[str, str]:
    """``("ok", "")`` when the curve shows a clear descent, else ``("inconclusive", reason)``.

    ``stop`` (where and why the sweep stopped) makes the advice fit the cause: "use more
    iterations" only when the sweep ran to its end with too few points, "lower start_lr"
    when it stopped early, and so on.
    """
    _, y = _xy(lrs, smoothed)
    raw = np.asarray(raw_losses, dtype=np.float64)
    early = stop is not None and stop.early
    where = f" (the sweep {stop.describe()})" if stop is not None else ""
    if len(y) < MIN_POINTS:
        if stop is None:
            advice = "lower start_lr if the sweep stopped early, else use more iterations"
        elif early:
            advice = "the loss blew up within the first points: lower start_lr"
        else:
            advice = f"use more iterations (at least {MIN_POINTS} points are needed)"
        return "inconclusive", f"too few points ({len(y)}){where}; {advice}"
    m = int(np.argmin(y))
    # the starting level: a robust average of the first few raw points (noise must not count
    # as descent)
    top = float(np.median(raw[: max(3, len(raw) // 20)]))
    drop = top - float(y[m])
    if m < 2 or drop <= 0:
        return "inconclusive", (
            f"no descent: the loss rose from the first steps{where}; lower start_lr (a model "
            "already trained to its minimum may have no descent to show)"
        )
    relative = drop / max(abs(top), 1e-12)
    if relative < MIN_RELATIVE_DROP:
        advice = ("it fell at no rate before it stopped: check that the model can learn, or "
                  "compare rates by training (lrtune.sweep)" if early else
                  "widen the range (raise end_lr) or check that the model can learn")
        return "inconclusive", (
            f"flat: the smoothed loss fell only {100 * relative:.1f}% over the sweep{where}; "
            f"{advice}"
        )
    residual = raw[: m + 1] - y[: m + 1]
    noise = 1.4826 * float(np.median(np.abs(residual - np.median(residual))))
    if drop < MIN_DROP_OVER_NOISE * noise:
        return "inconclusive", (
            f"too noisy: the loss fell by {drop:.3g} but its noise is {noise:.3g}{where}; "
            "use a larger batch (or accumulation_steps) or validation mode"
        )
    if m >= len(y) - 2:
        if early:
            return "inconclusive", (
                f"no turn: the loss was still falling when the sweep stopped{where}; the turn "
                "is too sharp to read: use more iterations or a lower end_lr (more points "
                "around it)"
            )
        return "inconclusive", (
            f"no turn: the loss was still falling at the end of the sweep, lr {lrs[-1]:.3g}"
            f"{where}; raise end_lr to see where it turns up"
        )
    return "ok", ""


def suggest_all(lrs, smoothed) -> dict[str, float | None]:
    """The value of every rule on one smoothed curve."""
    return {name: rule(lrs, smoothed) for name, rule in RULES.items()}

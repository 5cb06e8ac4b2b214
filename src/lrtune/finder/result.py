"""FinderResult: what a range test measured, what it suggests, and how to save and show it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lrtune.result_io import JsonResult


@dataclass
class FinderResult(JsonResult):
    """The outcome of :func:`lrtune.find_lr`.

    Attributes:
        lrs: learning rate of the reference param group (the first with ``lr > 0``) at each
            point of the monitored curve.
        losses: the monitored raw loss at each point (training loss, or validation loss in
            validation mode).
        smoothed_losses: ``losses`` after zero-lag smoothing; the rules read this curve.
        train_lrs, train_losses: every optimizer step's rate and training loss.
        stop_reason: ``"finished"``, ``"diverged"`` or ``"non_finite"``.
        stop_lr: the rate at which the sweep stopped: the step that diverged or went
            non-finite (that step's update is not applied), else the last rate.
        suggestions: the value of every rule (``None`` where a rule found nothing).
        rule: the rule whose value is ``suggested_lr``.
        suggested_lr: the suggestion, or ``None`` when the verdict is inconclusive.
        verdict: ``"ok"`` or ``"inconclusive"``; ``reason`` says why when inconclusive.
        settings: the arguments the sweep ran with (and ``reference_group``,
            ``group_ratios``: each group's lr over the reference group's, as the user set them).
        suggested_lrs: the suggestion for every param group (``suggested_lr`` times the
            group's ratio; 0 for a frozen group), or ``None`` when inconclusive.
    """

    lrs: list[float]
    losses: list[float]
    smoothed_losses: list[float]
    train_lrs: list[float]
    train_losses: list[float]
    stop_reason: str
    stop_lr: float
    suggestions: dict[str, float | None]
    rule: str
    suggested_lr: float | None
    verdict: str
    reason: str = ""
    monitor: str = "train"
    settings: dict[str, Any] = field(default_factory=dict)
    suggested_lrs: list[float] | None = None  # absent from results saved before it existed

    KIND = "range-test result"
    # a confirmation adds these to lr_find.json (AutoLRResult.save, `lrtune find --confirm`)
    EXTRA_KEYS = ("confirmed_lr", "confirm")

    def summary(self) -> str:
        """One line for people: the suggestion and the verdict, or why there is none."""
        steps = len(self.train_losses)
        planned = self.settings.get("num_iters")
        stopped = (f"stopped: {self.stop_reason} at lr {self.stop_lr:.3g} after {steps}"
                   f"{f' of {planned}' if planned else ''} steps")
        if self.suggested_lr is None:
            return f"inconclusive: {self.reason}; {stopped}"
        groups = ""
        if self.suggested_lrs is not None and len(self.suggested_lrs) > 1:
            groups = " (per group: " + ", ".join(f"{lr:.3g}" for lr in self.suggested_lrs) + ")"
        return f"suggested lr {self.suggested_lr:.3g}{groups} ({self.rule}); verdict ok; {stopped}"

    def apply(self, optimizer) -> None:
        """Set every param group's ``lr`` to its suggestion (frozen groups stay at 0).

        Call it before creating a scheduler (schedulers read the rate they start from).

        Raises:
            ValueError: the verdict is inconclusive, or the optimizer's number of param groups
                differs from the one the range test ran with.
        """
        if self.suggested_lr is None:
            raise ValueError(f"no suggestion to apply: the range test was inconclusive "
                             f"({self.reason})")
        from lrtune.finder.range_test import apply_lrs

        apply_lrs(optimizer, self.suggested_lrs or [self.suggested_lr], "the range test")

    # -- figures -------------------------------------------------------------------------
    def plot(self, ax=None, *, confirmed_lr: float | None = None):
        """Loss against lr (log axis): raw and smoothed curves, the minimum, every suggestion.

        Args:
            ax: axes to draw into (a new figure when None).
            confirmed_lr: the rate a confirmation by training chose (``lrtune find
                --confirm`` records it as ``confirmed_lr`` in ``lr_find.json``), drawn as a
                vertical line.

        Returns the matplotlib Figure.
        """
        from lrtune.plots import plot_finder

        return plot_finder(self, ax=ax, confirmed_lr=confirmed_lr)

    def save(self, out_dir: str | Path, stem: str = "lr_find") -> tuple[Path, Path]:
        """Write ``stem.png`` (300 dpi) and ``stem.json`` into ``out_dir``; return both paths."""
        return super().save(out_dir, stem)

    @property
    def min_loss_lr(self) -> float:
        return float(self.lrs[int(np.argmin(self.smoothed_losses))])

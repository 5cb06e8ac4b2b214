"""Successive halving inside a sweep: stop the rates that are clearly worse at a few rungs.

At each rung (a fraction of the budget) every live copy is scored on the validation data; a
copy whose score (the sweep's metric) is worse than the best by more than ``z`` times the
noise of that difference stops there and costs no more compute. The noise is
:func:`lrtune.confirmation.result.tolerances`: for accuracy the standard error of the paired
difference on the same validation samples, for a loss metric 1 % of the best loss.

Three guards keep it conservative, because a short run's leader is not always the long run's
winner (a rate that learns fast can collapse late, a slow rate can catch up):

- at most half of the live copies stop at one rung, and at least ``min_keep`` stay;
- the rate just below the lowest rate still in contention is kept (if the leaders collapse
  later, the final choice still has a lower rate to fall back on);
- early rungs ask for more evidence: ``z`` grows as ``sqrt(0.5 / fraction)`` before half the
  budget (2.83 standard errors at a quarter, 2 at a half).

A sweep under a schedule (``lr_scale``) halves too. Annealing can reorder the rates late (a
rate too high at its peak can be the best once it decays), which is what the guards are for;
measured on the three scheduled tasks of ``benchmarks/RESULTS.md`` §8, halving kept the rate
on 8 of 9 calls (the ninth passed too) and cut their compute by 16-27 %. A sweep of
``min_keep`` rates or fewer does not halve (nothing could stop).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_RUNGS = (0.25, 0.5)  # fractions of the budget
HALVING_Z = 2.0  # standard errors from half the budget on
MIN_KEEP = 3


@dataclass(frozen=True)
class Halving:
    """Where the rungs are (fractions of the budget) and how cautious each drop is."""

    rungs: tuple[float, ...] = DEFAULT_RUNGS
    z: float = HALVING_Z
    min_keep: int = MIN_KEEP

    def z_at(self, fraction: float) -> float:
        """Standard errors a copy must be behind to stop at the rung at ``fraction``.

        Examples:
            >>> h = Halving()
            >>> round(h.z_at(0.25), 2), h.z_at(0.5), h.z_at(0.75)
            (2.83, 2.0, 2.0)
        """
        return self.z * math.sqrt(0.5 / fraction) if fraction < 0.5 else self.z

    def steps(self, total: int, per_epoch: int) -> list[int]:
        """The optimizer steps after which the rungs are: each at the epoch boundary nearest
        its fraction of ``total`` (so the curves keep one point per epoch), or at the step
        itself when the budget is shorter than two epochs; never the first or last step.

        Examples:
            >>> Halving().steps(total=200, per_epoch=10), Halving().steps(total=8, per_epoch=10)
            ([50, 100], [2, 4])
        """
        out = []
        for f in self.rungs:
            at = f * total
            if total >= 2 * per_epoch:
                at = per_epoch * max(1, round(at / per_epoch))
            at = round(at)
            if 1 <= at < total and at not in out:
                out.append(at)
        return out


def resolve_halving(halving) -> Halving | None:
    """The halving plan of a sweep's ``halving`` argument (None: no halving).

    ``"auto"`` or ``True``: the default rungs; ``False`` or ``None``: none; a sequence of
    fractions in (0, 1), ascending: those rungs.

    Raises:
        ValueError: any other value.

    Examples:
        >>> resolve_halving("auto").rungs, resolve_halving(False)
        ((0.25, 0.5), None)
        >>> resolve_halving([0.5]).rungs
        (0.5,)
    """
    if halving is None or halving is False:
        return None
    if halving is True:
        return Halving()
    if isinstance(halving, str):
        if halving != "auto":
            raise ValueError(f"halving must be 'auto', True, False or ascending fractions of "
                             f"the budget in (0, 1), got {halving!r}")
        return Halving()
    ok = isinstance(halving, Sequence) and len(halving) > 0 and all(
        isinstance(f, int | float) and not isinstance(f, bool) and 0 < f < 1 for f in halving)
    if not ok or list(halving) != sorted(set(halving)):
        raise ValueError(f"halving must be 'auto', True, False or ascending fractions of the "
                         f"budget in (0, 1), got {halving!r}")
    return Halving(rungs=tuple(float(f) for f in halving))


def to_stop(lrs: list[float], scores: list[float], tolerances: list[float], *, mode: str,
            z: float, min_keep: int) -> list[int]:
    """Which live copies stop at a rung (positions in ``lrs``, ascending).

    Args:
        lrs: the live copies' rates, ascending.
        scores: their validation scores at the rung (all finite).
        tolerances: the noise of each copy's difference with the best (one standard error).
        mode: ``"max"`` (accuracy) or ``"min"`` (loss).
        z: how many standard errors behind the best a copy must be to stop.
        min_keep: copies that always stay.

    Examples:
        >>> lrs = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32]
        >>> to_stop(lrs, [0.1, 0.2, 0.5, 0.6, 0.9, 0.3], [0.05] * 6, mode="max", z=2,
        ...         min_keep=3)
        [0, 1, 5]
    """
    n = len(lrs)
    sign = 1.0 if mode == "max" else -1.0
    best_i = max(range(n), key=lambda i: (sign * scores[i], -lrs[i]))
    behind = [sign * (scores[best_i] - s) / max(t, 1e-12) for s, t in
              zip(scores, tolerances, strict=True)]
    contenders = [i for i in range(n) if behind[i] <= z]
    guard = min(contenders) - 1  # the rate just below the lowest contender stays
    worse = [i for i in range(n) if behind[i] > z and i != guard]
    room = max(0, min(n // 2, n - min_keep))
    worse.sort(key=lambda i: -behind[i])  # the most clearly worse first
    return sorted(worse[:room])

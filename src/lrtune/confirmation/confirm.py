"""From a range test to a confirmed rate: the bracket, and the short sweep inside it."""

from __future__ import annotations

import math
from collections.abc import Callable

from lrtune.confirmation.core import sweep
from lrtune.confirmation.result import SweepResult

SPAN_DECADES = 1.75  # bracket width below the range test minimum (8 rates: quarter decades)
INCONCLUSIVE_SPAN_DECADES = 3.0
ABOVE_DECADES = 0.0  # reach above the range test's minimum (0.5 measured no better: §8)
CONFIRM_FRACTION = 0.25  # share of the plan after a conclusive range test (RESULTS.md §8)
UNITS = ("steps", "epochs")  # what the confirmation's budget is rounded to


def confirm_budget(finder_result, planned_epochs: int, steps_per_epoch: int | None = None,
                   fraction: float = CONFIRM_FRACTION, *, unit: str = "steps") -> dict[str, int]:
    """The confirmation's budget, as :func:`lrtune.sweep`'s ``steps=`` or ``epochs=``:
    ``fraction`` of the planned training after a conclusive range test, twice that (at most
    the whole plan) after an inconclusive one.

    ``unit="steps"`` (default): ``round(planned_epochs * steps_per_epoch * share)`` optimizer
    steps, at least 1, so a short plan is not rounded up to a whole epoch (a quarter of 2
    epochs of 64 steps is 32 steps, not 1 epoch). ``unit="epochs"`` (the earlier rule, kept
    for comparison): ``round(planned_epochs * share)`` whole epochs, at least 1, given in
    steps. Without ``steps_per_epoch`` (data with no length) the plan's length in steps is
    unknown and the budget is whole epochs, ``{"epochs": n}`` (:func:`lrtune.sweep` itself
    needs data with a length, so there it stops with that message).

    Measured on the 11 tasks of ``benchmarks/RESULTS.md`` §8 (confirming every range test):
    a quarter of the plan met the target on the same 7 tasks as a half, at 0.08-0.19 of a
    grid's compute instead of 0.15-0.32 where the range test is conclusive. An inconclusive
    range test bounds nothing, and a short run cannot see a collapse that comes late: there a
    quarter of the plan picked rates that ended up to 83 points below the grid's best (the
    slow starter, the deep MLP), while half of it passed the same 2 of 3 tasks as the whole
    plan, at 0.16-0.22 of the grid instead of 0.26-0.37. Counted in steps rather than whole
    epochs, the same 7 tasks pass and every task costs at most 0.25 of the grid (charlm_adamw,
    2 epochs of 64 steps: 0.34 -> 0.24; its quarter had been rounded up to a whole epoch).

    Examples:
        >>> from types import SimpleNamespace
        >>> ok, flat = SimpleNamespace(verdict="ok"), SimpleNamespace(verdict="inconclusive")
        >>> confirm_budget(ok, 2, 64), confirm_budget(flat, 2, 64)
        ({'steps': 32}, {'steps': 64})
        >>> confirm_budget(ok, 2, 64, unit="epochs"), confirm_budget(ok, 20)
        ({'steps': 64}, {'epochs': 5})
        >>> confirm_budget(flat, 20, 10, fraction=0.75)
        {'steps': 200}
    """
    if unit not in UNITS:
        raise ValueError(f"the confirmation's unit must be one of {', '.join(UNITS)}, "
                         f"got {unit!r}")
    fraction = confirm_share(finder_result, fraction)
    if steps_per_epoch is None or unit == "epochs":
        epochs = max(1, round(planned_epochs * fraction))
        return {"epochs": epochs} if steps_per_epoch is None else {
            "steps": epochs * steps_per_epoch}
    return {"steps": max(1, round(planned_epochs * steps_per_epoch * fraction))}


def confirm_share(finder_result, fraction: float = CONFIRM_FRACTION) -> float:
    """The share of the plan the confirmation trains: ``fraction`` after a conclusive range
    test, twice that (at most 1) after an inconclusive one (why: :func:`confirm_budget`)."""
    return fraction if finder_result.verdict == "ok" else min(1.0, 2 * fraction)


def bracket_from_finder(result, *, span: float = SPAN_DECADES,
                        above: float | None = None) -> tuple[float, float]:
    """The rates worth confirming, from a :class:`~lrtune.finder.FinderResult`.

    Top: the rate at the minimum of the smoothed range-test curve (above it the short sweep's
    loss already rises). Bottom: ``span`` decades lower, and never above half the range test's
    own suggestion. When the range test is inconclusive its minimum means little: the top is
    then the last rate it reached and the bracket spans 3 decades.

    ``above`` (decades, default :data:`ABOVE_DECADES`, 0) lifts a conclusive bracket's top
    above the minimum, never past the rate where the range test stopped. Measured on the 11
    tasks of ``benchmarks/RESULTS.md`` §8: a grid's best rate lay above the minimum on 10 of
    33 seeds (by at most 2.2x) and the confirmed rate met the target on all of those tasks but
    one; 0.5 decade higher met it on one task fewer.

    Examples:
        >>> from types import SimpleNamespace
        >>> r = SimpleNamespace(verdict="ok", min_loss_lr=1.0, suggested_lr=0.1, stop_lr=3.0)
        >>> lo, hi = bracket_from_finder(r)
        >>> round(lo, 4), hi
        (0.0178, 1.0)
    """
    if result.verdict == "ok":
        lo = float(result.min_loss_lr) / 10**span
        up = ABOVE_DECADES if above is None else above
        hi = float(result.min_loss_lr) * 10**up
        if up > 0 and result.stop_lr is not None:
            hi = min(hi, float(result.stop_lr))
        if result.suggested_lr is not None:
            lo = min(lo, float(result.suggested_lr) / 2)
    else:
        hi = float(result.stop_lr)
        lo = hi / 10**INCONCLUSIVE_SPAN_DECADES
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi):
        raise ValueError(f"the range test gives no usable bracket (lo={lo!r}, hi={hi!r})")
    return lo, hi


def confirm_lr(
    model_factory: Callable,
    optimizer_name: str,
    opt_kwargs: dict | None,
    loss_fn: Callable,
    train,
    valid,
    finder_result,
    *,
    k: int = 8,
    budget_steps: int | None = None,
    budget_epochs: int | None = None,
    batch_size: int = 32,
    seed: int = 0,
    device=None,
    engine: str = "auto",
    halving="auto",
    choice: str = "window",
) -> SweepResult:
    """Confirm k rates inside the range test's bracket on a short budget; pick by validation.

    The budget is ``budget_epochs`` or ``budget_steps`` (exactly one), e.g. from
    :func:`confirm_budget` of the planned training. The result's ``settings`` record the
    bracket and the range test's suggestion next to the confirmed rate.

    Args:
        model_factory: returns a fresh model (called once, seeded with ``seed``).
        optimizer_name, opt_kwargs: as :func:`lrtune.training.setup.make_optimizer`.
        loss_fn, train, valid: as :func:`lrtune.confirmation.sweep`.
        finder_result: the range test's :class:`~lrtune.finder.FinderResult`.
        halving, choice: successive halving and the choice rule, as
            :func:`lrtune.confirmation.sweep`.

    Returns:
        The :class:`SweepResult`; ``chosen_lr`` is the confirmed rate.
    """
    if budget_steps is None and budget_epochs is None:
        raise ValueError("give a budget: budget_steps or budget_epochs")
    lo, hi = bracket_from_finder(finder_result)
    result = sweep(model_factory, optimizer_name, loss_fn, train, valid, bracket=(lo, hi), k=k,
                   epochs=budget_epochs, steps=budget_steps, batch_size=batch_size, seed=seed,
                   opt_kwargs=opt_kwargs, device=device, engine=engine,
                   halving=halving, choice=choice)
    result.settings.update(bracket=[lo, hi], range_test_suggestion=finder_result.suggested_lr,
                           range_test_verdict=finder_result.verdict)
    return result

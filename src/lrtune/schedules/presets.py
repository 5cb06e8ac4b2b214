"""Presets built from the primitives: one-cycle, warmup + cosine, cyclic, SGDR, seed 004's pair.

In a preset ``total_steps`` is the length of the run: steps ``0 .. total_steps - 1``, and the
last step holds the final value (as torch's ``OneCycleLR`` and ``np.linspace`` do).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from lrtune.schedules.join import Joined, join
from lrtune.schedules.primitives import (
    Cosine,
    Linear,
    Schedule,
    check_positive,
    check_steps,
    check_value,
    constant,
    cosine,
    exponential,
    linear,
    multistep_decay,
)

Anneal = Literal["cos", "linear"]


def check_total_steps(total_steps: int, minimum: int = 1) -> int:
    """``total_steps`` when it is an integer >= ``minimum``, else ``ValueError`` naming it."""
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < minimum:
        need = "> 0" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"total_steps must be an integer {need}, got {total_steps!r}")
    return total_steps


def _anneal(start: float, end: float, steps: float, strategy: Anneal) -> Schedule:
    if strategy == "cos":
        return Cosine(start, steps, end)
    if strategy == "linear":
        return Linear(start, end, steps)
    raise ValueError(f"anneal_strategy must be 'cos' or 'linear', got {strategy!r}")


def _one_cycle_phases(values: list[tuple[float, float]], total_steps: int, pct_start: float,
                      anneal_strategy: Anneal, three_phase: bool) -> Joined:
    """Phases ending (as in torch) at ``pct*T - 1`` [, ``2*pct*T - 2``] and ``T - 1``."""
    check_total_steps(total_steps)
    if not isinstance(pct_start, int | float) or not 0 < pct_start < 1:
        raise ValueError(f"pct_start must be a number in (0, 1), got {pct_start!r}")
    ends = [pct_start * total_steps - 1, total_steps - 1]
    if three_phase:
        ends.insert(1, 2 * pct_start * total_steps - 2)
    starts = [0.0, *ends[:-1]]
    if any(e <= s for s, e in zip(starts, ends, strict=True)):
        raise ValueError(
            f"total_steps={total_steps} with pct_start={pct_start} leaves a one-cycle phase "
            f"with no steps (phases end at {[round(e, 3) for e in ends]})"
        )
    pieces = [_anneal(a, b, e - s, anneal_strategy)
              for (a, b), s, e in zip(values, starts, ends, strict=True)]
    return join(pieces, ends[:-1])


def one_cycle(peak_value: float, total_steps: int, *, pct_start: float = 0.3,
              anneal_strategy: Anneal = "cos", div_factor: float = 25.0,
              final_div_factor: float = 1e4, three_phase: bool = False) -> Joined:
    """The learning rate of torch's ``OneCycleLR`` (same arguments, same defaults).

    From ``init = peak / div_factor`` up to ``peak`` at step ``pct_start*T - 1``, then down to
    ``init / final_div_factor`` at step ``T - 1``; with ``three_phase`` it first returns to
    ``init`` at ``2*pct_start*T - 2``. Pair it with :func:`one_cycle_momentum`.

    Examples:
        >>> s = one_cycle(1.0, total_steps=11, pct_start=0.5, anneal_strategy="linear")
        >>> s(0), s(4.5), s(10)
        (0.04, 1.0, 4e-06)
    """
    peak = check_positive("peak_value", peak_value)
    init = peak / check_positive("div_factor", div_factor)
    end = init / check_positive("final_div_factor", final_div_factor)
    values = [(init, peak), (peak, end)]
    if three_phase:
        values = [(init, peak), (peak, init), (init, end)]
    return _one_cycle_phases(values, total_steps, pct_start, anneal_strategy, three_phase)


def one_cycle_momentum(total_steps: int, *, base_value: float = 0.85, max_value: float = 0.95,
                       pct_start: float = 0.3, anneal_strategy: Anneal = "cos",
                       three_phase: bool = False) -> Joined:
    """One-cycle's inverse momentum: ``max_value`` while lr is low, ``base_value`` at lr's peak.

    Same phases as :func:`one_cycle` (and as torch's ``OneCycleLR`` ``base_momentum`` /
    ``max_momentum``).

    Examples:
        >>> m = one_cycle_momentum(11, pct_start=0.5, anneal_strategy="linear")
        >>> m(0), m(4.5), m(10)
        (0.95, 0.85, 0.95)
    """
    base = check_value("base_value", base_value)
    top = check_value("max_value", max_value)
    values = [(top, base), (base, top), (top, top)] if three_phase else [(top, base), (base, top)]
    return _one_cycle_phases(values, total_steps, pct_start, anneal_strategy, three_phase)


def with_warmup(schedule: Schedule, warmup_steps: float, init_value: float = 0.0) -> Schedule:
    """Linear warmup ``init_value -> schedule(0)`` over ``warmup_steps``, then ``schedule``.

    Examples:
        >>> s = with_warmup(constant(0.5), warmup_steps=5)
        >>> s(0), s(1), s(5), s(99)
        (0.0, 0.1, 0.5, 0.5)
    """
    if warmup_steps == 0:
        return schedule
    warm = linear(init_value, schedule(0), check_steps("warmup_steps", warmup_steps))
    return join([warm, schedule], [warmup_steps])


def warmup_cosine(peak_value: float, warmup_steps: int, total_steps: int, *,
                  init_value: float = 0.0, end_value: float = 0.0) -> Schedule:
    """Linear warmup ``init_value -> peak_value`` over ``warmup_steps``, then cosine down to
    ``end_value`` at the last step ``total_steps - 1``.

    Examples:
        >>> s = warmup_cosine(1.0, warmup_steps=2, total_steps=7)
        >>> s(0), s(1), s(2), round(s(4), 12), s(6)
        (0.0, 0.5, 1.0, 0.5, 0.0)
    """
    check_total_steps(total_steps)
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"warmup_steps must be an integer >= 0, got {warmup_steps!r}")
    if warmup_steps >= total_steps - 1:
        raise ValueError(
            f"warmup_steps ({warmup_steps}) must be < total_steps - 1 ({total_steps - 1})"
        )
    decay = cosine(peak_value, total_steps - 1 - warmup_steps, end_value)
    return with_warmup(decay, warmup_steps, init_value)


@dataclass(frozen=True)
class Cyclic:
    """torch's ``CyclicLR`` as a pure function (modes triangular, triangular2, exp_range).

    ``x`` is the position in the cycle, ``f`` rises 0→1 over ``step_size_up`` and falls back
    over ``step_size_down``; the value is ``base + (max - base) * f * scale`` where ``scale``
    is 1, ``1 / 2**(cycle - 1)`` or ``gamma**step``. With ``inverse=True`` it is
    ``max - (max - base) * f * scale`` (CyclicLR's momentum).

    Examples:
        >>> s = Cyclic(0.1, 1.0, step_size_up=2, mode="triangular2")
        >>> [round(s(t), 12) for t in (0, 1, 2, 4, 6, 8)]
        [0.1, 0.55, 1.0, 0.1, 0.55, 0.1]
    """

    base_value: float
    max_value: float
    step_size_up: float = 2000
    step_size_down: float | None = None
    mode: Literal["triangular", "triangular2", "exp_range"] = "triangular"
    gamma: float = 1.0
    inverse: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_value", check_value("base_value", self.base_value))
        object.__setattr__(self, "max_value", check_value("max_value", self.max_value))
        check_steps("step_size_up", self.step_size_up)
        if self.step_size_down is not None:
            check_steps("step_size_down", self.step_size_down)
        if self.mode not in ("triangular", "triangular2", "exp_range"):
            raise ValueError(
                f"mode must be 'triangular', 'triangular2' or 'exp_range', got {self.mode!r}"
            )
        check_positive("gamma", self.gamma)

    def __call__(self, step: float) -> float:
        up = float(self.step_size_up)
        total = up + float(self.step_size_down if self.step_size_down is not None else up)
        ratio = up / total
        cycle = math.floor(1 + step / total)
        x = 1.0 + step / total - cycle
        rise = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
        if self.mode == "triangular":
            scale = 1.0
        elif self.mode == "triangular2":
            scale = 1 / (2.0 ** (cycle - 1))
        else:
            scale = self.gamma**step
        height = (self.max_value - self.base_value) * rise * scale
        return self.max_value - height if self.inverse else self.base_value + height


def cyclic(base_value: float, max_value: float, step_size_up: float = 2000,
           step_size_down: float | None = None, mode: str = "triangular",
           gamma: float = 1.0) -> Cyclic:
    """Cyclic learning rate between ``base_value`` and ``max_value`` (see :class:`Cyclic`)."""
    return Cyclic(base_value, max_value, step_size_up, step_size_down, mode, gamma)  # type: ignore[arg-type]


def cyclic_momentum(base_value: float = 0.8, max_value: float = 0.9, step_size_up: float = 2000,
                    step_size_down: float | None = None, mode: str = "triangular",
                    gamma: float = 1.0) -> Cyclic:
    """CyclicLR's inverse momentum: ``max_value`` when lr is at its base (torch's defaults)."""
    return Cyclic(base_value, max_value, step_size_up, step_size_down, mode, gamma,  # type: ignore[arg-type]
                  inverse=True)


@dataclass(frozen=True)
class CosineRestarts:
    """SGDR (torch's ``CosineAnnealingWarmRestarts``): cosine from ``init_value`` to
    ``end_value`` over ``period`` steps, restarting with a period ``period_mult`` times longer.

    ``end + (init - end) * (1 + cos(pi * t_cur / t_i)) / 2``, ``t_cur`` = steps since the
    last restart and ``t_i`` the current period.

    Examples:
        >>> s = CosineRestarts(1.0, period=2, period_mult=2)
        >>> [round(s(t), 12) for t in range(7)]
        [1.0, 0.5, 1.0, 0.853553390593, 0.5, 0.146446609407, 1.0]
    """

    init_value: float
    period: float
    period_mult: int = 1
    end_value: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "init_value", check_value("init_value", self.init_value))
        object.__setattr__(self, "end_value", check_value("end_value", self.end_value))
        check_steps("period", self.period)
        if isinstance(self.period_mult, bool) or not isinstance(self.period_mult, int) \
                or self.period_mult < 1:
            raise ValueError(f"period_mult must be an integer >= 1, got {self.period_mult!r}")

    def __call__(self, step: float) -> float:
        t_cur, t_i = max(step, 0), self.period
        if self.period_mult == 1:
            t_cur = t_cur % t_i
        else:  # periods grow geometrically: a handful of iterations
            while t_cur >= t_i:
                t_cur -= t_i
                t_i *= self.period_mult
        cos_out = 1 + math.cos(math.pi * t_cur / t_i)
        return self.end_value + (self.init_value - self.end_value) * cos_out / 2


def cosine_restarts(init_value: float, period: float, *, period_mult: int = 1,
                    end_value: float = 0.0) -> CosineRestarts:
    """Cosine annealing with warm restarts (see :class:`CosineRestarts`)."""
    return CosineRestarts(init_value, period, period_mult, end_value)


def linspace(total_steps: int, **ranges: tuple[float, float]) -> dict[str, Schedule]:
    """Seed 004's pair in one line: each hyperparameter linear from its start to its end value.

    Step 0 holds the start value and step ``total_steps - 1`` the end value, exactly as
    ``np.linspace(start, end, total_steps)``.

    Examples:
        >>> s = linspace(3, lr=(0.03, 0.0001), momentum=(0.9, 0.999))
        >>> [s["lr"](t) for t in range(3)], [s["momentum"](t) for t in range(3)]
        ([0.03, 0.01505, 0.0001], [0.9, 0.9495, 0.999])
    """
    check_total_steps(total_steps)
    out: dict[str, Schedule] = {}
    for key, pair in ranges.items():
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise ValueError(f"{key} must be a (start, end) pair, got {pair!r}")
        start, end = pair
        out[key] = linear(start, end, total_steps - 1) if total_steps > 1 else constant(start)
    return out


# named presets for the CLIs ------------------------------------------------------------------

NAMES = ("constant", "linear", "one_cycle", "cosine", "warmup_cosine", "cyclic",
         "cosine_restarts", "step", "exponential")
# presets whose momentum moves by itself (inverse to lr) when no momentum is given
_CYCLING = ("one_cycle", "cyclic")
_MIN_STEPS = {"one_cycle": 4, "warmup_cosine": 3, "step": 4}


def _named_lr(name: str, lr: float, n: int, lr_end: float | None) -> Schedule:
    last = n - 1
    if name == "constant":
        if lr_end is not None:
            raise ValueError(f"lr_end is not used by 'constant', got {lr_end!r}")
        return constant(lr)
    if name == "linear":
        return linear(lr, 0.0 if lr_end is None else lr_end, last) if n > 1 else constant(lr)
    if name == "one_cycle":
        lr = check_positive("lr", lr)
        final = 1e4 if lr_end is None else lr / 25.0 / check_positive("lr_end", lr_end)
        return one_cycle(lr, n, final_div_factor=final)
    if name == "cosine":
        return cosine(lr, last, 0.0 if lr_end is None else lr_end)
    if name == "warmup_cosine":
        return warmup_cosine(lr, max(1, round(0.1 * n)), n,
                             end_value=0.0 if lr_end is None else lr_end)
    if name == "cyclic":
        return cyclic(lr / 10 if lr_end is None else lr_end, lr, _cyclic_half(n))
    if name == "cosine_restarts":
        return cosine_restarts(lr, math.ceil(n / 4), end_value=0.0 if lr_end is None else lr_end)
    if name == "step":
        gamma = 0.1 if lr_end is None else math.sqrt(check_positive("lr_end", lr_end)
                                                     / check_positive("lr", lr))
        return multistep_decay(lr, [n // 2, 3 * n // 4], gamma)
    if name == "exponential":
        lr = check_positive("lr", lr)
        end = lr / 100 if lr_end is None else check_positive("lr_end", lr_end)
        return exponential(lr, (end / lr) ** (1 / last), end_value=end)
    raise ValueError(f"unknown schedule name {name!r}; choose from {', '.join(NAMES)}")


def _cyclic_half(total_steps: int) -> int:
    """Half a cycle: two full cycles over the run."""
    return max(1, total_steps // 4)


def named_schedule(name: str, *, lr: float, total_steps: int, lr_end: float | None = None,
                   momentum: float | None = None,
                   momentum_end: float | None = None) -> dict[str, Schedule]:
    """A preset by name, as the CLIs use it: ``{"lr": ...}`` plus ``"momentum"`` where it moves.

    ``lr`` is the start value (the peak for ``one_cycle``, ``cyclic`` and ``warmup_cosine``);
    ``lr_end`` is the value at the last step ``total_steps - 1`` (defaults in brackets):
    ``constant`` (not used), ``linear`` [0], ``one_cycle`` [lr / 25 / 1e4, torch's],
    ``cosine`` [0], ``warmup_cosine`` (10 % warmup from 0) [0], ``cyclic`` (the low value,
    two triangular cycles) [lr / 10], ``cosine_restarts`` (4 periods) [0], ``step`` (×gamma at
    1/2 and 3/4 of the run) [lr / 100], ``exponential`` [lr / 100].

    Momentum: with no ``momentum``, only ``one_cycle`` (0.95 → 0.85 → 0.95) and ``cyclic``
    (0.9 ↔ 0.8) move it, inversely to lr, with torch's defaults. With ``momentum`` and
    ``momentum_end``: ``linear`` ramps momentum → momentum_end (seed 004); ``one_cycle`` and
    ``cyclic`` cycle between ``momentum`` (lr low) and ``momentum_end`` (lr at its peak); the
    other presets ramp it linearly. With ``momentum`` alone: constant for ``linear``,
    ``one_cycle`` and ``cyclic``, and no momentum key for the others (the optimizer keeps it).

    Examples:
        >>> s = named_schedule("linear", lr=0.03, lr_end=0.0001, momentum=0.9, momentum_end=0.999,
        ...                    total_steps=100)
        >>> s["lr"](0), s["lr"](99), s["momentum"](0), s["momentum"](99)
        (0.03, 0.0001, 0.9, 0.999)
        >>> sorted(named_schedule("cosine", lr=0.1, total_steps=10))
        ['lr']
    """
    if name not in NAMES:
        raise ValueError(f"unknown schedule name {name!r}; choose from {', '.join(NAMES)}")
    n = check_total_steps(total_steps, _MIN_STEPS.get(name, 1 if name in ("constant", "linear")
                                                       else 2))
    lr = check_value("lr", lr)
    if lr_end is not None:
        lr_end = check_value("lr_end", lr_end)
    out = {"lr": _named_lr(name, lr, n, lr_end)}
    if momentum_end is not None and momentum is None:
        raise ValueError(f"momentum_end ({momentum_end!r}) needs momentum (the start value)")
    if momentum is not None:
        momentum = check_value("momentum", momentum)
    if momentum_end is not None:
        momentum_end = check_value("momentum_end", momentum_end)
    if name == "one_cycle" and (momentum is None or momentum_end is not None):
        top, base = (0.95, 0.85) if momentum is None else (momentum, momentum_end)
        out["momentum"] = one_cycle_momentum(n, base_value=base, max_value=top)
    elif name == "cyclic" and (momentum is None or momentum_end is not None):
        top, base = (0.9, 0.8) if momentum is None else (momentum, momentum_end)
        out["momentum"] = cyclic_momentum(base, top, _cyclic_half(n))
    elif momentum_end is not None:
        out["momentum"] = linear(momentum, momentum_end, n - 1) if n > 1 else constant(momentum)
    elif momentum is not None and name in ("linear", *_CYCLING):
        out["momentum"] = constant(momentum)
    return out

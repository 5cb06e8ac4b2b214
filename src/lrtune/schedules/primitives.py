"""Primitive schedules: each is a pure function ``step -> value``.

A schedule holds no optimizer and no counter; resuming one means calling it at the step where
training stopped. ``step`` may be a float (pieces of :func:`~lrtune.schedules.join.join` see
fractional offsets when a boundary is fractional, as in one-cycle).

A primitive that moves over ``steps`` steps starts at ``init_value`` at step 0, reaches
``end_value`` at step ``steps`` and holds it afterwards.

Hyperparameters an optimizer accepts (learning rate, momentum, betas, weight decay) are never
negative, so every value must be a finite number >= 0.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise

Schedule = Callable[[float], float]


def check_value(name: str, value: float) -> float:
    """``value`` as a float, or ``ValueError`` naming ``name`` when it is negative or not finite."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return number


def check_steps(name: str, steps: float) -> float:
    """``steps`` when it is a finite number > 0, else ``ValueError`` naming ``name``."""
    if isinstance(steps, bool) or not isinstance(steps, int | float) or not math.isfinite(steps):
        raise ValueError(f"{name} must be a finite number > 0, got {steps!r}")
    if steps <= 0:
        raise ValueError(f"{name} must be > 0, got {steps!r}")
    return steps


def check_positive(name: str, value: float) -> float:
    """``value`` as a float when it is finite and > 0, else ``ValueError`` naming ``name``."""
    number = check_value(name, value)
    if number == 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return number


def check_increasing(name: str, values: Sequence[float]) -> list[float]:
    """``values`` when they are finite, > 0 and strictly increasing, else ``ValueError``."""
    values = list(values)
    ok = all(isinstance(v, int | float) and math.isfinite(v) for v in values)
    if not ok or (values and values[0] <= 0) or any(b <= a for a, b in pairwise(values)):
        raise ValueError(f"{name} must be > 0 and strictly increasing, got {values!r}")
    return values


@dataclass(frozen=True)
class Constant:
    """``value`` at every step.

    Examples:
        >>> Constant(0.1)(0), Constant(0.1)(10_000)
        (0.1, 0.1)
    """

    value: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", check_value("value", self.value))

    def __call__(self, step: float) -> float:
        return self.value


@dataclass(frozen=True)
class Linear:
    """``init + (end - init) * min(step, steps) / steps``.

    Examples:
        >>> s = Linear(1.0, 0.0, steps=4)
        >>> s(0), s(1), s(4), s(9)
        (1.0, 0.75, 0.0, 0.0)
    """

    init_value: float
    end_value: float
    steps: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "init_value", check_value("init_value", self.init_value))
        object.__setattr__(self, "end_value", check_value("end_value", self.end_value))
        check_steps("steps", self.steps)

    def __call__(self, step: float) -> float:
        if step <= 0:  # exact endpoints, no rounding
            return self.init_value
        if step >= self.steps:
            return self.end_value
        frac = step / self.steps
        return self.init_value + (self.end_value - self.init_value) * frac


@dataclass(frozen=True)
class Exponential:
    """``init * gamma ** step``, never past ``end_value`` when one is given.

    Examples:
        >>> s = Exponential(1.0, gamma=0.5, end_value=0.2)
        >>> s(0), s(1), s(2), s(3)
        (1.0, 0.5, 0.25, 0.2)
    """

    init_value: float
    gamma: float
    end_value: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "init_value", check_value("init_value", self.init_value))
        object.__setattr__(self, "gamma", check_positive("gamma", self.gamma))
        if self.end_value is not None:
            object.__setattr__(self, "end_value", check_value("end_value", self.end_value))

    def __call__(self, step: float) -> float:
        try:
            value = self.init_value * self.gamma ** max(step, 0)
        except OverflowError:  # float ** raises past 1.8e308 instead of giving inf
            value = math.inf if self.init_value else 0.0
        if self.end_value is None:
            return value
        return max(value, self.end_value) if self.gamma < 1 else min(value, self.end_value)


@dataclass(frozen=True)
class Cosine:
    """Half a cosine from ``init_value`` to ``end_value`` over ``steps``, then ``end_value``.

    ``end + (init - end) * (1 + cos(pi * min(step, steps) / steps)) / 2``; with the default
    ``end_value=0`` this is torch's ``CosineAnnealingLR(T_max=steps)`` (which reaches 0 at
    step ``steps``).

    Examples:
        >>> s = Cosine(1.0, steps=4)
        >>> s(0), round(s(2), 12), s(4), s(5)
        (1.0, 0.5, 0.0, 0.0)
    """

    init_value: float
    steps: float
    end_value: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "init_value", check_value("init_value", self.init_value))
        object.__setattr__(self, "end_value", check_value("end_value", self.end_value))
        check_steps("steps", self.steps)

    def __call__(self, step: float) -> float:
        if step <= 0:  # exact endpoints, no rounding
            return self.init_value
        if step >= self.steps:
            return self.end_value
        cos_out = 1 + math.cos(math.pi * step / self.steps)
        return self.end_value + (self.init_value - self.end_value) * cos_out / 2


@dataclass(frozen=True)
class Polynomial:
    """``end + (init - end) * (1 - min(step, steps) / steps) ** power``.

    With ``end_value=0`` this is torch's ``PolynomialLR(total_iters=steps, power=power)``.

    Examples:
        >>> s = Polynomial(1.0, 0.0, steps=2, power=2.0)
        >>> s(0), s(1), s(2)
        (1.0, 0.25, 0.0)
    """

    init_value: float
    end_value: float
    steps: float
    power: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "init_value", check_value("init_value", self.init_value))
        object.__setattr__(self, "end_value", check_value("end_value", self.end_value))
        check_steps("steps", self.steps)
        object.__setattr__(self, "power", check_positive("power", self.power))

    def __call__(self, step: float) -> float:
        if step <= 0:
            return self.init_value
        if step >= self.steps:
            return self.end_value
        frac = 1.0 - step / self.steps
        return self.end_value + (self.init_value - self.end_value) * frac**self.power


@dataclass(frozen=True)
class MultiStep:
    """``init * gamma ** (number of milestones <= step)`` (torch's ``MultiStepLR``).

    Examples:
        >>> s = MultiStep(1.0, milestones=(2, 5), gamma=0.5)
        >>> s(0), s(2), s(4), s(5)
        (1.0, 0.5, 0.5, 0.25)
    """

    init_value: float
    milestones: tuple[float, ...]
    gamma: float = 0.1

    def __post_init__(self) -> None:
        object.__setattr__(self, "init_value", check_value("init_value", self.init_value))
        milestones = tuple(check_increasing("milestones", self.milestones))
        object.__setattr__(self, "milestones", milestones)
        object.__setattr__(self, "gamma", check_positive("gamma", self.gamma))

    def __call__(self, step: float) -> float:
        return self.init_value * self.gamma ** bisect.bisect_right(self.milestones, step)


@dataclass(frozen=True)
class StepDecay:
    """``init * gamma ** floor(step / step_size)`` (torch's ``StepLR``).

    Examples:
        >>> s = StepDecay(1.0, step_size=3, gamma=0.5)
        >>> s(0), s(2), s(3), s(6)
        (1.0, 1.0, 0.5, 0.25)
    """

    init_value: float
    step_size: float
    gamma: float = 0.1

    def __post_init__(self) -> None:
        object.__setattr__(self, "init_value", check_value("init_value", self.init_value))
        check_steps("step_size", self.step_size)
        object.__setattr__(self, "gamma", check_positive("gamma", self.gamma))

    def __call__(self, step: float) -> float:
        return self.init_value * self.gamma ** math.floor(max(step, 0) / self.step_size)


# Function-style constructors: the spelling users write.
def constant(value: float) -> Constant:
    """A schedule that is always ``value`` (see :class:`Constant`)."""
    return Constant(value)


def linear(init_value: float, end_value: float, steps: float) -> Linear:
    """Linear from ``init_value`` (step 0) to ``end_value`` (step ``steps``); see :class:`Linear`.
    """
    return Linear(init_value, end_value, steps)


def exponential(init_value: float, gamma: float, end_value: float | None = None) -> Exponential:
    """``init_value * gamma ** step`` (torch's ``ExponentialLR``); see :class:`Exponential`."""
    return Exponential(init_value, gamma, end_value)


def cosine(init_value: float, steps: float, end_value: float = 0.0) -> Cosine:
    """Cosine annealing to ``end_value`` at step ``steps`` (torch's ``CosineAnnealingLR``)."""
    return Cosine(init_value, steps, end_value)


def polynomial(init_value: float, end_value: float, steps: float, power: float = 1.0) -> Polynomial:
    """Polynomial decay (torch's ``PolynomialLR`` when ``end_value=0``); see :class:`Polynomial`."""
    return Polynomial(init_value, end_value, steps, power)


def step_decay(init_value: float, step_size: float, gamma: float = 0.1) -> StepDecay:
    """Multiply by ``gamma`` every ``step_size`` steps (torch's ``StepLR``)."""
    return StepDecay(init_value, step_size, gamma)


def multistep_decay(init_value: float, milestones: Sequence[float],
                    gamma: float = 0.1) -> MultiStep:
    """Multiply by ``gamma`` at each milestone (torch's ``MultiStepLR``)."""
    return MultiStep(init_value, tuple(milestones), gamma)

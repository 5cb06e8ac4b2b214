"""Schedules for any optimizer hyperparameter: pure ``step -> value`` functions and appliers.

- primitives: :func:`constant`, :func:`linear`, :func:`exponential`, :func:`cosine`,
  :func:`polynomial`, :func:`step_decay`, :func:`multistep_decay`; :func:`join` glues them.
- presets: :func:`one_cycle` (+ :func:`one_cycle_momentum`), :func:`warmup_cosine`,
  :func:`with_warmup`, :func:`cyclic` (+ :func:`cyclic_momentum`), :func:`cosine_restarts`,
  :func:`linspace` (seed 004's pair), :func:`named_schedule` (by name, for the CLIs).
- appliers: :class:`HyperparamScheduler` (lr, momentum/beta1, weight decay, … per batch or
  epoch), :class:`ReduceLROnPlateau`, and :class:`TorchScheduler` (a torch ``LRScheduler``).
- preview: :func:`plot_schedule`, :func:`schedule_table`, :func:`find_jumps`.

Examples:
    >>> from lrtune.schedules import join, linear, cosine
    >>> s = join([linear(0.0, 0.1, 5), cosine(0.1, 95)], [5])
    >>> s(0), s(5), s(100)
    (0.0, 0.1, 0.0)
"""

from __future__ import annotations

from typing import Any

from lrtune.schedules.hyperparams import HyperparamScheduler, ReduceLROnPlateau
from lrtune.schedules.join import join
from lrtune.schedules.presets import (
    NAMES,
    cosine_restarts,
    cyclic,
    cyclic_momentum,
    linspace,
    named_schedule,
    one_cycle,
    one_cycle_momentum,
    warmup_cosine,
    with_warmup,
)
from lrtune.schedules.preview import find_jumps, plot_schedule, schedule_table, schedule_values
from lrtune.schedules.primitives import (
    Schedule,
    constant,
    cosine,
    exponential,
    linear,
    multistep_decay,
    polynomial,
    step_decay,
)

__all__ = [
    "NAMES",
    "HyperparamScheduler",
    "ReduceLROnPlateau",
    "Schedule",
    "TorchScheduler",
    "constant",
    "cosine",
    "cosine_restarts",
    "cyclic",
    "cyclic_momentum",
    "exponential",
    "find_jumps",
    "join",
    "linear",
    "linspace",
    "multistep_decay",
    "named_schedule",
    "one_cycle",
    "one_cycle_momentum",
    "plot_schedule",
    "polynomial",
    "schedule_table",
    "schedule_values",
    "step_decay",
    "warmup_cosine",
    "with_warmup",
]


def __getattr__(name: str) -> Any:
    # the torch wrapper imports torch; load it only when asked for
    if name == "TorchScheduler":
        from lrtune.schedules.torch_compat import TorchScheduler

        return TorchScheduler
    raise AttributeError(f"module 'lrtune.schedules' has no attribute {name!r}")

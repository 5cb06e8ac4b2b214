"""Confirm a learning rate: train K candidate rates at once (vectorised) and pick by validation.

``sweep(...)`` trains K copies of a model from the same weights on the same batches, one rate
each, as one batched computation, and returns a :class:`SweepResult` with per-rate curves and
the chosen rate. ``confirm_lr(...)`` runs it inside the bracket a range test proposes.
"""

from __future__ import annotations

import sys
import types

from lrtune.sweep.confirm import bracket_from_finder, confirm_lr
from lrtune.sweep.core import candidate_lrs, sweep
from lrtune.sweep.engines import SweepFallbackWarning
from lrtune.sweep.result import SweepResult, choose, default_tolerance, paired_tolerances

__all__ = [
    "SweepFallbackWarning",
    "SweepResult",
    "bracket_from_finder",
    "candidate_lrs",
    "choose",
    "confirm_lr",
    "default_tolerance",
    "paired_tolerances",
    "sweep",
]


class _CallablePackage(types.ModuleType):
    """Importing ``lrtune.sweep.*`` binds ``lrtune.sweep`` to this package, hiding the function
    of the same name that ``lrtune`` exports; calling the package calls the function, so
    ``lrtune.sweep(...)`` works either way."""

    def __call__(self, *args, **kwargs) -> SweepResult:
        return sweep(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage

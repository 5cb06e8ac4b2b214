"""Confirm a learning rate: train K candidate rates at once (vectorised) and pick by validation.

The package is ``lrtune.confirmation``; its main function is exported as ``lrtune.sweep``
(a package and the function it exports do not share a name).

``sweep(...)`` trains K copies of a model from the same weights on the same batches, one rate
each, as one batched computation, and returns a :class:`SweepResult` with per-rate curves and
the chosen rate. ``confirm_lr(...)`` runs it inside the bracket a range test proposes.
"""

from __future__ import annotations

from lrtune.confirmation.confirm import bracket_from_finder, confirm_lr
from lrtune.confirmation.core import SmallValidationWarning, candidate_lrs, sweep
from lrtune.confirmation.engines import SweepFallbackWarning
from lrtune.confirmation.result import SweepResult, choose, default_tolerance, paired_tolerances

__all__ = [
    "SmallValidationWarning",
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


"""The learning-rate range test (:func:`find_lr`), its suggestion rules and its result."""

from lrtune.finder.range_test import find_lr, lr_at
from lrtune.finder.result import FinderResult
from lrtune.finder.suggest import RULES

__all__ = ["RULES", "FinderResult", "find_lr", "lr_at"]

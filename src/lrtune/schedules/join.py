"""``join``: glue schedules end to end; each piece sees the steps since its own boundary."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from lrtune.schedules.primitives import Schedule, check_increasing


@dataclass(frozen=True)
class Joined:
    """Piece ``i`` runs on ``[boundaries[i-1], boundaries[i])`` and is called with
    ``step - boundaries[i-1]`` (the first piece with ``step``).

    A boundary may be fractional (one-cycle's phases end at ``pct_start * total_steps - 1``);
    the piece after it then sees fractional offsets.

    Examples:
        >>> from lrtune.schedules.primitives import constant, linear
        >>> s = Joined((linear(0.0, 1.0, 2), constant(1.0), linear(1.0, 0.5, 5)), (2, 4))
        >>> [s(t) for t in range(6)]
        [0.0, 0.5, 1.0, 1.0, 1.0, 0.9]
    """

    schedules: tuple[Schedule, ...]
    boundaries: tuple[float, ...]

    def __post_init__(self) -> None:
        schedules = tuple(self.schedules)
        if not schedules:
            raise ValueError("schedules must hold at least one schedule, got []")
        bad = [s for s in schedules if not callable(s)]
        if bad:
            raise ValueError(f"schedules must be callables step -> value, got {bad[0]!r}")
        boundaries = tuple(check_increasing("boundaries", self.boundaries))
        if len(boundaries) != len(schedules) - 1:
            raise ValueError(
                f"boundaries must hold one fewer entry than schedules ({len(schedules) - 1}), "
                f"got {list(boundaries)!r}"
            )
        object.__setattr__(self, "schedules", schedules)
        object.__setattr__(self, "boundaries", boundaries)

    def piece_at(self, step: float) -> tuple[int, float]:
        """Index of the piece in force at ``step`` and the offset it sees."""
        i = bisect.bisect_right(self.boundaries, step)
        return i, step - (self.boundaries[i - 1] if i else 0)

    def __call__(self, step: float) -> float:
        i, offset = self.piece_at(step)
        return self.schedules[i](offset)


def join(schedules: Sequence[Schedule], boundaries: Sequence[float]) -> Joined:
    """Run ``schedules[0]`` until ``boundaries[0]``, then ``schedules[1]`` (from its step 0) …

    Args:
        schedules: ``n`` schedules.
        boundaries: ``n - 1`` steps, > 0 and strictly increasing, where the next piece starts.

    Returns:
        A schedule; ``ValueError`` names the argument when the boundaries are not increasing
        or do not match the number of schedules.

    Examples:
        >>> from lrtune.schedules.primitives import cosine, linear
        >>> warm_cos = join([linear(0.0, 1.0, 10), cosine(1.0, 90)], [10])
        >>> warm_cos(0), warm_cos(5), warm_cos(10), warm_cos(100)
        (0.0, 0.5, 1.0, 0.0)
    """
    return Joined(tuple(schedules), tuple(boundaries))

"""The range test's early stop, shared by every loop that runs a sweep (core and integrations)."""

from __future__ import annotations

import math


class DivergenceMonitor:
    """Online exponential average of the monitored loss; it diverged once the average exceeds
    ``diverge_factor`` times its best.

    The average only decides when to stop (it lags); the suggestion rules read the zero-lag
    smoothed curve computed afterwards.

    Args:
        diverge_factor: stop once the average exceeds this multiple of its best.
        smooth: window as a fraction of the sweep's points (as in ``find_lr``).
        n_points: the number of points the sweep will record at most.

    Examples:
        >>> monitor = DivergenceMonitor(4.0, smooth=0.0, n_points=10)
        >>> [monitor.update(loss) for loss in (2.0, 1.0, 3.0, 5.0)]
        [False, False, False, True]
    """

    def __init__(self, diverge_factor: float, *, smooth: float, n_points: int) -> None:
        self.diverge_factor = diverge_factor
        self.alpha = 2.0 / (max(1.0, smooth * n_points) + 1.0)
        self.avg, self.best, self.count = 0.0, math.inf, 0

    def update(self, loss: float) -> bool:
        """Add one point; ``True`` when the sweep has diverged (never on the first point)."""
        self.count += 1
        self.avg = loss if self.count == 1 else self.alpha * loss + (1 - self.alpha) * self.avg
        self.best = min(self.best, self.avg)
        return self.count > 1 and self.avg > self.diverge_factor * self.best

"""When has a range test diverged? Against the loss's best *and* its measured noise.

A multiple of the best smoothed loss alone (``diverge_factor`` × best) fires on noise when the
loss is already small: on a partly trained model one batch with a misclassified sample lifts
the online average above 4× its best long before the rate is anywhere near too high. So the
excess over the best must also exceed ``NOISE_Z`` robust noise scales of the recent points,
and where the noise (not the factor) decides, the excess must persist for ``PATIENCE``
consecutive points, so one outlying batch does not end the sweep. On a fresh model the factor
term is far larger than the noise term and the test is the plain ``diverge_factor`` rule
(measured by ``benchmarks/bench_finder_divergence.py``: the same stop on all 72 fresh-model
sweeps of the range-test benchmark).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

NOISE_Z = 3.0  # the excess must exceed this many noise scales
NOISE_WINDOW = 100  # the noise is measured over at most this many recent points
PATIENCE = 3  # consecutive points over the threshold, where noise sets it
WARMUP = 10  # before this many points the noise is not known: patience applies


def noise_scale(points) -> float:
    """Robust per-point noise of a curve: the MAD of its second differences, scaled to a
    standard deviation (a second difference of i.i.d. noise has variance 6 σ²; a locally
    linear trend cancels). 0 with fewer than 3 points.

    Examples:
        >>> noise_scale([1.0, 2.0, 3.0, 4.0])  # a straight line has no noise
        0.0
        >>> round(noise_scale(np.random.default_rng(0).normal(5.0, 0.1, 4000)), 2)
        0.1
    """
    y = np.asarray(points, dtype=np.float64)
    if len(y) < 3:
        return 0.0
    d = np.diff(y, n=2)
    return 1.4826 * float(np.median(np.abs(d - np.median(d)))) / math.sqrt(6.0)


class DivergenceTest:
    """Online test: feed each recorded point to :meth:`update`; it returns True on divergence.

    The smoothed loss is an exponential average with ``alpha``; it has diverged when it exceeds
    ``best + max((diverge_factor - 1) * best, NOISE_Z * noise)``, immediately where the factor
    term decides, after ``PATIENCE`` consecutive points where the noise term does (or while
    fewer than ``WARMUP`` points are known).

    Examples:
        >>> noisy = [0.012, 0.004, 0.02, 0.008] * 3  # a small, noisy loss
        >>> test = DivergenceTest(alpha=0.5, diverge_factor=4.0)
        >>> [test.update(v) for v in [*noisy, 0.2, 0.01]][-2:]  # one bad batch: no stop
        [False, False]
        >>> test = DivergenceTest(alpha=0.5, diverge_factor=4.0)
        >>> [test.update(v) for v in [*noisy, 0.2, 0.5, 1.0]][-3:]  # it keeps rising: stop
        [False, False, True]
    """

    def __init__(self, alpha: float, diverge_factor: float):
        self.alpha, self.factor = alpha, diverge_factor
        self.avg, self.best, self.count, self.over = 0.0, math.inf, 0, 0
        self.recent: deque[float] = deque(maxlen=NOISE_WINDOW)

    def update(self, point: float) -> bool:
        self.count += 1
        self.recent.append(point)
        self.avg = point if self.count == 1 else self.alpha * point + (1 - self.alpha) * self.avg
        self.best = min(self.best, self.avg)
        if self.count == 1:
            return False
        by_factor = (self.factor - 1) * self.best
        # the noise (a median over the recent points) only matters above the factor's bound
        by_noise = (NOISE_Z * noise_scale(self.recent)
                    if self.avg > self.best + by_factor else 0.0)
        if self.avg <= self.best + max(by_factor, by_noise):
            self.over = 0
            return False
        self.over += 1
        noisy = by_noise > by_factor or self.count < WARMUP
        return not noisy or self.over >= PATIENCE

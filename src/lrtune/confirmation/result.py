"""SweepResult: the K learning curves, the rule that picks a rate, saving and plotting."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lrtune.result_io import FORMAT_VERSION, JsonResult, json_clean

LOSS_RTOL = 0.01  # "within noise" for a loss metric: 1 % of the best loss
CHOICES = ("window", "final")
WINDOW = 0.25  # the "window" rule averages the last quarter of the evaluations
TOP_NOTE = "the highest rate tried: a higher one may be better"


def window_scores(curves: list[list[float | None]], final: list[float | None],
                  fraction: float = WINDOW) -> tuple[list[float | None], str]:
    """Each copy's mean over the last ``fraction`` of its evaluation points (at least one);
    None for a copy whose ``final`` is None (diverged or stopped early). Also the scores' name.

    Examples:
        >>> window_scores([[4.0, 3.0, 2.0, 1.0, 0.5, 0.3, 0.1, 0.1], [1.0] * 8], [0.1, None])
        ([0.1, None], 'valid loss, mean of the last 2 evaluations')
    """
    points = len(curves[0]) if curves else 0
    n = max(1, int(points * fraction))
    scores = [None if f is None or any(v is None for v in row[-n:]) else
              sum(row[-n:]) / n for row, f in zip(curves, final, strict=True)]
    what = "the final evaluation" if n == 1 else f"mean of the last {n} evaluations"
    return scores, f"valid loss, {what}"


def default_tolerance(metric: str, best: float, n_valid: int) -> float:
    """How far from the best score still counts as "the same" (the noise of the estimate).

    Accuracy: one binomial standard error of the best accuracy on ``n_valid`` samples,
    ``sqrt(p (1 - p) / n)``, and at least one sample (``1 / n``). Loss: 1 % of the best loss.

    Examples:
        >>> round(default_tolerance("accuracy", 0.9, 400), 4)
        0.015
        >>> default_tolerance("loss", 0.5, 400)
        0.005
    """
    if metric == "accuracy":
        return max(math.sqrt(best * (1 - best) / n_valid), 1 / n_valid)
    return LOSS_RTOL * abs(best)


def paired_tolerances(correct, best: int) -> list[float]:
    """Noise of each copy's accuracy difference with copy ``best``, on the same samples.

    ``correct`` is a ``(K, n)`` boolean array: copy k got validation sample j right. All copies
    are scored on the same samples, so the noise of a difference is that of a paired
    comparison (as in McNemar's test): with ``d`` the share of samples on which the two copies
    disagree and ``delta`` their accuracy difference, the standard error of the difference is
    ``sqrt((d - delta**2) / n)``; never less than one sample, ``1 / n``.

    Examples:
        >>> import numpy as np
        >>> c = np.array([[1, 1, 1, 0], [1, 1, 0, 1], [1, 1, 1, 0]], dtype=bool)
        >>> [round(t, 3) for t in paired_tolerances(c, 0)]
        [0.25, 0.354, 0.25]
    """
    import numpy as np

    c = np.asarray(correct, dtype=bool)
    n = c.shape[1]
    out = []
    for row in c:
        d = float(np.mean(row != c[best]))
        delta = float(np.mean(c[best]) - np.mean(row))
        out.append(max(math.sqrt(max(d - delta**2, 0.0) / n), 1 / n))
    return out


def tolerances(metric: str, scores: list[float | None], correct: dict | None,
               n_valid: int) -> float | list[float | None]:
    """"Within noise" for comparing ``scores`` (None: a copy not compared), as the sweep uses
    it for its choice and at its halving rungs.

    Accuracy with each copy's per-sample correctness (``correct``: copy index -> boolean row
    over the same validation samples): one :func:`paired_tolerances` per copy, against the
    best copy (None for a copy not compared). Otherwise one number,
    :func:`default_tolerance` of the best score.

    Examples:
        >>> tolerances("loss", [0.5, None, 0.4], None, 100)
        0.004
        >>> import numpy as np
        >>> rows = {0: np.array([1, 1, 0, 0]), 2: np.array([1, 1, 1, 0])}
        >>> [None if t is None else round(t, 3) for t in tolerances("accuracy", [0.5, None, 0.75],
        ...                                                          rows, 4)]
        [0.25, None, 0.25]
    """
    import numpy as np

    present = [i for i, s in enumerate(scores) if s is not None]
    if metric == "accuracy" and present and correct and all(i in correct for i in present):
        best = max(present, key=lambda i: (scores[i], -i))
        rows = np.stack([np.asarray(correct[i], dtype=bool) for i in present])
        tols = paired_tolerances(rows, present.index(best))
        out: list[float | None] = [None] * len(scores)
        for i, t in zip(present, tols, strict=True):
            out[i] = t
        return out
    finite = [scores[i] for i in present]
    best = (max(finite) if metric == "accuracy" else min(finite)) if finite else 0.0
    return default_tolerance(metric, best, n_valid)


def choose(lrs: list[float], scores: list[float | None], *, mode: str,
           tolerance: float | list[float | None], name: str = "") -> tuple[int | None, str]:
    """Pick the rate: the lowest rate whose score is within ``tolerance`` of the best score.

    ``scores`` are what the sweep compares (None or non-finite for a copy that diverged or
    stopped early): by default (:func:`lrtune.sweep`'s ``choice="window"``) each rate's
    validation loss averaged over the last quarter of its evaluations
    (:func:`window_scores`), with ``tolerance`` 1 % of the best; with ``choice="final"`` the
    final validation metric, with one paired standard error (:func:`paired_tolerances`) for
    accuracy. ``mode`` is ``"max"`` (accuracy) or ``"min"`` (loss); ``tolerance`` is one
    number, or one per candidate (the noise of its difference with the best); ``name`` names
    the scores in the reason.
    Among rates that are equally good within noise the lowest is the safe choice: a full run
    collapses at rates only a few times above the short run's best, never below it.
    Measured with a few dozen validation samples (``benchmarks/bench_confirm_noise.py``,
    ``benchmarks/RESULTS.md`` section 4): the averaged loss cut the mean regret against the
    best rate on a large test set by 2.5-3.5x and the choice changed less often between data
    orders than with the final accuracy.

    Returns:
        ``(index, reason)``; index is None when every copy diverged.

    Examples:
        >>> choose([0.01, 0.1, 1.0], [0.90, 0.95, 0.96], mode="max", tolerance=0.02)
        (1, 'lowest rate within 0.02 of the best accuracy-like score 0.96 (lr 1)')
        >>> choose([0.01, 0.1], [None, None], mode="min", tolerance=0.1)[0] is None
        True
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    valid = [(i, s) for i, s in enumerate(scores) if s is not None and math.isfinite(s)]
    if not valid:
        return None, "every candidate diverged or has a non-finite validation score"
    sign = 1.0 if mode == "max" else -1.0
    best_i, best = max(valid, key=lambda t: (sign * t[1], -lrs[t[0]]))
    tols = (list(tolerance) if isinstance(tolerance, list | tuple)
            else [tolerance] * len(scores))
    near = [i for i, s in valid if sign * (best - s) <= (tols[i] or 0.0)]
    pick = min(near, key=lambda i: lrs[i])
    kind = "accuracy-like" if mode == "max" else "loss-like"
    within = (f"within {tolerance:.3g}" if not isinstance(tolerance, list | tuple)
              else "within one paired standard error")
    if name:
        return pick, f"lowest rate {within} of the best {name}: {best:.4g} at lr {lrs[best_i]:.3g}"
    return pick, (f"lowest rate {within} of the best {kind} score {best:.4g} "
                  f"(lr {lrs[best_i]:.3g})")


@dataclass
class SweepResult(JsonResult):
    """What :func:`lrtune.sweep` measured and which rate it chose.

    Attributes:
        lrs: the K candidate rates, ascending.
        metric: ``"accuracy"`` (higher is better) or ``"loss"`` (lower is better).
        steps, epochs: optimizer steps and epochs done at each point of the curves.
        train_loss, train_metric, valid_loss, valid_metric: one curve per rate (``[K][points]``);
            None where the copy had diverged. The train values are the means over the
            batches since the previous point, the valid values are measured at the point.
        final_metric: the validation metric of each rate's final weights (None if diverged or
            stopped early).
        diverged_step: the step at which each copy's training loss became non-finite (or None).
        stopped_step: the step after which successive halving stopped each copy (or None);
            its curves end there, and ``settings["halving"]`` holds the rungs.
        choice, scores, score_name: the choice rule (``"window"`` or ``"final"``), the score
            of each rate it compared (None: diverged or stopped) and what that score is.
        chosen_lr, chosen_index: the choice (None when every copy diverged); ``reason`` says how.
        tolerance: what "within noise" meant for the choice: one number, or one per rate
            (the paired standard error of its accuracy difference with the best rate).
        engine: ``batched``, ``vmap`` or ``sequential``; ``fallback_reason`` when sequential
            was forced by a module that cannot be vectorised.
        seconds: wall time of the training and evaluation.
        settings: the arguments of the sweep.
    """

    lrs: list[float]
    metric: str
    steps: list[int]
    epochs: list[float]
    train_loss: list[list[float | None]]
    train_metric: list[list[float | None]]
    valid_loss: list[list[float | None]]
    valid_metric: list[list[float | None]]
    final_metric: list[float | None]
    diverged_step: list[int | None]
    chosen_lr: float | None
    chosen_index: int | None
    reason: str
    tolerance: float | list[float | None]
    engine: str
    fallback_reason: str | None = None
    stopped_step: list[int | None] = field(default_factory=list)
    choice: str = "final"
    scores: list[float | None] | None = None
    score_name: str = ""
    seconds: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)
    weights: dict[int, dict] | None = field(default=None, repr=False, compare=False)

    KIND = "sweep result"

    @property
    def mode(self) -> str:
        return "max" if self.metric == "accuracy" else "min"

    @property
    def diverged(self) -> list[bool]:
        return [s is not None for s in self.diverged_step]

    @property
    def stopped(self) -> list[bool]:
        return [s is not None for s in self.stopped_step] or [False] * len(self.lrs)

    @property
    def copy_steps(self) -> int:
        """Optimizer steps trained over all copies (a diverged copy counts its steps until it
        diverged, a stopped one until its rung)."""
        total = self.settings.get("steps") or (self.steps[-1] if self.steps else 0)
        ends = zip(self.diverged_step, self.stopped_step or [None] * len(self.lrs), strict=True)
        return sum(min([total, *(e for e in pair if e is not None)]) for pair in ends)

    @property
    def compute_fraction(self) -> float:
        """``copy_steps`` over K full runs: what halving and divergence saved."""
        total = self.settings.get("steps") or (self.steps[-1] if self.steps else 0)
        return self.copy_steps / max(1, total * len(self.lrs))

    def summary(self) -> str:
        """One line for people."""
        if self.chosen_lr is None:
            return f"no rate confirmed: {self.reason}"
        score = self.final_metric[self.chosen_index]
        return (f"confirmed lr {self.chosen_lr:.3g} (valid {self.metric} {score:.4g}) among "
                f"{len(self.lrs)} rates {self.lrs[0]:.3g}..{self.lrs[-1]:.3g}; "
                f"{sum(self.diverged)} diverged; {self._halving_note()}engine {self.engine}"
                + (f" ({TOP_NOTE})" if self.chose_the_top else ""))

    def apply(self, optimizer) -> None:
        """Set the chosen rate on ``optimizer`` as the sweep trained it: the reference group
        (the first with ``lr > 0``) gets the rate, every other group keeps its ratio to that
        group (frozen groups stay at 0); ``initial_lr`` too, for a scheduler built on it.

        Raises:
            ValueError: no rate was confirmed (every copy diverged).
        """
        from lrtune.finder.range_test import apply_lrs, reference_group

        if self.chosen_lr is None:
            raise ValueError(f"no rate to apply: {self.reason}")
        _, ratios = reference_group(optimizer.param_groups)
        apply_lrs(optimizer, [self.chosen_lr * ratio for ratio in ratios], "the sweep")

    @property
    def chose_the_top(self) -> bool:
        """Whether the chosen rate is the highest tried (of several): the best may lie above."""
        return self.chosen_index is not None and len(self.lrs) > 1 \
            and self.chosen_index == len(self.lrs) - 1

    def _halving_note(self) -> str:
        if not any(self.stopped):
            return ""
        return (f"{sum(self.stopped)} stopped early by halving ({self.compute_fraction:.0%} of "
                "the copy-steps trained); ")

    def table(self) -> str:
        """Rate, final valid metric, the score the choice compared (when it is another one:
        the window's mean valid loss) and status, one line per candidate; then the rule's
        reason, so the table shows why the chosen rate won."""
        compared = self.scores is not None and any(  # shown when it differs from the metric
            c is not None and c != f for c, f in zip(self.scores, self.final_metric, strict=True))
        head = f"{'lr':>10}  {'valid ' + self.metric:>14}"
        if compared:
            head += f"  {'compared':>10}"
        lines = [f"{head}  status"]
        for i, lr in enumerate(self.lrs):
            score = self.final_metric[i]
            text = "-" if score is None else f"{score:.4f}"
            status = (f"diverged at step {self.diverged_step[i]}" if self.diverged[i] else "")
            if self.stopped[i]:
                at = self.stopped_step[i]
                last = next((v for s, v in zip(self.steps, self.valid_metric[i], strict=True)
                             if s == at), None)
                text = "-" if last is None else f"({last:.4f})"
                status = f"stopped by halving at step {at} (its score there)"
            if i == self.chosen_index:
                status = f"chosen ({TOP_NOTE})" if self.chose_the_top else "chosen"
            row = f"{lr:>10.3g}  {text:>14}"
            if compared:
                value = self.scores[i]
                row += f"  {'-' if value is None else f'{value:.4g}':>10}"
            lines.append(f"{row}  {status}".rstrip())
        lines.append(f"choice: {self.reason}")
        return "\n".join(lines)

    # -- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        # not asdict(): it would deep-copy every kept weight tensor only to drop it
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "weights"}
        return json_clean({"format_version": FORMAT_VERSION, **data})

    # -- figures ---------------------------------------------------------------------------
    def plot(self):
        """Final valid metric against lr (log axis) and the per-rate curves; the Figure."""
        from lrtune.confirmation.plot import plot_sweep

        return plot_sweep(self)

    def save(self, out_dir: str | Path, stem: str = "sweep") -> tuple[Path, Path]:
        """Write ``stem.png`` (300 dpi) and ``stem.json`` into ``out_dir``; return both paths."""
        return super().save(out_dir, stem)

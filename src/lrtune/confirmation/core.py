"""``sweep``: train K copies of a model at K learning rates at once and choose by validation."""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Sequence

import torch
from torch import nn

from lrtune.confirmation.engines import ENGINES, Training, make_engine
from lrtune.confirmation.halving import Halving, resolve_halving, to_stop
from lrtune.confirmation.losses import correct_counts, correct_rows, resolve_metric
from lrtune.confirmation.optim import layout_of, optim_spec
from lrtune.confirmation.result import (
    CHOICES,
    SweepResult,
    choose,
    tolerances,
    window_scores,
)
from lrtune.data.batching import as_batches, batches_per_epoch, kept_generators
from lrtune.finder.range_test import _endless  # the range test's endless batch stream
from lrtune.steps import (
    Step,
    check_precision,
    probing,
    resolve_step,
    run_step,
    target_of,
    to_device,
)

# the choice rule was measured with 30 validation samples (benchmarks/bench_confirm_noise.py);
# below that the sweep warns that its choice is mostly noise
MIN_VALID_SAMPLES = 30


class SmallValidationWarning(UserWarning):
    """The sweep compares its rates on fewer validation samples than its rule was measured on."""


def candidate_lrs(lrs: Sequence[float] | None = None, bracket: tuple[float, float] | None = None,
                  k: int = 8) -> list[float]:
    """The candidate rates: ``lrs`` as given (sorted), or ``k`` rates spaced evenly on a log
    axis from ``bracket[0]`` to ``bracket[1]`` inclusive.

    Examples:
        >>> candidate_lrs(bracket=(0.001, 0.1), k=3)
        [0.001, 0.01, 0.1]
        >>> candidate_lrs([0.1, 0.01])
        [0.01, 0.1]
    """
    if (lrs is None) == (bracket is None):
        raise ValueError("give exactly one of lrs (the candidate rates) and bracket (lo, hi)")
    if lrs is not None:
        values = [float(v) for v in lrs]
        if not values or any(not (math.isfinite(v) and v > 0) for v in values):
            raise ValueError(f"lrs must be a non-empty list of finite rates > 0, got {lrs!r}")
        if len(set(values)) != len(values):
            raise ValueError(f"lrs must be distinct, got {lrs!r}")
        return sorted(values)
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    lo, hi = (float(v) for v in bracket)
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
        raise ValueError(f"bracket must be (lo, hi) with 0 < lo <= hi, got {bracket!r}")
    if k == 1:
        return [hi]
    if lo == hi:
        raise ValueError(f"bracket {bracket!r} holds one rate; widen it or use k=1")
    ratio = math.log(hi / lo) / (k - 1)
    return [float(f"{lo * math.exp(ratio * i):.6g}") for i in range(k)]


def check_sweep_options(engine: str, halving, choice: str) -> Halving | None:
    """Check the sweep's ``engine``, ``halving`` and ``choice`` (a ``ValueError`` naming the
    bad one, before anything trains: ``auto_lr`` calls it before its range test); return the
    halving plan."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if choice not in CHOICES:
        raise ValueError(f"choice must be one of {', '.join(CHOICES)}, got {choice!r}")
    return resolve_halving(halving)


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device):
    """Seed torch's global RNG inside, and leave the caller's RNG state as it was."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def sweep(
    model: nn.Module | Callable[[], nn.Module],
    optimizer,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    train=None,
    valid=None,
    *,
    step: Step | None = None,
    precision: str = "32",
    clip_grad_norm: float | None = None,
    clip_grad_value: float | None = None,
    lrs: Sequence[float] | None = None,
    bracket: tuple[float, float] | None = None,
    k: int = 8,
    epochs: int | None = None,
    steps: int | None = None,
    batch_size: int = 32,
    seed: int = 0,
    opt_kwargs: dict | None = None,
    metric: str = "auto",
    tolerance: float | None = None,
    engine: str = "auto",
    device: torch.device | str | None = None,
    eval_batch_size: int = 1024,
    keep_weights: bool = False,
    lr_scale: Callable[[int], float | Sequence[float]] | None = None,
    halving: bool | str | Sequence[float] | None = "auto",
    choice: str = "window",
) -> SweepResult:
    """Train one copy of ``model`` per candidate rate, all at once, and pick a rate by validation.

    Every copy starts from the same initial weights and sees the same batches in the same order
    (and the same dropout masks); only the rate differs. Each copy's weights after N steps are
    those of a separate plain torch run at that rate with ``torch.manual_seed(seed)`` (same
    up to floating-point rounding; with dropout, for ``nn.Dropout`` layers: dropout inside
    other modules, such as ``nn.TransformerEncoderLayer``, draws masks under the vmap engine
    that the copies share but a plain run would not draw). A copy whose training loss becomes
    non-finite stops there (diverged) and cannot be chosen. With successive halving
    (``halving``, on by default) a copy that is clearly worse than the best at a rung stops
    there too (``result.stopped_step``) and cannot be chosen; the others train on exactly as
    without it.

    The choice (``choice``, see :func:`lrtune.confirmation.result.choose`): by default
    (``"window"``) each copy's validation *loss* averaged over the last quarter of its
    evaluations (one per epoch, one at each halving rung and one at the end; at least the
    last: a budget of fewer than 8 evaluations, e.g. shorter than an epoch, which is evaluated
    at its rungs and its end, is judged on its final evaluation), and the lowest rate within
    1 % of the best such loss. Measured
    (``benchmarks/bench_confirm_noise.py``): with a few dozen validation samples the final
    accuracy is a coin toss, the averaged loss is not. ``"final"``: the final validation
    metric, the lowest rate within noise of the best: for accuracy one standard error of the
    paired difference with the best copy on the same validation samples
    (:func:`lrtune.confirmation.result.paired_tolerances`), for a loss 1 % of the best loss.

    Args:
        model: a module (its current weights are the start; it is not modified) or a factory
            called once, under ``torch.manual_seed(seed)``.
        optimizer: ``"sgd"``, ``"adam"``, ``"adamw"``, a torch optimizer class or instance.
            A candidate rate is the first param group's; every other group keeps its ratio to
            it (an instance built on ``model``). SGD, Adam and AdamW (one set of settings; the
            groups may differ in their rate and weight decay, as the usual "no decay for
            biases and norms" groups do) are vectorised; any other optimizer trains the
            copies one after another.
        loss_fn: ``loss_fn(output, target)`` with mean reduction (``None`` with ``step``).
        train, valid: ``(X, y)`` tensor pairs, DataLoaders or re-iterables of batches.
        step: ``step(model, batch)`` as in :func:`lrtune.find_lr` (see :mod:`lrtune.steps`);
            the copies then train one after another. Accuracy needs the step's ``output``.
        precision: ``"32"``, ``"bf16-mixed"`` (autocast, all engines) or ``"16-mixed"``
            (a GradScaler per copy; sequential).
        clip_grad_norm, clip_grad_value: per-copy gradient clipping before each step.
        lrs: the candidate rates; or ``bracket=(lo, hi)`` and ``k`` for k log-spaced rates.
        epochs, steps: the budget (exactly one).
        batch_size: training batch size (``(X, y)`` data is shuffled with ``seed``).
        seed: seeds the batch order, the factory and the dropout masks; the caller's RNG state
            (and a DataLoader's ``generator=``) is left untouched.
        opt_kwargs: optimizer settings when ``optimizer`` is a name or class (``momentum``,
            ``weight_decay``, ``nesterov`` ... as :func:`lrtune.training.setup.make_optimizer`).
        metric: ``"auto"`` (accuracy for class targets, else the loss), ``"accuracy"``, ``"loss"``.
        tolerance: "within noise" for the choice, in the units of the score it compares
            (the loss for ``choice="window"``; default: see above).
        engine: ``"auto"``, ``"batched"``, ``"vmap"`` or ``"sequential"``.
        device: where training runs; defaults to the model's device.
        eval_batch_size: batch size of the validation passes.
        keep_weights: keep every copy's final state dict in ``result.weights``.
        lr_scale: a schedule for every copy: ``lr_scale(t)`` multiplies each candidate's rate
            at optimizer step ``t`` (0-based; the step of the first batch is 0). One number
            for every copy, or K numbers (one per candidate, in the order of ``result.lrs``).
            Copy ``k`` then trains as a plain run whose rate is set to
            ``lrs[k] * lr_scale(t)[k]`` before each ``optimizer.step()``.
        halving: successive halving (:mod:`lrtune.confirmation.halving`): at a quarter and
            at half of the budget, copies more than 2.8 and 2 standard errors (the noise of
            the choice) behind the best stop, at most half of the live copies per rung,
            at least 3 kept, and the rate just below the lowest contender kept. ``"auto"``
            (default) or ``True``: on, also under ``lr_scale``; ``False``; or the rungs as
            ascending fractions in (0, 1).
        choice: how the rate is chosen: ``"window"`` (default) or ``"final"`` (see above).

    Returns:
        A :class:`SweepResult`.

    Raises:
        ValueError: bad arguments, or an explicit vectorised engine that cannot run the model.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> X, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> res = sweep(net, "sgd", nn.CrossEntropyLoss(), (X, y), (X, y),
        ...             lrs=[0.01, 0.1], epochs=2, batch_size=16)
        >>> res.engine, len(res.valid_metric[0]), res.chosen_lr in (0.01, 0.1)
        ('batched', 2, True)
    """
    candidates = candidate_lrs(lrs, bracket, k)
    if (epochs is None) == (steps is None):
        raise ValueError("give exactly one budget: epochs or steps")
    for name, value in (("epochs", epochs), ("steps", steps)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if tolerance is not None and not (math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    spec = optim_spec(optimizer, opt_kwargs)
    if not isinstance(model, nn.Module) and not callable(model):
        raise ValueError(f"model must be an nn.Module or a factory, got {type(model).__name__}")
    if train is None or valid is None:
        raise TypeError("sweep needs train and valid data")
    resolve_step(step, loss_fn)  # one clear error before anything is built
    precision = check_precision(precision)
    plan = check_sweep_options(engine, halving, choice)
    if plan is not None and len(candidates) <= plan.min_keep:
        plan = None  # nothing could stop: no rung, no extra evaluation

    start = time.perf_counter()
    dev = torch.device(device) if device is not None else None
    with _seeded(seed, dev or torch.device("cpu")), kept_generators(train, valid):
        net = model if isinstance(model, nn.Module) else model()
        if not isinstance(net, nn.Module):
            raise ValueError(f"the model factory returned {type(net).__name__}, not an nn.Module")
        if dev is None:
            first = next(net.parameters(), None)
            dev = first.device if first is not None else torch.device("cpu")
        net = net.to(dev) if next(net.parameters(), torch.empty(0)).device != dev else net
        layout = layout_of(net, optimizer)
        training = Training(loss_fn, step, precision, clip_grad_norm, clip_grad_value, dev)
        batches = as_batches(train, batch_size, shuffle=True, seed=seed)
        per_epoch = batches_per_epoch(batches)
        if per_epoch is None:
            raise ValueError("train data must have a length (a DataLoader, a list of batches "
                             "or (X, y)): the sweep evaluates at the end of each epoch of it")
        if per_epoch == 0:
            raise ValueError("train data is empty: it yielded no batch")
        total = steps if steps is not None else epochs * per_epoch
        valid_batches = [to_device(b, dev)
                         for b in as_batches(valid, eval_batch_size, shuffle=False)]
        if not valid_batches:
            raise ValueError("valid data is empty: it yielded no batch")
        probe = _probe_step(net, training, valid_batches[0])
        n_valid = sum(len(_target(b)) for b in valid_batches)
        if n_valid < MIN_VALID_SAMPLES:
            warnings.warn(f"the sweep compares its rates on {n_valid} validation samples; its "
                          f"choice was measured with {MIN_VALID_SAMPLES} or more, and with "
                          "fewer it is mostly noise: pass more validation data (auto_lr: "
                          "valid=, or a larger holdout)", SmallValidationWarning, stacklevel=2)
        metric_name = resolve_metric(metric, probe.target)
        if metric == "auto" and probe.output is None:  # a step that returns its loss only
            metric_name = "loss"
        if metric_name == "accuracy" and probe.output is None:
            raise ValueError("metric='accuracy' needs the step to return the output "
                             "({'loss': ..., 'output': ..., 'target': ...})")
        stream = _endless(batches)
        first = next(stream)
        eng, fallback = make_engine(engine, net, spec, candidates, first, layout, training)
        rates_at = None if lr_scale is None else _scheduled(candidates, lr_scale)
        judge = None if plan is None else _Judge(plan, candidates, metric_name, n_valid, total)
        curves = _train(eng, stream, first, valid_batches, dev,
                        k=len(candidates), total=total, per_epoch=per_epoch,
                        accuracy=metric_name == "accuracy", rates_at=rates_at,
                        rungs=[] if plan is None else plan.steps(total, per_epoch), judge=judge)
        weights = eng.weights() if keep_weights else None
    final = [row[-1] for row in curves["valid_metric"]]
    final = [None if (d is not None or s is None or not math.isfinite(s)) else s
             for s, d in zip(final, curves["diverged_step"], strict=True)]
    if choice == "window":
        scores, score_name = window_scores(curves["valid_loss"], final)
        mode, score_metric, rows = "min", "loss", None
    else:
        scores, score_name = final, f"final valid {metric_name}"
        mode = "max" if metric_name == "accuracy" else "min"
        score_metric, rows = metric_name, _numpy_rows(curves["final_correct"])
    if tolerance is None:
        tolerance = tolerances(score_metric, scores, rows, n_valid)
    index, reason = choose(candidates, scores, mode=mode, tolerance=tolerance, name=score_name)
    settings = dict(optimizer=spec.describe(), batch_size=batch_size, seed=seed,
                    epochs=epochs, steps=total, steps_per_epoch=per_epoch, n_valid=n_valid,
                    device=str(dev), precision=precision,
                    step="custom" if step is not None else "default",
                    group_ratios=list(layout.ratios), scheduled=lr_scale is not None,
                    halving=None if plan is None else dict(
                        rungs=list(plan.rungs), rung_steps=plan.steps(total, per_epoch),
                        z=plan.z, min_keep=plan.min_keep))
    return SweepResult(
        lrs=candidates, metric=metric_name, steps=curves["steps"], epochs=curves["epochs"],
        train_loss=curves["train_loss"], train_metric=curves["train_metric"],
        valid_loss=curves["valid_loss"], valid_metric=curves["valid_metric"],
        final_metric=final, diverged_step=curves["diverged_step"],
        stopped_step=curves["stopped_step"], choice=choice, scores=scores, score_name=score_name,
        chosen_lr=None if index is None else candidates[index], chosen_index=index,
        reason=reason, tolerance=tolerance, engine=eng.name, fallback_reason=fallback,
        seconds=time.perf_counter() - start, settings=settings, weights=weights,
    )


def _scheduled(candidates: list[float], lr_scale: Callable) -> Callable[[int], list[float]]:
    """``step -> every candidate's rate at that step``, checking what ``lr_scale`` returns."""
    if not callable(lr_scale):
        raise ValueError(f"lr_scale must be a callable step -> multiplier, got {lr_scale!r}")

    def rates_at(step: int) -> list[float]:
        scale = lr_scale(step)
        scales = ([scale] * len(candidates) if isinstance(scale, int | float)
                  else list(scale))
        if len(scales) != len(candidates) or not all(
                isinstance(v, int | float) and math.isfinite(v) and v >= 0 for v in scales):
            raise ValueError(f"lr_scale({step}) must be a finite number >= 0 or "
                             f"{len(candidates)} of them, got {scale!r}")
        return [lr * float(v) for lr, v in zip(candidates, scales, strict=True)]

    return rates_at


def _probe_step(net: nn.Module, training: Training, batch):
    """One evaluation step of the model itself, to see what the step yields (output, target);
    the RNG and the train mode are left as they were."""
    with probing(net):
        return run_step(training.runner(net).step_fn, net, batch)


def _target(batch):
    target = target_of(batch)
    if not isinstance(target, torch.Tensor):
        raise ValueError("the sweep needs the target in each validation batch: (x, y) pairs or "
                         "mappings with 'labels'")
    return target


def _numpy_rows(correct: dict) -> dict:
    return {i: row.cpu().numpy() for i, row in correct.items()}


class _Judge:
    """The halving decision at a rung: which live copies stop (see :mod:`.halving`)."""

    def __init__(self, plan: Halving, lrs: list[float], metric: str, n_valid: int,
                 total: int) -> None:
        self.plan, self.lrs, self.metric = plan, lrs, metric
        self.n_valid, self.total = n_valid, total

    def __call__(self, alive: list[int], scores: list[float], correct, step: int) -> list[int]:
        """Positions (in ``alive``) of the copies that stop after ``step``."""
        if len(alive) <= self.plan.min_keep:
            return []
        rows = None if correct is None else {pos: correct[pos].cpu().numpy()
                                             for pos in range(len(alive))}
        tol = tolerances(self.metric, scores, rows, self.n_valid)  # the measured noise
        tols = tol if isinstance(tol, list) else [tol] * len(alive)
        return to_stop([self.lrs[i] for i in alive], scores, tols,
                       mode="max" if self.metric == "accuracy" else "min",
                       z=self.plan.z_at(step / self.total), min_keep=self.plan.min_keep)


def _train(eng, stream, first, valid_batches, dev, *, k, total, per_epoch,
           accuracy: bool, rates_at=None, rungs=(), judge=None) -> dict:
    """The loop: one step of every live copy per batch; a point of the curves per epoch (and
    at each halving rung, where the clearly worse copies stop)."""
    curves: dict = {key: [[] for _ in range(k)] for key in
                    ("train_loss", "train_metric", "valid_loss", "valid_metric")}
    curves.update(steps=[], epochs=[], diverged_step=[None] * k, stopped_step=[None] * k,
                  final_correct={})
    loss_sum = torch.zeros(k, dtype=torch.float64, device=dev)
    metric_sum = torch.zeros(k, dtype=torch.float64, device=dev)
    seen = 0
    batch = first
    alive_ids, alive = None, None
    for step in range(total):
        if step > 0:
            batch = next(stream)
        if eng.alive != alive_ids:  # a new index tensor only when the live copies change
            alive_ids = list(eng.alive)
            alive = torch.tensor(alive_ids, device=dev)
        losses, out, y = eng.losses(batch, train=True)
        detached = losses.detach()
        ok = torch.isfinite(detached)
        ok_list = ok.tolist()
        for pos, good in enumerate(ok_list):
            if not good:
                curves["diverged_step"][eng.alive[pos]] = step
        n = len(y)
        finite = detached if all(ok_list) else torch.where(ok, detached, 0)
        loss_sum.index_add_(0, alive, finite.double() * n)
        if accuracy and out is not None:
            metric_sum.index_add_(0, alive, correct_counts(out.detach(), y).double())
        seen += n
        if rates_at is not None:
            eng.set_lrs(rates_at(step))
        eng.update(losses, ok_list)
        last = step + 1 == total or not eng.alive
        rung = step + 1 in rungs and not last
        if (step + 1) % per_epoch == 0 or last or rung:
            scores, correct = _record(curves, eng, valid_batches, loss_sum, metric_sum, seen,
                                      step + 1, per_epoch, accuracy, last)
            loss_sum.zero_()
            metric_sum.zero_()
            seen = 0
            finite = all(math.isfinite(v) for v in scores)
            stop = judge(eng.alive, scores, correct, step + 1) if rung and finite else []
            for pos in stop:
                curves["stopped_step"][eng.alive[pos]] = step + 1
            if stop:
                eng.retire(stop)
        if not eng.alive:
            break
    return curves


def _record(curves, eng, valid_batches, loss_sum, metric_sum, seen, steps_done,
            per_epoch, accuracy, last) -> tuple[list[float], torch.Tensor | None]:
    k = len(curves["train_loss"])
    curves["steps"].append(steps_done)
    curves["epochs"].append(round(steps_done / per_epoch, 6))
    v_loss, v_metric, correct = _evaluate(eng, valid_batches, accuracy)
    live = {orig: pos for pos, orig in enumerate(eng.alive)}
    if last and correct is not None:
        curves["final_correct"] = {orig: correct[pos] for orig, pos in live.items()}
    scores = v_metric if accuracy else v_loss
    train_loss = (loss_sum / max(seen, 1)).tolist()
    train_metric = (metric_sum / max(seen, 1)).tolist()
    for i in range(k):
        pos = live.get(i)
        if pos is None:
            for key in ("train_loss", "train_metric", "valid_loss", "valid_metric"):
                curves[key][i].append(None)
            continue
        curves["train_loss"][i].append(train_loss[i])
        curves["train_metric"][i].append(train_metric[i] if accuracy else train_loss[i])
        curves["valid_loss"][i].append(v_loss[pos])
        curves["valid_metric"][i].append(v_metric[pos] if accuracy else v_loss[pos])
    return scores, correct


@torch.no_grad()
def _evaluate(eng, valid_batches, accuracy: bool):
    """Validation loss, accuracy, and per-sample correctness ``(K, n)`` of every live copy."""
    if not eng.alive:
        return [], [], None
    n = len(eng.alive)
    dev = eng.training.device
    loss = torch.zeros(n, dtype=torch.float64, device=dev)
    correct = torch.zeros(n, dtype=torch.float64, device=dev)
    count = 0
    rows = []
    for batch in valid_batches:
        losses, out, y = eng.losses(batch, train=False)
        loss += losses.double() * len(y)
        if accuracy:
            hits = correct_rows(out, y)
            rows.append(hits)
            correct += hits.sum(1).double()
        count += len(y)
    per_sample = torch.cat(rows, dim=1) if rows else None
    return (loss / count).tolist(), (correct / count).tolist(), per_sample

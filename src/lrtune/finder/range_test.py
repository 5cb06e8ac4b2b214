"""The learning-rate range test: grow the rate every optimizer step and record the loss."""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from lrtune import distributed
from lrtune.data.batching import as_batches
from lrtune.finder import suggest
from lrtune.finder.divergence import DivergenceTest
from lrtune.finder.result import FinderResult
from lrtune.finder.snapshot import Snapshot
from lrtune.lr_free import refuse_range_test
from lrtune.steps import Step, StepRunner, batch_size_of, default_device


def lr_at(step: int, *, start_lr: float, end_lr: float, num_iters: int, mode: str) -> float:
    """The rate at ``step`` (0-based) of a sweep from ``start_lr`` to ``end_lr`` in ``num_iters``.

    Examples:
        >>> lr_at(0, start_lr=1e-4, end_lr=1.0, num_iters=5, mode="exp")
        0.0001
        >>> round(lr_at(2, start_lr=1e-4, end_lr=1.0, num_iters=5, mode="exp"), 12)
        0.01
        >>> lr_at(4, start_lr=0.0, end_lr=1.0, num_iters=5, mode="linear")
        1.0
    """
    t = step / (num_iters - 1)
    if mode == "exp":
        return start_lr * (end_lr / start_lr) ** t
    return start_lr + (end_lr - start_lr) * t


def reference_group(groups) -> tuple[int, list[float]]:
    """The group that carries a swept or suggested rate — the first with a finite ``lr > 0``
    (frozen ``lr=0`` groups stay 0) — and each group's lr over its lr (the user's ratios).

    Examples:
        >>> reference_group([{"lr": 0.0}, {"lr": 0.01}, {"lr": 0.1}])
        (1, [0.0, 1.0, 10.0])
    """
    lrs = [float(g["lr"]) for g in groups]
    reference = next((i for i, lr in enumerate(lrs) if math.isfinite(lr) and lr > 0), None)
    if reference is None:
        raise ValueError(f"every param group has lr=0 (all frozen; got {lrs}): set lr > 0 on "
                         "the groups to tune")
    return reference, [lr / lrs[reference] for lr in lrs]


def apply_lrs(optimizer, lrs: list[float], source: str) -> None:
    """Write ``lrs`` into ``optimizer``'s param groups, in order, and into their
    ``initial_lr`` (what a torch scheduler built on the optimizer restarts from). ``source``
    names the result in the error.

    Raises:
        ValueError: the optimizer has another number of param groups than ``lrs``.
    """
    groups = getattr(optimizer, "param_groups", None)
    if groups is None or len(groups) != len(lrs):
        n = "no" if groups is None else len(groups)
        raise ValueError(f"the optimizer has {n} param group(s) but {source} has rates for "
                         f"{len(lrs)}: apply it to an optimizer with the same groups")
    for group, lr in zip(groups, lrs, strict=True):
        group["lr"] = lr
        if "initial_lr" in group:
            group["initial_lr"] = lr


_GROUP_RATES = ("lr", "initial_lr", "max_lr", "min_lr")  # what torch schedulers keep in a group
_SCHEDULER_RATES = ("base_lrs", "max_lrs")  # the per-group lists they compute rates from


def base_rate(optimizer) -> float:
    """The reference group's base rate, what :func:`scale_lrs` sets: OneCycleLR's ``max_lr``,
    else ``initial_lr``, else ``lr``, of the first group where it is > 0."""
    bases = [{"lr": g.get("max_lr", g.get("initial_lr", g["lr"]))} for g in optimizer.param_groups]
    reference, _ = reference_group(bases)
    return float(bases[reference]["lr"])


def scale_lrs(optimizer, lr: float, schedulers=()) -> float:
    """Make ``lr`` the reference group's base rate, with the schedule's shape kept; return the
    factor.

    The base rate is what a torch scheduler builds the group's schedule on: OneCycleLR's
    ``max_lr`` (its peak), else ``initial_lr``, else ``lr``; the reference group is the first
    whose base rate is > 0 (frozen groups stay 0). Every group's rates (``lr``,
    ``initial_lr``, ``max_lr``, ``min_lr``) and each scheduler's ``base_lrs``/``max_lrs``,
    those of the schedulers inside a ``SequentialLR`` or ``ChainedScheduler`` included, are
    multiplied by one factor: warmup and decay keep their shape, the groups their ratios.

    Examples:
        >>> net = torch.nn.Linear(2, 2)
        >>> opt = torch.optim.SGD([{"params": [net.weight], "lr": 0.1},
        ...                        {"params": [net.bias], "lr": 0.01}])
        >>> round(scale_lrs(opt, 0.5), 6), [round(g["lr"], 6) for g in opt.param_groups]
        (5.0, [0.5, 0.05])
    """
    factor = lr / base_rate(optimizer)
    for group in optimizer.param_groups:
        for key in _GROUP_RATES:
            if isinstance(group.get(key), int | float) and not isinstance(group[key], bool):
                group[key] *= factor
    pending, seen = [s for s in schedulers if s is not None], set()
    while pending:
        scheduler = pending.pop()
        if id(scheduler) in seen:
            continue
        seen.add(id(scheduler))
        for name in _SCHEDULER_RATES:
            if isinstance(getattr(scheduler, name, None), list):
                setattr(scheduler, name, [rate * factor for rate in getattr(scheduler, name)])
        pending.extend(getattr(scheduler, "_schedulers", None) or ())  # SequentialLR, Chained…
    return factor


def _check_args(start_lr, end_lr, num_iters, mode, batch_size, smooth, diverge_factor,
                accumulation_steps, val_every) -> None:
    def bad(name, value, rule):
        raise ValueError(f"{name} must be {rule}, got {value!r}")

    if not (isinstance(start_lr, int | float) and math.isfinite(start_lr) and start_lr > 0):
        bad("start_lr", start_lr, "a finite number > 0")
    if not (isinstance(end_lr, int | float) and math.isfinite(end_lr) and end_lr > start_lr):
        bad("end_lr", end_lr, f"a finite number > start_lr ({start_lr})")
    if not isinstance(num_iters, int) or num_iters < 2:
        bad("num_iters", num_iters, "an integer >= 2")
    if mode not in ("exp", "linear"):
        bad("mode", mode, "'exp' or 'linear'")
    if not isinstance(batch_size, int) or batch_size <= 0:
        bad("batch_size", batch_size, "an integer > 0")
    if not (isinstance(smooth, int | float) and 0 <= smooth < 1):
        bad("smooth", smooth, "a number in [0, 1)")
    if not (isinstance(diverge_factor, int | float) and diverge_factor > 1):
        bad("diverge_factor", diverge_factor, "a number > 1")
    if not isinstance(accumulation_steps, int) or accumulation_steps < 1:
        bad("accumulation_steps", accumulation_steps, "an integer >= 1")
    if not isinstance(val_every, int) or val_every < 1:
        bad("val_every", val_every, "an integer >= 1")


def _endless(batches) -> Iterator:
    """Cycle through the batches, starting a new pass whenever one ends (a sampler with
    ``set_epoch``, like ``DistributedSampler``, gets the pass number: a new order each pass)."""
    sampler = getattr(batches, "sampler", None)
    for epoch in itertools.count():
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty:
            raise ValueError("data is empty: it yielded no batch")


def find_lr(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    data=None,
    *,
    step: Step | None = None,
    precision: str = "32",
    clip_grad_norm: float | None = None,
    clip_grad_value: float | None = None,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_iters: int = 300,
    mode: str = "exp",
    batch_size: int = 32,
    smooth: float = 0.05,
    diverge_factor: float = 4.0,
    val_data=None,
    val_every: int = 1,
    accumulation_steps: int = 1,
    restore: bool = True,
    rule: str = suggest.DEFAULT_RULE,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> FinderResult:
    """Run a learning-rate range test and suggest a rate.

    The rate of the reference param group (the first with ``lr > 0``) goes from ``start_lr``
    to ``end_lr`` over ``num_iters`` optimizer steps (geometrically for ``mode="exp"``, evenly
    for ``"linear"``); every other group is scaled by the same factor, so the ratios between
    groups are kept and frozen groups (``lr=0``) stay at 0. The sweep stops early when the loss
    is non-finite or has diverged: the online-smoothed loss exceeds its best by more than
    ``diverge_factor - 1`` times the best and by more than the loss's measured noise (see
    :mod:`lrtune.finder.divergence`).

    Args:
        model, optimizer, loss_fn: as in a training loop; ``loss_fn(model(x), y)``.
        data: a ``DataLoader`` (or any re-iterable of batches) or an ``(X, y)`` pair of tensors
            (batched in memory with ``batch_size`` in a seeded order). Iteration wraps around
            when one pass is too short.
        step: ``step(model, batch) -> loss`` (or a mapping/object with ``loss``) for batches of
            any shape and models that compute their own loss (see :mod:`lrtune.steps`);
            ``loss_fn`` may then be ``None``.
        precision: ``"32"``, ``"bf16-mixed"`` or ``"16-mixed"`` (autocast; a ``GradScaler``
            for 16-bit: a step it skips is not a point of the curve and does not advance the
            rate).
        clip_grad_norm, clip_grad_value: gradient clipping before each optimizer step.
        start_lr, end_lr, num_iters, mode: the sweep.
        smooth: smoothing window as a fraction of the sweep's points (0 turns it off).
        diverge_factor: stop once the smoothed loss exceeds this multiple of its best (and
            its noise allows: a small, noisy loss must rise beyond its noise, for 3 points).
        val_data: optional ``(X, y)`` or ``DataLoader``; when given, the fixed validation set
            is evaluated every ``val_every`` steps and that curve is the one the rules read.
        accumulation_steps: micro-batches per optimizer step; the rate advances per step.
        restore: put model, optimizer and torch RNG back exactly as they were afterwards.
        rule: the suggestion rule behind ``suggested_lr`` (see :mod:`lrtune.finder.suggest`).
        seed: seed of the in-memory batch order.
        device: where batches go; defaults to the device of the model's first parameter.

    Under ``torch.distributed`` (e.g. ``torchrun``, with ``model`` wrapped in
    ``DistributedDataParallel``): an ``(X, y)`` pair is sharded per rank (``batch_size`` per rank,
    see :class:`~lrtune.data.batching.TensorBatches`), a ``DataLoader`` needs a
    ``DistributedSampler``; each step's loss is all-reduced (sample-weighted mean over ranks)
    before it is recorded, so the curve, the stop and the suggestion are the same on every rank;
    ``val_data`` is split across ranks and its sums and counts all-reduced. Call it on every rank.

    Returns:
        A :class:`FinderResult`.

    Raises:
        ValueError: bad arguments, empty data, or an optimizer holding none of ``model``'s
            parameters.
        FloatingPointError: the loss is not finite at the very first step, or under
            ``"16-mixed"`` the gradients are never finite there (the ``GradScaler`` skipped
            :data:`~lrtune.steps.MAX_SKIPPED_STEPS` steps in a row before the first point).
    """
    refuse_range_test(optimizer)  # Prodigy, Schedule-Free, D-Adaptation: no rate to find
    _check_args(start_lr, end_lr, num_iters, mode, batch_size, smooth, diverge_factor,
                accumulation_steps, val_every)
    if rule not in suggest.RULES:
        raise ValueError(f"rule must be one of {', '.join(suggest.RULES)}, got {rule!r}")
    if data is None:
        raise TypeError("find_lr needs data: a DataLoader, an iterable of batches or (X, y)")
    groups = getattr(optimizer, "param_groups", None)
    if not groups:
        raise ValueError(f"optimizer must be a torch optimizer with param groups, got "
                         f"{type(optimizer).__name__}")
    reference, ratios = reference_group(groups)
    own = {id(p) for p in model.parameters()}
    if own and not any(id(p) in own for g in groups for p in g["params"]):
        # e.g. built on another instance of the model: the sweep would train nothing and
        # report a flat curve ("check that the model can learn") instead of the mistake
        raise ValueError("the optimizer holds none of the model's parameters (built on another "
                         "instance?): build it on model.parameters()")
    device = default_device(model) if device is None else torch.device(device)
    runner = StepRunner(model, optimizer, step, loss_fn, device=device, precision=precision,
                        clip_grad_norm=clip_grad_norm, clip_grad_value=clip_grad_value)

    world = distributed.world_size()
    batches = _endless(as_batches(data, batch_size, shuffle=True, seed=seed,
                                  rank=distributed.rank(), world_size=world))
    # before val_data is read: a DataLoader's generator= is put back as it was too
    snapshot = Snapshot(model, optimizer, data=(data, val_data)) if restore else None
    try:
        val_batches = None
        if val_data is not None:
            val_batches = list(as_batches(distributed.shard_pair(val_data), batch_size,
                                          shuffle=False))
            if not distributed.all_reduce(torch.tensor(len(val_batches)), "sum").item():
                raise ValueError("val_data is empty: it yielded no batch")
        curve = _sweep(runner, batches, val_batches, ratios,
                       start_lr=start_lr, end_lr=end_lr, num_iters=num_iters, mode=mode,
                       smooth=smooth, diverge_factor=diverge_factor, val_every=val_every,
                       accumulation_steps=accumulation_steps)
    finally:
        if snapshot is not None:
            snapshot.restore()
    settings = dict(start_lr=start_lr, end_lr=end_lr, num_iters=num_iters, mode=mode,
                    batch_size=batch_size, smooth=smooth, diverge_factor=diverge_factor,
                    val_every=val_every if val_data is not None else None,
                    accumulation_steps=accumulation_steps, seed=seed,
                    optimizer=type(optimizer).__name__, precision=runner.precision,
                    step="default" if runner.is_default else "custom",
                    reference_group=reference, group_ratios=ratios)
    return analyse(curve, rule=rule, smooth=smooth, settings=settings)


def _sweep(runner: StepRunner, batches, val_batches, ratios, *, start_lr, end_lr, num_iters,
           mode, smooth, diverge_factor, val_every, accumulation_steps) -> dict:
    """The loop itself. Returns the raw curves and why it stopped."""
    model, optimizer = runner.model, runner.optimizer
    groups = optimizer.param_groups
    n_points = num_iters if val_batches is None else -(-num_iters // val_every)
    alpha = 2.0 / (max(1.0, smooth * n_points) + 1.0)  # online EMA, for the divergence test only
    diverged = DivergenceTest(alpha, diverge_factor)
    train_lrs: list[float] = []
    train_losses: list[float] = []
    lrs: list[float] = []
    losses: list[float] = []
    stop_reason, stop_lr = "finished", lr_at(num_iters - 1, start_lr=start_lr, end_lr=end_lr,
                                             num_iters=num_iters, mode=mode)
    rates = [lr_at(i, start_lr=start_lr, end_lr=end_lr, num_iters=num_iters, mode=mode)
             for i in range(num_iters)]
    group_ratios = list(zip(groups, ratios, strict=True))
    model.train()
    step = 0
    while step < num_iters:
        lr = rates[step]
        for group, ratio in group_ratios:
            group["lr"] = lr * ratio
        optimizer.zero_grad(set_to_none=True)
        train_loss = _train_step(runner, batches, accumulation_steps)
        if not math.isfinite(train_loss):
            if step == 0:
                raise FloatingPointError(
                    f"the loss is {train_loss} at the first step (lr={lr:.3g}); "
                    "lower start_lr or check the data, the model and the loss"
                )
            stop_reason, stop_lr = "non_finite", lr
            break
        if not runner.optimizer_step():  # the GradScaler skipped it: not a point, same rate
            if runner.never_finite:
                if step == 0:  # as a non-finite first loss: no curve, and start_lr is not why
                    raise FloatingPointError(runner.never_finite_message(lr))
                stop_reason, stop_lr = "non_finite", lr
                break
            continue
        train_lrs.append(lr)
        train_losses.append(train_loss)
        step += 1

        if val_batches is None:
            point = train_loss
        elif (step - 1) % val_every == 0 or step == num_iters:
            point = _evaluate(runner, val_batches)
            if not math.isfinite(point):
                stop_reason, stop_lr = "non_finite", lr
                break
        else:
            continue
        lrs.append(lr)
        losses.append(point)
        if diverged.update(point):
            stop_reason, stop_lr = "diverged", lr
            break
    return dict(lrs=lrs, losses=losses, train_lrs=train_lrs, train_losses=train_losses,
                stop_reason=stop_reason, stop_lr=stop_lr,
                monitor="train" if val_batches is None else "valid")


def _train_step(runner: StepRunner, batches, accumulation_steps: int) -> float:
    """Forward/backward of one optimizer step's micro-batches; returns the step's loss.

    Under ``torch.distributed`` that loss is the sample-weighted mean over all ranks (one small
    all-reduce per step), and DDP averages the gradients in the last micro-batch's backward only
    (``no_sync`` before it).
    """
    model = runner.model
    sharded = distributed.is_distributed()
    scale = 1.0 / accumulation_steps
    if not sharded and accumulation_steps == 1:  # the default path: one sync, nothing else
        result = runner.forward(next(batches))
        runner.backward(result.loss)
        return result.loss.item()
    sums = [0.0, 0]
    for i in range(accumulation_steps):
        batch = next(batches)
        last = i == accumulation_steps - 1
        quiet = sharded and not last and hasattr(model, "no_sync")
        with model.no_sync() if quiet else contextlib.nullcontext():
            result = runner.forward(batch)
            runner.backward(result.loss, scale)
        size = batch_size_of(result, batch) if sharded else 1
        sums[0] += result.loss.item() * size
        sums[1] += size
    if sharded:
        sums = distributed.all_reduce(torch.tensor(sums, dtype=torch.float64), "sum").tolist()
    return sums[0] / sums[1] if sums[1] else math.nan


@torch.no_grad()
def _evaluate(runner: StepRunner, val_batches) -> float:
    net = distributed.unwrap(runner.model)  # no DDP collectives: ranks may hold different counts
    net.eval()
    total, count = 0.0, 0
    for batch in val_batches:
        result = runner.forward(batch, model=net)
        size = batch_size_of(result, batch)
        total += result.loss.item() * size
        count += size
    net.train()
    if distributed.is_distributed():
        total, count = distributed.all_reduce(
            torch.tensor([total, count], dtype=torch.float64), "sum").tolist()
    return total / count


def analyse(curve: dict[str, Any], *, rule: str, smooth: float, settings: dict) -> FinderResult:
    """Smooth the monitored curve, run every rule, and decide the verdict."""
    lrs, losses = np.asarray(curve["lrs"]), np.asarray(curve["losses"])
    smoothed = suggest.smooth_curve(losses, window=smooth * max(len(losses), 1))
    stop = suggest.Stop(curve["stop_reason"], float(curve["stop_lr"]),
                        len(curve["train_losses"]), settings.get("num_iters"))
    verdict, reason = suggest.verdict(lrs, losses, smoothed, stop=stop)
    # an "ok" verdict implies MIN_POINTS (>= 3) points
    suggestions = (suggest.suggest_all(lrs, smoothed) if len(lrs) >= 3
                   else dict.fromkeys(suggest.RULES))
    chosen = suggestions.get(rule) if verdict == "ok" else None
    if verdict == "ok" and chosen is None:
        verdict, reason = "inconclusive", (
            f"the {rule} rule found no point on this curve; see result.suggestions for the "
            "other rules")
    elif verdict == "ok" and chosen <= lrs[0]:
        verdict, reason = "inconclusive", (
            f"the {rule} rule lands on the first point of the sweep (lr={lrs[0]:.3g}); "
            "lower start_lr"
        )
    if verdict != "ok":
        chosen = None
    ratios = settings.get("group_ratios") or [1.0]
    return FinderResult(
        lrs=lrs.tolist(), losses=losses.tolist(), smoothed_losses=smoothed.tolist(),
        train_lrs=list(curve["train_lrs"]), train_losses=list(curve["train_losses"]),
        stop_reason=curve["stop_reason"], stop_lr=float(curve["stop_lr"]),
        suggestions=suggestions, rule=rule, suggested_lr=chosen, verdict=verdict, reason=reason,
        monitor=curve["monitor"], settings=settings,
        suggested_lrs=None if chosen is None else [chosen * r for r in ratios],
    )

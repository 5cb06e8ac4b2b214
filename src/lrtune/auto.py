"""``auto_lr``: a learning rate in one call — the range test, then a confirmation.

The range test runs first; a confirmation (K rates of the range test's bracket trained at once
by the vectorised :func:`lrtune.sweep`, chosen by validation) follows **by default**, because
the range test's rule alone is not reliable enough to stand: on the 13 tasks of
``benchmarks/RESULTS.md`` §8 the plain range test (``steepest``, 300 steps, a constant rate)
met the target (within 1 accuracy point / 5 % of loss of a grid's best, on every seed) on
2 tasks, and its conclusive answers were 1.3-45x below the best on 5 of the first 11; with
the confirmation ``auto_lr`` met it on 8. The one line it prints (``result.reason``) names the
situation: an inconclusive range test (no rate to give), a schedule (the range test's rate is
a constant-rate answer, not a peak) or that measurement. ``confirm=False`` skips the
confirmation and returns the range test's rate (none when it is inconclusive).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lrtune.confirmation.confirm import (
    CONFIRM_FRACTION,
    UNITS,
    bracket_from_finder,
    confirm_budget,
    confirm_share,
)
from lrtune.confirmation.core import candidate_lrs, check_sweep_options, sweep
from lrtune.confirmation.result import SweepResult
from lrtune.data.batching import as_batches, batches_per_epoch
from lrtune.finder.range_test import apply_lrs, reference_group
from lrtune.finder.result import FinderResult
from lrtune.result_io import FORMAT_VERSION, json_clean, write_json

HOLDOUT = 0.2  # share of ``train`` held out for the confirmation when no ``valid`` is given
WHY_CONFIRM = ("the range test's rule alone met the target on 2 of 13 benchmark tasks, "
               "confirmed rates on 8 (RESULTS.md §8)")


@dataclass
class AutoLRResult:
    """What :func:`auto_lr` decided, and its evidence.

    Attributes:
        lr: the rate of the first param group with ``lr > 0`` (the reference group, as in
            :func:`lrtune.find_lr`; the schedule's peak when a schedule was given), or
            ``None`` when there is no trustworthy rate (``reason`` says why).
        lrs: one rate per param group, keeping the optimizer's ratios (frozen ``lr=0``
            groups stay 0); ``None`` with ``lr``.
        decided_by: ``"range test"`` or ``"confirmation"``.
        reason: one line: why the rate was or was not confirmed.
        finder: the range test's :class:`~lrtune.finder.FinderResult`.
        sweep: the confirmation's :class:`~lrtune.confirmation.SweepResult` (or ``None``).
        schedule: the schedule the confirmation trained under (its name, ``"custom"`` or
            ``None`` for a constant rate).
        settings: the arguments that shaped the decision.
    """

    lr: float | None
    lrs: list[float] | None
    decided_by: str
    reason: str
    finder: FinderResult
    sweep: SweepResult | None = None
    schedule: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def apply(self, optimizer: torch.optim.Optimizer) -> None:
        """Write :attr:`lrs` into ``optimizer``'s param groups (in order).

        Raises:
            ValueError: there is no rate, or the optimizer has another number of groups.
        """
        if self.lrs is None:
            raise ValueError(f"auto_lr found no rate to apply: {self.reason}")
        apply_lrs(optimizer, self.lrs, "this result")

    def summary(self) -> str:
        """One line for people: the rate, how it was decided and why."""
        rate = "no rate" if self.lr is None else f"lr {self.lr:.3g}"
        if self.schedule and self.lr is not None:
            rate += f" (peak of {self.schedule})"
        return f"{rate}, decided by the {self.decided_by}: {self.reason}"

    def plot(self):
        """The range test's figure, with the confirmed rate marked when there is one."""
        confirmed = self.lr if self.decided_by == "confirmation" else None
        return self.finder.plot(confirmed_lr=confirmed)

    def to_dict(self) -> dict[str, Any]:
        return json_clean({
            "format_version": FORMAT_VERSION, "lr": self.lr, "lrs": self.lrs,
            "decided_by": self.decided_by, "reason": self.reason, "schedule": self.schedule,
            "settings": self.settings, "finder": self.finder.to_dict(),
            "sweep": None if self.sweep is None else self.sweep.to_dict(),
        })

    def to_json(self, path: str | Path | None = None) -> str:
        """The result as JSON text (the range test and the sweep inside); written to ``path``
        when given."""
        import json

        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            write_json(self.to_dict(), path)
        return text

    def save(self, out_dir: str | Path) -> list[Path]:
        """Write ``auto_lr.json``, the range test's ``lr_find.png/json`` and, after a
        confirmation, ``sweep.png/json`` into ``out_dir``; return the paths.

        After a confirmation ``lr_find.json`` also holds ``confirmed_lr`` and a ``confirm``
        summary, and ``lr_find.png`` marks the confirmed rate (as ``lrtune find --confirm``).
        """
        from lrtune.plots import save_figure

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if self.sweep is None:
            paths = list(self.finder.save(out))
        else:  # the range test's files, with the confirmed rate added (one figure drawn)
            paths = [out / "lr_find.png", out / "lr_find.json"]
            save_figure(self.plot(), paths[0])
            data = {**self.finder.to_dict(), "confirmed_lr": self.lr,
                    "confirm": self._confirm_summary()}
            write_json(json_clean(data), paths[1])
            paths += self.sweep.save(out)
        paths.append(write_json(self.to_dict(), out / "auto_lr.json"))
        return paths

    def _confirm_summary(self) -> dict[str, Any]:
        swept, s = self.sweep, self.sweep.settings
        return {"candidates": swept.lrs, "metric": swept.metric,
                "valid_metric": swept.final_metric, "diverged_step": swept.diverged_step,
                "stopped_step": swept.stopped_step, "choice": swept.choice,
                "scores": swept.scores, "score_name": swept.score_name,
                "compute_fraction": swept.compute_fraction,
                "steps": s.get("steps"), "epochs": _epochs(s.get("steps"), s),
                "planned_steps": s.get("planned_steps"), "planned_epochs": s.get("planned_epochs"),
                "fraction": s.get("confirm_fraction"), "share": s.get("confirm_share"),
                "unit": s.get("confirm_unit"), "bracket": s.get("bracket"),
                "range_test_suggestion": self.finder.suggested_lr, "schedule": self.schedule,
                "tolerance": swept.tolerance, "reason": swept.reason, "engine": swept.engine}


def auto_lr(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable | None = None,
    train=None,
    valid=None,
    *,
    epochs: int,
    step: Callable | None = None,
    schedule: str | Callable | None = None,
    confirm: bool = True,
    k: int = 8,
    confirm_fraction: float = CONFIRM_FRACTION,
    confirm_unit: str = "steps",
    holdout: float = HOLDOUT,
    batch_size: int = 32,
    seed: int = 0,
    precision: str = "32",
    clip_grad_norm: float | None = None,
    clip_grad_value: float | None = None,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_iters: int = 300,
    rule: str | None = None,
    engine: str = "auto",
    halving: bool | str | Sequence[float] | None = "auto",
    choice: str = "window",
    device: torch.device | str | None = None,
    verbose: bool = True,
    finder: FinderResult | None = None,
    **finder_options: Any,
) -> AutoLRResult:
    """The learning rate to train ``model`` with, with its evidence: the range test first,
    then a confirmation of its bracket (unless ``confirm=False``; why: this module's
    docstring).

    The confirmation trains K rates of :func:`~lrtune.confirmation.bracket_from_finder`'s
    bracket at once for ``confirm_fraction`` of the planned optimizer steps (twice that after
    an inconclusive range test; :func:`~lrtune.confirmation.confirm.confirm_budget`), each
    under ``schedule``, and picks one by validation (:func:`lrtune.sweep`). The model and the
    optimizer are left as they were (the range test restores them; the sweep trains copies).

    Args:
        model, optimizer: the model and a torch optimizer built on it. Every param group
            keeps its ratio to the first group's rate; groups at ``lr=0`` stay frozen.
        loss_fn: ``loss_fn(output, target)``; ``None`` with ``step``.
        train: training data: ``(X, y)`` tensors, a DataLoader or a re-iterable of batches.
        valid: validation data for the confirmation. Without it ``holdout`` (default 0.2) of
            ``(X, y)`` tensors is held out by a split seeded with ``seed``, and both the range
            test and the confirmation train on the rest; other data need ``valid``.
        epochs: the planned training length (the confirmation's budget and the schedule's
            length are read from it).
        step: a custom ``step(model, batch)`` (see :mod:`lrtune.steps`).
        schedule: the schedule training will use: ``None``/``"constant"``, a preset name
            (``"one_cycle"``, ``"warmup_cosine"``, ... : lrtune's
            :func:`~lrtune.schedules.presets.named_schedule` with the rate as its ``lr``,
            scaled to the run's steps), or a
            callable ``peak_lr -> (step -> lr)`` over the planned run's steps (its ``name``
            attribute, if any, names it in the result and the printed line). The
            confirmation trains every candidate under it (time-compressed to its shorter
            budget) and the rate returned is the peak. Only the rate is scheduled (one-cycle's
            momentum cycle is not reproduced).
        confirm: ``True`` (default: always confirm) or ``False`` (the range test's rate
            alone, ``None`` when it is inconclusive).
        k: rates the confirmation trains (>= 2: it compares them). confirm_fraction: its
            share of the planned steps (``epochs`` x batches per epoch) after a conclusive
            range test (default 0.25; twice that after an inconclusive one).
        confirm_unit: ``"steps"`` (default: that share in optimizer steps, at least 1) or
            ``"epochs"`` (the earlier rule: rounded to whole epochs, at least 1); data with no
            length count in epochs either way (see
            :func:`~lrtune.confirmation.confirm.confirm_budget`).
        batch_size, seed, precision, clip_grad_norm, clip_grad_value, device: as in
            :func:`lrtune.find_lr` and :func:`lrtune.sweep`.
        start_lr, end_lr, num_iters, rule, **finder_options: the range test's options
            (:func:`lrtune.find_lr`; ``rule=None`` is its default, ``steepest``). With
            ``accumulation_steps=n`` the confirmation trains batches of ``n x batch_size``
            samples (the same samples per optimizer step; ``(X, y)`` tensors only).
        engine: the sweep's engine.
        halving, choice: the sweep's successive halving (default: on, also under a
            schedule) and its choice rule (default ``"window"``: the validation
            loss averaged over the last quarter of the evaluations); see :func:`lrtune.sweep`.
        verbose: print the one line saying whether and why the rate was confirmed.
        finder: a range test already run with these settings (``lrtune train --lr auto``
            runs it on every rank under torchrun); it is not run again.

    Returns:
        An :class:`AutoLRResult`.

    Raises:
        ValueError: bad arguments, or no ``valid`` for data that cannot be split.
    """
    from lrtune.finder import find_lr
    from lrtune.finder.suggest import DEFAULT_RULE

    if not isinstance(confirm, bool):
        raise ValueError(f"confirm must be True or False, got {confirm!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    if not 0 < confirm_fraction <= 1:
        raise ValueError(f"confirm_fraction must be in (0, 1], got {confirm_fraction!r}")
    if confirm_unit not in UNITS:
        raise ValueError(f"confirm_unit must be one of {', '.join(UNITS)}, got {confirm_unit!r}")
    check_k(k)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ValueError(f"optimizer must be a torch optimizer built on the model, got "
                         f"{type(optimizer).__name__}")
    ratios = group_ratios(optimizer)
    shape = _schedule_shape(schedule)
    if confirm:  # the sweep's own options fail now, not after the range test
        check_sweep_options(engine, halving, choice)
    if train is None:
        raise ValueError("auto_lr needs train data")
    held_out = valid is None and confirm is not False
    if held_out:
        train, valid = holdout_split(train, holdout, seed)
    elif confirm:  # a valid set the model cannot read fails now, not after the range test
        _check_valid_fits(model, optimizer, loss_fn, step, valid, batch_size, device)
    rule = rule or DEFAULT_RULE
    # the confirmation trains whole optimizer-step batches: batch_size x accumulation_steps
    # samples per step, as the range test and training accumulate them (a per-sample mean
    # loss gives the same gradient); a DataLoader's batches cannot be merged so
    accumulation = finder_options.get("accumulation_steps", 1)
    merge = isinstance(accumulation, int) and accumulation > 1  # find_lr checks the value
    sweep_batch = batch_size * accumulation if merge else batch_size
    if confirm and merge and not _is_tensor_pair(train):
        raise ValueError(f"accumulation_steps={accumulation}: the confirmation trains "
                         f"batches of batch_size x accumulation_steps samples, which needs "
                         "(X, y) tensors as train; pass them, or confirm=False")

    if finder is None:
        finder = find_lr(model, optimizer, loss_fn, train, step=step, precision=precision,
                         clip_grad_norm=clip_grad_norm, clip_grad_value=clip_grad_value,
                         start_lr=start_lr, end_lr=end_lr, num_iters=num_iters,
                         batch_size=batch_size, rule=rule, seed=seed, device=device,
                         **finder_options)
    settings = dict(epochs=epochs, confirm=confirm, k=k, confirm_fraction=confirm_fraction,
                    confirm_unit=confirm_unit,
                    holdout=holdout if held_out else None, batch_size=batch_size,
                    accumulation_steps=accumulation,
                    seed=seed, rule=rule, num_iters=num_iters, group_ratios=ratios,
                    halving=halving, choice=choice)
    schedule_name = _schedule_name(schedule, shape)
    if not confirm:  # the range test's rate stands
        lr = finder.suggested_lr
        if lr is None:
            reason = f"range test inconclusive ({finder.reason}) and confirm=False: no rate"
        else:
            reason = f"range test only (confirm=False): {finder.summary()}"
        result = AutoLRResult(lr, rates_per_group(lr, ratios), "range test", reason, finder,
                              schedule=schedule_name, settings=settings)
        _say(verbose, result.reason)
        return result

    why = _why_confirm(finder, schedule_name)
    budget, per_epoch = _budget(finder, train, epochs, confirm_fraction, confirm_unit,
                                sweep_batch)
    lo, hi = bracket_from_finder(finder)
    _say(verbose, f"{why}: confirming {k} rates {lo:.3g}..{hi:.3g} over "
                  f"{budget_text(budget, epochs, per_epoch)}"
                  + (f" under {schedule_name}" if schedule_name else ""))
    swept = confirm_range_test(model, optimizer, loss_fn, train, valid, finder, epochs=epochs,
                               schedule=schedule, k=k, confirm_fraction=confirm_fraction,
                               confirm_unit=confirm_unit,
                               step=step, precision=precision, clip_grad_norm=clip_grad_norm,
                               clip_grad_value=clip_grad_value, batch_size=sweep_batch,
                               seed=seed, engine=engine, device=device, halving=halving,
                               choice=choice)
    lr = swept.chosen_lr
    reason = f"{why}; confirmed by training: {swept.summary() if lr is not None else swept.reason}"
    trained = swept.settings["steps"]
    return AutoLRResult(lr, rates_per_group(lr, ratios), "confirmation", reason, finder, swept,
                        schedule=schedule_name,
                        settings={**settings, "confirm_steps": trained,
                                  "confirm_epochs": _epochs(trained, swept.settings)})


def confirm_range_test(
    model: nn.Module | Callable[[], nn.Module],
    optimizer,
    loss_fn: Callable | None,
    train,
    valid,
    finder: FinderResult,
    *,
    epochs: int,
    schedule: str | Callable | None = None,
    k: int = 8,
    confirm_fraction: float = CONFIRM_FRACTION,
    confirm_unit: str = "steps",
    batch_size: int = 32,
    seed: int = 0,
    **sweep_options: Any,
) -> SweepResult:
    """The confirmation of a range test: ``k`` rates of its bracket trained at once (each
    under ``schedule``, time-compressed to the budget) for ``confirm_fraction`` of the planned
    steps (twice that after an inconclusive range test; ``confirm_unit``: see
    :func:`~lrtune.confirmation.confirm.confirm_budget`), chosen by validation.

    :func:`auto_lr` and ``lrtune find --confirm`` run it. ``sweep_options`` go to
    :func:`lrtune.sweep` (``step``, ``precision``, ``engine``, ``device`` ...). The result's
    ``settings`` record the bracket, the range test's verdict and suggestion, the schedule,
    the planned epochs and steps, and the share of them trained (``steps``: the budget).
    """
    check_k(k)
    shape = _schedule_shape(schedule)
    budget, per_epoch = _budget(finder, train, epochs, confirm_fraction, confirm_unit,
                                batch_size)
    lo, hi = bracket_from_finder(finder)
    candidates = candidate_lrs(bracket=(lo, hi), k=k)
    lr_scale = None
    if shape is not None:
        if per_epoch is None:
            raise ValueError("a scheduled confirmation needs train data with a length")
        lr_scale = _compressed(shape, candidates, planned=epochs * per_epoch,
                               budget=budget["steps"])
    swept = sweep(model, optimizer, loss_fn, train, valid, lrs=candidates, **budget,
                  batch_size=batch_size, seed=seed, lr_scale=lr_scale, **sweep_options)
    schedule_name = _schedule_name(schedule, shape)
    swept.settings.update(bracket=[lo, hi], range_test_suggestion=finder.suggested_lr,
                          range_test_verdict=finder.verdict, schedule=schedule_name,
                          planned_epochs=epochs,
                          planned_steps=None if per_epoch is None else epochs * per_epoch,
                          confirm_fraction=confirm_fraction,
                          confirm_share=confirm_share(finder, confirm_fraction),
                          confirm_unit=confirm_unit)
    return swept


def _check_valid_fits(model, optimizer, loss_fn, step, valid, batch_size: int, device) -> None:
    """One batch of ``valid`` through the step (no gradients): a ValueError naming it when
    the model cannot read it (another number of features, an image of another size ...)."""
    from lrtune.steps import StepRunner, check_batch_fits, default_device

    runner = StepRunner(model, optimizer, step, loss_fn,
                        device=default_device(model) if device is None else device)
    check_batch_fits(runner, as_batches(valid, batch_size, shuffle=False), "valid data")


def check_k(k) -> None:
    """A confirmation compares rates: ``k`` must be an integer >= 2 (one rate would be
    "confirmed" however badly it trains: the top of the bracket, unchecked)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ValueError(f"k (the rates the confirmation compares) must be an integer >= 2, "
                         f"got {k!r}")


def _budget(finder: FinderResult, train, epochs: int, fraction: float, unit: str,
            batch_size: int) -> tuple[dict[str, int], int | None]:
    """The confirmation's budget (:func:`confirm_budget`) and the batches per epoch of
    ``train`` (``None`` when it has no length)."""
    per_epoch = steps_per_epoch(train, batch_size)
    return confirm_budget(finder, epochs, per_epoch, fraction, unit=unit), per_epoch


def steps_per_epoch(train, batch_size: int) -> int | None:
    """Optimizer steps in one epoch of ``train`` (batches of ``batch_size`` for ``(X, y)``
    data), or ``None`` for data with no length (a DataLoader over an IterableDataset, a
    re-iterable without ``__len__``).

    Examples:
        >>> import torch
        >>> steps_per_epoch((torch.zeros(100, 2), torch.zeros(100)), 32)
        4
        >>> steps_per_epoch(type("Stream", (), {"__iter__": lambda self: iter([])})(), 32)
    """
    return batches_per_epoch(as_batches(train, batch_size, shuffle=False))


def budget_text(budget: dict[str, int], planned_epochs: int, per_epoch: int | None) -> str:
    """The confirmation's budget for people: steps, and epochs as a fraction of the plan.

    Examples:
        >>> budget_text({"steps": 32}, 2, 64), budget_text({"epochs": 5}, 20, None)
        ('32 of 128 steps (0.5 of 2 epochs)', '5 of 20 epochs')
    """
    if "steps" not in budget:
        return f"{budget['epochs']} of {planned_epochs} epochs"
    steps = budget["steps"]
    return (f"{steps} of {planned_epochs * per_epoch} steps "
            f"({steps / per_epoch:.3g} of {planned_epochs} epochs)")


def _epochs(steps: int | None, settings: dict) -> float | None:
    """``steps`` in epochs of the sweep's training data (a fraction), from its settings."""
    per_epoch = settings.get("steps_per_epoch")
    return None if steps is None or not per_epoch else round(steps / per_epoch, 6)


def _say(verbose: bool, line: str) -> None:
    if verbose:
        print(f"auto_lr: {line}")


def _why_confirm(finder: FinderResult, schedule_name: str | None) -> str:
    """The one line saying why the range test's rate is confirmed."""
    if finder.verdict != "ok":
        return f"the range test was inconclusive ({finder.reason})"
    if schedule_name is not None:
        return (f"the range test gives a constant rate, not the peak of {schedule_name} "
                "(measured: one-cycle at its rate lost on 3 of 6 tasks)")
    return WHY_CONFIRM


def group_ratios(optimizer: torch.optim.Optimizer) -> list[float]:
    """Each group's lr over the reference group's (the first with lr > 0, as find_lr)."""
    return reference_group(optimizer.param_groups)[1]


def rates_per_group(lr: float | None, ratios: list[float]) -> list[float] | None:
    """``lr`` times each group's ratio (``None`` without a rate)."""
    return None if lr is None else [lr * r for r in ratios]


def _is_tensor_pair(data) -> bool:
    """Whether ``data`` is an ``(X, y)`` pair of tensors."""
    return (isinstance(data, tuple | list) and len(data) == 2
            and all(isinstance(t, torch.Tensor) for t in data))


def holdout_split(train, fraction: float, seed: int):
    """``(train, valid)``: ``fraction`` of ``(X, y)`` tensors held out, rows drawn by a
    permutation seeded with ``seed``.

    Raises:
        ValueError: a fraction outside (0, 1), too few rows, or data that are not tensors.

    Examples:
        >>> import torch
        >>> (Xt, yt), (Xv, yv) = holdout_split((torch.arange(10.), torch.arange(10)), 0.2, 0)
        >>> len(Xt), len(Xv), sorted(yt.tolist() + yv.tolist()) == list(range(10))
        (8, 2, True)
    """
    if not (isinstance(fraction, int | float) and 0 < fraction < 1):
        raise ValueError(f"holdout must be a fraction in (0, 1), got {fraction!r}")
    if not _is_tensor_pair(train):
        raise ValueError("auto_lr needs valid data for the confirmation: train is not a pair "
                         "of (X, y) tensors it could split; pass valid=... (or confirm=False)")
    X, y = train
    n = len(X)
    n_valid = round(fraction * n)
    if len(y) != n or n_valid < 1 or n - n_valid < 1:
        raise ValueError(f"cannot hold out {fraction} of {n} samples (X and y must have the "
                         f"same length, {len(y)} here); pass valid=...")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(X.device)
    keep, held = order[n_valid:], order[:n_valid]
    return (X[keep], y[keep]), (X[held], y[held])


def _schedule_name(schedule, shape) -> str | None:
    """The schedule's name in results and messages: the preset's, a callable's ``name``
    attribute (``"custom"`` without one), or None for a constant rate."""
    if shape is None:
        return None
    return schedule if isinstance(schedule, str) else getattr(schedule, "name", "custom")


def _schedule_shape(schedule) -> Callable[[float, int], Callable] | None:
    """``(peak, total_steps) -> (step -> lr)`` for the schedule, or None for a constant rate."""
    if schedule is None or schedule == "constant":
        return None
    if isinstance(schedule, str):
        from lrtune.schedules.presets import NAMES, named_schedule

        if schedule not in NAMES:
            raise ValueError(f"unknown schedule {schedule!r}; choose from "
                             f"{', '.join(NAMES)} or pass a callable peak_lr -> schedule")
        return lambda peak, total: named_schedule(schedule, lr=peak, total_steps=total)["lr"]
    if not callable(schedule):
        raise ValueError(f"schedule must be a preset name or a callable peak_lr -> schedule, "
                         f"got {schedule!r}")

    def custom(peak: float, total: int) -> Callable:
        made = schedule(peak)
        made = made["lr"] if isinstance(made, Mapping) else made
        if not callable(made):
            raise ValueError(f"schedule({peak:.3g}) must return step -> lr, got {made!r}")
        return made

    custom.custom = True  # type: ignore[attr-defined]
    return custom


def _compressed(shape, candidates: list[float], *, planned: int, budget: int):
    """``lr_scale`` for the sweep: candidate ``c`` at confirmation step ``t`` trains at the
    rate its schedule gives at the same point of the run. A preset is built for the
    confirmation's own length; a custom schedule (made for the planned run) is read at
    ``t * planned / budget``."""
    if getattr(shape, "custom", False):
        made = [shape(c, planned) for c in candidates]
        ratio = planned / budget

        def custom_scale(t: int) -> list[float]:
            out = []
            for s, c in zip(made, candidates, strict=True):
                lr = s(t * ratio)
                if not (isinstance(lr, int | float) and math.isfinite(lr) and lr >= 0):
                    # named here: the user passed `schedule`, not the sweep's lr_scale
                    raise ValueError(f"schedule({c:.3g}) gave lr {lr!r} at step {t * ratio:g} "
                                     "of the planned run: it must be a finite number >= 0")
                out.append(lr / c)
            return out

        return custom_scale
    made = [shape(c, budget) for c in candidates]
    return lambda t: [s(t) / c for s, c in zip(made, candidates, strict=True)]

"""Appliers: write scheduled values into an optimizer's param groups.

"What the value is" (a schedule, a pure function of the step) stays apart from "where it
goes" (a param-group key). An applier never patches ``optimizer.step``; its state is plain data
(the step count, plus the plateau's counters), so ``state_dict()`` survives JSON and
``torch.save(..., weights_only=True)`` alike.

Protocol shared with the Trainer: ``interval`` ("batch" or "epoch"), ``apply()`` at train
begin and after resume, ``step(logs)`` after each optimizer step ("batch") or at epoch end
after validation ("epoch"), ``state_dict()`` / ``load_state_dict()``, ``values()``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from lrtune.schedules.primitives import Schedule, check_value

INTERVALS = ("batch", "epoch")
TIME_AXES = ("steps", "fraction")


def _slot(group: Mapping[str, Any], key: str) -> str | None:
    """The param-group entry that holds ``key``: ``momentum`` falls back to Adam's ``betas``."""
    if key in group:
        return key
    if key == "momentum" and "betas" in group:
        return "betas"
    return None


def check_keys(optimizer, keys) -> None:
    """``ValueError`` naming the key when some param group of ``optimizer`` lacks it."""
    for i, group in enumerate(optimizer.param_groups):
        for key in keys:
            if _slot(group, key) is None:
                have = ", ".join(k for k in group if k != "params")
                raise ValueError(
                    f"{type(optimizer).__name__} has no hyperparameter {key!r} in param group "
                    f"{i} (it has: {have})"
                )


def get_hyperparam(group: Mapping[str, Any], key: str) -> float:
    """The value of ``key`` in ``group`` (``betas[0]`` for ``momentum`` on Adam-like groups)."""
    slot = _slot(group, key)
    if slot is None:
        raise ValueError(f"param group has no hyperparameter {key!r}")
    value = group[slot][0] if slot == "betas" else group[slot]
    return float(value)


def set_hyperparam(group: dict[str, Any], key: str, value: float) -> None:
    """Write ``value`` to ``key`` of ``group``; a tensor entry (capturable) is filled in place."""
    slot = _slot(group, key)
    if slot is None:
        raise ValueError(f"param group has no hyperparameter {key!r}")
    if slot == "betas":
        beta1 = group["betas"][0]
        if hasattr(beta1, "fill_"):
            beta1.fill_(value)
        else:
            group["betas"] = (value, *group["betas"][1:])
    elif hasattr(group[slot], "fill_"):
        group[slot].fill_(value)
    else:
        group[slot] = value


def _check_group_scales(scales, keys, n_groups: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for key, values in (scales or {}).items():
        if key not in keys:
            raise ValueError(f"group_scales names {key!r}, which has no schedule (have {keys})")
        values = list(values)
        if len(values) != n_groups:
            raise ValueError(
                f"group_scales[{key!r}] needs one scale per param group ({n_groups}), "
                f"got {values!r}"
            )
        out[key] = [check_value(f"group_scales[{key!r}]", v) for v in values]
    return out


def warn_if_groups_differ(optimizer, keys, scaled) -> None:
    """Warn when the param groups hold different values of a key that one schedule is about
    to overwrite with one value (``scaled``: the keys given per-group scales): the user's
    ratios would be lost and a frozen ``lr=0`` group would train."""
    groups = optimizer.param_groups
    for key in keys:
        if key in scaled or len(groups) < 2:
            continue
        values = [get_hyperparam(g, key) for g in groups]
        if len(set(values)) > 1:
            reference = next((v for v in values if v > 0), None)
            hint = ("" if reference is None else
                    f"; to keep their ratios pass group_scales={{{key!r}: "
                    f"{[round(v / reference, 12) for v in values]}}}")
            warnings.warn(f"the param groups have {key} {values}, but the schedule writes one "
                          f"value into every group (a group at 0 would no longer be "
                          f"frozen){hint}", stacklevel=3)


def _check_step_count(state: Mapping[str, Any]) -> int:
    step = state.get("step") if isinstance(state, Mapping) else None
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"state_dict must hold 'step', an integer >= 0, got {state!r}")
    return step


def _scheduled_value(schedule: Schedule, key: str, t: float) -> float:
    value = schedule(t)
    if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"the schedule for {key!r} gave {value!r} at step {t}; expected >= 0")
    return float(value)


def check_schedules(schedules: Mapping[str, Schedule]) -> dict[str, Schedule]:
    """``{name: step -> value}`` as a dict, or a ValueError naming what is wrong."""
    schedules = dict(schedules)
    if not schedules:
        raise ValueError("schedules must name at least one hyperparameter, got {}")
    for key, schedule in schedules.items():
        if not callable(schedule):
            raise ValueError(f"schedules[{key!r}] must be a callable step -> value, "
                             f"got {schedule!r}")
    return schedules


class HyperparamScheduler:
    """Drive any param-group hyperparameter from a schedule.

    Construction writes step 0's values into the optimizer (as torch's schedulers do);
    :meth:`apply` writes the current step's values again (the Trainer calls it at train begin).

    Args:
        optimizer: any ``torch.optim.Optimizer``.
        schedules: ``{"lr": schedule, "momentum": ..., "weight_decay": ...}``; ``momentum``
            sets ``betas[0]`` on optimizers that have betas (Adam, AdamW, …).
        interval: ``"batch"`` (one unit = one optimizer step) or ``"epoch"``.
        group_scales: ``{key: [scale per param group]}``, e.g. ``{"lr": [1.0, 0.1]}`` for
            discriminative learning rates.
        time_axis: ``"steps"`` (schedules see the unit count) or ``"fraction"`` (they see the
            fraction of training done: 0.0 at the first unit, 1.0 at unit ``total_steps - 1``).
        total_steps: number of units in training; needed for ``time_axis="fraction"``.

    Examples:
        >>> import torch
        >>> from lrtune.schedules import linspace
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0, momentum=0.0)
        >>> sched = HyperparamScheduler(opt, linspace(3, lr=(0.03, 0.0001), momentum=(0.9, 0.999)),
        ...                             interval="epoch")
        >>> sched.apply(); sched.values()
        {'lr': [0.03], 'momentum': [0.9]}
        >>> sched.step(); sched.step(); sched.values(), sched.state_dict()
        ({'lr': [0.0001], 'momentum': [0.999]}, {'step': 2})
    """

    def __init__(self, optimizer, schedules: Mapping[str, Schedule], interval: str = "batch", *,
                 group_scales: Mapping[str, Sequence[float]] | None = None,
                 time_axis: str = "steps", total_steps: int | None = None) -> None:
        if interval not in INTERVALS:
            raise ValueError(f"interval must be 'batch' or 'epoch', got {interval!r}")
        if time_axis not in TIME_AXES:
            raise ValueError(f"time_axis must be 'steps' or 'fraction', got {time_axis!r}")
        if time_axis == "fraction" and (isinstance(total_steps, bool)
                                        or not isinstance(total_steps, int) or total_steps < 1):
            raise ValueError(f"total_steps must be an integer > 0 with time_axis='fraction', "
                             f"got {total_steps!r}")
        schedules = check_schedules(schedules)
        check_keys(optimizer, schedules)
        self.optimizer = optimizer
        self.schedules = schedules
        self.interval = interval
        self.time_axis = time_axis
        self.total_steps = total_steps
        self.group_scales = _check_group_scales(group_scales, list(schedules),
                                                len(optimizer.param_groups))
        warn_if_groups_differ(optimizer, schedules, self.group_scales)
        self.step_count = 0
        self.apply()  # step 0's values now, as torch's schedulers do: a loop that steps only
        # after its first epoch (or batch) trains that one under the schedule too

    def time(self) -> float:
        """What the schedules are called with now: the unit count or the fraction done."""
        if self.time_axis == "fraction":
            return self.step_count / max(self.total_steps - 1, 1)  # type: ignore[operator]
        return self.step_count

    def apply(self) -> None:
        """Write every scheduled value for the current step count into every param group."""
        t = self.time()
        for key, schedule in self.schedules.items():
            value = _scheduled_value(schedule, key, t)
            scales = self.group_scales.get(key)
            for i, group in enumerate(self.optimizer.param_groups):
                set_hyperparam(group, key, value * scales[i] if scales else value)

    def step(self, logs: Mapping[str, Any] | None = None) -> None:
        """Advance one unit (an optimizer step or an epoch) and apply the new values."""
        self.step_count += 1
        self.apply()

    def values(self) -> dict[str, list[float]]:
        """``{key: [value per param group]}`` currently in force in the optimizer."""
        return {key: [get_hyperparam(g, key) for g in self.optimizer.param_groups]
                for key in self.schedules}

    def state_dict(self) -> dict[str, int]:
        """``{"step": count}``: all a pure schedule needs to resume exactly."""
        return {"step": self.step_count}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the step count and write that step's values into the optimizer."""
        self.step_count = _check_step_count(state)
        self.apply()


class ReduceLROnPlateau:
    """Reduce a hyperparameter (default ``lr``) by ``factor`` when ``logs[monitor]`` stalls.

    The value in force is ``max(base(step) * scale, min_value)`` where ``scale`` starts at 1
    and is multiplied by ``factor`` after more than ``patience`` epochs without improvement,
    followed by ``cooldown`` epochs in which stalls are not counted (torch's
    ``ReduceLROnPlateau`` rules, ``threshold`` included). ``base`` is ``schedule`` when given
    (e.g. a warmup, see :func:`~lrtune.schedules.presets.with_warmup`), else each group's value
    at construction; the first ``warmup_steps`` epochs are not monitored.

    Args:
        optimizer: the optimizer to drive.
        monitor: the key of ``logs`` to watch, e.g. ``"valid_loss"``.
        mode: ``"min"`` (lower is better) or ``"max"``.
        factor: multiplier applied on a plateau, in (0, 1).
        patience: epochs without improvement tolerated before reducing.
        cooldown: epochs after a reduction during which stalls are not counted.
        min_value: floor for the value.
        threshold: the least change that counts as an improvement.
        threshold_mode: ``"rel"`` (relative to the best) or ``"abs"``.
        key: the param-group key to drive.
        schedule: base schedule over epochs (the same for all groups, times ``group_scales``).
        warmup_steps: epochs at the start that are not monitored.
        group_scales: one scale per param group for ``schedule``.

    Examples:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        >>> plateau = ReduceLROnPlateau(opt, factor=0.5, patience=1)
        >>> for loss in (3.0, 2.0, 2.0, 2.0, 2.0):
        ...     plateau.step({"valid_loss": loss})
        >>> plateau.values()["lr"], plateau.state_dict()["scale"]
        ([0.5], 0.5)
    """

    interval = "epoch"

    def __init__(self, optimizer, monitor: str = "valid_loss", mode: str = "min",
                 factor: float = 0.1, patience: int = 10, cooldown: int = 0,
                 min_value: float = 0.0, threshold: float = 1e-4, threshold_mode: str = "rel",
                 *, key: str = "lr", schedule: Schedule | None = None, warmup_steps: int = 0,
                 group_scales: Sequence[float] | None = None) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        if not isinstance(factor, int | float) or not 0 < factor < 1:
            raise ValueError(f"factor must be a number in (0, 1), got {factor!r}")
        for name, count in (("patience", patience), ("cooldown", cooldown),
                            ("warmup_steps", warmup_steps)):
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {count!r}")
        if schedule is not None and not callable(schedule):
            raise ValueError(f"schedule must be a callable step -> value, got {schedule!r}")
        check_keys(optimizer, [key])
        n_groups = len(optimizer.param_groups)
        scales = _check_group_scales({key: group_scales} if group_scales is not None else None,
                                     [key], n_groups).get(key, [1.0] * n_groups)
        if schedule is not None:
            warn_if_groups_differ(optimizer, [key], [key] if group_scales is not None else [])
        self.optimizer = optimizer
        self.monitor, self.mode, self.factor = monitor, mode, float(factor)
        self.patience, self.cooldown = patience, cooldown
        self.min_value = check_value("min_value", min_value)
        self.threshold = check_value("threshold", threshold)
        self.threshold_mode = threshold_mode
        self.key, self.schedule, self.warmup_steps = key, schedule, warmup_steps
        self.group_scales = scales
        # per-run state, all plain data (see state_dict)
        self.step_count = 0
        self.scale = 1.0
        self.best: float | None = None
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.base_values = [get_hyperparam(g, key) for g in optimizer.param_groups]
        self.apply()  # step 0's values now (the warmup's start), as torch's schedulers do

    def _is_better(self, current: float) -> bool:
        if self.best is None:
            return not math.isnan(current)
        if self.mode == "min":
            bar = (self.best * (1 - self.threshold) if self.threshold_mode == "rel"
                   else self.best - self.threshold)
            return current < bar
        bar = (self.best * (1 + self.threshold) if self.threshold_mode == "rel"
               else self.best + self.threshold)
        return current > bar

    def observe(self, current: float) -> None:
        """Update the plateau counters with one epoch's metric (no writing to the optimizer)."""
        if self._is_better(current):
            self.best, self.num_bad_epochs = current, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            self.scale *= self.factor
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0

    def step(self, logs: Mapping[str, Any] | None = None) -> None:
        """End of an epoch: watch ``logs[monitor]`` (after the warmup), then apply."""
        self.step_count += 1
        if self.step_count > self.warmup_steps:
            if not logs or self.monitor not in logs:
                have = ", ".join(sorted(logs or {})) or "none"
                raise ValueError(f"monitor {self.monitor!r} is not in the logs (keys: {have})")
            self.observe(float(logs[self.monitor]))
        self.apply()

    def apply(self) -> None:
        """Write ``max(base * scale, min_value)`` into every param group; a frozen group (base
        value or group scale 0) stays at 0, as under torch's ``ReduceLROnPlateau``."""
        for i, group in enumerate(self.optimizer.param_groups):
            if self.schedule is None:
                base = self.base_values[i]
                frozen = base == 0
            else:
                base = _scheduled_value(self.schedule, self.key, self.step_count)
                base *= self.group_scales[i]
                frozen = self.group_scales[i] == 0
            set_hyperparam(group, self.key,
                           0.0 if frozen else max(base * self.scale, self.min_value))

    def values(self) -> dict[str, list[float]]:
        """``{key: [value per param group]}`` currently in force in the optimizer."""
        return {self.key: [get_hyperparam(g, self.key) for g in self.optimizer.param_groups]}

    def state_dict(self) -> dict[str, Any]:
        """Step count and plateau counters: plain numbers (``best`` is None before any epoch)."""
        return {"step": self.step_count, "scale": self.scale, "best": self.best,
                "num_bad_epochs": self.num_bad_epochs, "cooldown_counter": self.cooldown_counter,
                "base_values": list(self.base_values)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output and write the value in force into the optimizer."""
        step = _check_step_count(state)
        try:
            scale = float(state["scale"])
            best = None if state["best"] is None else float(state["best"])
            bad, cool = int(state["num_bad_epochs"]), int(state["cooldown_counter"])
            base = [float(v) for v in state["base_values"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"state_dict is not a ReduceLROnPlateau state: {exc}") from None
        if len(base) != len(self.optimizer.param_groups):
            raise ValueError(f"state_dict has {len(base)} base_values for "
                             f"{len(self.optimizer.param_groups)} param groups")
        self.step_count, self.scale, self.best = step, scale, best
        self.num_bad_epochs, self.cooldown_counter, self.base_values = bad, cool, base
        self.apply()

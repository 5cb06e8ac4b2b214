"""Every kind of scheduler behind the one protocol the Trainer drives.

The Trainer calls ``apply()`` at train begin and after a resume, ``step()`` after every optimizer
step for ``interval == "batch"``, ``step(logs)`` after validation for ``interval == "epoch"``,
and ``state_dict()``/``load_state_dict()`` for checkpoints. lrtune's own schedulers
(``HyperparamScheduler``, ``ReduceLROnPlateau``) follow it natively; a torch ``LRScheduler``
(``OneCycleLR``, torch's ``ReduceLROnPlateau``, lrtune's ``TorchScheduler`` …), bare or in
Lightning's dict form, is wrapped in :class:`TorchSchedule`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from lrtune.training.callbacks.base import check_monitor_has_data, monitored_value

_PROTOCOL = ("interval", "apply", "step", "state_dict", "load_state_dict")
_LIGHTNING_KEYS = {"scheduler", "interval", "frequency", "monitor", "strict", "name"}


class TorchSchedule:
    """A torch scheduler as the Trainer drives it (Lightning's semantics).

    Args:
        scheduler: a torch ``LRScheduler`` or ``ReduceLROnPlateau``.
        interval: ``"epoch"`` (Lightning's default) or ``"step"`` (after every optimizer step).
        frequency: step the scheduler every ``frequency`` intervals.
        monitor: the epoch-log key fed to ``ReduceLROnPlateau.step`` (default ``valid_loss``).
        strict: when the monitored value is missing from the epoch logs, raise (``True``) or
            warn and skip this update (``False``), as Lightning does.
    """

    def __init__(self, scheduler: Any, interval: str = "epoch", frequency: int = 1,
                 monitor: str | None = None, strict: bool = True) -> None:
        if interval not in ("epoch", "step", "batch"):
            raise ValueError(f"a scheduler's interval must be 'step' or 'epoch', got "
                             f"{interval!r}")
        if isinstance(frequency, bool) or not isinstance(frequency, int) or frequency < 1:
            raise ValueError(f"a scheduler's frequency must be an integer >= 1, got "
                             f"{frequency!r}")
        self.scheduler = scheduler
        self.interval = "epoch" if interval == "epoch" else "batch"
        self.frequency = frequency
        self.plateau = isinstance(scheduler, ReduceLROnPlateau)
        if self.plateau and self.interval != "epoch":
            raise ValueError("ReduceLROnPlateau reacts to an epoch metric: use interval='epoch'")
        self.monitor = (monitor or "valid_loss") if self.plateau else monitor
        if not isinstance(strict, bool):
            raise ValueError(f"a scheduler's strict must be True or False, got {strict!r}")
        self.strict = strict
        self.count = 0

    def apply(self) -> None:
        """Nothing to write: a torch scheduler sets its rates itself (and a resumed optimizer
        state already holds them)."""

    def step(self, logs: Mapping[str, Any] | None = None) -> None:
        self.count += 1
        if self.count % self.frequency:
            return
        if self.plateau:
            logs = dict(logs or {})
            if not self.strict and logs.get(self.monitor) is None:
                warnings.warn(f"ReduceLROnPlateau monitors {self.monitor!r}, which the epoch logs "
                              "do not have, and strict is False: this update is skipped",
                              stacklevel=2)
                return
            self.scheduler.step(monitored_value(logs, self.monitor, "ReduceLROnPlateau"))
        else:
            self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return {"scheduler": self.scheduler.state_dict(), "count": self.count}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.scheduler.load_state_dict(state["scheduler"])
        self.count = int(state["count"])


def warn_if_sized_in_steps(schedules: list[Any], epochs: int) -> None:
    """Warn when a ``OneCycleLR`` stepped once per epoch is sized for more steps than the run's
    epochs give it: its cycle would never finish. This is the usual slip with a schedule sized
    in batches (``total_steps=epochs * len(loader)``) passed bare, which Lightning's default,
    and so the Trainer, steps per epoch."""
    for schedule in schedules:
        if not isinstance(schedule, TorchSchedule) or schedule.interval != "epoch":
            continue
        total = getattr(schedule.scheduler, "total_steps", None)
        steps = epochs // schedule.frequency
        if isinstance(total, int) and total > steps:
            warnings.warn(
                f"{type(schedule.scheduler).__name__} is sized for {total} steps but steps once "
                f"per epoch here ({steps} steps in {epochs} epochs), so its cycle never "
                "finishes; to step it after every optimizer step pass {'scheduler': s, "
                "'interval': 'step'}", UserWarning, stacklevel=3)


def check_schedule_monitors(trainer) -> None:
    """A plateau schedule watching a ``valid_*`` value (``strict``, the default) needs
    validation data: a ValueError at ``fit``'s start rather than after the first epoch."""
    for schedule in trainer.schedules:
        monitor = getattr(schedule, "monitor", None)
        if isinstance(monitor, str) and getattr(schedule, "strict", True):
            check_monitor_has_data(trainer, monitor, "ReduceLROnPlateau")


def as_trainer_schedule(obj: Any, optimizer: Any = None) -> Any:
    """``obj`` ready for the Trainer: lrtune's schedulers as they are, torch schedulers (bare:
    per epoch) and Lightning's ``{"scheduler": s, "interval", "frequency", "monitor"}`` wrapped.

    With ``optimizer`` given, a scheduler bound to another optimizer is a ValueError (it would
    step, save and resume while the trained optimizer's rates never change).
    """
    schedule = _as_schedule(obj)
    bound = getattr(getattr(schedule, "scheduler", schedule), "optimizer", None)
    # the same param groups, not the same object: a wrapper (e.g. Accelerate's) shares its
    # inner optimizer's groups, and a scheduler built on the inner one drives it correctly
    if optimizer is not None and bound is not None and \
            getattr(bound, "param_groups", None) is not optimizer.param_groups:
        name = type(getattr(schedule, "scheduler", schedule)).__name__
        raise ValueError(f"the {name} in schedules= was built on another optimizer than the "
                         "Trainer's: build it on the optimizer you pass to the Trainer")
    return schedule


def _as_schedule(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        unknown = set(obj) - _LIGHTNING_KEYS
        if "scheduler" not in obj or unknown:
            raise ValueError(
                "a scheduler dict needs a 'scheduler' entry and only Lightning's keys "
                f"({', '.join(sorted(_LIGHTNING_KEYS))}); got {sorted(map(str, obj))}"
            )
        inner = obj["scheduler"]
        if not isinstance(inner, LRScheduler | ReduceLROnPlateau):
            raise TypeError(f"the dict's 'scheduler' must be a torch LRScheduler, got "
                            f"{type(inner).__name__}")
        return TorchSchedule(inner, obj.get("interval", "epoch"), obj.get("frequency", 1),
                             obj.get("monitor"), obj.get("strict", True))
    if isinstance(obj, LRScheduler | ReduceLROnPlateau):
        return TorchSchedule(obj)
    if isinstance(obj, type):
        raise TypeError(f"schedules got the class {obj.__name__}; pass an instance built on the "
                        f"Trainer's optimizer, e.g. {obj.__name__}(optimizer, ...)")
    missing = [a for a in _PROTOCOL if not hasattr(obj, a)]
    if missing:
        raise TypeError(
            "schedules must be lrtune schedulers (HyperparamScheduler, ReduceLROnPlateau), torch "
            f"LRSchedulers or Lightning-style dicts; {type(obj).__name__} lacks "
            f"{', '.join(missing)}"
        )
    if obj.interval not in ("batch", "epoch"):
        raise ValueError(f"a scheduler's interval must be 'batch' or 'epoch', got "
                         f"{obj.interval!r}")
    return obj

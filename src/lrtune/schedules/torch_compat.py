"""Our schedules behind torch's ``LRScheduler`` interface, for loops that call ``step()``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch.optim.lr_scheduler import LRScheduler

from lrtune.schedules.hyperparams import HyperparamScheduler, get_hyperparam
from lrtune.schedules.primitives import Schedule


class TorchScheduler(LRScheduler):
    """A ``torch.optim.lr_scheduler.LRScheduler`` driven by pure schedules.

    Like torch's schedulers it writes the values of step ``last_epoch + 1`` on construction
    (step 0 by default) and advances one step per ``step()`` call (``last_epoch`` counts
    them). Unlike them it does not wrap ``optimizer.step``, keeps no ``initial_lr`` in the
    param groups (so resuming with ``last_epoch >= 0`` needs nothing but the number), and its
    ``state_dict`` is ``{"step": n}`` only. The ``last_epoch`` keyword is what lets wrappers
    that pass it, such as skorch's ``LRScheduler(policy=TorchScheduler, ...)``, build it.

    Args:
        optimizer: the optimizer to drive.
        schedules: one schedule (for ``lr``) or ``{"lr": ..., "momentum": ..., ...}``.
        last_epoch: torch's meaning: the index of the last step already taken (-1: none).
        **kwargs: passed to :class:`~lrtune.schedules.hyperparams.HyperparamScheduler`
            (``group_scales``, ``time_axis``, ``total_steps``).

    Examples:
        >>> import torch
        >>> from lrtune.schedules import cosine
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        >>> sched = TorchScheduler(opt, cosine(0.1, steps=2))
        >>> sched.get_last_lr()
        [0.1]
        >>> opt.step(); sched.step(); opt.step(); sched.step()
        >>> sched.get_last_lr(), sched.last_epoch
        ([0.0], 2)
        >>> TorchScheduler(opt, cosine(0.1, steps=2), last_epoch=0).get_last_lr()  # resumed
        [0.05]
    """

    def __init__(self, optimizer, schedules: Schedule | Mapping[str, Schedule], *,
                 last_epoch: int = -1, **kwargs: Any) -> None:
        # torch's __init__ is not called on purpose: it patches optimizer.step and stores
        # initial_lr in the groups; what the rest of torch reads is set here.
        if isinstance(last_epoch, bool) or not isinstance(last_epoch, int) or last_epoch < -1:
            raise ValueError(f"last_epoch must be an integer >= -1, got {last_epoch!r}")
        if callable(schedules):
            schedules = {"lr": schedules}
        self.optimizer = optimizer
        self._applier = HyperparamScheduler(optimizer, schedules, "batch", **kwargs)
        self._applier.load_state_dict({"step": last_epoch + 1})  # writes that step's values
        self.base_lrs = self._lrs() if "lr" in schedules else []
        self._last_lr = self._lrs()
        self._step_count = 1

    def _lrs(self) -> list[float]:
        return [get_hyperparam(g, "lr") for g in self.optimizer.param_groups]

    @property
    def last_epoch(self) -> int:  # type: ignore[override]
        return self._applier.step_count

    def get_lr(self) -> list[float]:  # type: ignore[override]
        """The learning rates in force (what ``step()`` last wrote)."""
        return self._lrs()

    def step(self, epoch: int | None = None) -> None:  # type: ignore[override]
        """Advance one step and write the new values (``epoch`` is not supported)."""
        if epoch is not None:
            raise ValueError(f"epoch must be None (pure schedules need no epoch), got {epoch!r}")
        self._step_count += 1
        self._applier.step()
        self._last_lr = self._lrs()

    def state_dict(self) -> dict[str, int]:  # type: ignore[override]
        """``{"step": n}``."""
        return self._applier.state_dict()

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:  # type: ignore[override]
        """Restore the step and write that step's values into the optimizer."""
        self._applier.load_state_dict(state_dict)
        self._last_lr = self._lrs()

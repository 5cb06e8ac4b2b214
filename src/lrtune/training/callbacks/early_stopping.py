"""EarlyStopping: stop when a monitored value stops improving; optionally restore the best."""

from __future__ import annotations

import math
from typing import Any

from lrtune.distributed import unwrap
from lrtune.finder.snapshot import cpu_copy
from lrtune.training.callbacks.base import (
    Callback,
    check_monitor_has_data,
    construction_mode,
    monitor_is_better,
    monitored_value,
    resolve_mode,
)


class EarlyStopping(Callback):
    """Stop training once ``monitor`` has not improved for ``patience`` epochs.

    Args:
        monitor: an epoch-log key, e.g. ``"valid_loss"`` or ``"valid_accuracy"``.
        mode: ``"min"``, ``"max"`` or ``"auto"``: the direction of the trainer's metric object
            (``higher_is_better``) when ``monitor`` is ``valid_<metric>``/``train_<metric>``,
            else of a known name (:func:`~lrtune.training.metrics.metric_direction`). Resolved
            at construction where the name alone decides, else at ``on_train_begin``; an
            unknown name is a ValueError asking for ``"min"`` or ``"max"``.
        patience: epochs without improvement before stopping (0 stops at the first one).
        min_delta: an improvement must beat the best by more than this.
        start_from_epoch: ignore the first this many epochs (warm-up).
        restore_best_weights: at the end of training — however it ends: finished, stopped
            early, non-finite loss, error or Ctrl-C — load the weights of the best epoch. The copy
            is kept on the CPU and is part of the checkpointed state, so it survives a resume.

    Examples:
        >>> class FakeTrainer:
        ...     should_stop, stop_reason, messages = False, None, []
        >>> es, t = EarlyStopping(patience=1), FakeTrainer()
        >>> es.on_train_begin(t, {})
        >>> for epoch, loss in enumerate([1.0, 0.8, 0.9, 0.85], start=1):
        ...     es.on_epoch_end(t, {"epoch": epoch, "valid_loss": loss})
        ...     if t.should_stop: break
        >>> es.stopped_epoch_, es.best_epoch_, es.best_
        (3, 2, 0.8)
    """

    def __init__(self, monitor: str = "valid_loss", *, mode: str = "auto", patience: int = 0,
                 min_delta: float = 0.0, start_from_epoch: int = 0,
                 restore_best_weights: bool = False) -> None:
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"patience must be an integer >= 0, got {patience!r}")
        if not (isinstance(min_delta, int | float) and math.isfinite(min_delta) and min_delta >= 0):
            raise ValueError(f"min_delta must be a finite number >= 0, got {min_delta!r}")
        if not isinstance(start_from_epoch, int) or start_from_epoch < 0:
            raise ValueError(f"start_from_epoch must be an integer >= 0, got {start_from_epoch!r}")
        self.monitor = monitor
        self.mode_setting = mode  # what was asked; ``mode`` is the resolved direction
        self.mode = construction_mode(mode, monitor)
        self.patience = patience
        self.min_delta = float(min_delta)
        self.start_from_epoch = start_from_epoch
        self.restore_best_weights = restore_best_weights
        self._reset()

    def _reset(self) -> None:
        self.wait_ = 0
        self.best_ = math.inf if self.mode == "min" else -math.inf
        self.best_epoch_: int | None = None
        self.stopped_epoch_: int | None = None
        self.best_weights_: dict | None = None

    def on_train_begin(self, trainer, logs: dict[str, Any], **kwargs) -> None:
        self.mode = resolve_mode(self.mode_setting, self.monitor,
                                 getattr(trainer, "metrics", None))
        check_monitor_has_data(trainer, self.monitor, "EarlyStopping")
        self._reset()

    def on_epoch_end(self, trainer, logs: dict[str, Any], **kwargs) -> None:
        current = monitored_value(logs, self.monitor, "EarlyStopping")
        epoch = logs["epoch"]
        if epoch <= self.start_from_epoch:
            return
        if monitor_is_better(self.mode, current, self.best_, self.min_delta):
            self.best_, self.best_epoch_, self.wait_ = current, epoch, 0
            if self.restore_best_weights:
                self.best_weights_ = cpu_copy(unwrap(trainer.model).state_dict())
            return
        self.wait_ += 1
        if self.wait_ >= self.patience:
            self.stopped_epoch_ = epoch
            trainer.should_stop = True
            trainer.stop_reason = "early_stopping"
            best = "none yet" if self.best_epoch_ is None else (
                f"best {self.best_:.6g} at epoch {self.best_epoch_}")
            trainer.messages.append(
                f"early stopping at epoch {epoch}: {self.monitor} has not improved for "
                f"{self.wait_} epoch(s) ({best})"
            )

    def on_train_end(self, trainer, logs: dict[str, Any], **kwargs) -> None:
        if self.restore_best_weights and self.best_weights_ is not None:
            unwrap(trainer.model).load_state_dict(self.best_weights_)
            trainer.messages.append(
                f"restored the weights of epoch {self.best_epoch_} "
                f"({self.monitor} {self.best_:.6g})"
            )

    def state_dict(self) -> dict[str, Any]:
        return {"wait": self.wait_, "best": self.best_, "best_epoch": self.best_epoch_,
                "stopped_epoch": self.stopped_epoch_, "best_weights": self.best_weights_}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.wait_, self.best_ = state["wait"], state["best"]
        self.best_epoch_, self.stopped_epoch_ = state["best_epoch"], state["stopped_epoch"]
        self.best_weights_ = state["best_weights"]

"""Checkpoint: the best and the last state of a run, written atomically after every epoch."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from lrtune import distributed
from lrtune.training.callbacks.base import (
    Callback,
    check_monitor_has_data,
    construction_mode,
    monitor_is_better,
    monitored_value,
    resolve_mode,
)
from lrtune.training.checkpoint_io import atomic_write_bytes, remove_stale_temporaries, serialize


class Checkpoint(Callback):
    """Write ``dirname/last.pt`` every epoch, and ``dirname/best.pt`` when ``monitor`` improves.

    Each file is a full :meth:`Trainer.state_dict <lrtune.training.loop.Trainer.state_dict>`:
    model (under ``"model"``), optimizer, schedules, every callback's state, history, epoch, the
    data order and all RNG states — ``Trainer.fit(..., resume=path)`` continues bit-for-bit.
    Files are written atomically (temporary file, fsync, rename, fsync of the folder), so a
    crash while writing leaves the previous checkpoint intact; ``best.pt`` is written before
    ``last.pt``, so a crash between the two resumes to a ``best.pt`` that agrees with the run.
    This callback runs after all others (``order = 100``) so the state it saves includes their
    updates for the epoch.
    Under ``torch.distributed`` every rank runs it (the decision is the same on all: the logs
    are all-reduced), rank 0 alone writes, and all ranks wait at a barrier until it has.

    Args:
        dirname: the folder for ``best.pt`` and ``last.pt``.
        monitor, mode: what "best" means; ``mode="auto"`` as in
            :class:`~lrtune.training.callbacks.EarlyStopping`.
        save_best, save_last: which files to write.
        extra: plain values stored under ``"extra"`` (e.g. the run's settings).
    """

    order = 100

    def __init__(self, dirname: str | Path = "checkpoints", *, monitor: str = "valid_loss",
                 mode: str = "auto", save_best: bool = True, save_last: bool = True,
                 extra: dict[str, Any] | None = None) -> None:
        self.dirname = Path(dirname)
        self.monitor = monitor
        self.mode_setting = mode  # what was asked; ``mode`` is the resolved direction
        self.mode = construction_mode(mode, monitor)
        self.save_best, self.save_last = save_best, save_last
        self.extra = dict(extra or {})
        self._reset()

    @property
    def best_path(self) -> Path:
        return self.dirname / "best.pt"

    @property
    def last_path(self) -> Path:
        return self.dirname / "last.pt"

    def _reset(self) -> None:
        self.best_ = math.inf if self.mode == "min" else -math.inf
        self.best_epoch_: int | None = None

    def on_train_begin(self, trainer, logs: dict[str, Any], **kwargs) -> None:
        self.mode = resolve_mode(self.mode_setting, self.monitor,
                                 getattr(trainer, "metrics", None))
        if self.save_best:
            check_monitor_has_data(trainer, self.monitor, "Checkpoint")
        self._reset()
        if distributed.is_main():
            remove_stale_temporaries(self.dirname)  # left behind by a writer that was killed

    def on_epoch_end(self, trainer, logs: dict[str, Any], **kwargs) -> None:
        improved = False
        if self.save_best:
            current = monitored_value(logs, self.monitor, "Checkpoint")
            if monitor_is_better(self.mode, current, self.best_):
                self.best_, self.best_epoch_, improved = current, logs["epoch"], True
        if not (self.save_last or improved):
            return
        state = trainer.state_dict(extra=self.extra)  # after the update above; every rank
        if distributed.is_main():
            data = serialize(state)
            # best before last: last.pt records the best epoch, so a kill between the two must
            # leave last.pt at the previous epoch (whose resume redoes this one, writing both)
            # and never a last.pt that names a best epoch best.pt does not hold
            if improved:
                atomic_write_bytes(data, self.best_path)
            if self.save_last:
                atomic_write_bytes(data, self.last_path)
        distributed.barrier()  # no rank reads a checkpoint before rank 0 has renamed it in place

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best_, "best_epoch": self.best_epoch_}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_, self.best_epoch_ = state["best"], state["best_epoch"]

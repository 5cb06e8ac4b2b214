"""TensorBoard: real event files (``torch.utils.tensorboard``) per batch and per epoch."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from lrtune import distributed
from lrtune.training.callbacks.base import Callback
from lrtune.training.metrics import read_hyperparams


class TensorBoard(Callback):
    """Log losses, metrics and every param group's lr, momentum and weight decay.

    Two runs under ``log_dir``: ``epoch`` (step = epoch number) with ``loss/train``,
    ``loss/valid``, ``<metric>/valid`` and ``lr/group<i>``, ``momentum/group<i>``,
    ``weight_decay/group<i>`` as they were during the epoch; ``batch`` (step = optimizer step)
    with ``loss/train`` and the same hyperparameter tags as used by that step. After a resume
    the writers purge the events a crashed run wrote past the checkpoint, so no step appears
    twice. Open with ``tensorboard --logdir LOG_DIR``.

    Args:
        log_dir: folder of the event files.
        log_batches: also write the per-batch run.
        batch_every: write one batch point every this many optimizer steps.
    """

    def __init__(self, log_dir: str | Path = "runs/tensorboard", *, log_batches: bool = True,
                 batch_every: int = 1) -> None:
        if not isinstance(batch_every, int) or batch_every < 1:
            raise ValueError(f"batch_every must be an integer >= 1, got {batch_every!r}")
        self.log_dir = Path(log_dir)
        self.log_batches = log_batches
        self.batch_every = batch_every
        self.epoch_writer_: Any = None
        self.batch_writer_: Any = None

    def on_train_begin(self, trainer, logs: dict[str, Any], **kwargs) -> None:
        if not distributed.is_main():  # one writer per run: rank 0 (the logs agree on all ranks)
            return
        from torch.utils.tensorboard import SummaryWriter

        resumed = trainer.epoch > 0
        if resumed:
            _wait_for_a_later_second(self.log_dir / "epoch", self.log_dir / "batch")
        self.epoch_writer_ = SummaryWriter(
            str(self.log_dir / "epoch"), purge_step=trainer.epoch + 1 if resumed else None)
        if self.log_batches:
            self.batch_writer_ = SummaryWriter(
                str(self.log_dir / "batch"),
                purge_step=trainer.global_step + 1 if resumed else None)

    def on_batch_end(self, trainer, logs: dict[str, Any], **kwargs) -> None:
        step = trainer.global_step
        if self.batch_writer_ is None or step % self.batch_every:
            return
        self.batch_writer_.add_scalar("loss/train", logs["loss"], step)
        self._hyperparams(self.batch_writer_, read_hyperparams(trainer.optimizer), step)

    def on_epoch_end(self, trainer, logs: dict[str, Any], **kwargs) -> None:
        writer, epoch = self.epoch_writer_, logs["epoch"]
        if writer is None:
            return
        writer.add_scalar("loss/train", logs["train_loss"], epoch)
        if "valid_loss" in logs:
            writer.add_scalar("loss/valid", logs["valid_loss"], epoch)
        for name in trainer.metrics:
            if f"valid_{name}" in logs:
                writer.add_scalar(f"{name}/valid", logs[f"valid_{name}"], epoch)
        self._hyperparams(writer, trainer.epoch_hparams, epoch)
        writer.flush()
        if self.batch_writer_ is not None:
            self.batch_writer_.flush()

    @staticmethod
    def _hyperparams(writer, values: dict[str, list[float]], step: int) -> None:
        for name, per_group in values.items():
            for i, value in enumerate(per_group):
                writer.add_scalar(f"{name}/group{i}", value, step)

    def on_train_end(self, trainer, logs: dict[str, Any], **kwargs) -> None:
        for writer in (self.epoch_writer_, self.batch_writer_):
            if writer is not None:
                writer.close()
        self.epoch_writer_ = self.batch_writer_ = None


def _wait_for_a_later_second(*dirs: Path) -> None:
    """Sleep, when needed, until the clock's second is past that of every event file in
    ``dirs``. TensorBoard reads a run's files in name order, and a name is the creation second
    followed by host, pid and a counter that do not sort as numbers (``...9`` after ``...10``):
    a resumed run's file must carry a later second to be read after, and purge, what the
    crashed run wrote (at most 1 s, and only when a file of this second exists)."""
    seconds = [int(part) for d in dirs if d.is_dir() for f in d.glob("events.out.tfevents.*")
               if (part := f.name.split(".")[3]).isdigit()]
    if seconds:
        time.sleep(max(0.0, max(seconds) + 1 - time.time()))

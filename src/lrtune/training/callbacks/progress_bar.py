"""ProgressBar: a live tqdm bar over the batches of an epoch, for terminals."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from lrtune import distributed
from lrtune.training.callbacks.base import Callback


class ProgressBar(Callback):
    """A tqdm bar per epoch with the running loss; it disappears when the epoch's row prints.

    The :class:`~lrtune.training.loop.Trainer` adds it for ``verbose=1`` when stdout is a
    terminal; files and pipes get the plain table only.

    Args:
        stream: where to draw (default: ``sys.stdout`` when training starts).
        refresh: seconds between updates of the loss shown (keeps the per-batch cost tiny).
    """

    order = -100  # close the bar before anything prints the epoch's row

    def __init__(self, stream: TextIO | None = None, refresh: float = 0.1) -> None:
        self.stream = stream
        self.refresh = refresh
        self.bar_: Any = None

    def on_epoch_begin(self, trainer, logs: dict[str, Any], **kwargs) -> None:
        if not distributed.is_main():  # one bar per run under DDP
            return
        from tqdm.auto import tqdm

        total = trainer.steps_per_epoch
        self.bar_ = tqdm(total=total, desc=f"Epoch {logs['epoch']}/{trainer.epochs}",
                         file=self.stream or sys.stdout, leave=False, dynamic_ncols=True,
                         unit="batch", mininterval=self.refresh)
        self.loss_sum_, self.count_, self.shown_ = 0.0, 0, time.monotonic()

    def on_batch_end(self, trainer, logs: dict[str, Any], **kwargs) -> None:
        if self.bar_ is None:
            return
        self.loss_sum_ += logs["loss"] * logs["size"]
        self.count_ += logs["size"]
        now = time.monotonic()
        if now - self.shown_ >= self.refresh:
            self.bar_.set_postfix_str(f"loss {self.loss_sum_ / self.count_:.4f}", refresh=False)
            self.shown_ = now
        self.bar_.update(1)

    def _close(self) -> None:
        if self.bar_ is not None:
            self.bar_.close()
            self.bar_ = None

    def on_epoch_end(self, trainer, logs: dict[str, Any], **kwargs) -> None:
        self._close()

    def on_train_end(self, trainer, logs: dict[str, Any], **kwargs) -> None:
        self._close()

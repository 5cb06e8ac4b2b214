"""ScheduleFreeMode: switch a Schedule-Free optimizer between its training and evaluation points."""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch.utils.data import DataLoader

from lrtune import distributed
from lrtune.data.batching import TensorBatches
from lrtune.training.callbacks.base import Callback


class ScheduleFreeMode(Callback):
    """Call ``optimizer.train()`` before training and ``optimizer.eval()`` before anything else.

    Schedule-Free optimizers compute gradients at a point ``y`` but the weights to evaluate,
    save and predict with are the average ``x``; ``optimizer.eval()`` moves the parameters to
    ``x``, ``optimizer.train()`` back to ``y`` (the ``schedulefree`` README). This callback runs
    ``train()`` at every epoch's start and ``eval()`` before validation, at the epoch's end (so
    every checkpoint, ``best.pt`` and EarlyStopping's best weights hold ``x``, as its authors
    ask) and when training ends (so :meth:`Trainer.evaluate` and :meth:`Trainer.predict` see
    ``x``). A resume loads ``x`` with the optimizer in eval mode and the next epoch's
    ``train()`` repeats exactly the switch the uninterrupted run made, so resuming stays
    bit-for-bit.

    BatchNorm's running statistics were gathered at ``y``; before evaluation they are
    recomputed at ``x`` the way the authors prescribe: ``bn_batches`` forward passes over the
    first training batches (fixed order, no augmentation, same on every rank) in train mode
    under ``torch.no_grad``, with the RNG state put back afterwards (dropout draws nothing
    from the run's stream). Models without BatchNorm skip this.

    The :class:`~lrtune.training.loop.Trainer` adds this callback by itself when its optimizer
    is Schedule-Free; it runs before every other callback (``order = -200``).

    Args:
        bn_batches: training batches used to recompute BatchNorm statistics (the README's 50).
    """

    order = -200

    def __init__(self, bn_batches: int = 50) -> None:
        if isinstance(bn_batches, bool) or not isinstance(bn_batches, int) or bn_batches < 1:
            raise ValueError(f"bn_batches must be an integer >= 1, got {bn_batches!r}")
        self.bn_batches = bn_batches
        self.evaluating_ = False

    def on_train_begin(self, trainer, logs: dict[str, Any], **kwargs) -> None:
        self.evaluating_ = False

    def on_epoch_begin(self, trainer, logs: dict[str, Any], **kwargs) -> None:
        trainer.optimizer.train()
        self.evaluating_ = False

    def on_validation_begin(self, trainer, logs: dict[str, Any], **kwargs) -> None:
        self._to_eval(trainer)

    def on_epoch_end(self, trainer, logs: dict[str, Any], **kwargs) -> None:
        self._to_eval(trainer)  # no validation data: the checkpoint still gets x

    def on_train_end(self, trainer, logs: dict[str, Any], **kwargs) -> None:
        self._to_eval(trainer)  # also after a stop in mid-epoch

    def _to_eval(self, trainer) -> None:
        if self.evaluating_:
            return
        trainer.optimizer.eval()
        model = distributed.unwrap(trainer.model)
        if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats
               for m in model.modules()):
            self._recompute_batchnorm(model, trainer)
        self.evaluating_ = True

    @torch.no_grad()
    def _recompute_batchnorm(self, model: torch.nn.Module, trainer) -> None:
        data = trainer.train_batches
        if isinstance(data, TensorBatches):
            batches = TensorBatches(data.X, data.y, data.batch_size, shuffle=False)
        elif isinstance(data, DataLoader):
            batches = DataLoader(data.dataset, batch_size=data.batch_size,
                                 collate_fn=data.collate_fn)  # sequential: no sampler RNG drawn
        else:
            return
        device = trainer.device
        devices = [device] if device.type == "cuda" else []
        was_training = model.training
        model.train()
        try:
            with torch.random.fork_rng(devices=devices):
                for batch in itertools.islice(batches, self.bn_batches):
                    x = batch[0] if isinstance(batch, tuple | list) else batch
                    model(x.to(device, non_blocking=True))
        finally:
            model.train(was_training)


def auto_callbacks(optimizer: torch.optim.Optimizer, given: list[Callback]) -> list[Callback]:
    """The callbacks ``optimizer`` needs that ``given`` lacks (a Schedule-Free optimizer:
    :class:`ScheduleFreeMode`); the Trainer adds them."""
    from lrtune.lr_free import is_schedule_free

    if is_schedule_free(optimizer) and not any(isinstance(c, ScheduleFreeMode) for c in given):
        return [ScheduleFreeMode()]
    return []

"""Hugging Face Transformers: the range test through a ``transformers.Trainer``'s own pieces.

:func:`find_lr` runs :func:`lrtune.find_lr` on the trainer's model, its train dataloader
(``get_train_dataloader``), the optimizer its ``TrainingArguments`` configure
(``create_optimizer``: weight-decay groups, betas, ``optim``) and its ``compute_loss`` (so label
smoothing, ``compute_loss_func`` and a subclass's own loss count), with the arguments'
``gradient_accumulation_steps``, ``max_grad_norm`` and ``bf16``/``fp16``. Micro-batches are
grouped and their loss scaled as ``Trainer.training_step`` does (``num_items_in_batch``,
``loss_is_scaled_for_ga``). Model, optimizer and RNG are restored; pass the suggestion as
``learning_rate``. :class:`LRFinderCallback` does the same at the start of ``trainer.train()``
and trains at the suggestion.

Single process only (no DDP, DeepSpeed or FSDP); a subclass's ``training_step`` is not run,
its ``compute_loss`` is.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Iterator
from typing import Any

try:
    import transformers
except ImportError:
    raise ImportError(
        "lrtune.integrations.transformers needs Hugging Face Transformers: "
        "pip install 'lrtune[transformers]'"
    ) from None

from lrtune.finder.range_test import find_lr as _core_find_lr
from lrtune.finder.range_test import scale_lrs
from lrtune.finder.result import FinderResult

__all__ = ["LRFinderCallback", "find_lr"]

logger = logging.getLogger(__name__)

# what the trainer decides; everything else (start_lr, end_lr, num_iters, rule, ...) goes to
# lrtune.find_lr as given
_FROM_TRAINER = {
    "model": "the trainer's model",
    "optimizer": "the trainer's create_optimizer()",
    "loss_fn": "the trainer's compute_loss",
    "step": "the trainer's compute_loss",
    "data": "the trainer's get_train_dataloader()",
    "batch_size": "TrainingArguments.per_device_train_batch_size",
    "accumulation_steps": "TrainingArguments.gradient_accumulation_steps",
    "device": "TrainingArguments' device",
    "restore": "always restored",
    "val_data": "not supported here",
    "seed": "TrainingArguments.seed and the trainer's sampler",
}


def find_lr(trainer: transformers.Trainer, **finder_kwargs: Any) -> FinderResult:
    """Run a learning-rate range test with everything ``trainer.train()`` would use.

    Args:
        trainer: a ``transformers.Trainer`` with a ``train_dataset``.
        **finder_kwargs: passed to :func:`lrtune.find_lr` (``start_lr``, ``end_lr``,
            ``num_iters``, ``mode``, ``smooth``, ``diverge_factor``, ``rule``; ``precision``,
            ``clip_grad_norm`` and ``clip_grad_value`` override what the arguments say).

    Returns:
        A :class:`lrtune.FinderResult`; set ``trainer.args.learning_rate`` (or pass
        ``learning_rate`` to ``TrainingArguments``) to its ``suggested_lr``.

    The optimizer is created with ``trainer.create_optimizer()`` (the trainer's own one when it
    was given one) and afterwards the trainer holds the optimizer it held before, so a later
    ``trainer.train()`` builds its optimizer from the arguments as usual.

    Raises:
        TypeError: ``trainer`` is not a ``transformers.Trainer``.
        ValueError: a keyword the trainer decides, or a multi-process run.
    """
    _check_args(trainer, finder_kwargs)
    previous = trainer.optimizer
    try:
        return _range_test(trainer, trainer.create_optimizer(), finder_kwargs)
    finally:
        trainer.optimizer = previous


class LRFinderCallback(transformers.TrainerCallback):
    """Run the range test when ``trainer.train()`` begins and train at its suggestion.

    The test runs on the optimizer and scheduler the trainer just created; the suggestion then
    replaces the rate the schedule is built on (each param group and the scheduler's
    ``base_lrs`` scaled by the same factor: warmup and decay keep their shape). An inconclusive
    test leaves ``learning_rate`` as it was and logs why. A run resumed from a checkpoint keeps
    the checkpoint's rates.

    Args:
        trainer: the trainer this callback is added to (its ``compute_loss`` and data are used).
        **finder_kwargs: as for :func:`find_lr`.

    Attributes:
        result: the :class:`lrtune.FinderResult` of the last run, else ``None``.

    Example::

        trainer.add_callback(LRFinderCallback(trainer, num_iters=100))
        trainer.train()
    """

    def __init__(self, trainer: transformers.Trainer, **finder_kwargs: Any) -> None:
        _check_args(trainer, finder_kwargs)
        self.trainer = trainer
        self.finder_kwargs = finder_kwargs
        self.result: FinderResult | None = None

    def on_train_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
        if state.global_step > 0:  # resumed: optimizer and scheduler come from the checkpoint
            return
        model = kwargs.get("model")
        if model is not None and model is not self.trainer.model:
            raise ValueError("this LRFinderCallback was made for another trainer (its model is not "
                             "the one training): add LRFinderCallback(trainer) to that trainer")
        self.result = _range_test(self.trainer, optimizer, self.finder_kwargs)
        if self.result.suggested_lr is None:
            logger.warning("lrtune: range test inconclusive (%s); training at learning_rate=%g",
                           self.result.reason, args.learning_rate)
            return
        scale_lrs(_unwrap(optimizer), self.result.suggested_lr, [lr_scheduler])
        logger.info("lrtune: %s", self.result.summary())


# -- glue ---------------------------------------------------------------------------------------
def _check_args(trainer: Any, finder_kwargs: dict[str, Any]) -> None:
    if not isinstance(trainer, transformers.Trainer):
        raise TypeError(f"trainer must be a transformers.Trainer, got {type(trainer).__name__}")
    for name in finder_kwargs:
        if name in _FROM_TRAINER:
            raise ValueError(f"{name} is set by the trainer ({_FROM_TRAINER[name]}); "
                             f"do not pass it to the Transformers range test")


def _range_test(trainer, optimizer, finder_kwargs: dict[str, Any]) -> FinderResult:
    args = trainer.args
    if args.world_size > 1:
        raise ValueError(f"the Transformers range test runs in one process; this run has "
                         f"world_size={args.world_size}")
    optimizer = _unwrap(optimizer)
    if callable(getattr(optimizer, "train", None)):
        optimizer.train()  # schedule-free optimizers, as training_step does
    k = args.gradient_accumulation_steps
    options = {"precision": "bf16-mixed" if args.bf16 else "16-mixed" if args.fp16 else "32",
               "clip_grad_norm": args.max_grad_norm if args.max_grad_norm > 0 else None,
               **finder_kwargs}
    data = _MicroBatches(trainer, k)
    try:
        with _at_base_rate(optimizer):
            # batch_size and seed only label the result: the trainer's dataloader batches
            return _core_find_lr(trainer.model, optimizer, None, data, step=_make_step(trainer, k),
                                 accumulation_steps=k, device=args.device,
                                 batch_size=args.train_batch_size, seed=args.seed, **options)
    finally:
        data.close()
        trainer.model.zero_grad(set_to_none=True)  # train() adds its first gradients to these


def _unwrap(optimizer):
    """The torch optimizer inside accelerate's ``AcceleratedOptimizer`` (whose ``step`` and
    ``zero_grad`` follow accelerate's gradient-sync state, not the range test)."""
    with contextlib.suppress(ImportError):
        from accelerate.optimizer import AcceleratedOptimizer

        if isinstance(optimizer, AcceleratedOptimizer):
            return optimizer.optimizer
    return optimizer


@contextlib.contextmanager
def _at_base_rate(optimizer) -> Iterator[None]:
    """Sweep from the rates the schedule is built on (``initial_lr``), not the scheduler's
    current value (0 at the start of a warmup); the current values come back afterwards."""
    current = [g["lr"] for g in optimizer.param_groups]
    for g in optimizer.param_groups:
        g["lr"] = g.get("initial_lr", g["lr"])
    try:
        yield
    finally:  # the groups anew: restoring the optimizer's state dict replaced them
        for g, lr in zip(optimizer.param_groups, current, strict=True):
            g["lr"] = lr


def _make_step(trainer, k: int):
    """The core's step: ``compute_loss`` on one micro-batch, as ``training_step`` calls it."""

    def step(model, batch):
        inputs = trainer._prepare_inputs(batch["inputs"])
        num_items = batch["num_items_in_batch"]
        with trainer.compute_loss_context_manager():
            loss = trainer.compute_loss(model, inputs, num_items_in_batch=num_items)
        # the core divides each micro-batch's loss by k, as training_step does unless the loss is
        # already normalised over the whole accumulated batch: then undo that division
        return loss * k if k > 1 and _scaled_for_ga(trainer, num_items) else loss

    return step


def _scaled_for_ga(trainer, num_items) -> bool:
    """``Trainer.training_step``'s test of whether the loss is already scaled for accumulation."""
    if trainer.loss_is_scaled_for_ga is not None:
        return bool(trainer.loss_is_scaled_for_ga)
    return bool((trainer.model_accepts_loss_kwargs and num_items is not None)
                or trainer.compute_loss_func is not None)


class _MicroBatches:
    """The trainer's train dataloader as one endless stream of micro-batches, taken in groups of
    ``gradient_accumulation_steps`` with ``trainer.get_batch_samples`` (which counts the group's
    ``num_items_in_batch``), each yielded as ``{"inputs": batch, "num_items_in_batch": n}``."""

    def __init__(self, trainer, accumulation_steps: int) -> None:
        self.trainer, self.k = trainer, accumulation_steps
        self.loader = trainer.get_train_dataloader()
        self._open: list[Iterator] = []

    def __iter__(self) -> Iterator[dict[str, Any]]:
        stream = self._stream()
        self._open.append(stream)
        return stream

    def close(self) -> None:
        """Close the open passes (accelerate's dataloader deregisters from its gradient state)."""
        for stream in self._open:
            stream.close()
        self._open.clear()

    def _stream(self) -> Iterator[dict[str, Any]]:
        passes = self._passes()
        try:
            while True:
                group, num_items = self.trainer.get_batch_samples(passes, self.k,
                                                                  self.trainer.args.device)
                for batch in group:
                    yield {"inputs": batch, "num_items_in_batch": num_items}
        finally:
            passes.close()

    def _passes(self) -> Iterator[Any]:
        for epoch in itertools.count():
            if hasattr(self.loader, "set_epoch"):  # a new order each pass, as _run_epoch does
                self.loader.set_epoch(epoch)
            iterator, empty, finished = iter(self.loader), True, False
            try:
                for batch in iterator:
                    empty = False
                    yield batch
                finished = True
            finally:
                if not finished:  # abandoned mid-pass: accelerate's __iter__ never reaches end()
                    for cleanup in (getattr(iterator, "close", None),
                                    getattr(self.loader, "end", None)):
                        if callable(cleanup):
                            cleanup()
            if empty:
                raise ValueError("the trainer's train dataloader yielded no batch")


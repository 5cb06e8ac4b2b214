"""Trainer: a lean fit loop with callbacks, schedules, exact resume and a clear stop on NaN."""

from __future__ import annotations

import itertools
import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lrtune import distributed
from lrtune.data.batching import TensorBatches, as_batches, data_generators
from lrtune.steps import (
    Step,
    StepRunner,
    batch_size_of,
    check_batch_fits,
    describe_batch,
    is_pair,
    primary_output,
    to_device,
)
from lrtune.training.callbacks.base import Callback, overrides
from lrtune.training.checkpoint_io import (
    FORMAT,
    FORMAT_VERSION,
    check_model_state,
    load_checkpoint,
    rng_state,
    set_rng_state,
)
from lrtune.training.history import History
from lrtune.training.metrics import (
    flatten_hyperparams,
    momentum_of,
    read_hyperparams,
    resolve_metrics,
)
from lrtune.training.scheduling import (
    as_trainer_schedule,
    check_schedule_monitors,
    warn_if_sized_in_steps,
)

Augment = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; raised by :meth:`Trainer.fit` after cleanup.

    Attributes:
        epoch, batch, lr: where it happened (1-based) and the learning rate of that step.
        history: the records up to the last finite step.
    """

    def __init__(self, message: str, *, epoch: int, batch: int, lr: float, history: History):
        super().__init__(message)
        self.epoch, self.batch, self.lr, self.history = epoch, batch, lr, history


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` picks CUDA, then Apple's MPS, then the CPU."""
    if str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _global_mean(loss: torch.Tensor, size: int) -> tuple[float, int]:
    """The batch's loss over all ranks (sample-weighted mean) and its global size."""
    pair = torch.stack([loss.detach().double() * size,
                        torch.tensor(float(size), dtype=torch.float64, device=loss.device)])
    total, count = distributed.all_reduce(pair, "sum").tolist()
    return total / count, int(count)


def _rng_of_this_rank(state: dict[str, Any]) -> dict[str, Any]:
    """This rank's saved RNG state when the world size is unchanged, else rank 0's."""
    per_rank = state.get("rng_ranks")
    if per_rank is not None and len(per_rank) == distributed.world_size():
        return per_rank[distributed.rank()]
    return state["rng"]


class Trainer:
    """Fit a model with callbacks and hyperparameter schedules; every run resumable exactly.

    Args:
        model: the network; moved to ``device``.
        optimizer: built on ``model``'s parameters.
        loss_fn: ``loss_fn(output, y)`` returns the mean loss of a batch, where ``output`` is
            :func:`~lrtune.steps.primary_output` of ``model(x)`` (the tensor itself, the first
            element of a tuple, ``logits`` of a dict or object). May be ``None`` with ``step``.
        step: ``step(model, batch) -> loss`` or ``{"loss", "output", "target"}`` for any batch
            and model (see :mod:`lrtune.steps`); used for training and validation.
        precision: ``"32"``, ``"bf16-mixed"`` or ``"16-mixed"`` (autocast, and a ``GradScaler``
            for 16-bit whose state is in every checkpoint; a step it skips is not counted).
        clip_grad_norm, clip_grad_value: gradient clipping before each optimizer step.
        metrics: names (``"accuracy"``, ``"f1"``, ``"r2"`` …), torchmetrics ``Metric`` objects,
            or ``{name: metric}``; accumulated over the whole validation set (reported as
            ``valid_<name>``) and by :meth:`evaluate`, on the step's ``output`` and ``target``.
        callbacks: :class:`~lrtune.training.callbacks.Callback` instances.
        schedules: one scheduler or a list: lrtune's (``HyperparamScheduler``,
            ``ReduceLROnPlateau``), a torch ``LRScheduler`` (``OneCycleLR``, torch's
            ``ReduceLROnPlateau``, lrtune's ``TorchScheduler`` …) stepped per epoch, or
            Lightning's form ``{"scheduler": s, "interval": "step" | "epoch", "frequency": n,
            "monitor": "valid_loss", "strict": True}``; each must be built on ``optimizer``.
            A ``"batch"``/``"step"`` scheduler steps after every optimizer step, an ``"epoch"``
            scheduler with the epoch's logs after validation.
        augment: ``augment(x, y) -> (x, y)`` applied to every ``(x, y)`` training batch on the
            device.
        device: ``"auto"`` (CUDA, MPS, CPU), or any torch device.
        verbose: 0 silent; 1 the per-epoch table plus a live progress bar when stdout is a
            terminal; 2 the table only.
        output_fn: which part of ``model(x)`` :meth:`predict` returns (default
            :func:`~lrtune.steps.primary_output`).

    Under ``torch.distributed`` (``torchrun``; pass the ``DistributedDataParallel``-wrapped
    model and call ``fit`` on every rank): ``(X, y)`` training data is sharded per rank
    (``batch_size`` per rank; see :class:`~lrtune.data.batching.TensorBatches`), a
    ``DataLoader`` needs a ``DistributedSampler`` and every rank stops at the smallest
    ``len()``; each batch's loss is all-reduced (one scalar pair per step) so the history, the
    NaN stop and every callback decision agree on all ranks; validation data is split across
    ranks and its sums and counts all-reduced. Only rank 0 prints and writes (the table,
    ``Checkpoint``, ``TensorBoard``); the checkpointed model state has no ``module.`` prefix.

    Attributes:
        history: the :class:`History` of the current or last run.
        epoch: epochs completed; ``global_step``: optimizer steps taken.
        should_stop: set by a callback to end training after the current batch.
        stop_reason: ``"completed"``, ``"early_stopping"``, ``"non_finite"``, ``"stopped"``,
            ``"interrupted"`` or ``"error"``; ``messages``: lines callbacks want shown at the end.

    Examples:
        >>> torch.manual_seed(0) and None
        >>> X, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
        >>> model = nn.Linear(4, 2)
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> trainer = Trainer(model, optimizer, nn.CrossEntropyLoss(), metrics=["accuracy"],
        ...                   verbose=0)
        >>> history = trainer.fit((X, y), (X, y), epochs=3, batch_size=16)
        >>> [r["epoch"] for r in history.epochs], history.num_batches
        ([1, 2, 3], 12)
        >>> sorted(trainer.evaluate((X, y)))
        ['accuracy', 'loss']
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: Callable[[Any, Any], torch.Tensor] | None = None,
        *,
        step: Step | None = None,
        precision: str = "32",
        clip_grad_norm: float | None = None,
        clip_grad_value: float | None = None,
        metrics: Sequence[Any] | Mapping[str, Any] | None = None,
        callbacks: Iterable[Callback] | None = None,
        schedules: Any = None,
        augment: Augment | None = None,
        device: str | torch.device = "auto",
        verbose: int = 1,
        output_fn: Callable[[Any], Any] = primary_output,
    ) -> None:
        if verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
        if not getattr(optimizer, "param_groups", None):
            raise ValueError(f"optimizer must be a torch optimizer with param groups, got "
                             f"{type(optimizer).__name__}")
        self.device = resolve_device(device)
        self.model = model.to(self.device)
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.runner = StepRunner(self.model, optimizer, step, loss_fn, device=self.device,
                                 precision=precision, clip_grad_norm=clip_grad_norm,
                                 clip_grad_value=clip_grad_value)
        self.output_fn = output_fn
        self.metrics = {name: m.to(self.device) for name, m in resolve_metrics(metrics).items()}
        self.callbacks = list(callbacks or [])
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be Callback instances, got {type(cb).__name__}")
        if schedules is None:
            schedules = []
        elif not isinstance(schedules, list | tuple):
            schedules = [schedules]
        self.schedules = [as_trainer_schedule(s, optimizer) for s in schedules]
        self.augment = augment
        self.verbose = verbose
        self.history = History()
        self.epoch = 0
        self.global_step = 0
        self.epochs = 0
        self.accumulation_steps = 1
        self.should_stop = False
        self.stop_reason: str | None = None
        self.messages: list[str] = []
        self.epoch_hparams: dict[str, list[float]] = {}
        self.train_batches: Any = None
        self.valid_batches: Any = None
        self._active: list[Callback] = []

    # -- the loop ------------------------------------------------------------------------------
    def fit(self, train, valid=None, *, epochs: int, batch_size: int = 32,
            accumulation_steps: int = 1, resume: str | Path | dict | None = None,
            seed: int = 0) -> History:
        """Train until ``epochs`` epochs are done in total (also after a resume) or a stop.

        Args:
            train, valid: ``(X, y)`` tensor pairs (batched in memory; the training order is
                reshuffled each epoch from ``seed``), ``DataLoader`` objects or any re-iterable
                of batches.
            epochs: the total number of epochs of the run.
            batch_size: for tensor pairs.
            accumulation_steps: micro-batches per optimizer step (their losses averaged);
                ``global_step``, per-batch schedules and the history count optimizer steps. An
                epoch's last, shorter window is stepped too, averaged over its own micro-batches.
            resume: a checkpoint path (or a loaded checkpoint dict) to continue from: model,
                optimizer, schedules, callback states, history, epoch, data order and RNG states
                are restored, so the result is bit-identical to an uninterrupted run.
            seed: seed of the training order for tensor pairs.

        Returns:
            The :class:`History`.

        Raises:
            NonFiniteLossError: the training loss became NaN/inf (after ``on_train_end`` ran).
            ValueError: bad arguments, empty data, or a checkpoint that does not match.
        """
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
        if isinstance(accumulation_steps, bool) or not isinstance(accumulation_steps, int) \
                or accumulation_steps < 1:
            raise ValueError(f"accumulation_steps must be an integer >= 1, got "
                             f"{accumulation_steps!r}")
        self.accumulation_steps = accumulation_steps
        self.train_batches = as_batches(train, batch_size, shuffle=True, seed=seed,
                                        rank=distributed.rank(),
                                        world_size=distributed.world_size())
        self.valid_batches = None if valid is None else as_batches(
            distributed.shard_pair(valid), batch_size, shuffle=False)
        self.epochs = epochs
        self.history, self.epoch, self.global_step = History(), 0, 0
        self.should_stop, self.stop_reason, self.messages = False, None, []
        self.runner.skipped_in_a_row = 0
        self._active = sorted(self._default_callbacks() + self.callbacks, key=lambda c: c.order)
        if self.valid_batches is not None:
            self._check_validation_fits()
        check_schedule_monitors(self)
        state = self._restore(resume) if resume is not None else None
        warn_if_sized_in_steps(self.schedules, epochs)
        for s in self.schedules:
            s.apply()
        try:
            self._call("on_train_begin", {"initial_epoch": self.epoch, "epochs": epochs})
            if state is not None:
                self._load_callback_states(state["callbacks"])
                set_rng_state(_rng_of_this_rank(state))  # last: nothing above shifts the stream
                if state.get("stop_reason") is not None:  # saved as the run stopped: it stays so
                    self.should_stop, self.stop_reason = True, state["stop_reason"]
            while self.epoch < epochs and not self.should_stop:
                self._run_epoch()
            if self.stop_reason is None:
                self.stop_reason = "completed" if self.epoch >= epochs else "stopped"
        except BaseException as exc:
            self.stop_reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else "error"
            raise
        finally:
            self._call("on_train_end", {"stop_reason": self.stop_reason, "epoch": self.epoch})
        if self.stop_reason == "non_finite":
            raise NonFiniteLossError(self._nan_message, **self._nan_where, history=self.history)
        return self.history

    def _run_epoch(self) -> None:
        epoch = self.epoch + 1
        self._call("on_epoch_begin", {"epoch": epoch})
        self.epoch_hparams = read_hyperparams(self.optimizer)
        start = time.perf_counter()
        train_loss = self._train_epoch(epoch)
        if train_loss is None:  # non-finite loss: the epoch is not complete
            return
        self.epoch = epoch
        record: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss}
        if self.valid_batches is not None:
            self._call("on_validation_begin", {"epoch": epoch})
            scores = self._evaluate_batches(self.valid_batches)
            valid_loss = scores.pop("loss")
            record["valid_loss"] = valid_loss
            record["train_valid_ratio"] = train_loss / valid_loss if valid_loss else math.nan
            record.update({f"valid_{k}": v for k, v in scores.items()})
            self._call("on_validation_end", record)
        record.update(flatten_hyperparams(self.epoch_hparams))
        record["duration"] = time.perf_counter() - start
        self.history.add_epoch(record)
        for s in self.schedules:
            if s.interval == "epoch":
                s.step(record)
        self._call("on_epoch_end", record)

    @property
    def steps_per_epoch(self) -> int | None:
        """Optimizer steps in one epoch (``None`` when the data has no length)."""
        if not hasattr(self.train_batches, "__len__"):
            return None
        return -(-len(self.train_batches) // self.accumulation_steps)

    def _train_epoch(self, epoch: int) -> float | None:
        """One pass over the training data; the mean loss, or None when it went non-finite."""
        model, runner, augment = self.model, self.runner, self.augment
        optimizer, k = self.optimizer, self.accumulation_steps
        begin_hooks = [cb for cb in self._active if overrides(cb, "on_batch_begin")]
        end_hooks = [cb for cb in self._active if overrides(cb, "on_batch_end")]
        batch_schedules = [s for s in self.schedules if s.interval == "batch"]
        batches: Iterable = self.train_batches
        sampler = getattr(batches, "sampler", None)
        if hasattr(sampler, "set_epoch"):  # DistributedSampler: a new, resumable order per epoch
            sampler.set_epoch(epoch)
        sharded = distributed.is_distributed()
        n_batches = len(batches) if hasattr(batches, "__len__") else None
        if sharded and not isinstance(batches, TensorBatches) and n_batches is not None:
            # a DataLoader's sampler may give ranks different counts: all stop at the smallest
            n_batches = distributed.all_reduce_min(n_batches)
            batches = itertools.islice(batches, n_batches)
        full = None if n_batches is None else n_batches - n_batches % k  # batches in full windows
        total, count = 0.0, 0
        step, micro, window_sum, window_count = 0, 0, 0.0, 0
        model.train()
        optimizer.zero_grad(set_to_none=True)
        for index, batch in enumerate(batches, start=1):
            if augment is not None:
                batch = to_device(batch, self.device)
                if not is_pair(batch):
                    raise TypeError(f"augment=fn(x, y) needs (inputs, targets) batches, but the "
                                    f"data yields {describe_batch(batch)}; augment inside "
                                    "step=fn(model, batch) instead")
                batch = (*augment(batch[0], batch[1]), *batch[2:])
            if micro == 0 and begin_hooks:
                logs = {"epoch": epoch, "batch": step + 1}
                for cb in begin_hooks:
                    cb.on_batch_begin(self, logs)
            window = k if full is None or index <= full else n_batches - full
            last_micro = micro + 1 == window
            if sharded and not last_micro and hasattr(model, "no_sync"):
                with model.no_sync():  # DDP averages gradients in the window's last backward
                    result = runner.forward(batch)
                    runner.backward(result.loss, 1.0 / window)
            else:
                result = runner.forward(batch)
                runner.backward(result.loss, 1.0 / window if window > 1 else 1.0)
            size = batch_size_of(result, batch)
            if sharded:  # the global mean, so every rank records and decides the same
                value, size = _global_mean(result.loss, size)
            else:
                value = result.loss.item()  # the one sync per batch: record and NaN check
            if not math.isfinite(value):
                self._stop_non_finite(value, epoch, index)
                return None
            total += value * size
            count += size
            window_sum += value * size
            window_count += size
            micro += 1
            if not last_micro:
                continue
            taken = self._optimizer_step(epoch, step + 1, window_sum / window_count, size,
                                         end_hooks, batch_schedules)
            if not taken and runner.never_finite:  # only a skipped step can make it so
                return self._stop_never_finite(epoch, index)
            step += taken
            micro, window_sum, window_count = 0, 0.0, 0
            if self.should_stop:
                break
        if count == 0:
            raise ValueError("the training data is empty: it yielded no batch")
        if micro:  # data of unknown length ended inside a window: its gradients were scaled
            for p in runner.parameters():  # by 1/k, so rescale them to its mean, then step
                if p.grad is not None:
                    p.grad.mul_(k / micro)
            taken = self._optimizer_step(epoch, step + 1, window_sum / window_count, size,
                                         end_hooks, batch_schedules)
            if not taken and runner.never_finite:
                return self._stop_never_finite(epoch, index)
        return total / count

    def _optimizer_step(self, epoch: int, step: int, loss: float, size: int, end_hooks,
                        batch_schedules) -> int:
        """Step, then record it and run the hooks and per-batch schedules; returns 1, or 0 when
        the GradScaler skipped the step (not a step: only its loss counts, in the epoch mean)."""
        taken = self.runner.optimizer_step()
        self.optimizer.zero_grad(set_to_none=True)
        if not taken:
            return 0
        self.global_step += 1
        group = self.optimizer.param_groups[0]
        self.history.add_batch(self.global_step, epoch, step, loss, float(group["lr"]),
                               momentum_of(group))
        if end_hooks:
            logs = {"epoch": epoch, "batch": step, "loss": loss, "size": size}
            for cb in end_hooks:
                cb.on_batch_end(self, logs)
        for s in batch_schedules:  # after the hooks, so they see the values this step used
            s.step()
        return 1

    def _stop_never_finite(self, epoch: int, batch: int) -> None:
        """The GradScaler found no finite gradients for many steps: fp32 would have stopped on
        a NaN loss by now, so stop the same way (``NonFiniteLossError``)."""
        lr = float(self.optimizer.param_groups[0]["lr"])
        self._stop_non_finite(math.nan, epoch, batch, self.runner.never_finite_message(lr))

    def _stop_non_finite(self, value: float, epoch: int, batch: int,
                         reason: str | None = None) -> None:
        lr = float(self.optimizer.param_groups[0]["lr"])
        n = len(self.train_batches) if hasattr(self.train_batches, "__len__") else None
        where = f"epoch {epoch}, batch {batch}" + (f" of {n}" if n else "")
        self._nan_message = (
            f"training stopped: the loss is {value} at {where} (lr {lr:.4g}); no step was taken "
            "with it and no checkpoint was written for this epoch. Lower the learning rate or "
            "check the data and the loss." if reason is None else
            f"training stopped at {where}: {reason}. No checkpoint was written for this epoch."
        )
        self._nan_where = {"epoch": epoch, "batch": batch, "lr": lr}
        self.stop_reason = "non_finite"
        self.should_stop = True

    # -- evaluation ----------------------------------------------------------------------------
    def evaluate(self, data, *, batch_size: int = 256) -> dict[str, float]:
        """Mean loss and metrics over ``data`` (an ``(X, y)`` pair or a ``DataLoader``).

        Under ``torch.distributed`` call it on every rank: a pair is split across the ranks and
        the sums and counts are all-reduced, so every rank gets the whole set's numbers.

        Returns:
            ``{"loss": ..., "<metric>": ...}``.
        """
        return self._evaluate_batches(
            as_batches(distributed.shard_pair(data), batch_size, shuffle=False))

    @torch.no_grad()
    def _evaluate_batches(self, batches) -> dict[str, float]:
        # the bare module: no DDP collectives, so ranks may hold different numbers of batches
        model = distributed.unwrap(self.model)
        was_training = model.training
        model.eval()
        losses: list[torch.Tensor] = []
        sizes: list[int] = []
        for metric in self.metrics.values():
            metric.reset()
        try:
            for batch in batches:
                result = self.runner.forward(batch, model=model)
                losses.append(result.loss.detach())
                sizes.append(batch_size_of(result, batch))
                if self.metrics:
                    self._update_metrics(result)
        finally:
            model.train(was_training)
        weights = torch.tensor(sizes, dtype=torch.float64)
        # one device->host transfer; float64 so the mean does not drift
        local = torch.stack([(torch.stack(losses).double().cpu() * weights).sum() if losses
                             else torch.zeros((), dtype=torch.float64), weights.sum()])
        if distributed.is_distributed():
            local = distributed.all_reduce(local, "sum")
        total, count = local.tolist()
        if not count:
            raise ValueError("the evaluation data is empty: it yielded no batch")
        scores = {"loss": total / count}
        # torchmetrics syncs its states across ranks in compute()
        scores.update({name: metric.compute() for name, metric in self.metrics.items()})
        return scores

    def _update_metrics(self, result) -> None:
        _check_metric_inputs(result)
        output = result.output.detach()
        for metric in self.metrics.values():
            metric.update(output, result.target)

    def _check_validation_fits(self) -> None:
        """Run one validation batch before training, so data that does not fit the model fails
        now rather than after a whole training epoch (the RNG state is left untouched).

        With metrics, the probe also checks that the step gives them an output and a target.
        Skipped for tensor pairs shaped like the training pair (per-sample shapes, dtypes,
        devices) when nothing augments the training batches and the default step feeds any
        metrics: whatever fails on those fails on the first training batch already."""
        train, valid = self.train_batches, self.valid_batches
        if self.augment is None and (self.runner.is_default or not self.metrics) \
                and isinstance(train, TensorBatches) \
                and isinstance(valid, TensorBatches) and all(
                _same_sample_kind(a, b) for a, b in ((train.X, valid.X), (train.y, valid.y))):
            return
        result = check_batch_fits(self.runner, valid, "validation data",
                                  model=distributed.unwrap(self.model))
        if result is not None and self.metrics:
            _check_metric_inputs(result)

    @torch.no_grad()
    def predict(self, data, *, batch_size: int = 256) -> torch.Tensor:
        """Model outputs for ``data``, on the CPU: :attr:`output_fn` of ``model(inputs)`` (by
        default the tensor itself, the first element of a tuple, or the ``logits`` of a dict or
        object), concatenated.

        ``data`` is a tensor of inputs, an ``(X, y)`` pair, or a ``DataLoader``/iterable whose
        batches are inputs, ``(inputs, ...)`` tuples, or mappings passed as keyword arguments
        (``model(**batch)``, the Hugging Face convention). Under a mixed precision the outputs
        run under autocast and come back as float32 (as the model's weights are).

        Under ``torch.distributed`` it is local: each rank predicts all of ``data``."""
        if isinstance(data, torch.Tensor):
            chunks: Iterable = (data[i : i + batch_size] for i in range(0, len(data), batch_size))
        else:
            chunks = as_batches(data, batch_size, shuffle=False)
        model = distributed.unwrap(self.model)  # no collectives: any rank may call it alone
        was_training = model.training
        model.eval()
        mixed = self.runner.precision != "32"
        outputs = []
        try:
            for batch in chunks:
                inputs = to_device(batch, self.device)
                with self.runner.autocast():
                    if isinstance(inputs, Mapping):
                        output = model(**inputs)
                    else:
                        output = model(inputs[0] if isinstance(inputs, tuple | list) else inputs)
                output = self.output_fn(output)
                if mixed and output.dtype in (torch.bfloat16, torch.float16):
                    output = output.float()  # autocast's dtype, not the model's: float32 out
                outputs.append(output.cpu())
        finally:
            model.train(was_training)
        if not outputs:
            raise ValueError("predict got empty data")
        return torch.cat(outputs)

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Everything a checkpoint needs for an exact resume. Tensors are live references:
        serialise the result right away (``torch.save``).

        The model's state is the bare module's (no ``module.`` prefix from DDP), so a checkpoint
        loads in one process or under DDP alike. Under ``torch.distributed`` every rank must
        call this: it gathers each rank's RNG state (``"rng_ranks"``; ``"rng"`` is rank 0's).
        """
        data = None
        if isinstance(self.train_batches, TensorBatches):
            data = {"passes": self.train_batches.passes, "seed": self.train_batches.seed}
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "epoch": self.epoch,
            "global_step": self.global_step,
            "epochs": self.epochs,
            "stop_reason": self.stop_reason,  # set when a callback ended the run at this epoch
            "model": distributed.unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "optimizer_type": type(self.optimizer).__name__,
            "schedules": [s.state_dict() for s in self.schedules],
            "scaler": self.runner.state_dict(),
            "callbacks": {key: cb.state_dict() for key, cb in self._keyed_callbacks()},
            "history": self.history.state_dict(),
            "rng": rng_state(),
            "rng_ranks": distributed.gather_objects(rng_state()) if distributed.is_distributed()
            else None,
            "data": data,
            # a DataLoader's own generator= draws its order (and worker seeds): not torch's RNG
            "data_generators": [g.get_state() for g in data_generators(self.train_batches)],
            "augment": self.augment.state_dict() if hasattr(self.augment, "state_dict") else None,
            "extra": dict(extra or {}),
        }

    def _restore(self, resume: str | Path | dict) -> dict[str, Any]:
        if isinstance(resume, dict):
            state, source = resume, "(dict)"
        else:
            state, source = load_checkpoint(resume), str(resume)
        check_model_state(distributed.unwrap(self.model), state["model"], source)
        if state["optimizer_type"] != type(self.optimizer).__name__:
            raise ValueError(
                f"checkpoint {source} was written with optimizer {state['optimizer_type']}, "
                f"this trainer uses {type(self.optimizer).__name__}"
            )
        if len(state["schedules"]) != len(self.schedules):
            raise ValueError(
                f"checkpoint {source} holds {len(state['schedules'])} scheduler state(s), this "
                f"trainer has {len(self.schedules)} scheduler(s)"
            )
        data = state.get("data")
        if data is not None and isinstance(self.train_batches, TensorBatches) \
                and data["seed"] != self.train_batches.seed:
            raise ValueError(
                f"checkpoint {source} was trained with seed={data['seed']}, "
                f"fit got seed={self.train_batches.seed}"
            )
        # the loads that can still fail come first, so a mismatch leaves the model untouched
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as exc:
            raise ValueError(
                f"the optimizer state in checkpoint {source} does not match this optimizer: {exc}"
            ) from exc
        for s, s_state in zip(self.schedules, state["schedules"], strict=True):
            s.load_state_dict(s_state)
        self.runner.load_state_dict(state.get("scaler"))
        distributed.unwrap(self.model).load_state_dict(state["model"])  # checked above
        if data is not None and isinstance(self.train_batches, TensorBatches):
            self.train_batches.passes = data["passes"]
        saved, generators = state.get("data_generators") or [], data_generators(self.train_batches)
        if len(saved) == len(generators):  # the same DataLoader set-up: its order continues
            for generator, generator_state in zip(generators, saved, strict=True):
                generator.set_state(generator_state)
        if state.get("augment") is not None and hasattr(self.augment, "load_state_dict"):
            self.augment.load_state_dict(state["augment"])
        self.history.load_state_dict(state["history"])
        self.epoch, self.global_step = int(state["epoch"]), int(state["global_step"])
        return state

    def _keyed_callbacks(self) -> list[tuple[str, Callback]]:
        """Stable names for the state of each callback: class name, ``#2`` … for repeats."""
        seen: dict[str, int] = {}
        keyed = []
        for cb in self.callbacks:
            name = type(cb).__name__
            seen[name] = seen.get(name, 0) + 1
            keyed.append((name if seen[name] == 1 else f"{name}#{seen[name]}", cb))
        return keyed

    def _load_callback_states(self, states: dict[str, Any]) -> None:
        for key, cb in self._keyed_callbacks():
            if key in states:
                cb.load_state_dict(states[key])

    # -- callbacks -----------------------------------------------------------------------------
    def _default_callbacks(self) -> list[Callback]:
        from lrtune.training.callbacks.schedule_free import auto_callbacks

        defaults = auto_callbacks(self.optimizer, self.callbacks)  # what the optimizer needs
        if self.verbose == 0 or not distributed.is_main():  # one rank prints
            return defaults
        from lrtune.training.callbacks.progress_bar import ProgressBar
        from lrtune.training.callbacks.table import ProgressTable

        stream = sys.stdout
        defaults.append(ProgressTable(stream))
        if self.verbose == 1 and getattr(stream, "isatty", lambda: False)():
            defaults.append(ProgressBar(stream))
        return defaults

    def _call(self, hook: str, logs: dict[str, Any]) -> None:
        for cb in self._active:
            getattr(cb, hook)(self, logs)


def _check_metric_inputs(result) -> None:
    if result.output is None or result.target is None:
        missing = " and ".join(n for n in ("output", "target") if getattr(result, n) is None)
        raise ValueError(
            f"metrics need the model's output and the target, and the step gave no {missing}: "
            "make it return {'loss': ..., 'output': ..., 'target': ...}"
        )


def _same_sample_kind(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape[1:] == b.shape[1:] and a.dtype == b.dtype and a.device == b.device

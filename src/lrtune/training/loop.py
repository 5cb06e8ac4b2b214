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
from lrtune.data.batching import TensorBatches, as_batches
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
    Metric,
    flatten_hyperparams,
    momentum_of,
    read_hyperparams,
    resolve_metrics,
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


def _check_schedule(s: Any) -> Any:
    missing = [a for a in ("interval", "apply", "step", "state_dict", "load_state_dict")
               if not hasattr(s, a)]
    if missing:
        raise TypeError(
            f"schedules must follow lrtune's scheduler protocol (HyperparamScheduler, "
            f"ReduceLROnPlateau); {type(s).__name__} lacks {', '.join(missing)}"
        )
    if s.interval not in ("batch", "epoch"):
        raise ValueError(f"a scheduler's interval must be 'batch' or 'epoch', got {s.interval!r}")
    return s


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
        loss_fn: ``loss_fn(model(x), y)`` returns the mean loss of a batch.
        metrics: names (``"accuracy"``) or ``{name: fn(output, target) -> 0-d tensor}``,
            computed on the validation data (reported as ``valid_<name>``) and by :meth:`evaluate`.
        callbacks: :class:`~lrtune.training.callbacks.Callback` instances.
        schedules: one scheduler or a list (``lrtune.schedules.HyperparamScheduler``,
            ``ReduceLROnPlateau``). ``apply()`` runs at train begin and after a resume; a
            ``"batch"`` scheduler steps after every optimizer step, an ``"epoch"`` scheduler steps
            with the epoch's logs after validation.
        augment: ``augment(x, y) -> (x, y)`` applied to every training batch on the device.
        device: ``"auto"`` (CUDA, MPS, CPU), or any torch device.
        verbose: 0 silent; 1 the per-epoch table plus a live progress bar when stdout is a
            terminal; 2 the table only.

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
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        *,
        metrics: Sequence[str] | Mapping[str, Metric] | None = None,
        callbacks: Iterable[Callback] | None = None,
        schedules: Any = None,
        augment: Augment | None = None,
        device: str | torch.device = "auto",
        verbose: int = 1,
    ) -> None:
        if verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
        self.device = resolve_device(device)
        self.model = model.to(self.device)
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.metrics = resolve_metrics(metrics)
        self.callbacks = list(callbacks or [])
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be Callback instances, got {type(cb).__name__}")
        if schedules is None:
            schedules = []
        elif not isinstance(schedules, list | tuple):
            schedules = [schedules]
        self.schedules = [_check_schedule(s) for s in schedules]
        self.augment = augment
        self.verbose = verbose
        self.history = History()
        self.epoch = 0
        self.global_step = 0
        self.epochs = 0
        self.should_stop = False
        self.stop_reason: str | None = None
        self.messages: list[str] = []
        self.epoch_hparams: dict[str, list[float]] = {}
        self.train_batches: Any = None
        self.valid_batches: Any = None
        self._active: list[Callback] = []

    # -- the loop ------------------------------------------------------------------------------
    def fit(self, train, valid=None, *, epochs: int, batch_size: int = 32,
            resume: str | Path | dict | None = None, seed: int = 0) -> History:
        """Train until ``epochs`` epochs are done in total (also after a resume) or a stop.

        Args:
            train, valid: ``(X, y)`` tensor pairs (batched in memory; the training order is
                reshuffled each epoch from ``seed``) or ``DataLoader`` objects.
            epochs: the total number of epochs of the run.
            batch_size: for tensor pairs.
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
        self.train_batches = as_batches(train, batch_size, shuffle=True, seed=seed,
                                        rank=distributed.rank(),
                                        world_size=distributed.world_size())
        self.valid_batches = None if valid is None else as_batches(
            distributed.shard_pair(valid), batch_size, shuffle=False)
        self.epochs = epochs
        self.history, self.epoch, self.global_step = History(), 0, 0
        self.should_stop, self.stop_reason, self.messages = False, None, []
        self._active = sorted(self._default_callbacks() + self.callbacks, key=lambda c: c.order)
        state = self._restore(resume) if resume is not None else None
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

    def _train_epoch(self, epoch: int) -> float | None:
        """One pass over the training data; the mean loss, or None when it went non-finite."""
        model, optimizer, loss_fn, device, augment = (
            self.model, self.optimizer, self.loss_fn, self.device, self.augment)
        group = optimizer.param_groups[0]
        begin_hooks = [cb for cb in self._active if overrides(cb, "on_batch_begin")]
        end_hooks = [cb for cb in self._active if overrides(cb, "on_batch_end")]
        batch_schedules = [s for s in self.schedules if s.interval == "batch"]
        add_batch = self.history.add_batch
        total, count = 0.0, 0
        batches: Iterable = self.train_batches
        sampler = getattr(batches, "sampler", None)
        if hasattr(sampler, "set_epoch"):  # DistributedSampler: a new, resumable order per epoch
            sampler.set_epoch(epoch)
        sharded = distributed.is_distributed()
        if sharded and not isinstance(batches, TensorBatches) and hasattr(batches, "__len__"):
            # a DataLoader's sampler may give ranks different counts: all stop at the smallest
            batches = itertools.islice(batches, distributed.all_reduce_min(len(batches)))
        model.train()
        for index, batch in enumerate(batches, start=1):
            x, y = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
            if augment is not None:
                x, y = augment(x, y)
            if begin_hooks:
                logs = {"epoch": epoch, "batch": index}
                for cb in begin_hooks:
                    cb.on_batch_begin(self, logs)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            size = len(y)
            if sharded:  # the global mean, so every rank records and decides the same
                value, size = _global_mean(loss, size)
            else:
                value = loss.item()  # the one sync per batch: the record and NaN check need it
            if not math.isfinite(value):
                self._stop_non_finite(value, epoch, index)
                return None
            optimizer.step()
            self.global_step += 1
            total += value * size
            count += size
            add_batch(self.global_step, epoch, index, value, float(group["lr"]), momentum_of(group))
            if end_hooks:
                logs = {"epoch": epoch, "batch": index, "loss": value, "size": size}
                for cb in end_hooks:
                    cb.on_batch_end(self, logs)
            for s in batch_schedules:  # after the hooks, so they see the values this step used
                s.step()
            if self.should_stop:
                break
        if count == 0:
            raise ValueError("the training data is empty: it yielded no batch")
        return total / count

    def _stop_non_finite(self, value: float, epoch: int, batch: int) -> None:
        lr = float(self.optimizer.param_groups[0]["lr"])
        n = len(self.train_batches) if hasattr(self.train_batches, "__len__") else None
        where = f"epoch {epoch}, batch {batch}" + (f" of {n}" if n else "")
        self._nan_message = (
            f"training stopped: the loss is {value} at {where} (lr {lr:.4g}); no step was taken "
            "with it and no checkpoint was written for this epoch. Lower the learning rate or "
            "check the data and the loss."
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
        model, device = distributed.unwrap(self.model), self.device
        was_training = model.training
        model.eval()
        sizes: list[int] = []
        sums: dict[str, list[torch.Tensor]] = {"loss": [], **{k: [] for k in self.metrics}}
        try:
            for batch in batches:
                x = batch[0].to(device, non_blocking=True)
                y = batch[1].to(device, non_blocking=True)
                output = model(x)
                sums["loss"].append(self.loss_fn(output, y).detach())
                for name, fn in self.metrics.items():
                    sums[name].append(torch.as_tensor(fn(output, y)).detach())
                sizes.append(len(y))
        finally:
            model.train(was_training)
        if distributed.is_distributed():
            return self._all_reduce_scores(sums, sizes)
        if not sizes:
            raise ValueError("the evaluation data is empty: it yielded no batch")
        weights = torch.tensor(sizes, dtype=torch.float64)
        # one device->host transfer per quantity; float64 so the mean does not drift
        return {
            name: float((torch.stack(values).double().cpu() * weights).sum() / weights.sum())
            for name, values in sums.items()
        }

    @staticmethod
    def _all_reduce_scores(sums: dict[str, list[torch.Tensor]], sizes: list[int]):
        """Sums and the count over all ranks in one all-reduce (shards may differ in size)."""
        weights = torch.tensor(sizes, dtype=torch.float64)
        local = [(torch.stack(v).double().cpu() * weights).sum() if v
                 else torch.zeros((), dtype=torch.float64) for v in sums.values()]
        *totals, count = distributed.all_reduce(
            torch.stack([*local, weights.sum()]), "sum").tolist()
        if not count:
            raise ValueError("the evaluation data is empty: it yielded no batch")
        return {name: total / count for name, total in zip(sums, totals, strict=True)}

    @torch.no_grad()
    def predict(self, data, *, batch_size: int = 256) -> torch.Tensor:
        """Model outputs for ``data`` (a tensor, ``(X, y)`` or a ``DataLoader``), on the CPU.

        Under ``torch.distributed`` it is local: each rank predicts all of ``data``."""
        if isinstance(data, torch.Tensor):
            chunks: Iterable = (data[i : i + batch_size] for i in range(0, len(data), batch_size))
        elif isinstance(data, tuple | list) and len(data) == 2:
            chunks = (b[0] for b in as_batches(data, batch_size, shuffle=False))
        else:
            chunks = (b[0] if isinstance(b, tuple | list) else b
                      for b in as_batches(data, batch_size, shuffle=False))
        model = distributed.unwrap(self.model)  # no collectives: any rank may call it alone
        was_training = model.training
        model.eval()
        try:
            outputs = [model(x.to(self.device, non_blocking=True)).cpu() for x in chunks]
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
            "callbacks": {key: cb.state_dict() for key, cb in self._keyed_callbacks()},
            "history": self.history.state_dict(),
            "rng": rng_state(),
            "rng_ranks": distributed.gather_objects(rng_state()) if distributed.is_distributed()
            else None,
            "data": data,
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
        distributed.unwrap(self.model).load_state_dict(state["model"])  # checked above
        if data is not None and isinstance(self.train_batches, TensorBatches):
            self.train_batches.passes = data["passes"]
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

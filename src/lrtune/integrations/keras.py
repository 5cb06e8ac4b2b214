"""Keras 3: the range test and lrtune's schedules inside ``model.fit``, on any backend.

- :func:`find_lr` runs the range test on a compiled Keras model and returns the core's
  :class:`~lrtune.finder.result.FinderResult` (rules, verdict, plot, JSON);
- :class:`LRRangeTest` is the callback it is built on, for your own ``fit`` call;
- :class:`KerasSchedule` is an lrtune schedule as a Keras ``LearningRateSchedule``;
- :class:`HyperparamScheduler` drives any optimizer hyperparameter (``learning_rate``,
  ``momentum``, ``beta_1``, ``weight_decay`` …) from lrtune schedules per batch or per epoch.

Only framework glue lives here: the rates (:func:`~lrtune.finder.range_test.lr_at`), the
divergence stop, the smoothing, the rules and the verdict are the core's. Everything goes
through ``keras.ops`` and optimizer variables, so the torch, JAX and TensorFlow backends run the
same code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

try:
    import keras
except ModuleNotFoundError as error:
    if error.name == "keras":
        raise ImportError(
            "lrtune.integrations.keras needs Keras 3: pip install 'lrtune[keras]'"
        ) from None
    raise ImportError(
        f"Keras could not load its backend ({error.name} is not installed): set KERAS_BACKEND "
        "to an installed backend (torch, jax or tensorflow)"
    ) from error

import numpy as np

from lrtune.finder import suggest
from lrtune.finder.divergence import DivergenceTest
from lrtune.finder.range_test import _check_args, analyse, lr_at
from lrtune.finder.result import FinderResult
from lrtune.schedules import config as schedule_config
from lrtune.schedules.primitives import Schedule, check_value

if int(keras.__version__.split(".")[0]) < 3:
    raise ImportError(f"lrtune.integrations.keras needs Keras 3, found {keras.__version__}: "
                      "pip install 'lrtune[keras]'")

__all__ = ["HyperparamScheduler", "KerasSchedule", "LRRangeTest", "find_lr"]


# -- shared glue ---------------------------------------------------------------------------

def _sync(model) -> None:
    """Mid-``fit``, the JAX trainer keeps the state outside the variables; writing it back also
    makes the trainer read the variables again before the next step (a no-op elsewhere)."""
    sync = getattr(model, "jax_state_sync", None)
    if sync is not None:
        sync()


def _is_variable(value) -> bool:
    return isinstance(value, keras.Variable)


def _numpy(value) -> np.ndarray:
    """A copy of a variable's (or tensor's) value, as a numpy array."""
    value = value.value if _is_variable(value) else value
    if hasattr(value, "detach"):
        # torch: keras.ops.convert_to_numpy goes through np.array(tensor), which numpy 2 warns
        # about with torch's __array__; and .numpy() shares memory, hence the copy
        return value.detach().cpu().numpy().copy()
    return np.array(keras.ops.convert_to_numpy(value))


def _check_model(model) -> None:
    """``ValueError`` (one line) when the range test cannot drive this model's training."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a Keras Model (Sequential, functional or subclassed), "
                        f"got {type(model).__name__}")
    optimizer = getattr(model, "optimizer", None)
    if not getattr(model, "compiled", False) or optimizer is None:
        raise ValueError("the model is not compiled: call model.compile(optimizer=..., loss=...) "
                         "before the range test")
    steps = getattr(model, "steps_per_execution", 1)
    if steps != 1:
        raise ValueError(
            f"the range test needs steps_per_execution=1, got {steps}: Keras calls the batch "
            f"hooks once per {steps} steps, so the rate cannot change every step"
        )
    if not _is_variable(optimizer.learning_rate):
        raise ValueError(
            f"{type(optimizer).__name__}'s learning_rate is a LearningRateSchedule (or callable), "
            "not a variable: compile with a float learning_rate for the range test"
        )
    accumulation = getattr(optimizer, "gradient_accumulation_steps", None)
    if accumulation not in (None, 1):
        raise ValueError(f"the range test does not support gradient_accumulation_steps "
                         f"(got {accumulation}): the rate would change between micro-batches")


def _snapshot(model) -> tuple[list, list]:
    """Copies of every model variable (weights, BatchNorm statistics, Dropout's seed-generator
    state) and optimizer variable (iterations, learning rate, slots); the optimizer is built
    first if need be, so that restoring it gives the state a fresh one would start from."""
    optimizer = model.optimizer
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    variables = [*model.variables, *optimizer.variables]
    return variables, [_numpy(v) for v in variables]


def _restore(snapshot) -> None:
    for variable, value in zip(*snapshot, strict=True):
        variable.assign(value)


def _loss_tracker(model):
    """The compiled loss's running mean (a ``Mean`` named ``loss``), or ``None``."""
    for metric in getattr(model, "metrics", []):
        if metric.name == "loss" and isinstance(metric, keras.metrics.Mean):
            return metric
    return None


# -- the range test ------------------------------------------------------------------------

class LRRangeTest(keras.callbacks.Callback):
    """The learning-rate range test as a Keras callback.

    Before every batch it writes the sweep's rate (``start_lr`` to ``end_lr`` over
    ``num_iters`` steps) into the optimizer's ``learning_rate`` variable; after every batch it
    recovers that batch's own loss from ``logs["loss"]`` (which Keras reports as a running mean
    since the epoch began, weighted by batch size) and stops training (``model.stop_training``)
    once ``num_iters`` steps are done, the loss is not finite, or it diverged. At the end of
    ``fit`` it puts the weights and every optimizer variable back (``restore=True``) and stores
    the core's :class:`~lrtune.finder.result.FinderResult` in ``result``.

    Give ``fit`` at least ``num_iters`` batches (epochs may be any length); a ``fit`` that ends
    sooner ends the sweep there (``stop_reason="finished"``). A step that a loss-scale optimizer
    (mixed precision) skips is not a point and the rate stays for the next batch, as in the
    core's sweep. The optimizer needs a float
    learning rate, and the model ``steps_per_execution=1``. Put the test last in ``callbacks``:
    a callback after it that sets the rate every batch is refused (the curve would record the
    wrong rates), and one that sets the weights at the end of ``fit`` would undo the restore
    (``EarlyStopping(restore_best_weights=True)``; before the test it is harmless).

    Args:
        start_lr, end_lr, num_iters, mode: the sweep (as in :func:`lrtune.find_lr`).
        smooth: smoothing window as a fraction of the sweep's points (0 turns it off).
        diverge_factor: as in :func:`lrtune.find_lr` (the core's divergence test).
        rule: the suggestion rule behind ``result.suggested_lr``.
        restore: put the weights and the optimizer's variables back at the end of ``fit``.

    Raises (from ``fit``):
        ValueError: the model or optimizer cannot be driven, or another callback set the
            learning rate during the test (one line says why; raised after restoring).
        FloatingPointError: the loss is not finite at the first step (after restoring).
    """

    def __init__(self, start_lr: float = 1e-7, end_lr: float = 10.0, num_iters: int = 300,
                 mode: str = "exp", *, smooth: float = 0.05, diverge_factor: float = 4.0,
                 rule: str = suggest.DEFAULT_RULE, restore: bool = True) -> None:
        super().__init__()
        _check_args(start_lr, end_lr, num_iters, mode, 1, smooth, diverge_factor, 1, 1)
        if rule not in suggest.RULES:
            raise ValueError(f"rule must be one of {', '.join(suggest.RULES)}, got {rule!r}")
        self.start_lr, self.end_lr, self.num_iters, self.mode = start_lr, end_lr, num_iters, mode
        self.smooth, self.diverge_factor, self.rule, self.restore = (smooth, diverge_factor,
                                                                     rule, restore)
        self.settings: dict[str, Any] = {}  # extra entries for result.settings (find_lr's)
        self.result: FinderResult | None = None

    def _rate(self, step: int) -> float:
        return lr_at(step, start_lr=self.start_lr, end_lr=self.end_lr,
                     num_iters=self.num_iters, mode=self.mode)

    def on_train_begin(self, logs=None) -> None:
        _check_model(self.model)
        self.result = None
        self.snapshot_ = _snapshot(self.model) if self.restore else None
        self.tracker_ = _loss_tracker(self.model)
        alpha = 2.0 / (max(1.0, self.smooth * self.num_iters) + 1.0)  # as the core's sweep
        self.monitor_ = DivergenceTest(alpha, self.diverge_factor)
        self.step_, self.lr_ = 0, self.start_lr
        self.iterations_ = int(_numpy(self.model.optimizer.iterations))
        self.lrs_: list[float] = []
        self.losses_: list[float] = []
        self.stop_reason_: str | None = None
        self.error_: Exception | None = None

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self.seen_ = (0.0, 0.0)  # Keras resets the running mean here: (total, weight) so far

    def on_train_batch_begin(self, batch, logs=None) -> None:
        if self.stop_reason_ is not None:
            return
        self.lr_ = self._rate(self.step_)
        _sync(self.model)
        self.model.optimizer.learning_rate.assign(self.lr_)

    def _batch_loss(self, logs) -> float | None:
        """This batch's loss from the running mean ``M_k = T_k / W_k`` since the epoch began:
        ``(T_k - T_{k-1}) / (W_k - W_{k-1})``, with the total ``T`` and weight ``W`` read from
        the loss tracker, whatever a custom ``train_step`` logs as ``loss`` (without a tracker,
        ``logs["loss"]`` with equal weights); ``None`` when the tracker did not count it."""
        if self.tracker_ is None:
            weight = self.seen_[1] + 1.0
            total = float(logs["loss"]) * weight
        else:
            _sync(self.model)
            total = float(_numpy(self.tracker_.total))
            weight = float(_numpy(self.tracker_.count))
        prev_total, prev_weight = self.seen_
        if weight <= prev_weight:
            return None
        self.seen_ = (total, weight)
        return (total - prev_total) / (weight - prev_weight)

    def _refuse(self, message: str) -> None:
        """Stop the fit; ``on_train_end`` restores, then raises ``ValueError(message)``."""
        self.error_ = ValueError(message)
        self.stop_reason_ = "error"

    def on_train_batch_end(self, batch, logs=None) -> None:
        if self.stop_reason_ is not None:
            return
        if not logs or "loss" not in logs:
            raise ValueError("LRRangeTest needs logs['loss'] from the train step")
        loss = self._batch_loss(logs)
        step, lr = self.step_, self.lr_
        optimizer = self.model.optimizer
        _sync(self.model)
        used = float(_numpy(optimizer.learning_rate))
        iterations, previous = int(_numpy(optimizer.iterations)), self.iterations_
        self.iterations_ = iterations
        if loss is None:
            self._refuse("the train step did not update the model's 'loss' metric, whose "
                         "running mean gives each batch's loss: a custom train_step must call "
                         "its update_state(loss), as Keras' own does")
        elif not math.isclose(used, lr, rel_tol=1e-6):
            # a callback after this one set the rate: the point would be recorded at the wrong lr
            self._refuse(f"another callback set the optimizer's learning_rate during the range "
                         f"test ({used:.3g} instead of the sweep's {lr:.3g} at step {step}): "
                         "leave learning-rate callbacks out of the fit that runs the test")
        elif not math.isfinite(loss):
            self.step_ += 1
            if step == 0:
                self.error_ = FloatingPointError(
                    f"the loss is {loss} at the first step (lr={lr:.3g}); lower start_lr or "
                    "check the data, the model and the loss")
            self.stop_reason_ = "non_finite"
        elif iterations == previous:
            pass  # a loss-scale optimizer skipped the step (gradients overflowed): no point,
            # and the rate stays for the next batch, as in the core's sweep
        else:
            self.step_ += 1
            self.lrs_.append(lr)
            self.losses_.append(loss)
            if self.monitor_.update(loss):
                self.stop_reason_ = "diverged"
            elif self.step_ == self.num_iters:
                self.stop_reason_ = "finished"
        if self.stop_reason_ is not None:
            self.model.stop_training = True

    def on_train_end(self, logs=None) -> None:
        if self.snapshot_ is not None:
            _restore(self.snapshot_)
            self.snapshot_ = None
        if self.error_ is not None:
            raise self.error_
        curve = dict(lrs=self.lrs_, losses=self.losses_, train_lrs=self.lrs_,
                     train_losses=self.losses_, stop_reason=self.stop_reason_ or "finished",
                     stop_lr=self.lr_, monitor="train")
        settings = dict(start_lr=self.start_lr, end_lr=self.end_lr, num_iters=self.num_iters,
                        mode=self.mode, smooth=self.smooth, diverge_factor=self.diverge_factor,
                        optimizer=type(self.model.optimizer).__name__,
                        framework=f"keras {keras.__version__} ({keras.backend.backend()})",
                        **self.settings)
        self.result = analyse(curve, rule=self.rule, smooth=self.smooth, settings=settings)


def _leaves(x) -> list:
    return [leaf for leaf in keras.tree.flatten(x) if leaf is not None]


def _is_arrays(x) -> bool:
    """Arrays or tensors (or a dict/list of them), as opposed to a dataset or generator."""
    leaves = _leaves(x)
    return bool(leaves) and all(hasattr(leaf, "shape") and hasattr(leaf, "__getitem__")
                                for leaf in leaves)


def _sweep_order(n: int, count: int, *, shuffle: bool, seed: int) -> np.ndarray:
    """``count`` sample indices: passes over ``range(n)``, each a new seeded permutation."""
    rng = np.random.default_rng(seed)
    passes = -(-count // n)
    order = [rng.permutation(n) if shuffle else np.arange(n) for _ in range(passes)]
    return np.concatenate(order)[:count]


def find_lr(model, x, y=None, *, batch_size: int = 32, start_lr: float = 1e-7,
            end_lr: float = 10.0, num_iters: int = 300, mode: str = "exp",
            smooth: float = 0.05, diverge_factor: float = 4.0,
            rule: str = suggest.DEFAULT_RULE, restore: bool = True, shuffle: bool = True,
            seed: int = 0, verbose: int = 0) -> FinderResult:
    """Run the learning-rate range test on a compiled Keras model with ``model.fit``.

    Real training steps (training mode: Dropout on, BatchNorm updating) with the model's own
    loss, metrics and optimizer; the rate is written to the optimizer's ``learning_rate``
    variable before each batch (see :class:`LRRangeTest`).

    Args:
        model: a compiled Keras model whose optimizer has a float learning rate.
        x, y: what ``model.fit`` accepts: arrays or tensors (or dicts/lists of them), or a
            dataset (``tf.data``, ``keras.utils.PyDataset``, a torch ``DataLoader``, a
            generator) yielding ``(x, y)`` batches, with ``y=None``. Arrays are batched with
            ``batch_size`` in a seeded order (a new permutation each pass, ``shuffle=False``
            keeps the given order); ``num_iters * batch_size`` samples are gathered once, and
            the global RNGs are not touched. A dataset is iterated as it is, for as many epochs
            as the sweep needs (a dataset without ``len`` must yield ``num_iters`` batches).
        batch_size: batch size for arrays (ignored for datasets, which batch themselves).
        start_lr, end_lr, num_iters, mode, smooth, diverge_factor, rule: as in
            :func:`lrtune.find_lr`.
        restore: put the weights and the optimizer's variables back afterwards.
        shuffle, seed: the order of array inputs.
        verbose: ``model.fit``'s progress display.

    Returns:
        The core's :class:`~lrtune.finder.result.FinderResult`.

    Raises:
        TypeError: ``model`` is not a Keras ``Model``.
        ValueError: bad arguments, an uncompiled model, ``steps_per_execution > 1``, an
            optimizer driven by a ``LearningRateSchedule``, or empty data.
        FloatingPointError: the loss is not finite at the first step.
    """
    _check_args(start_lr, end_lr, num_iters, mode, batch_size, smooth, diverge_factor, 1, 1)
    callback = LRRangeTest(start_lr, end_lr, num_iters, mode, smooth=smooth,
                           diverge_factor=diverge_factor, rule=rule, restore=restore)
    _check_model(model)
    # one pass more than the sweep needs, for the steps a loss-scale optimizer skips (mixed
    # precision): they are no points; the callback stops the fit after num_iters points
    fit_args: dict[str, Any] = dict(callbacks=[callback], verbose=verbose, shuffle=False)
    if _is_arrays(x):
        n = int(_leaves(x)[0].shape[0])
        if n == 0:
            raise ValueError("x is empty: it holds no sample")
        order = _sweep_order(n, num_iters * batch_size, shuffle=shuffle, seed=seed)
        if shuffle or len(order) != n:  # else the arrays are used as they are, uncopied
            x, y = (None if part is None else keras.tree.map_structure(lambda a: a[order], part)
                    for part in (x, y))  # y=None: a model with its own losses (add_loss)
        fit_args.update(batch_size=batch_size, epochs=2)
        callback.settings.update(batch_size=batch_size, shuffle=shuffle, seed=seed)
    else:
        if y is not None:
            raise ValueError("y must be None when x is a dataset (it yields (x, y) batches)")
        try:
            per_pass = len(x)
        except TypeError:
            per_pass = None
        if per_pass == 0:
            raise ValueError("x is empty: it yields no batch")
        if per_pass is None:
            fit_args.update(epochs=1, steps_per_epoch=num_iters)
        else:
            fit_args.update(epochs=-(-num_iters // per_pass) + 1)
    try:
        model.fit(x, y, **fit_args)
    finally:  # on_train_end restores; not when fit was interrupted (an error, Ctrl-C)
        snapshot = getattr(callback, "snapshot_", None)
        if snapshot is not None:
            _restore(snapshot)
    if callback.result is None or not callback.lrs_:
        raise ValueError("x is empty: it yielded no batch")
    return callback.result


# -- schedules -----------------------------------------------------------------------------

@keras.saving.register_keras_serializable(package="lrtune")
class KerasSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """An lrtune schedule (``step -> value``) as a Keras ``LearningRateSchedule``.

    The values of steps ``0 .. total_steps - 1`` are tabulated once (float32) and looked up
    with ``keras.ops``, so the schedule works inside compiled train steps (JAX, TensorFlow)
    where a Python function of the step could not run; later steps keep the last value. The
    step is the optimizer's ``iterations`` (one per optimizer update), which a checkpoint of
    the optimizer restores. ``get_config`` describes lrtune's own schedule classes as plain
    data (see :mod:`lrtune.schedules.config`), so a model saved with it loads again.

    Args:
        schedule: a schedule from :mod:`lrtune.schedules`, or any callable ``step -> value``
            (a custom callable works but cannot be saved).
        total_steps: the number of optimizer steps to tabulate (the planned training length).

    Examples:
        >>> from lrtune.schedules import one_cycle
        >>> lr = KerasSchedule(one_cycle(0.1, total_steps=100), total_steps=100)
        >>> optimizer = keras.optimizers.SGD(learning_rate=lr, momentum=0.9)
        >>> round(float(lr(0)), 6), round(float(lr(29)), 6)
        (0.004, 0.1)
    """

    def __init__(self, schedule: Schedule, total_steps: int) -> None:
        if not callable(schedule):
            raise ValueError(f"schedule must be a callable step -> value, got {schedule!r}")
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(f"total_steps must be an integer > 0, got {total_steps!r}")
        self.schedule, self.total_steps = schedule, total_steps
        self.values = np.array([check_value(f"the schedule's value at step {t}", schedule(t))
                                for t in range(total_steps)], dtype="float32")

    def __call__(self, step):
        index = keras.ops.clip(keras.ops.cast(step, "int32"), 0, self.total_steps - 1)
        return keras.ops.take(keras.ops.convert_to_tensor(self.values), index)

    def get_config(self) -> dict[str, Any]:
        return {"schedule": schedule_config.to_config(self.schedule),
                "total_steps": self.total_steps}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> KerasSchedule:
        return cls(schedule_config.from_config(config["schedule"]), config["total_steps"])


_ALIASES = {"lr": "learning_rate"}


def _attribute(optimizer, key: str) -> str:
    """The optimizer attribute behind ``key``: ``lr`` is ``learning_rate``; ``momentum`` is
    ``beta_1`` on optimizers without momentum (Adam, AdamW, Nadam …), as in the core."""
    name = _ALIASES.get(key, key)
    if name == "momentum" and not hasattr(optimizer, "momentum") and hasattr(optimizer, "beta_1"):
        name = "beta_1"
    kind = type(optimizer).__name__
    value = getattr(optimizer, name, None)
    if name == "learning_rate" and not _is_variable(value):
        raise ValueError(f"{kind}'s learning_rate is a LearningRateSchedule (or callable): "
                         "give the optimizer a float learning_rate to schedule it here")
    if _is_variable(value):
        return name
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{kind} has no float hyperparameter {key!r} (its {name} is {value!r}); "
                         "create the optimizer with a number for it")
    if name == "momentum" and value == 0:
        # SGD builds no velocity slots with momentum=0: there would be nothing to apply it to
        raise ValueError(f"{kind} was created with momentum=0: create it with momentum > 0 to "
                         "schedule momentum")
    return name


class HyperparamScheduler(keras.callbacks.Callback):
    """Apply lrtune schedules to any optimizer hyperparameter during ``fit``.

    Keras optimizers keep ``learning_rate`` in a variable, which is assigned; other
    hyperparameters (``momentum``, ``beta_1``, ``weight_decay``, ``epsilon`` …) are plain Python
    floats, which the torch backend reads at every step but which JAX and TensorFlow compile
    into the train step: after such a value changes, the train step is compiled again
    (``model.make_train_function(force=True)``). That costs one retrace per change — nothing per
    epoch, but per batch on those backends prefer ``interval="epoch"`` or ``run_eagerly=True``.

    The time of a schedule is the epoch index (``interval="epoch"``, so ``fit(initial_epoch=k)``
    resumes it) or the optimizer's ``iterations`` (``"batch"``: the optimizer steps taken, which
    a checkpoint restores). ``momentum`` means ``beta_1`` on Adam-like optimizers, and ``lr``
    means ``learning_rate``, so the core's presets plug in unchanged.

    Args:
        schedules: ``{"learning_rate": schedule, "momentum": schedule, ...}``.
        interval: ``"batch"`` (before every step) or ``"epoch"`` (before every epoch).

    Examples:
        Seed 004: learning rate 0.03 -> 0.0001 and momentum 0.9 -> 0.999 over 100 epochs::

            from lrtune.schedules import linspace
            model.fit(x, y, epochs=100, callbacks=[HyperparamScheduler(
                linspace(100, lr=(0.03, 1e-4), momentum=(0.9, 0.999)), interval="epoch")])
    """

    def __init__(self, schedules: Mapping[str, Schedule], interval: str = "batch") -> None:
        super().__init__()
        if interval not in ("batch", "epoch"):
            raise ValueError(f"interval must be 'batch' or 'epoch', got {interval!r}")
        from lrtune.schedules.hyperparams import check_schedules

        self.schedules, self.interval = check_schedules(schedules), interval

    def _optimizer(self):
        """The optimizer whose hyperparameters apply: under mixed precision, the one inside the
        ``LossScaleOptimizer`` (which shares its learning rate but has no momentum etc.)."""
        optimizer = self.model.optimizer
        return getattr(optimizer, "inner_optimizer", optimizer)

    def on_train_begin(self, logs=None) -> None:
        optimizer = self._optimizer()
        self.targets_ = {key: _attribute(optimizer, key) for key in self.schedules}
        # JAX and TensorFlow compile Python floats into the train step; torch reads them
        self.retrace_ = keras.backend.backend() != "torch" and not self.model.run_eagerly

    def values(self) -> dict[str, float]:
        """``{key: value}`` in force in the optimizer now."""
        optimizer = self._optimizer()
        return {key: float(_numpy(getattr(optimizer, name)))
                for key, name in self.targets_.items()}

    def _apply(self, t: int) -> None:
        optimizer, changed = self._optimizer(), False
        _sync(self.model)
        for key, name in self.targets_.items():
            value = check_value(f"the schedule for {key!r} at step {t}", self.schedules[key](t))
            current = getattr(optimizer, name)
            if _is_variable(current):
                current.assign(value)
            elif current != value:
                setattr(optimizer, name, value)
                changed = True
        if changed and self.retrace_:
            self.model.make_train_function(force=True)

    def on_epoch_begin(self, epoch, logs=None) -> None:
        if self.interval == "epoch":
            self._apply(epoch)

    def on_train_batch_begin(self, batch, logs=None) -> None:
        if self.interval == "batch":
            _sync(self.model)
            step = int(_numpy(self.model.optimizer.iterations))
            self._apply(step)

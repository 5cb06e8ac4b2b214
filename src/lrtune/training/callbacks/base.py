"""The no-op base every callback builds on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lrtune.training.metrics import BUILTIN_METRICS, metric_direction, metric_name


class Callback:
    """Hooks the :class:`~lrtune.training.loop.Trainer` calls with the trainer and a logs dict.

    Override the hooks you need; each takes ``(trainer, logs, **kwargs)`` and returns nothing.
    Settings are stored as given; per-run state carries a trailing underscore and is reset in
    :meth:`on_train_begin`. To stop training set ``trainer.should_stop = True`` (never raise).
    A stateful callback returns its state from :meth:`state_dict` (plain values and tensors only)
    so a checkpoint captures it and a resumed run continues exactly.

    Attributes:
        order: callbacks run in ascending ``order`` (stable for ties). Checkpoint writers run
            last (``order = 100``) so the state they save includes every other callback's update.

    Hook sequence of one epoch: ``on_epoch_begin`` → per batch ``on_batch_begin`` /
    ``on_batch_end`` → ``on_validation_begin`` / ``on_validation_end`` (when there is
    validation data) → ``on_epoch_end``.
    Batch logs hold ``batch`` (1-based within the epoch), ``loss`` and ``size``; epoch logs are
    the epoch's history record.
    """

    order: int = 0

    def on_train_begin(self, trainer, logs: dict[str, Any], **kwargs) -> None:
        """Before the first epoch (also after a resume; ``logs["initial_epoch"]`` says where)."""

    def on_train_end(self, trainer, logs: dict[str, Any], **kwargs) -> None:
        """After the last epoch, however training ended (finished, stopped, error, interrupt)."""

    def on_epoch_begin(self, trainer, logs: dict[str, Any], **kwargs) -> None:
        """Before the first batch of an epoch."""

    def on_epoch_end(self, trainer, logs: dict[str, Any], **kwargs) -> None:
        """After training and validation of an epoch; ``logs`` is its history record."""

    def on_batch_begin(self, trainer, logs: dict[str, Any], **kwargs) -> None:
        """Before the forward pass of a training batch."""

    def on_batch_end(self, trainer, logs: dict[str, Any], **kwargs) -> None:
        """After the optimizer step of a training batch (hyperparameters are the ones it used)."""

    def on_validation_begin(self, trainer, logs: dict[str, Any], **kwargs) -> None:
        """After the training batches of an epoch, just before its validation pass."""

    def on_validation_end(self, trainer, logs: dict[str, Any], **kwargs) -> None:
        """After the validation pass of an epoch; ``logs`` holds ``valid_loss`` and metrics."""

    def state_dict(self) -> dict[str, Any]:
        """Per-run state for checkpoints (empty for stateless callbacks)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


def overrides(callback: Callback, hook: str) -> bool:
    """Whether ``callback`` implements ``hook`` (the trainer skips no-op batch hooks entirely).

    Examples:
        >>> class Noisy(Callback):
        ...     def on_batch_end(self, trainer, logs, **kwargs):
        ...         pass
        >>> overrides(Noisy(), "on_batch_end"), overrides(Noisy(), "on_batch_begin")
        (True, False)
    """
    return getattr(type(callback), hook, None) is not getattr(Callback, hook)


def monitor_is_better(mode: str, current: float, best: float, min_delta: float = 0.0) -> bool:
    """``current`` beats ``best`` by more than ``min_delta`` (NaN never does).

    Examples:
        >>> monitor_is_better("min", 0.5, 0.6), monitor_is_better("min", 0.5, 0.6, 0.2)
        (True, False)
        >>> monitor_is_better("max", 0.9, 0.8), monitor_is_better("max", float("nan"), 0.8)
        (True, False)
    """
    if mode == "min":
        return current < best - min_delta
    return current > best + min_delta


def resolve_mode(mode: str, monitor: str, metrics: Mapping[str, Any] | None = None) -> str:
    """``mode`` itself, or for ``"auto"``: :func:`~lrtune.training.metrics.metric_direction`.

    Raises:
        ValueError: a mode other than min/max/auto, or ``"auto"`` for a name whose direction
            is unknown (the message asks for ``mode="min"`` or ``"max"``).

    Examples:
        >>> resolve_mode("auto", "valid_loss"), resolve_mode("auto", "valid_r2")
        ('min', 'max')
    """
    check_mode(mode)
    return mode if mode != "auto" else metric_direction(monitor, metrics)


def check_mode(mode: str) -> None:
    """A ValueError unless ``mode`` is ``"min"``, ``"max"`` or ``"auto"``."""
    if mode not in ("min", "max", "auto"):
        raise ValueError(f"mode must be 'min', 'max' or 'auto', got {mode!r}")


def construction_mode(mode: str, monitor: str) -> str | None:
    """The mode a monitoring callback can fix when constructed, or None to fix it at train begin.

    ``valid_<name>`` / ``train_<name>`` may be a trainer metric whose object knows its direction
    (it wins over the name tables), so ``"auto"`` for those is resolved in ``on_train_begin``
    against ``trainer.metrics``; an unknown name fails there, before any training. Any other
    unknown name cannot come from a metric and fails here.

    Examples:
        >>> construction_mode("auto", "valid_loss"), construction_mode("auto", "valid_custom")
        ('min', None)
        >>> construction_mode("min", "valid_custom")
        'min'
    """
    check_mode(mode)
    if mode != "auto" or monitor in ("valid_loss", "train_loss"):
        return resolve_mode(mode, monitor)
    if metric_name(monitor) != monitor:
        return metric_direction(monitor, strict=False)
    return resolve_mode(mode, monitor)


def check_monitor_has_data(trainer, monitor: str, owner: str) -> None:
    """At train begin: a ``valid_*`` monitor needs validation data, and ``valid_<name>`` of a
    built-in metric needs that metric among the Trainer's, else ``fit`` would fail only at the
    end of the first epoch (a ValueError naming ``owner`` and the monitor)."""
    if not monitor.startswith("valid_"):
        return
    if getattr(trainer, "valid_batches", True) is None:
        raise ValueError(f"{owner} monitors {monitor!r}, but fit() got no validation data; "
                         "pass valid data to fit() or monitor a train_ value")
    name, metrics = metric_name(monitor), getattr(trainer, "metrics", None)
    if isinstance(metrics, Mapping) and name in BUILTIN_METRICS and name not in metrics:
        raise ValueError(f"{owner} monitors {monitor!r}, but the Trainer computes no {name!r} "
                         f"(metrics: {', '.join(metrics) or 'none'}); pass "
                         f"metrics=[{name!r}, ...] to the Trainer")


def monitored_value(logs: dict[str, Any], monitor: str, owner: str) -> float:
    """``logs[monitor]`` as a float, or a ValueError that lists what the logs do hold."""
    if monitor not in logs or logs[monitor] is None:
        have = ", ".join(sorted(k for k, v in logs.items() if isinstance(v, int | float)))
        raise ValueError(
            f"{owner} monitors {monitor!r}, which the epoch logs do not have (they have: {have}); "
            "pass validation data or choose another monitor"
        )
    return float(logs[monitor])

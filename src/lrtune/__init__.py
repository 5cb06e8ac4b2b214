"""lrtune: tune the learning rate and the hyperparameters that move with it.

Heavy modules (torch, matplotlib) load only when a name that needs them is first used, so
``import lrtune`` and ``lrtune --help`` stay fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "find_lr": "lrtune.finder.range_test",
    "FinderResult": "lrtune.finder.result",
    "HyperparamScheduler": "lrtune.schedules.hyperparams",
    "ReduceLROnPlateau": "lrtune.schedules.hyperparams",
    "TorchScheduler": "lrtune.schedules.torch_compat",
    "named_schedule": "lrtune.schedules.presets",
    "plot_schedule": "lrtune.schedules.preview",
    "load_dataset": "lrtune.data",
    "make_augment": "lrtune.data.augment",
    "read_idx": "lrtune.data.idx",
    "Trainer": "lrtune.training.loop",
    "NonFiniteLossError": "lrtune.training.loop",
    "History": "lrtune.training.history",
    "Callback": "lrtune.training.callbacks.base",
    "EarlyStopping": "lrtune.training.callbacks.early_stopping",
    "Checkpoint": "lrtune.training.callbacks.checkpoint",
    "TensorBoard": "lrtune.training.callbacks.tensorboard",
    "ProgressTable": "lrtune.training.callbacks.table",
    "ProgressBar": "lrtune.training.callbacks.progress_bar",
    "load_checkpoint": "lrtune.training.checkpoint_io",
    "load_trained": "lrtune.trained",
    "sweep": "lrtune.confirmation.core",
    "auto_lr": "lrtune.auto",
    "AutoLRResult": "lrtune.auto",
    "SweepResult": "lrtune.confirmation.result",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lrtune' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

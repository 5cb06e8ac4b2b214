"""Training: :class:`Trainer`, its :class:`History`, callbacks and checkpoint files."""

from lrtune.training.callbacks import (
    Callback,
    Checkpoint,
    EarlyStopping,
    ProgressBar,
    ProgressTable,
    ScheduleFreeMode,
    TensorBoard,
)
from lrtune.training.checkpoint_io import load_checkpoint
from lrtune.training.history import History
from lrtune.training.loop import NonFiniteLossError, Trainer

__all__ = [
    "Callback",
    "Checkpoint",
    "EarlyStopping",
    "History",
    "NonFiniteLossError",
    "ProgressBar",
    "ProgressTable",
    "ScheduleFreeMode",
    "TensorBoard",
    "Trainer",
    "load_checkpoint",
]

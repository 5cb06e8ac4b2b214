"""Callbacks for :class:`~lrtune.training.loop.Trainer`, one per module."""

from lrtune.training.callbacks.base import Callback
from lrtune.training.callbacks.checkpoint import Checkpoint
from lrtune.training.callbacks.early_stopping import EarlyStopping
from lrtune.training.callbacks.progress_bar import ProgressBar
from lrtune.training.callbacks.schedule_free import ScheduleFreeMode
from lrtune.training.callbacks.table import ProgressTable
from lrtune.training.callbacks.tensorboard import TensorBoard

__all__ = ["Callback", "Checkpoint", "EarlyStopping", "ProgressBar", "ProgressTable",
           "ScheduleFreeMode", "TensorBoard"]

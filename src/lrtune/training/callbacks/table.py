"""ProgressTable: one row per epoch, like seed 004's ``Epoch | Train loss | Valid loss | …``."""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from lrtune import distributed
from lrtune.training.callbacks.base import Callback
from lrtune.training.metrics import metric_direction

SHORT_NAMES = {"accuracy": "acc"}


@dataclass(frozen=True)
class Column:
    title: str
    key: str
    kind: str  # "int", "loss", "ratio", "metric", "hparam", "seconds"
    best: str | None = None  # "min" / "max": mark the best value so far with "*"

    @property
    def width(self) -> int:
        return max(len(self.title), {"int": 5, "seconds": 6, "hparam": 8}.get(self.kind, 10))


def format_value(value: Any, kind: str) -> str:
    """One cell's text.

    Examples:
        >>> format_value(0.004216, "loss"), format_value(1.055011, "ratio")
        ('0.004216', '1.0550')
        >>> format_value(0.03, "hparam"), format_value(12345.6, "loss")
        ('0.03', '1.235e+04')
        >>> format_value(float("nan"), "loss"), format_value(0.5, "seconds")
        ('nan', '0.50s')
    """
    if value is None:
        return "-"
    if kind == "int":
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if kind == "loss":
        return f"{value:.6f}" if abs(value) < 1e4 else f"{value:.4g}"
    if kind in ("ratio", "metric"):
        return f"{value:.4f}"
    if kind == "seconds":
        return f"{value:.2f}s"
    return f"{value:.4g}"


def table_columns(has_valid: bool, metrics: Mapping[str, Any], hparams: list[str]) -> list[Column]:
    """The table's columns for a run: valid columns only with validation data.

    A metric whose direction is unknown gets no best-so-far mark.
    """
    columns = [Column("Epoch", "epoch", "int"), Column("Train loss", "train_loss", "loss", "min")]
    if has_valid:
        columns += [Column("Valid loss", "valid_loss", "loss", "min"),
                    Column("Train/Val", "train_valid_ratio", "ratio")]
        columns += [Column(f"Valid {SHORT_NAMES.get(m, m)}", f"valid_{m}", "metric",
                           metric_direction(m, metrics, strict=False)) for m in metrics]
    columns += [Column(name, name, "hparam") for name in ("lr", "momentum") if name in hparams]
    if "effective_lr" in hparams:  # Prodigy, D-Adaptation: the rate they actually step with
        columns.insert(-1 if "momentum" in hparams else len(columns),
                       Column("d*lr", "effective_lr", "hparam"))
    columns.append(Column("Dur", "duration", "seconds"))
    return columns


class ProgressTable(Callback):
    """Print the per-epoch table; a ``*`` marks a value that is the best so far.

    Rows are plain text, so the table reads the same on a terminal, in a file or in a pipe.
    The :class:`~lrtune.training.loop.Trainer` adds it for ``verbose >= 1``.

    Args:
        stream: where to print (default: ``sys.stdout`` when training starts).
    """

    order = 90  # after the callbacks that decide things, before the checkpoint writer

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self.columns_: list[Column] = []

    def _print(self, text: str) -> None:
        if distributed.is_main():  # under DDP every rank holds the same rows; one prints them
            print(text, file=self.stream_, flush=True)

    def on_train_begin(self, trainer, logs: dict[str, Any], **kwargs) -> None:
        from lrtune.training.metrics import read_hyperparams

        self.stream_ = self.stream or sys.stdout
        self.columns_ = table_columns(trainer.valid_batches is not None, trainer.metrics,
                                      list(read_hyperparams(trainer.optimizer)))
        self._print(" | ".join(c.title.center(c.width) for c in self.columns_))
        self._print("-|-".join("-" * c.width for c in self.columns_))
        for record in trainer.history.epochs:  # a resumed run shows the epochs it inherited
            self._print(self.row(trainer.history.epochs, record))
        if logs.get("initial_epoch"):
            self._print(f"(resumed after epoch {logs['initial_epoch']})")

    def row(self, records: list[dict[str, Any]], record: dict[str, Any]) -> str:
        """The text of ``record``'s row; ``records`` are all rows so far, for the best marks."""
        upto = records[: records.index(record) + 1] if record in records else [*records, record]
        cells = []
        for c in self.columns_:
            text = format_value(record.get(c.key), c.kind)
            value = record.get(c.key)
            if c.best and value is not None and math.isfinite(value):
                seen = [r[c.key] for r in upto if r.get(c.key) is not None]
                best = min(seen) if c.best == "min" else max(seen)
                text += "*" if value == best else " "
            cells.append(text.rjust(c.width))
        return " | ".join(cells)

    def on_epoch_end(self, trainer, logs: dict[str, Any], **kwargs) -> None:
        self._print(self.row(trainer.history.epochs, logs))

    def on_train_end(self, trainer, logs: dict[str, Any], **kwargs) -> None:
        if not hasattr(self, "stream_"):
            return
        for message in trainer.messages:
            self._print(message)

"""History: the per-epoch and per-batch records of a run, the single source of truth for logs."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

BATCH_FIELDS = ("step", "epoch", "batch", "loss", "lr", "momentum")


def _json_safe(value: Any) -> Any:
    """JSON has no NaN or infinity: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


class History:
    """What a run measured: one dict per epoch and one row per optimizer step.

    Epoch records hold ``epoch`` (1-based), ``train_loss``, ``valid_loss``,
    ``train_valid_ratio``, ``valid_<metric>``, the hyperparameters in force during the epoch
    (``lr``, ``momentum``, ``weight_decay`` of the first param group; ``lr_group1`` … for the
    others) and ``duration`` in seconds. Batch records hold ``step`` (global, 1-based),
    ``epoch``, ``batch`` (1-based within the epoch), ``loss``, ``lr`` and ``momentum`` of the
    first param group; they are stored as tuples, so recording one costs almost nothing.

    Examples:
        >>> h = History()
        >>> h.add_epoch({"epoch": 1, "train_loss": 0.9, "valid_loss": 1.0})
        >>> h.add_epoch({"epoch": 2, "train_loss": 0.5, "valid_loss": 0.7})
        >>> h.add_batch(1, 1, 1, 0.95, 0.1, 0.9)
        >>> h.column("valid_loss"), h.best("valid_loss")
        ([1.0, 0.7], (2, 0.7))
        >>> h.batches[0]["lr"], len(h)
        (0.1, 2)
        >>> print(h.to_csv().splitlines()[0])
        epoch,train_loss,valid_loss
    """

    def __init__(self) -> None:
        self.epochs: list[dict[str, Any]] = []
        self._batches: list[tuple] = []

    def __len__(self) -> int:
        return len(self.epochs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.epochs[index]

    def __repr__(self) -> str:
        return f"History({len(self.epochs)} epochs, {len(self._batches)} batches)"

    def add_epoch(self, record: dict[str, Any]) -> None:
        self.epochs.append(record)

    def add_batch(self, step: int, epoch: int, batch: int, loss: float, lr: float,
                  momentum: float | None) -> None:
        self._batches.append((step, epoch, batch, loss, lr, momentum))

    @property
    def batches(self) -> list[dict[str, Any]]:
        """The per-batch records as dicts (built on demand)."""
        return [dict(zip(BATCH_FIELDS, row, strict=True)) for row in self._batches]

    @property
    def num_batches(self) -> int:
        return len(self._batches)

    def column(self, key: str) -> list[Any]:
        """``key`` of every epoch record (``None`` where a record lacks it)."""
        return [record.get(key) for record in self.epochs]

    def best(self, key: str, mode: str = "min") -> tuple[int, float] | None:
        """``(epoch, value)`` of the best finite value of ``key``, the earliest on ties."""
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        found = None
        for record in self.epochs:
            value = record.get(key)
            if value is None or not math.isfinite(value):
                continue
            if found is None or (value < found[1] if mode == "min" else value > found[1]):
                found = (record["epoch"], value)
        return found

    # -- state for checkpoints (raw values, NaN kept) ---------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"epochs": [dict(r) for r in self.epochs], "batches": list(self._batches)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epochs = [dict(r) for r in state["epochs"]]
        self._batches = [tuple(row) for row in state["batches"]]

    # -- export ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """``{"epochs": [...], "batches": [...]}`` with non-finite numbers as ``None``."""
        return _json_safe({"epochs": self.epochs, "batches": self.batches})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        history = cls()
        history.epochs = [dict(r) for r in data.get("epochs", [])]
        history._batches = [tuple(b.get(k) for k in BATCH_FIELDS) for b in data.get("batches", [])]
        return history

    def to_json(self, path: str | Path | None = None, **extra: Any) -> str:
        """The history as JSON text (plus any ``extra`` top-level keys); written atomically to
        ``path`` when given."""
        text = json.dumps({**_json_safe(extra), **self.to_dict()}, indent=1)
        if path is not None:
            from lrtune.training.checkpoint_io import atomic_write_text

            atomic_write_text(text + "\n", path)
        return text

    def to_csv(self, path: str | Path | None = None, *, batches: bool = False) -> str:
        """Epoch records (or batch records) as CSV; columns in order of first appearance."""
        rows = self.batches if batches else self.epochs
        columns: list[str] = list(BATCH_FIELDS) if batches else []
        for row in rows:
            columns += [k for k in row if k not in columns]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in columns})
        text = buffer.getvalue()
        if path is not None:
            from lrtune.training.checkpoint_io import atomic_write_text

            atomic_write_text(text, path)
        return text

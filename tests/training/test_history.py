import json
import math

import pytest

from lrtune.training import History


def _history():
    h = History()
    h.add_epoch({"epoch": 1, "train_loss": 1.0, "valid_loss": 0.9, "lr": 0.1, "duration": 0.5})
    h.add_epoch({"epoch": 2, "train_loss": 0.5, "valid_loss": math.nan, "lr": 0.05,
                 "valid_accuracy": 0.75, "duration": 0.4})
    h.add_batch(1, 1, 1, 1.2, 0.1, 0.9)
    h.add_batch(2, 2, 1, 0.6, 0.05, None)
    return h


def test_records_columns_and_best():
    h = _history()
    assert len(h) == 2
    assert h[1]["epoch"] == 2
    assert h.column("lr") == [0.1, 0.05]
    assert h.column("valid_accuracy") == [None, 0.75]
    assert h.best("train_loss") == (2, 0.5)
    assert h.best("valid_loss") == (1, 0.9)  # NaN never wins
    assert h.best("valid_accuracy", "max") == (2, 0.75)
    assert h.best("missing") is None
    with pytest.raises(ValueError, match="mode must be 'min' or 'max', got 'auto'"):
        h.best("valid_loss", "auto")  # used to pick the largest value silently
    assert h.batches == [
        {"step": 1, "epoch": 1, "batch": 1, "loss": 1.2, "lr": 0.1, "momentum": 0.9},
        {"step": 2, "epoch": 2, "batch": 1, "loss": 0.6, "lr": 0.05, "momentum": None},
    ]


def test_json_is_strict_and_round_trips(tmp_path):
    h = _history()
    text = h.to_json(tmp_path / "h.json", run="x")
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    assert data["run"] == "x"
    assert data["epochs"][1]["valid_loss"] is None
    assert json.loads((tmp_path / "h.json").read_text()) == data
    again = History.from_dict(data)
    assert again.batches == h.batches
    assert again.epochs[0] == h.epochs[0]


def test_csv_has_union_of_columns(tmp_path):
    h = _history()
    text = h.to_csv(tmp_path / "h.csv")
    lines = (tmp_path / "h.csv").read_text().splitlines()
    assert text.splitlines() == lines
    assert lines[0] == "epoch,train_loss,valid_loss,lr,duration,valid_accuracy"
    assert lines[1] == "1,1.0,0.9,0.1,0.5,"
    assert lines[2].startswith("2,0.5,nan,0.05,0.4,0.75")
    batch_lines = h.to_csv(batches=True).splitlines()
    assert batch_lines[0] == "step,epoch,batch,loss,lr,momentum"
    assert batch_lines[2] == "2,2,1,0.6,0.05,"


def test_state_dict_keeps_raw_values():
    h = _history()
    again = History()
    again.load_state_dict(h.state_dict())
    assert math.isnan(again[1]["valid_loss"])
    assert again.batches == h.batches

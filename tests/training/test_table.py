import io
import re

import torch
from conftest import make_model
from torch import nn

from lrtune.training import Trainer
from lrtune.training.callbacks.table import ProgressTable, table_columns


class Terminal(io.StringIO):
    def isatty(self):
        return True


def _fit(monkeypatch, stream, verbose=1, epochs=3, data=None, **kwargs):
    monkeypatch.setattr("sys.stdout", stream)
    model = make_model()
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                      nn.CrossEntropyLoss(), metrics=["accuracy"], device="cpu",
                      verbose=verbose, **kwargs)
    trainer.fit(*data, epochs=epochs, batch_size=16)
    return trainer, stream.getvalue()


def test_plain_rows_in_a_pipe(monkeypatch, data):
    trainer, text = _fit(monkeypatch, io.StringIO(), data=data)
    lines = text.splitlines()
    assert [c.strip() for c in lines[0].split("|")] == [
        "Epoch", "Train loss", "Valid loss", "Train/Val", "Valid acc", "lr", "momentum", "Dur"]
    assert set(lines[1]) <= {"-", "|"}
    assert len(lines) == 2 + 3
    assert "\r" not in text
    for line, record in zip(lines[2:], trainer.history.epochs, strict=True):
        cells = [c.strip() for c in line.split("|")]
        assert cells[0] == str(record["epoch"])
        assert cells[1].rstrip("*") == f"{record['train_loss']:.6f}"
        assert cells[2].rstrip("*") == f"{record['valid_loss']:.6f}"
        assert cells[3] == f"{record['train_valid_ratio']:.4f}"
        assert cells[4].rstrip("*") == f"{record['valid_accuracy']:.4f}"
        assert (cells[5], cells[6]) == ("0.1", "0.9")
        assert cells[7].endswith("s")


def test_best_values_are_marked():
    table = ProgressTable()
    table.columns_ = table_columns(True, ["accuracy"], ["lr"])
    records = [
        {"epoch": 1, "train_loss": 1.0, "valid_loss": 0.9, "valid_accuracy": 0.5, "lr": 0.1},
        {"epoch": 2, "train_loss": 0.8, "valid_loss": 0.95, "valid_accuracy": 0.6, "lr": 0.1},
        {"epoch": 3, "train_loss": 0.7, "valid_loss": 0.85, "valid_accuracy": 0.55, "lr": 0.1},
    ]
    marks = [[c.strip().endswith("*") for c in table.row(records, r).split("|")[1:5]]
             for r in records]
    #          train  valid  ratio  acc
    assert marks == [[True, True, False, True],
                     [True, False, False, True],
                     [True, True, False, False]]


def test_live_bar_on_a_terminal(monkeypatch, data):
    _, text = _fit(monkeypatch, Terminal(), data=data, epochs=2)
    assert "\r" in text
    assert "Epoch 1/2" in text
    assert "Epoch 2/2" in text
    rows = [line for line in re.split("[\r\n]", text) if line.strip().startswith(("1 |", "2 |"))]
    assert len(rows) == 2


def test_verbose_two_is_table_only_even_on_a_terminal(monkeypatch, data):
    _, text = _fit(monkeypatch, Terminal(), verbose=2, data=data, epochs=2)
    assert "\r" not in text
    assert len(text.splitlines()) == 4


def test_no_validation_columns_without_validation(monkeypatch, data):
    monkeypatch.setattr("sys.stdout", io.StringIO())
    model = make_model()
    Trainer(model, torch.optim.Adam(model.parameters()), nn.CrossEntropyLoss(), device="cpu",
            verbose=2).fit(data[0], epochs=1)
    header = [c.strip() for c in __import__("sys").stdout.getvalue().splitlines()[0].split("|")]
    assert header == ["Epoch", "Train loss", "lr", "momentum", "Dur"]

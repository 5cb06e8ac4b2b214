"""The examples run, end to end, on a tiny budget."""

import importlib.util
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seed000_example(tmp_path, capsys):
    load("seed000_lr_range_test").main(["--epochs", "2", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "suggested lr" in out and "test accuracy" in out
    assert (tmp_path / "lr_find.png").is_file() and (tmp_path / "sample_grid.png").is_file()
    assert (tmp_path / "checkpoints" / "best.pt").is_file()


def test_seed004_example(capsys):
    load("seed004_lr_momentum").main(["--epochs", "1"])
    out = capsys.readouterr().out
    assert "no augmentation" in out and "with flip" in out
    assert out.count(" Epoch | Train loss | Valid loss | Train / Val") == 2

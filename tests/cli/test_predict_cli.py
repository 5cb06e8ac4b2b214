import csv
import json

import numpy as np
import pytest
import torch

from lrtune import load_trained
from lrtune.cli import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "--lr", "0.05", "--momentum", "0.9", "--epochs", "2", "--out", str(out),
                 "--verbose", "0"]) == 0
    return out


def test_predict_reproduces_the_test_accuracy_of_the_run(run_dir, capsys):
    assert main(["predict", str(run_dir)]) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert f"accuracy {summary['test_accuracy']:.4f} on the test split" in capsys.readouterr().out
    with (run_dir / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 360 and rows[0].keys() == {"index", "class", "label"}


def test_load_trained_rebuilds_the_model_from_the_state_dict(run_dir):
    model, spec = load_trained(run_dir / "checkpoints" / "last.pt")
    assert spec["name"] == "mlp" and spec["input_shape"] == [1, 8, 8]
    saved = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in saved.items())
    assert not model.training


def test_predict_on_a_npy_file(run_dir, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((3, 1, 8, 8), dtype=np.float32))
    out = tmp_path / "p.csv"
    argv = ["predict", str(run_dir), "--input", str(tmp_path / "x.npy"), "--out", str(out)]
    assert main(argv) == 0
    assert len(out.read_text().splitlines()) == 4


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.pt", "checkpoint not found"),
        (lambda d: (d / "junk.pt").write_bytes(b"not a checkpoint") and d / "junk.pt",
         "junk.pt is not an lrtune checkpoint (or is unsafe to load)"),
    ],
)
def test_bad_sources_are_one_line(tmp_path, capsys, make, message):
    assert main(["predict", str(make(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_inputs_of_the_wrong_shape(run_dir, tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((3, 5), dtype=np.float32))
    assert main(["predict", str(run_dir), "--input", str(tmp_path / "x.npy")]) == 2
    assert "do not fit the model" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((0, 1, 8, 8), dtype=np.float32), "at least one sample"),
        (np.float32(1.0), "at least one sample"),
        (np.array(["a", "b"]), "cannot read --input"),
    ],
)
def test_inputs_without_samples_or_numbers_are_one_line(run_dir, tmp_path, capsys, array,
                                                         message):
    np.save(tmp_path / "x.npy", array)
    assert main(["predict", str(run_dir), "--input", str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "p.csv").exists()


def test_a_demo_folder_predicts_with_its_training_run(run_dir, tmp_path, capsys):
    # lrtune demo keeps its run in DIR/train: `lrtune predict DIR` said "checkpoint not found"
    import shutil

    demo = tmp_path / "demo"
    shutil.copytree(run_dir, demo / "train")
    assert main(["predict", str(demo)]) == 0
    assert "on the test split" in capsys.readouterr().out
    assert len((demo / "predictions.csv").read_text().splitlines()) == 361


def test_a_factory_model_is_named_as_such(run_dir, tmp_path, capsys):
    # it was "unknown model 'mypkg.nets:net'; choose from cnn, mlp"
    state = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    state["extra"]["model_spec"]["name"] = "mypkg.nets:net"
    torch.save(state, tmp_path / "factory.pt")
    assert main(["predict", str(tmp_path / "factory.pt")]) == 2
    err = capsys.readouterr().err
    assert "holds a model built by the factory mypkg.nets:net; only registry models" in err
    assert err.count("\n") == 1

"""MNIST / Fashion-MNIST read from a folder of IDX files (``--data-dir``)."""

import json

import numpy as np
import pytest
import torch

from lrtune.cli import main
from lrtune.data import load_dataset
from lrtune.data.idx import write_idx
from lrtune.data.mnist import FASHION_MNIST, MNIST, load_idx_dataset


def write_files(folder, n_train, n_test, *, gz=True, seed=0):
    """The four IDX files, compressed or unpacked; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    arrays["train-images-idx3-ubyte"][0, 0, 0] = 255
    for name, array in arrays.items():
        write_idx(folder / (name + (".gz" if gz else "")), array)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_standard_split_from_data_dir(tmp_path, gz):
    arrays = write_files(tmp_path, n_train=20, n_test=6, gz=gz)
    splits = load_idx_dataset(FASHION_MNIST, data_dir=tmp_path, n_valid=5)
    images = arrays["train-images-idx3-ubyte"]
    X_valid, y_valid = splits.valid
    assert X_valid.shape == (5, 1, 28, 28)
    assert X_valid.dtype == torch.float32
    np.testing.assert_allclose(X_valid[:, 0].numpy(), images[:5] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y_valid.numpy(), arrays["train-labels-idx1-ubyte"][:5])
    np.testing.assert_allclose(splits.train[0][:, 0].numpy(), images[5:] / 255.0, rtol=1e-6)
    assert splits.test[0].shape == (6, 1, 28, 28)
    assert splits.test[1].dtype == torch.int64
    assert float(X_valid.max()) == 1.0
    assert float(X_valid.min()) >= 0.0
    assert splits.class_names[0] == "T-shirt/top"
    assert splits.class_names[9] == "Ankle boot"
    assert splits.task == "classification"
    assert splits.n_outputs == 10
    assert splits.in_features == 784


def test_registry_holds_out_the_first_5000(tmp_path):
    arrays = write_files(tmp_path, n_train=5010, n_test=3)
    splits = load_dataset("mnist", data_dir=tmp_path)
    assert [len(part[0]) for part in (splits.train, splits.valid, splits.test)] == [10, 5000, 3]
    np.testing.assert_array_equal(splits.train[1].numpy(),
                                  arrays["train-labels-idx1-ubyte"][5000:])
    assert splits.class_names == [str(d) for d in range(10)]
    assert splits.name == "mnist"


def test_missing_file_names_it_and_the_source(tmp_path):
    write_files(tmp_path, 8, 2)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=(
            r"fashion-mnist: t10k-labels-idx1-ubyte.gz or t10k-labels-idx1-ubyte not found in "
            r".*; get it from https://github.com/zalandoresearch/fashion-mnist")):
        load_idx_dataset(FASHION_MNIST, data_dir=tmp_path, n_valid=2)


def test_data_dir_must_be_a_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        load_idx_dataset(MNIST, data_dir=tmp_path / "nowhere")


def test_labels_must_match_images(tmp_path):
    write_files(tmp_path, 8, 2)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(7, np.uint8))
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte.gz has shape \(7,\), expected"):
        load_idx_dataset(MNIST, data_dir=tmp_path, n_valid=2)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.full(8, 10, np.uint8))
    with pytest.raises(ValueError, match="has label 10, expected < 10"):
        load_idx_dataset(MNIST, data_dir=tmp_path, n_valid=2)


def test_n_valid_must_leave_training_images(tmp_path):
    write_files(tmp_path, 8, 2)
    with pytest.raises(ValueError, match=r"n_valid must be in \(0, 8\), got 8"):
        load_idx_dataset(MNIST, data_dir=tmp_path, n_valid=8)


def test_find_cli_reads_data_dir_with_the_cnn(tmp_path, capsys):
    (tmp_path / "fm").mkdir()
    write_files(tmp_path / "fm", n_train=5040, n_test=10)
    out = tmp_path / "out"
    rc = main(["find", "--dataset", "fashion-mnist", "--data-dir", str(tmp_path / "fm"),
               "--model", "cnn", "--num-iters", "8", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert "range test on fashion-mnist (cnn, sgd)" in capsys.readouterr().out
    assert len(json.loads(next(out.glob("*.json")).read_text())["lrs"]) == 8

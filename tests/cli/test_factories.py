"""--model / --data pkg.module:factory: loading, calling, and one clear line for each mistake."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from lrtune.cli.common import UsageError
from lrtune.cli.factories import is_factory, model_from_factory, splits_from_factory

FACTORIES = '''
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def net(in_features, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, 16), nn.ReLU(),
                         nn.Linear(16, num_classes))


def fixed():
    return nn.Linear(8, 3)


def not_a_model():
    return "hello"


def broken():
    raise RuntimeError("no weights here")


def _xy(n, seed):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 8, generator=g)
    return X, (X[:, 0] > 0).long() + (X[:, 1] > 0).long()


def pairs(seed=0):
    return _xy(160, seed), _xy(48, seed + 1), _xy(48, seed + 2)


def loaders():
    return tuple(DataLoader(TensorDataset(*p), batch_size=10) for p in pairs())


def regression():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(90, 4, generator=g)
    y = X.sum(1, keepdim=True)
    return (X[:60], y[:60]), (X[60:75], y[60:75]), (X[75:], y[75:])


def wrong_shape():
    return [1, 2]


def two_splits():
    return pairs()[:2]


def arrays():
    return tuple((X.numpy(), y.numpy()) for X, y in pairs())


def two_classes(in_features):
    return nn.Linear(in_features, 2)


def int32_targets():
    return tuple((X, y.int()) for X, y in pairs())


def float64_inputs():
    return tuple((X.double(), y) for X, y in pairs())


def flat_regression():
    return tuple((X, y.ravel()) for X, y in regression())


def narrow_valid():
    (X, y), (Xv, yv), test = pairs()
    return (X, y), (Xv[:, :5], yv), test
'''


@pytest.fixture
def factories(tmp_path, monkeypatch):
    (tmp_path / "my_factories.py").write_text(textwrap.dedent(FACTORIES))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_factories"
    sys.modules.pop("my_factories", None)


def test_the_lrtune_command_imports_factories_from_the_current_folder(tmp_path):
    """The installed command's sys.path holds its own folder, not the current one (unlike
    ``python -m``): the README promises the current folder."""
    exe = Path(sys.executable).with_name("lrtune")
    if not exe.exists():
        pytest.skip("the lrtune command is not installed next to this python")
    (tmp_path / "here_factories.py").write_text(textwrap.dedent(FACTORIES))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(exe), "find", "--data", "here_factories:pairs", "--model",
                           "here_factories:net", "--num-iters", "20", "--out", "run"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "run" / "lr_find.json").exists()


def test_is_factory():
    assert is_factory("pkg.mod:make") and not is_factory("mlp") and not is_factory(None)


def test_data_factories_give_splits(factories):
    splits = splits_from_factory(f"{factories}:pairs", seed=0)
    assert splits.task == "classification" and splits.n_outputs == 3
    assert splits.in_features == 8 and len(splits.train[0]) == 160
    other = splits_from_factory(f"{factories}:pairs", seed=5)  # the seed reaches the factory
    assert not torch.equal(other.train[0], splits.train[0])
    loaded = splits_from_factory(f"{factories}:loaders", seed=0)
    assert torch.equal(loaded.valid[0], splits.valid[0])
    reg = splits_from_factory(f"{factories}:regression", seed=0)
    assert reg.task == "regression" and reg.n_outputs == 1


def test_model_factories_get_the_shapes_they_ask_for(factories):
    splits = splits_from_factory(f"{factories}:pairs", seed=0)
    net = model_from_factory(f"{factories}:net", splits)
    assert net(splits.train[0][:2]).shape == (2, 3)
    assert isinstance(model_from_factory(f"{factories}:fixed", splits), torch.nn.Linear)


@pytest.mark.parametrize(("option", "spec", "message"), [
    ("--model", "no_such_module_xyz:f", "--model 'no_such_module_xyz:f': cannot import"),
    ("--model", "{m}:missing", "has no attribute 'missing'"),
    ("--model", "{m}:not_a_model", "returned str, not an nn.Module"),
    ("--model", "{m}:broken", "failed: RuntimeError: no weights here"),
    ("--data", "{m}:wrong_shape", "--data '{m}:wrong_shape' returned a list of 2;"),
    ("--data", "{m}:fixed", "expected a Splits or a (train, valid, test) tuple"),
    ("--data", "{m}:two_splits", "returned a tuple of 2; expected a Splits or a (train, valid"),
    ("--data", "{m}:arrays", "train is a tuple of ndarray, ndarray, not an (X, y) pair of "
     "tensors or a DataLoader (torch.as_tensor converts arrays)"),
    ("--data", "{m}:", "expected pkg.module:factory"),
])
def test_mistakes_are_one_line_naming_the_option(factories, option, spec, message):
    spec, message = spec.format(m=factories), message.format(m=factories)
    splits = splits_from_factory(f"{factories}:pairs", seed=0)
    call = (lambda: model_from_factory(spec, splits)) if option == "--model" else \
        (lambda: splits_from_factory(spec, seed=0))
    with pytest.raises(UsageError) as info:
        call()
    text = str(info.value)
    assert message in text and "\n" not in text and text.startswith(option)


def test_find_train_and_compare_run_on_factories(factories, tmp_path, capsys):
    from lrtune.cli import main

    own = ["--data", f"{factories}:pairs", "--model", f"{factories}:net"]
    assert main(["find", *own, "--num-iters", "40", "--out", str(tmp_path / "f")]) == 0
    assert f"range test on {factories}:pairs ({factories}:net, sgd)" in capsys.readouterr().out
    assert main(["train", *own, "--lr", "0.1", "--epochs", "1", "--verbose", "0",
                 "--out", str(tmp_path / "t")]) == 0
    summary = (tmp_path / "t" / "summary.json").read_text()
    assert '"test_accuracy"' in summary and f'"dataset": "{factories}:pairs"' in summary
    assert main(["compare", "--common", " ".join([*own, "--epochs", "1"]),
                 "--recipe", "a: --lr 0.1", "--recipe", "b: --lr 0.01", "--verbose", "0",
                 "--out", str(tmp_path / "c")]) == 0
    assert (tmp_path / "c" / "report.md").is_file()


@pytest.mark.parametrize("command", ["find", "train"])
def test_a_bad_factory_on_the_cli_is_one_line_and_exit_2(factories, tmp_path, capsys, command):
    from lrtune.cli import main

    code = main([command, "--data", f"{factories}:pairs", "--model", f"{factories}:nope",
                 "--out", str(tmp_path / "x")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"lrtune {command}: error: --model '{factories}:nope': module "
                   f"'{factories}' has no attribute 'nope'")
    assert not (tmp_path / "x").exists()  # nothing left on disk
    assert main([command, "--data", "digits", "--out", str(tmp_path / "y")]) == 2
    assert "--data 'digits': expected pkg.module:factory" in capsys.readouterr().err


@pytest.mark.parametrize(("data", "model", "message"), [
    ("pairs", "two_classes", "the model does not fit the train data (inputs torch.float32 (8,) "
     "per sample, targets torch.int64): the model outputs 2 class scores, the data have 3"),
    ("float64_inputs", "net", "does not fit the train data (inputs torch.float64"),
    ("narrow_valid", "net", "does not fit the valid data (inputs torch.float32 (5,)"),
])
def test_a_model_that_does_not_fit_its_data_is_one_line_before_any_work(
        factories, tmp_path, capsys, data, model, message):
    from lrtune.cli import main

    code = main(["train", "--data", f"{factories}:{data}", "--model", f"{factories}:{model}",
                 "--lr", "auto", "--epochs", "1", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and message in err, err
    assert err.startswith(f"lrtune train: error: --data '{factories}:{data}' and --model")
    assert not (tmp_path / "x").exists()


def test_int32_and_flat_regression_targets_are_made_what_the_loss_needs(factories, tmp_path):
    from lrtune.cli import main

    splits = splits_from_factory(f"{factories}:int32_targets", seed=0)
    assert splits.task == "classification" and splits.train[1].dtype == torch.int64
    flat = splits_from_factory(f"{factories}:flat_regression", seed=0)
    assert flat.train[1].shape == (60, 1) and flat.n_outputs == 1  # as the model's output
    for data in ("int32_targets", "flat_regression"):  # trains (no broadcasting warning)
        assert main(["train", "--data", f"{factories}:{data}", "--model", f"{factories}:net",
                     "--lr", "0.01", "--epochs", "1", "--verbose", "0",
                     "--out", str(tmp_path / data)]) == 0


def test_lrtunes_own_warnings_are_one_line_naming_the_command(factories, tmp_path, capsys):
    import warnings

    from lrtune.cli import main

    with warnings.catch_warnings():
        warnings.simplefilter("default")  # pytest's configuration makes warnings errors
        code = main(["find", "--data", f"{factories}:regression", "--model", f"{factories}:net",
                     "--confirm", "--epochs", "1", "--num-iters", "40",
                     "--out", str(tmp_path / "small")])
    assert code == 0
    # the sweep's (15 validation samples): one line, no source file and line
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "lrtune find: warning: the sweep compares its rates on 15 validation samples")
    from lrtune.cli import _one_line_warnings

    shown = []
    _one_line_warnings("find", lambda *a, **k: shown.append(a))("x", UserWarning, "f.py", 3)
    assert shown == [("x", UserWarning, "f.py", 3, None, None)]  # others' warnings as before

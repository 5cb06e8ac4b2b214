"""Bad input, CLI and API: one line naming the problem, exit status 2, nothing on disk changed.

Every CLI case runs in a folder holding a finished run and the bad files it reads; the bytes of
every file there (and the list of folders) must be the same afterwards. The cases fail at
argument validation or while reading an input, never after training.
"""

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from lrtune.cli import main
from lrtune.data.idx import write_idx
from lrtune.data.keypoints import read_keypoints_csv
from lrtune.data.mnist import MNIST, load_idx_dataset
from lrtune.trained import load_trained
from lrtune.training.checkpoint_io import FORMAT, load_checkpoint
from lrtune.training.setup import make_optimizer


class Evil:
    """A pickle that runs a shell command when loaded without weights_only."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return os.system, (f"touch {self.target}",)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A finished run (``run/``) and every bad file the cases read."""
    w = tmp_path_factory.mktemp("world")
    code = main(["train", "--epochs", "1", "--batch-size", "128", "--lr", "0.05",
                 "--out", str(w / "run"), "--verbose", "0"])
    assert code == 0
    (w / "afile").write_text("not a folder\n")
    (w / "text.txt").write_text("hello\n")
    (w / "garbage.pt").write_bytes(bytes(range(256)) * 8)
    torch.save(Evil(str(w / "PWNED")), w / "evil.pt")
    torch.save({"format": FORMAT}, w / "marker_only.pt")
    torch.save({"format": FORMAT, "version": 1, "epoch": 3, "extra": {}}, w / "no_model.pt")
    (w / "notrun").mkdir()
    (w / "notrun" / "thesis.tex").write_text("my thesis\n")
    np.save(w / "nan.npy", np.full((4, 64), np.nan, dtype=np.float32))
    np.save(w / "inf.npy", np.full((4, 64), np.inf, dtype=np.float32))
    np.save(w / "wrong_shape.npy", np.zeros((4, 5), dtype=np.float32))
    idx = w / "idx7"
    idx.mkdir()
    for prefix in ("train", "t10k"):
        write_idx(idx / f"{prefix}-images-idx3-ubyte", np.zeros((10, 7, 7), dtype=np.uint8))
        write_idx(idx / f"{prefix}-labels-idx1-ubyte", np.zeros(10, dtype=np.uint8))
    (w / "kp").mkdir()
    (w / "kp" / "training.csv").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x00" * 64)
    (w / "bad.toml").write_bytes(b"\xff\xfe[[recipes]\n")
    return w


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder``: a file's bytes, None for a folder."""
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes()
            for p in sorted(folder.rglob("*"))}


RUN = "{w}/run"
NEW = "{w}/new"
CLI_CASES = [
    # --out: empty, a file, inside a file, holding a run or other files
    (["train", "--out", ""], "--out is empty"),
    (["train", "--out", "{w}/afile"], "--out {w}/afile is a file, not a folder"),
    (["train", "--out", "{w}/afile/sub"], "{w}/afile is a file, so nothing can be written"),
    (["train", "--out", RUN], "already holds a run"),
    (["train", "--out", "{w}/notrun"], "{w}/notrun holds files that are not an lrtune run"),
    (["train", "--out", "{w}/notrun", "--overwrite"], "holds files that are not an lrtune run"),
    (["find", "--out", ""], "--out is empty"),
    (["find", "--out", "{w}/afile"], "is a file, not a folder"),
    (["find", "--out", "{w}/afile/sub"], "is a file, so nothing can be written"),
    (["find", "--out", RUN, "--num-iters", "20"], "already holds a run"),
    (["demo", "--out", ""], "--out is empty"),
    (["demo", "--out", "{w}/afile"], "is a file, not a folder"),
    (["demo", "--out", RUN], "already holds a run"),
    (["compare", "--recipe", "a: --lr 0.1", "--out", ""], "--out is empty"),
    (["compare", "--recipe", "a: --lr 0.1", "--out", "{w}/afile/x"], "is a file, so nothing"),
    (["compare", "--recipe", "a: --lr 0.1", "--out", RUN], "already holds a run"),
    (["schedule", "linear", "--out", "{w}"], "--out {w} is a folder; give a file name"),
    (["schedule", "linear", "--out", "{w}/afile/x.png"], "{w}/afile is a file"),
    (["schedule", "linear", "--out", ""], "--out is empty"),
    (["predict", RUN, "--out", "{w}"], "--out {w} is a folder"),
    (["predict", RUN, "--out", "{w}/afile/p.csv"], "{w}/afile is a file"),
    # devices
    (["train", "--device", "cuda", "--out", NEW], "--device cuda is not available here"),
    (["train", "--device", "bogus", "--out", NEW], "--device 'bogus' is not a device"),
    (["find", "--device", "cuda:7", "--out", NEW], "--device cuda:7 is not available here"),
    (["find", "--device", "bogus", "--out", NEW], "--device 'bogus' is not a device"),
    (["compare", "--recipe", "a: --device bogus", "--out", NEW], "recipe 'a': --device 'bogus'"),
    # sizes, refused before anything is allocated
    (["find", "--num-iters", "2e9", "--out", NEW],
     "argument --num-iters: must be between 8 and 1,000,000, got 2e9"),
    (["find", "--num-iters", "5", "--out", NEW], "argument --num-iters: must be between 8"),
    (["find", "--num-iters", "1.5", "--out", NEW], "argument --num-iters: expected an integer"),
    (["find", "--confirm", "100000", "--out", NEW], "argument --confirm: must be between 2 and 64"),
    (["find", "--confirm", "1", "--out", NEW], "argument --confirm: must be between 2 and 64"),
    (["schedule", "linear", "--steps", "1e9"],
     "argument --steps: must be between 1 and 1,000,000, got 1e9"),
    (["schedule", "linear", "--steps", "0"], "argument --steps"),
    # optimizer values, named by their flag (SGD and Adam alike)
    (["train", "--momentum", "1.5", "--out", NEW],
     "argument --momentum: must be a number in [0, 1)"),
    (["train", "--momentum", "nan", "--out", NEW], "argument --momentum: must be a number in"),
    (["train", "--momentum", "-0.1", "--out", NEW], "argument --momentum"),
    (["train", "--optimizer", "adam", "--momentum", "1.5", "--out", NEW], "argument --momentum:"),
    (["train", "--weight-decay", "nan", "--out", NEW], "argument --weight-decay: must be a finite"),
    (["train", "--weight-decay", "-1", "--out", NEW], "argument --weight-decay"),
    (["train", "--schedule", "linear", "--momentum", "0.9", "--momentum-end", "5", "--out", NEW],
     "argument --momentum-end: must be a number in [0, 1)"),
    (["train", "--optimizer", "adam", "--schedule", "linear", "--momentum-end", "5"],
     "argument --momentum-end"),
    (["train", "--nesterov", "--out", NEW], "--nesterov needs --optimizer sgd and a --momentum"),
    (["find", "--momentum", "1.5", "--out", NEW], "argument --momentum"),
    (["find", "--weight-decay", "nan", "--out", NEW], "argument --weight-decay"),
    (["demo", "--momentum", "1.5", "--out", NEW], "argument --momentum"),
    (["schedule", "linear", "--momentum", "5"], "argument --momentum: must be a number in [0, 1)"),
    (["schedule", "linear", "--momentum", "0.9", "--momentum-end", "1"], "argument --momentum-end"),
    (["schedule", "linear", "--lr", "nan"], "argument --lr: must be a finite number > 0"),
    # other training options
    (["train", "--lr", "-1", "--out", NEW], "argument --lr"),
    (["train", "--lr", "inf", "--out", NEW], "argument --lr"),
    (["train", "--epochs", "0", "--out", NEW], "argument --epochs"),
    (["train", "--batch-size", "0", "--out", NEW], "argument --batch-size"),
    (["train", "--schedule", "bogus", "--out", NEW], "unknown --schedule 'bogus'"),
    (["train", "--lr-end", "0.001", "--out", NEW], "--lr-end is not used by --schedule constant"),
    (["train", "--momentum-end", "0.9", "--out", NEW], "--momentum-end is not used by --schedule"),
    (["train", "--augment", "rotate", "--out", NEW], "unknown --augment 'rotate'"),
    (["train", "--plateau-factor", "2", "--out", NEW], "argument --plateau-factor"),
    (["train", "--confirm", "--out", NEW], "--confirm checks the range test's bracket"),
    # options nothing would read: refused, not silently ignored
    (["train", "--lr", "0.1", "--no-confirm", "--out", NEW],
     "--no-confirm skips the confirmation of --lr auto: it needs --lr auto"),
    (["train", "--lr", "0.1", "--num-iters", "50", "--out", NEW],
     "--num-iters sets the range test or the confirmation of --lr auto: it needs --lr auto"),
    (["train", "--rule", "valley", "--out", NEW], "--rule sets the range test"),
    (["train", "--lr", "0.1", "--choice", "final", "--out", NEW], "--choice sets the range"),
    (["train", "--lr", "auto", "--no-confirm", "--halving", "on", "--out", NEW],
     "--halving sets the confirmation, which --no-confirm skips: give one of them"),
    (["train", "--lr", "auto", "--no-confirm", "--confirm-fraction", "0.5", "--out", NEW],
     "--confirm-fraction sets the confirmation, which --no-confirm skips"),
    (["find", "--epochs", "40", "--out", NEW], "--epochs sets the confirmation: it needs"),
    (["find", "--halving", "off", "--out", NEW], "--halving sets the confirmation: it needs"),
    (["train", "--model", "resnet", "--out", NEW], "unknown --model 'resnet'"),
    (["train", "--dataset", "imagenet", "--out", NEW], "unknown --dataset 'imagenet'"),
    (["train", "--dataset", "digits", "--data", "pkg.mod:data", "--out", NEW],
     "--data 'pkg.mod:data' and --dataset 'digits' name two datasets: give one"),
    (["find", "--smooth", "2", "--out", NEW], "--smooth must be in [0, 1), got 2.0"),
    (["find", "--start-lr", "1", "--end-lr", "0.1", "--out", NEW], "--end-lr (0.1) must be"),
    # data
    (["train", "--data-dir", "/nonexistent", "--out", NEW],
     "--data-dir is not used by --dataset digits"),
    (["find", "--data-dir", "/nonexistent", "--out", NEW], "--data-dir is not used by"),
    (["demo", "--data-dir", "/nonexistent", "--out", NEW], "--data-dir is not used by"),
    (["train", "--dataset", "mnist", "--data-dir", "/nonexistent", "--out", NEW],
     "--data-dir /nonexistent: no such folder"),
    (["train", "--dataset", "mnist", "--data-dir", "{w}/idx7", "--out", NEW],
     "mnist: train-images-idx3-ubyte.gz images are 7×7, expected 28×28"),
    (["train", "--dataset", "facial-keypoints", "--model", "cnn", "--data-dir", "{w}/kp",
      "--out", NEW], "{w}/kp/training.csv is not a text CSV"),
    # checkpoints: foreign, malicious, incomplete, missing, another run's settings
    (["train", "--resume", "{w}/garbage.pt", "--out", NEW],
     "{w}/garbage.pt is not an lrtune checkpoint (or is unsafe to load)"),
    (["train", "--resume", "{w}/evil.pt", "--out", NEW],
     "{w}/evil.pt is not an lrtune checkpoint (or is unsafe to load)"),
    (["train", "--resume", "{w}/text.txt", "--out", NEW], "text.txt is not an lrtune checkpoint"),
    (["train", "--resume", "{w}/marker_only.pt", "--out", NEW],
     "{w}/marker_only.pt is an incomplete lrtune checkpoint: no model, optimizer"),
    (["train", "--resume", "{w}/no_model.pt", "--out", NEW], "no_model.pt is an incomplete"),
    (["train", "--resume", "{w}/missing.pt", "--out", NEW], "checkpoint not found: {w}/missing"),
    (["train", "--resume", "--out", NEW], "checkpoint not found: {w}/new/checkpoints/last.pt"),
    (["train", "--resume", "--out", RUN, "--lr", "0.5"], "--lr 0.05 (now 0.5)"),
    (["train", "--resume", "--overwrite", "--out", RUN], "give one of them"),
    (["predict", "{w}/garbage.pt"], "{w}/garbage.pt is not an lrtune checkpoint (or is unsafe"),
    (["predict", "{w}/evil.pt"], "{w}/evil.pt is not an lrtune checkpoint (or is unsafe"),
    (["predict", "{w}/marker_only.pt"], "marker_only.pt is an incomplete lrtune checkpoint"),
    (["predict", "{w}/no_model.pt"], "no_model.pt is an incomplete lrtune checkpoint: no model"),
    (["predict", "{w}/afile"], "{w}/afile is not an lrtune checkpoint"),
    # predict inputs
    (["predict", RUN, "--input", "{w}/nan.npy"], "--input {w}/nan.npy: 4 of 4 samples hold NaN"),
    (["predict", RUN, "--input", "{w}/inf.npy"], "--input {w}/inf.npy: 4 of 4 samples hold NaN"),
    (["predict", RUN, "--input", "{w}/text.txt"], "cannot read --input {w}/text.txt"),
    (["predict", RUN, "--input", "{w}/wrong_shape.npy"], "inputs of shape (5,) do not fit"),
    # compare: every recipe checked before any trains
    (["compare", "--common", "--lr '0.1", "--recipe", "a: --epochs 1", "--out", NEW],
     "--common: No closing quotation"),
    (["compare", "--recipe", "a: --lr '0.1", "--out", NEW], "--recipe 'a': No closing quotation"),
    (["compare", "--recipe", "a: --epochs 1", "--recipe", "b: --schedule bogus", "--out", NEW],
     "recipe 'b': unknown --schedule 'bogus'"),
    (["compare", "--recipe", "a: --epochs 1", "--recipe", "b: --momentum 1.5", "--out", NEW],
     "recipe 'b': argument --momentum"),
    (["compare", "--recipe", "a: --epochs 1", "--recipe", "b: --data-dir /nonexistent",
      "--out", NEW], "recipe 'b': --data-dir is not used"),
    (["compare", "--recipes", "{w}/bad.toml", "--out", NEW], "{w}/bad.toml is not valid TOML"),
    (["compare", "--recipes", "{w}/idx7", "--out", NEW], "Is a directory: {w}/idx7"),
]


def _ids(cases):
    return [f"{i:02d}-{' '.join(argv)[:40]}" for i, (argv, _) in enumerate(cases)]


@pytest.mark.parametrize(("argv", "expected"), CLI_CASES, ids=_ids(CLI_CASES))
def test_cli_bad_input(world, monkeypatch, capsys, argv, expected):
    monkeypatch.chdir(world)  # a default --out would land here, inside the snapshot
    before = snapshot(world)
    argv = [a.format(w=world) for a in argv]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    out, err = capsys.readouterr()
    assert code == 2, err
    assert err.endswith("\n") and err.count("\n") == 1, err  # exactly one line
    assert err.startswith(f"lrtune {argv[0]}"), err
    assert expected.format(w=world) in err
    assert "Traceback" not in err and "weights_only" not in err
    assert out == ""
    assert snapshot(world) == before  # nothing written, created or removed
    assert not (world / "PWNED").exists()


def _bad_csv(w):
    return read_keypoints_csv(w / "kp" / "training.csv")


API_CASES = [
    (lambda w: load_checkpoint(w / "garbage.pt"), ValueError, "not an lrtune checkpoint (or is"),
    (lambda w: load_checkpoint(w / "evil.pt"), ValueError, "evil.pt is not an lrtune checkpoint"),
    (lambda w: load_checkpoint(w / "marker_only.pt"), ValueError, "no model entry"),
    (lambda w: load_checkpoint(w / "no_model.pt", require=("model", "optimizer")), ValueError,
     "no model, optimizer entry"),
    (lambda w: load_checkpoint(w / "nothing.pt"), FileNotFoundError, "checkpoint not found"),
    (lambda w: load_trained(w / "no_model.pt"), ValueError, "no_model.pt is an incomplete"),
    (lambda w: load_trained(w / "afile"), ValueError, "afile is not an lrtune checkpoint"),
    (lambda w: make_optimizer("sgd", [torch.zeros(1)], lr=0.1, momentum=1.5), ValueError,
     "momentum must be in [0, 1), got 1.5"),
    (lambda w: make_optimizer("adam", [torch.zeros(1)], lr=0.1, momentum=1.5), ValueError,
     "momentum (beta1) must be in [0, 1), got 1.5"),
    (lambda w: make_optimizer("sgd", [torch.zeros(1)], lr=0.1, momentum=math.nan), ValueError,
     "momentum must be in [0, 1), got nan"),
    (lambda w: make_optimizer("sgd", [torch.zeros(1)], lr=0.1, weight_decay=math.nan),
     ValueError, "weight_decay must be a finite number >= 0, got nan"),
    (_bad_csv, ValueError, "training.csv is not a text CSV"),
    (lambda w: load_idx_dataset(MNIST, data_dir=w / "idx7"), ValueError,
     "images are 7×7, expected 28×28"),
]


@pytest.mark.parametrize(("call", "error", "expected"), API_CASES,
                         ids=[f"api-{i:02d}" for i in range(len(API_CASES))])
def test_api_bad_input(world, call, error, expected):
    before = snapshot(world)
    with pytest.raises(error) as info:
        call(world)
    message = str(info.value)
    assert expected in message and "\n" not in message and "weights_only" not in message
    assert snapshot(world) == before
    assert not (world / "PWNED").exists()


def test_the_table_is_large_enough():
    assert len(CLI_CASES) + len(API_CASES) >= 60


def test_an_extreme_but_finite_input_is_predicted_with_a_warning(world, capsys, tmp_path):
    np.save(tmp_path / "huge.npy", np.full((3, 64), 1e30, dtype=np.float32))
    out = tmp_path / "p.csv"
    code = main(["predict", str(world / "run"), "--input", str(tmp_path / "huge.npy"),
                 "--out", str(out)])
    err = capsys.readouterr().err
    if code == 0:  # the outputs stayed finite: written, with one line saying they mean nothing
        assert "far outside the [0, 1] the model was trained on" in err and out.is_file()
    else:  # they overflowed: refused
        assert code == 2 and "outputs are not finite" in err and not out.exists()


def test_a_read_only_parent_is_refused(world, monkeypatch, capsys, tmp_path):
    parent = tmp_path / "locked"
    parent.mkdir()
    real_access = os.access
    # root ignores permission bits, so the check itself is what is tested: os.access says no
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == parent
                        else real_access(p, mode))
    assert main(["train", "--out", str(parent / "run")]) == 2
    assert f"{parent} is not writable" in capsys.readouterr().err
    assert list(parent.iterdir()) == []


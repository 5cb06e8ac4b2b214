import json

import pytest
from test_train_cli import _train, kill_9_resume_and_compare

from lrtune.cli import main
from lrtune.training import load_checkpoint


def test_prodigy_trains_with_its_default_and_reports_its_rate(tmp_path, capsys):
    code, out = _train(tmp_path, "--optimizer", "prodigy", "--epochs", "2", "--batch-size", "128")
    assert code == 0
    printed = capsys.readouterr().out
    assert "(prodigy, lr 1, schedule constant" in printed and "d*lr" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["optimizer"] == "prodigy" and summary["lr"] == 1.0
    assert summary["effective_lr"] > 1e-5  # Prodigy grew its estimate from d0 = 1e-6
    epochs = json.loads((out / "history.json").read_text())["epochs"]
    assert epochs[0]["effective_lr"] == pytest.approx(1e-6)


def test_schedule_free_gets_its_lr_and_warmup(tmp_path):
    code, out = _train(tmp_path, "--optimizer", "schedulefree-adamw", "--epochs", "2",
                       "--batch-size", "64")
    assert code == 0
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    group = state["optimizer"]["param_groups"][0]
    assert group["lr"] == 0.0025 and group["train_mode"] is False
    assert group["warmup_steps"] == round(0.02 * 2 * 17)  # 1078 samples / 64 -> 17 steps
    assert json.loads((out / "summary.json").read_text())["lr"] == 0.0025


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "--optimizer", "prodigy", "--lr", "auto"],
     "lrtune train: error: --lr auto runs the range test, which does not apply to prodigy: it "
     "sets its own step size (leave --lr out)"),
    (["find", "--optimizer", "schedulefree-sgd"],
     "lrtune find: error: the learning-rate range test does not apply to SGDScheduleFree: it "
     "sets its own step size; train it with its default lr instead of searching one"),
    (["train", "--optimizer", "dadapt-adam", "--nesterov"],
     "lrtune train: error: --nesterov needs --optimizer sgd and a --momentum > 0"),
])
def test_usage_errors(tmp_path, capsys, argv, message):
    assert main([*argv, "--out", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.strip() == message
    assert not (tmp_path / "x").exists()


def test_resume_refuses_another_length_for_schedule_free(tmp_path, capsys):
    common = ["--optimizer", "schedulefree-sgd", "--batch-size", "128"]
    assert _train(tmp_path, *common, "--epochs", "1")[0] == 0
    code, _ = _train(tmp_path, *common, "--epochs", "3", "--resume")
    assert code == 2
    assert "--epochs 1 (now 3)" in capsys.readouterr().err


@pytest.mark.parametrize("optimizer", ["schedulefree-adamw", "prodigy"])
def test_kill_9_and_resume_equals_a_straight_run(tmp_path, optimizer):
    """A real ``kill -9`` mid-run, then ``--resume``: weights, history and the optimizer's
    own state (Prodigy's d, Schedule-Free's averaging) bit-identical."""
    checkpoints = kill_9_resume_and_compare(
        tmp_path, ["--optimizer", optimizer, "--epochs", "5", "--batch-size", "16",
                   "--patience", "4", "--verbose", "0"], epochs=5)
    for straight, killed in checkpoints.values():
        assert straight["optimizer"]["param_groups"] == killed["optimizer"]["param_groups"]

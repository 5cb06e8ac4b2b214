import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import lrtune
from lrtune.cli import main
from lrtune.training import load_checkpoint

SRC = Path(lrtune.__file__).resolve().parents[1]  # the tree under test, for subprocesses


def _train(tmp_path, *extra, name="run"):
    out = tmp_path / name
    return main(["train", "--out", str(out), "--verbose", "2", *extra]), out


def _epochs_without_durations(out):
    records = json.loads((out / "history.json").read_text())["epochs"]
    return [{k: v for k, v in r.items() if k != "duration"} for r in records]


def test_outputs(tmp_path, capsys):
    code, out = _train(tmp_path, "--epochs", "3", "--lr", "0.05", "--momentum", "0.9",
                       "--batch-size", "64", "--patience", "2")
    assert code == 0
    stdout = capsys.readouterr().out
    assert "Epoch | Train loss | Valid loss | Train/Val  | Valid acc  |    lr    | momentum" \
        in stdout
    assert "test accuracy" in stdout
    history = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in history["epochs"]] == [1, 2, 3]
    assert {"train_loss", "valid_loss", "train_valid_ratio", "valid_accuracy", "lr", "momentum",
            "duration"} <= set(history["epochs"][0])
    assert len(history["batches"]) == 3 * 17  # 1078 training images / 64
    assert set(history["batches"][0]) == {"step", "epoch", "batch", "loss", "lr", "momentum"}
    assert (out / "history.csv").read_text().startswith("epoch,train_loss,valid_loss,")
    assert (out / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    best_epoch = min(history["epochs"], key=lambda r: r["valid_loss"])["epoch"]
    assert summary["best_epoch"] == best_epoch
    assert 0.5 < summary["test_accuracy"] <= 1
    assert summary["test_loss"] > 0
    best = torch.load(out / "checkpoints" / "best.pt", weights_only=True)
    last = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert best["epoch"] == best_epoch
    assert last["epoch"] == 3
    assert set(best["model"]) == {"1.weight", "1.bias", "3.weight", "3.bias", "5.weight",
                                  "5.bias"}
    for run in ("epoch", "batch"):
        assert list((out / "tensorboard" / run).glob("events.out.tfevents.*"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--lr", "-1"], "argument --lr: must be a finite number > 0, got -1"),
        (["--lr", "fast"], "argument --lr: expected a number, got 'fast'"),
        (["--epochs", "0"], "argument --epochs: must be > 0, got 0"),
    ],
)
def test_usage_errors(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        _train(tmp_path, *argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_resume_errors(tmp_path, capsys):
    code, out = _train(tmp_path, "--epochs", "1", "--resume")
    assert code == 2
    assert f"checkpoint not found: {out / 'checkpoints' / 'last.pt'}" in capsys.readouterr().err
    assert _train(tmp_path, "--epochs", "1", "--batch-size", "128")[0] == 0
    code, _ = _train(tmp_path, "--epochs", "2", "--batch-size", "64", "--resume")
    assert code == 2
    assert "was written by a run with different settings: --batch-size 128 (now 64)" in \
        capsys.readouterr().err


def test_non_finite_loss_exits_non_zero(tmp_path, capsys):
    code, out = _train(tmp_path, "--epochs", "2", "--lr", "1000")
    assert code == 1
    err = capsys.readouterr().err
    assert "lrtune train: error: training stopped: the loss is" in err
    assert "at epoch 1, batch" in err
    assert "(lr 1000)" in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stop_reason"] == "non_finite"
    assert "test_loss" not in summary
    assert not (out / "checkpoints" / "best.pt").exists()


def test_lr_auto_confirms_by_default_and_trains_a_fresh_init_at_the_rate(tmp_path, capsys):
    code, auto = _train(tmp_path, "--lr", "auto", "--epochs", "1", "--batch-size", "64",
                        name="auto")
    assert code == 0
    printed = capsys.readouterr().out
    assert "range test: suggested lr" in printed
    assert "auto_lr: the range test's rule alone met the target on 2 of 13" in printed
    found = json.loads((auto / "lr_find" / "lr_find.json").read_text())
    summary = json.loads((auto / "summary.json").read_text())
    lr = summary["lr"]
    assert summary["lr_source"] == "confirmation" and lr == found["confirmed_lr"]
    code, given = _train(tmp_path, "--lr", repr(lr), "--epochs", "1", "--batch-size", "64",
                         name="given")
    assert code == 0
    # identical weights: the swept model was put back to its fresh initialisation
    a = load_checkpoint(auto / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(given / "checkpoints" / "last.pt")["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # a resumed run keeps the rate it chose and says where that rate came from
    code, _ = _train(tmp_path, "--lr", "auto", "--epochs", "2", "--batch-size", "64",
                     "--resume", name="auto")
    assert code == 0
    resumed = json.loads((auto / "summary.json").read_text())
    assert (resumed["lr"], resumed["lr_source"]) == (lr, "confirmation")


def test_lr_auto_inconclusive_without_confirmation_is_a_clear_error(tmp_path, capsys):
    # a range test that ends at 1e-5 sees a flat loss: inconclusive; --no-confirm: no rate
    code, out = _train(tmp_path, "--lr", "auto", "--no-confirm", "--end-lr", "1e-5",
                       "--num-iters", "50", "--epochs", "1")
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("lrtune train: error: --lr auto: range test inconclusive (flat")
    assert f"and confirm=False: no rate; see {out / 'lr_find' / 'lr_find.png'} and pass " \
           "--lr VALUE" in err


def test_lr_auto_confirms_an_inconclusive_range_test_by_itself(tmp_path, capsys):
    code, out = _train(tmp_path, "--lr", "auto", "--end-lr", "1e-5", "--num-iters", "50",
                       "--epochs", "1", "--batch-size", "128")
    assert code == 0
    printed = capsys.readouterr().out
    assert "auto_lr: the range test was inconclusive (flat" in printed
    summary = json.loads((out / "summary.json").read_text())
    auto = json.loads((out / "lr_find" / "auto_lr.json").read_text())
    assert summary["lr_source"] == "confirmation" and summary["lr"] == auto["lr"]
    assert auto["sweep"]["lrs"][-1] <= 1e-5 and len(auto["sweep"]["lrs"]) == 8


def _kill_when(out: Path, proc: subprocess.Popen, min_epoch: int, report: dict) -> None:
    """Poll the last checkpoint; SIGKILL the trainer once it holds epoch >= min_epoch."""
    last = out / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if last.exists():
            try:
                epoch = torch.load(last, weights_only=True)["epoch"]
            except Exception:  # only possible if the write were not atomic
                epoch = -1
                report["unreadable"] = True
            if epoch >= min_epoch:
                proc.kill()
                report["killed_after_epoch"] = epoch
                return
        time.sleep(0.01)


def kill_9_resume_and_compare(tmp_path, common: list[str], epochs: int):
    """Run ``lrtune train *common`` straight and, in a subprocess, killed with ``kill -9`` once
    epoch 2 is checkpointed, then ``--resume``d; assert weights, history and test loss are
    bit-identical. Returns the two runs' checkpoints (straight, killed) for further checks."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "lrtune", "train", *common, "--out", str(killed)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    report: dict = {}
    watcher = threading.Thread(target=_kill_when, args=(killed, proc, 2, report))
    watcher.start()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the straight run, meanwhile, in this process, like the children
    try:
        assert main(["train", *common, "--out", str(tmp_path / "straight")]) == 0
    finally:
        torch.set_num_threads(threads)
        watcher.join()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -9, f"not killed (rc {proc.returncode}): {err.decode()[-2000:]}"
    assert "unreadable" not in report
    assert 2 <= load_checkpoint(killed / "checkpoints" / "last.pt")["epoch"] < epochs

    resumed = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    straight = tmp_path / "straight"
    checkpoints = {}
    for name in ("last.pt", "best.pt"):
        a = load_checkpoint(straight / "checkpoints" / name)
        b = load_checkpoint(killed / "checkpoints" / name)
        assert a["epoch"] == b["epoch"]
        for key in a["model"]:
            assert torch.equal(a["model"][key], b["model"][key]), (name, key)
        checkpoints[name] = (a, b)
    assert _epochs_without_durations(killed) == _epochs_without_durations(straight)
    batches = [json.loads((d / "history.json").read_text())["batches"] for d in (straight, killed)]
    assert batches[0] == batches[1]
    summaries = [json.loads((d / "summary.json").read_text()) for d in (straight, killed)]
    assert summaries[0]["test_loss"] == summaries[1]["test_loss"]
    assert summaries[0]["best_epoch"] == summaries[1]["best_epoch"]
    return checkpoints


@pytest.mark.parametrize("extra", [
    [],
    ["--precision", "16-mixed", "--clip-grad-norm", "1.0", "--accumulation-steps", "2"],
], ids=["fp32", "fp16-scaler-clip-accumulate"])
def test_kill_9_and_resume_equals_a_straight_run(tmp_path, extra):
    """A real ``kill -9`` mid-run, then ``--resume``: weights and history bit-identical."""
    kill_9_resume_and_compare(tmp_path, ["--epochs", "6", "--lr", "0.05", "--momentum", "0.9",
                                         "--batch-size", "8", "--patience", "4", "--verbose",
                                         "0", *extra], epochs=6)


# --- these need the schedules and data packages of the other issues -------------------------

def test_linear_schedule_is_seed_004s_pair(tmp_path):
    pytest.importorskip("lrtune.schedules")
    import numpy as np

    code, out = _train(tmp_path, "--schedule", "linear", "--lr", "0.03", "--lr-end", "0.0001",
                       "--momentum", "0.9", "--momentum-end", "0.999", "--epochs", "4",
                       "--batch-size", "128")
    assert code == 0
    epochs = json.loads((out / "history.json").read_text())["epochs"]
    assert [r["lr"] for r in epochs] == pytest.approx(np.linspace(0.03, 0.0001, 4))
    assert [r["momentum"] for r in epochs] == pytest.approx(np.linspace(0.9, 0.999, 4))


@pytest.mark.parametrize("name", ["one_cycle", "cosine", "plateau"])
def test_other_schedules_run(tmp_path, name):
    pytest.importorskip("lrtune.schedules")
    code, out = _train(tmp_path, "--schedule", name, "--lr", "0.1", "--epochs", "2",
                       "--batch-size", "128")
    assert code == 0
    batches = json.loads((out / "history.json").read_text())["batches"]
    lrs = [b["lr"] for b in batches]
    if name == "plateau":
        assert lrs[0] == 0.1
    else:
        assert len(set(lrs)) > 2
        assert max(lrs) <= 0.1 + 1e-12


def test_unknown_schedule_is_a_usage_error(tmp_path, capsys):
    pytest.importorskip("lrtune.schedules")
    code, _ = _train(tmp_path, "--schedule", "zigzag", "--epochs", "1")
    assert code == 2
    assert "zigzag" in capsys.readouterr().err


def test_flip_needs_keypoints(tmp_path, capsys):
    pytest.importorskip("lrtune.data.augment")
    code, _ = _train(tmp_path, "--augment", "flip", "--epochs", "1")
    assert code == 2
    assert "digits" in capsys.readouterr().err


def test_lr_auto_confirms_under_trainings_own_schedule_lr_end_and_interval_included():
    from types import SimpleNamespace

    from lrtune.cli import build_parser
    from lrtune.cli.train import _build_schedules, _confirmation_schedule

    X, y = torch.randn(100, 4), torch.zeros(100, dtype=torch.long)
    splits = SimpleNamespace(train=(X, y))  # 4 steps an epoch at batch 32
    args = build_parser().parse_args(["train", "--lr", "auto", "--schedule", "linear",
                                      "--lr-end", "0.001", "--epochs", "5"])
    schedule = _confirmation_schedule(args, splits)
    assert schedule.name == "linear per epoch"  # linear steps per epoch, as in seed 004
    at = schedule(0.1)
    # the rate training's own scheduler sets at each optimizer step (per epoch here)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    scheduler = _build_schedules(args, opt, 0.1, per_epoch=4)
    assert scheduler.interval == "epoch"
    trained = scheduler.schedules["lr"]
    assert [at(t) for t in range(20)] == pytest.approx([trained(t // 4) for t in range(20)])
    assert at(19) == pytest.approx(0.001) and at(3) == at(0) == pytest.approx(0.1)
    per_batch = build_parser().parse_args(["train", "--lr", "auto", "--schedule", "one_cycle"])
    assert _confirmation_schedule(per_batch, splits) == "one_cycle"  # auto_lr builds the preset
    for constant in (["--schedule", "plateau"], []):
        assert _confirmation_schedule(build_parser().parse_args(
            ["train", "--lr", "auto", *constant]), splits) is None


def test_a_per_batch_schedule_spans_the_optimizer_steps_under_accumulation(tmp_path):
    # it was sized in micro-batches: with --accumulation-steps 4 one-cycle stopped a quarter of
    # the way through, its rate still rising (0.004 -> 0.096 of 0.1), never annealed
    code, out = _train(tmp_path, "--schedule", "one_cycle", "--lr", "0.1", "--epochs", "2",
                       "--accumulation-steps", "4", "--verbose", "0")
    assert code == 0
    lrs = [b["lr"] for b in json.loads((out / "history.json").read_text())["batches"]]
    assert len(lrs) == 18  # 2 epochs x ceil(34 batches / 4)
    assert max(lrs) == pytest.approx(0.1, rel=0.02) and lrs[-1] == pytest.approx(4e-7)


def test_a_run_too_short_for_its_schedule_fails_before_the_range_test(tmp_path, capsys,
                                                                       monkeypatch):
    import lrtune.auto as auto

    def no_search(*args, **kwargs):
        raise AssertionError("the search ran before the schedule was checked")

    monkeypatch.setattr(auto, "auto_lr", no_search)
    code, out = _train(tmp_path, "--schedule", "warmup_cosine", "--interval", "epoch",
                       "--epochs", "2", "--lr", "auto")
    assert code == 2 and not out.exists()
    assert ("--schedule warmup_cosine stepped per epoch gets 2 steps in --epochs 2: total_steps "
            "must be an integer >= 3, got 2") in capsys.readouterr().err

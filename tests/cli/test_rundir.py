"""Run folders: one writer, never clobbered, --overwrite loses nothing when the new run fails."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import lrtune
from lrtune.cli import main
from lrtune.cli.rundir import ASIDE, LOCK, OWNER, run_in_folder

SRC = Path(lrtune.__file__).resolve().parents[1]
TINY = ["--epochs", "1", "--batch-size", "128", "--lr", "0.05", "--verbose", "0"]
# lr 0.01 for epoch 1, then (interval epoch) 1e30: the loss is NaN in epoch 2
NAN_IN_EPOCH_2 = ["--epochs", "2", "--batch-size", "128", "--lr", "0.01", "--schedule", "linear",
                  "--interval", "epoch", "--lr-end", "1e30", "--verbose", "0"]
NAN_AT_ONCE = ["--epochs", "1", "--batch-size", "128", "--lr", "1e30", "--verbose", "0"]


def snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes()
            for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """A finished 1-epoch run; each test works on its own copy."""
    out = tmp_path_factory.mktemp("first") / "run"
    assert main(["train", "--out", str(out), *TINY]) == 0
    return out


@pytest.fixture
def run_dir(first_run, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(first_run, out)
    return out


def test_a_finished_run_leaves_no_lock_files(first_run):
    names = {p.name for p in first_run.iterdir()}
    assert {"summary.json", "checkpoints", "tensorboard", ".lrtune-run"} <= names
    assert not names & {LOCK, OWNER, ASIDE}


def test_a_second_run_is_refused_and_changes_nothing(run_dir, capsys):
    before = snapshot(run_dir)
    assert main(["train", "--out", str(run_dir), *TINY]) == 2
    err = capsys.readouterr().err
    assert err == (f"lrtune train: error: {run_dir} already holds a run (.lrtune-run, "
                   "checkpoints, history.csv, history.json, ...); use --resume to continue it "
                   "or --overwrite to replace it, or choose another --out\n")
    assert snapshot(run_dir) == before


@pytest.mark.parametrize(("failing", "epoch"), [(NAN_IN_EPOCH_2, 2), (NAN_AT_ONCE, 1)],
                         ids=["nan-epoch-2", "nan-epoch-1"])
def test_a_failing_overwrite_puts_the_first_run_back_byte_for_byte(run_dir, capsys, failing,
                                                                    epoch):
    before = snapshot(run_dir)
    assert main(["train", "--out", str(run_dir), "--overwrite", *failing]) == 1
    assert f"training stopped: the loss is nan at epoch {epoch}," in capsys.readouterr().err
    assert snapshot(run_dir) == before


def test_a_failing_run_without_overwrite_never_starts(run_dir, capsys):
    before = snapshot(run_dir)
    assert main(["train", "--out", str(run_dir), *NAN_IN_EPOCH_2]) == 2
    assert snapshot(run_dir) == before


def _events(run_dir):
    return {str(p.relative_to(run_dir)) for p in (run_dir / "tensorboard").rglob("events.*")}


def test_a_successful_overwrite_replaces_the_run(run_dir):
    old = json.loads((run_dir / "summary.json").read_text())
    old_events = _events(run_dir)
    assert main(["train", "--out", str(run_dir), "--overwrite", *TINY, "--lr", "0.02"]) == 0
    new = json.loads((run_dir / "summary.json").read_text())
    assert (old["lr"], new["lr"]) == (0.05, 0.02)
    assert not (run_dir / ASIDE).exists()
    assert old_events and _events(run_dir) and not old_events & _events(run_dir)  # old curves gone


def test_run_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        assert main(["train", "--out", str(tmp_path / "run"), *TINY]) == 0
    finally:
        os.umask(old)
    modes = {str(p.relative_to(tmp_path)): p.stat().st_mode & 0o777
             for p in (tmp_path / "run").rglob("*")}
    files = {k: m for k, m in modes.items() if not (tmp_path / k).is_dir()}
    assert set(files.values()) == {0o644}, files
    assert {m for k, m in modes.items() if k not in files} == {0o755}


def test_overwrite_and_resume_of_find_and_compare(run_dir, tmp_path, capsys):
    assert main(["find", "--out", str(run_dir), "--num-iters", "20"]) == 2
    assert "use --overwrite to replace it" in capsys.readouterr().err


HOLDER = """
import sys
from lrtune.cli.rundir import run_in_folder

def body():
    print("ready", flush=True)
    sys.stdin.readline()
    return 0

run_in_folder(sys.argv[1], body, command="train", resume=True)
"""


def test_a_second_writer_is_refused_naming_the_first_and_a_killed_lock_is_stale(run_dir, capsys):
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        before = snapshot(run_dir)
        for argv in (["train", "--out", str(run_dir), *TINY],
                     ["train", "--out", str(run_dir), "--resume", *TINY],
                     ["find", "--out", str(run_dir), "--overwrite", "--num-iters", "20"]):
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1
            assert f"{run_dir} is in use by another lrtune process (pid {holder.pid} on " in err
            assert snapshot(run_dir) == before
    finally:
        holder.send_signal(signal.SIGKILL)  # no cleanup runs: the lock file stays behind
        holder.wait()
        holder.stdin.close()
        holder.stdout.close()
    assert (run_dir / LOCK).exists() and (run_dir / OWNER).exists()
    # the kernel dropped the lock with the process: the next writer gets it at once
    assert run_in_folder(run_dir, lambda: 0, command="train", resume=True) == 0
    assert not (run_dir / LOCK).exists()


def test_a_killed_overwrite_is_reported_not_lost(run_dir, capsys):
    (run_dir / ASIDE).mkdir()
    (run_dir / ASIDE / "summary.json").write_text("{}")
    assert main(["train", "--out", str(run_dir), "--overwrite", *TINY]) == 2
    assert "holds a run that an interrupted --overwrite moved aside" in capsys.readouterr().err


def test_a_refused_fresh_folder_is_removed_again(tmp_path, capsys):
    out = tmp_path / "a" / "b"
    assert main(["train", "--out", str(out), "--resume", *TINY]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_refused_run_in_an_existing_empty_folder_leaves_it_empty(tmp_path, capsys):
    assert main(["demo", "--dataset", "synthetic-faces", "--out", str(tmp_path)]) == 2
    assert "regression dataset" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []

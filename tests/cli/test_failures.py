"""What the world does to a run: kill -9 between checkpoint writes, a full disk, a closed pipe."""

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

import lrtune
from lrtune.cli import main
from lrtune.training import load_checkpoint
from lrtune.training.checkpoint_io import TMP_SUFFIX

SRC = Path(lrtune.__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
TRAIN = ["train", "--epochs", "2", "--batch-size", "128", "--lr", "0.05", "--verbose", "0"]

# kill -9 this process as the 4th checkpoint file is about to be written: epoch 1 writes two
# (it always improves), epoch 2 (an improvement at this rate) writes one, then dies
KILLER = """
import os, signal, sys
import lrtune.training.callbacks.checkpoint as checkpoint
from lrtune.cli import main

write, calls = checkpoint.atomic_write_bytes, []

def write_then_die(data, path):
    calls.append(path.name)
    if len(calls) == 4:
        print(",".join(calls), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    return write(data, path)

checkpoint.atomic_write_bytes = write_then_die
sys.exit(main(sys.argv[1:]))
"""


def test_a_kill_between_the_two_checkpoint_writes_resumes_to_an_agreeing_best(tmp_path):
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-c", KILLER, *TRAIN, "--out", str(out)], env=ENV,
                          capture_output=True, text=True, check=False)
    assert done.returncode == -9, done.stderr
    assert sorted(done.stdout.strip().split(",")) == ["best.pt", "best.pt", "last.pt", "last.pt"]
    assert main([*TRAIN, "--out", str(out), "--resume"]) == 0  # redoes epoch 2
    summary = json.loads((out / "summary.json").read_text())
    best = load_checkpoint(out / "checkpoints" / "best.pt")
    last = load_checkpoint(out / "checkpoints" / "last.pt")
    assert summary["best_epoch"] == best["epoch"] == 2
    assert last["callbacks"]["Checkpoint"]["best_epoch"] == 2
    for key, value in best["model"].items():  # the resumed epoch 2 is the epoch 2 killed above
        assert torch.equal(value, last["model"][key])


def test_a_full_disk_is_one_line_and_the_last_checkpoints_stay_loadable(tmp_path, monkeypatch,
                                                                        capsys):
    calls = []
    real_fsync = os.fsync

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 5:  # epoch 1 wrote best.pt and last.pt (2 fsyncs each): epoch 2 fails
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    out = tmp_path / "run"
    assert main([*TRAIN, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err == ("lrtune train: error: No space left on device; the files written before "
                   "(checkpoints included) are complete\n")
    monkeypatch.undo()
    for name in ("best.pt", "last.pt"):
        assert load_checkpoint(out / "checkpoints" / name)["epoch"] == 1
    assert not list((out / "checkpoints").glob(f"*{TMP_SUFFIX}"))  # no half-written file


def test_output_piped_into_head_ends_quietly():
    with subprocess.Popen([sys.executable, "-m", "lrtune", "schedule", "linear", "--steps",
                           "200000", "--json"], env=ENV, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as proc:
        assert proc.stdout.read(16)  # `head -c 16`: read a little, then go away
        proc.stdout.close()
        err = proc.stderr.read().decode()
        proc.wait()
    assert err == ""
    assert proc.returncode == 141

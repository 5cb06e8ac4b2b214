"""Two processes on loopback with gloo: the range test and the Trainer under DDP.

Every launch has a hard timeout (and the process group one of 60 s), so a hang fails the test
instead of stalling the suite.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import lrtune
from lrtune import distributed
from lrtune.data import TensorBatches
from lrtune.training import load_checkpoint

HERE = Path(__file__).parent
SRC = Path(lrtune.__file__).resolve().parents[1]
TIMEOUT_S = 120


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo", **extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch_workers(out: Path, world: int = 2) -> list[str]:
    """Start ``world`` ranks of ddp_worker.py as torchrun would; their stdout, by rank."""
    port = str(_free_port())
    procs = [
        subprocess.Popen(
            [sys.executable, str(HERE / "ddp_worker.py"), str(out)],
            env=_env(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE=str(world),
                     MASTER_ADDR="127.0.0.1", MASTER_PORT=port),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for r in range(world)
    ]
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=TIMEOUT_S)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for r, p in enumerate(procs):
        assert p.returncode == 0, f"rank {r} failed:\n{outputs[r] if r < len(outputs) else ''}"
    return outputs


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    printed = _launch_workers(out)
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]
    return out, printed, ranks


@pytest.fixture(scope="module")
def one_process():
    import ddp_worker

    assert not distributed.is_distributed()
    return {"finder": ddp_worker.run_finder(32), "trainer": ddp_worker.run_trainer_epoch(32)}


# -- sharding rule (no process group needed) ---------------------------------------------------
def test_two_ranks_of_16_see_exactly_the_batches_of_one_process_of_32():
    X, y = torch.arange(200.0).unsqueeze(1), torch.arange(200)
    single = [yb for _, yb in TensorBatches(X, y, 32, seed=3)]
    shards = [[yb for _, yb in TensorBatches(X, y, 16, seed=3, rank=r, world_size=2)]
              for r in range(2)]
    assert len(single) == 7 and [len(s) for s in shards] == [7, 7]
    for k in range(6):
        assert torch.equal(torch.cat([shards[0][k], shards[1][k]]), single[k])
    # the ragged tail of 8 is split 4 + 4: the first 8 samples of the single process's tail
    assert [len(s[6]) for s in shards] == [4, 4]
    assert torch.equal(torch.cat([shards[0][6], shards[1][6]]), single[6])


def test_ragged_tail_gives_every_rank_the_same_steps_and_sizes():
    X, y = torch.arange(71.0).unsqueeze(1), torch.arange(71)
    # 3 ranks x 8: 2 global batches of 24, tail of 23 -> 7 each (2 samples left out)
    shards = [list(TensorBatches(X, y, 8, seed=0, rank=r, world_size=3)) for r in range(3)]
    assert [[len(b) for _, b in s] for s in shards] == [[8, 8, 7]] * 3
    seen = torch.cat([b for s in shards for _, b in s])
    assert len(seen) == 69 and len(set(seen.tolist())) == 69  # no sample twice
    assert len(TensorBatches(X, y, 8, rank=2, world_size=3)) == 3
    # a tail smaller than the world is dropped, as is any tail with drop_last
    assert len(TensorBatches(X[:49], y[:49], 8, rank=0, world_size=3)) == 2
    assert len(TensorBatches(X, y, 8, rank=0, world_size=3, drop_last=True)) == 2


def test_bad_rank_or_world_size():
    X, y = torch.zeros(4, 1), torch.zeros(4)
    with pytest.raises(ValueError, match=r"rank must be an integer in \[0, 2\), got 2"):
        TensorBatches(X, y, 2, rank=2, world_size=2)
    with pytest.raises(ValueError, match="world_size must be an integer >= 1, got 0"):
        TensorBatches(X, y, 2, world_size=0)


def test_one_process_helpers_do_nothing():
    t = torch.tensor([1.0, float("nan")])
    reduced = distributed.all_reduce(t, "max")
    assert reduced is not t and reduced[0] == 1 and reduced[1].isnan()
    assert distributed.all_reduce_min(7) == 7 and distributed.gather_objects("a") == ["a"]
    assert distributed.shard_pair((t, t)) == (t, t)
    net = torch.nn.Linear(2, 2)
    assert distributed.wrap(net, "cpu") is net and distributed.unwrap(net) is net
    distributed.barrier()
    distributed.teardown()  # no group: nothing to leave


def test_a_bad_reduce_op_is_refused_in_one_process_too():
    with pytest.raises(ValueError, match="op must be 'sum', 'mean', 'min' or 'max', got 'avg'"):
        distributed.all_reduce(torch.tensor([1.0]), "avg")


# -- two ranks ---------------------------------------------------------------------------------
def test_finder_curve_of_2x16_equals_1x32_and_all_ranks_agree(two_ranks, one_process):
    _, _, ranks = two_ranks
    single = one_process["finder"]
    for rank in ranks:
        got = rank["finder"]
        assert got["restored"]
        assert got["stop_reason"] == single["stop_reason"]
        assert got["losses"] == pytest.approx(single["losses"], rel=1e-4, abs=1e-6)
        assert got["val_losses"] == pytest.approx(single["val_losses"], rel=1e-4)
    r0, r1 = ranks[0]["finder"], ranks[1]["finder"]
    assert r0["losses"] == r1["losses"] and r0["val_losses"] == r1["val_losses"]  # bit-identical
    assert r0["stop_reason"] == r1["stop_reason"] == "diverged"
    assert (r0["suggested_lr"], r0["verdict"]) == (r1["suggested_lr"], r1["verdict"])
    assert len(r0["losses"]) > 8  # it wrapped around the 8 global batches
    # rank 0 holds none of the one validation sample: same curve, same recorded settings
    assert r0["one_sample_losses"] == r1["one_sample_losses"]
    assert r0["one_sample_settings"] == r1["one_sample_settings"]
    assert r0["one_sample_settings"]["val_every"] == 2


def test_a_nan_on_one_rank_stops_every_rank_at_the_same_step(two_ranks):
    _, _, ranks = two_ranks
    assert [r["nan"] for r in ranks] == [{"stop_reason": "non_finite", "steps": 4}] * 2


def test_trainer_epoch_of_2x16_equals_1x32(two_ranks, one_process):
    _, _, ranks = two_ranks
    single = one_process["trainer"]
    for rank in ranks:
        got = rank["trainer"]
        assert len(got["batch_losses"]) == 8
        assert got["batch_losses"] == pytest.approx(single["batch_losses"], rel=1e-4)
        for key in ("train_loss", "valid_loss", "valid_accuracy"):
            assert got["epoch"][key] == pytest.approx(single["epoch"][key], rel=1e-4), key
        # evaluate() splits 45 samples 22 / 23 and all-reduces sums and counts
        assert got["test"]["loss"] == pytest.approx(single["test"]["loss"], rel=1e-5)
        assert got["test"]["accuracy"] == pytest.approx(single["test"]["accuracy"], rel=1e-6)
    assert ranks[0]["trainer"]["batch_losses"] == ranks[1]["trainer"]["batch_losses"]


def test_dataloaders_of_different_lengths_stop_together(two_ranks):
    _, _, ranks = two_ranks
    assert [r["loader"]["len"] for r in ranks] == [2, 3]
    losses = [r["loader"]["batch_losses"] for r in ranks]
    assert len(losses[0]) == 4 and losses[0] == losses[1]  # 2 epochs x min(2, 3) batches


def test_only_rank_0_prints_the_table(two_ranks):
    _, printed, _ = two_ranks
    assert "Train loss" in printed[0] and "Valid loss" in printed[0]
    assert printed[1].strip() == ""


def test_resume_under_ddp_is_exact_and_checkpoints_are_portable(two_ranks):
    out, _, ranks = two_ranks
    for rank in ranks:
        got = rank["resume"]
        assert got["same_weights"]
        assert got["resumed_losses"] == got["whole_losses"]
    # each rank kept its own dropout stream (per-rank RNG restored), so they differ
    assert not torch.equal(ranks[0]["resume"]["rng"], ranks[1]["resume"]["rng"])
    state = load_checkpoint(out / "split" / "last.pt")
    assert not any(k.startswith("module.") for k in state["model"])  # loads in one process too
    assert len(state["rng_ranks"]) == 2
    assert sorted(p.name for p in (out / "split").iterdir()) == ["best.pt", "last.pt"]


# -- the real CLI under torchrun ---------------------------------------------------------------
def _torchrun(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", "-m", "lrtune", *argv]
    return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=TIMEOUT_S, check=False)


def test_cli_find_under_torchrun_writes_once_and_ranks_agree(tmp_path):
    done = _torchrun("find", "--num-iters", "40", "--start-lr", "1e-4", "--batch-size", "16",
                     "--out", "run", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("range test on digits (mlp, sgd, 2 ranks x batch 16)") == 1
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".lrtune-run", "lr_find.json",
                                                                     "lr_find.png"]
    data = json.loads((tmp_path / "run" / "lr_find.json").read_text())
    assert len(data["losses"]) <= 40 and data["settings"]["batch_size"] == 16


def test_cli_train_lr_auto_under_torchrun_confirms_on_rank_0_and_ranks_agree(tmp_path):
    # auto_lr confirms by default, on rank 0
    done = _torchrun("train", "--lr", "auto", "--num-iters", "40", "--start-lr", "1e-4",
                     "--confirm-fraction", "1", "--epochs", "1", "--batch-size", "16",
                     "--verbose", "2", "--out", "run", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("auto_lr: ") == 1 and "confirming 8 rates" in done.stdout
    auto = json.loads((tmp_path / "run" / "lr_find" / "auto_lr.json").read_text())
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert auto["decided_by"] == "confirmation" and summary["lr"] == auto["lr"]
    assert auto["finder"]["settings"]["batch_size"] == 16  # the range test ran on both ranks
    assert done.stdout.count("batch size 16 per process x 2 = 32") == 1


def test_cli_train_under_ddp_resumes_and_rank_0_alone_writes(two_ranks):
    out, printed, ranks = two_ranks
    assert ranks[0]["cli_codes"] == ranks[1]["cli_codes"] == [0, 0]
    assert printed[0].count("batch size 16 per process x 2 = 32") == 2
    assert printed[0].count("(resumed after epoch 1)") == 1
    history = json.loads((out / "cli" / "history.json").read_text())
    assert [r["epoch"] for r in history["epochs"]] == [1, 2]
    assert len(history["batches"]) == 2 * 34  # 1077 = 33 x 32 + a tail of 21 cut to 2 x 10
    summary = json.loads((out / "cli" / "summary.json").read_text())
    assert summary["epochs_run"] == 2 and 0.5 < summary["test_accuracy"] <= 1
    state = load_checkpoint(out / "cli" / "checkpoints" / "last.pt")
    assert state["epoch"] == 2 and state["extra"]["settings"]["world_size"] == 2
    assert not any(k.startswith("module.") for k in state["model"])


def test_commands_other_than_find_and_train_refuse_torchrun(monkeypatch, capsys):
    from lrtune.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(["demo", "--out", "unused"]) == 2
    err = capsys.readouterr().err
    assert err == ("lrtune demo (rank 1/2): error: only find and train run under torchrun "
                   "(WORLD_SIZE=2); run demo in one process\n")
    assert not distributed.is_distributed()

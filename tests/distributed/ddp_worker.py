"""One rank of the two-process gloo tests (``test_ddp.py`` starts two of these on loopback).

Run as ``python ddp_worker.py OUT_DIR`` with ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and
``MASTER_PORT`` set, as torchrun would. Each rank writes ``OUT_DIR/rank<r>.pt`` with what it
recorded; rank 0 alone writes the checkpoints. The same functions run in one process (no group)
in the test, with the global batch size, for the comparison.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from lrtune import distributed
from lrtune.cli import main as main_cli
from lrtune.finder import find_lr
from lrtune.training import Checkpoint, Trainer

N_TRAIN, N_VALID = 256, 45  # 8 global batches of 32; 45 validation samples split 22 / 23


def problem():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(N_TRAIN + N_VALID, 6, generator=gen)
    y = (X @ torch.randn(6, 3, generator=gen)).argmax(1)
    return (X[:N_TRAIN], y[:N_TRAIN]), (X[N_TRAIN:], y[N_TRAIN:])


def model(dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Dropout(dropout), nn.Linear(32, 3))


def run_finder(batch_size: int) -> dict:
    net = model()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    train, valid = problem()
    # 40 steps of 8 global batches: the order wraps around 4 times; end_lr high enough to diverge
    result = find_lr(distributed.wrap(net, "cpu"), optimizer, nn.CrossEntropyLoss(), train,
                     start_lr=1e-3, end_lr=100.0, num_iters=40, batch_size=batch_size)
    val = find_lr(distributed.wrap(net, "cpu"), optimizer, nn.CrossEntropyLoss(), train,
                  val_data=valid, val_every=3, start_lr=1e-3, end_lr=1.0, num_iters=12,
                  batch_size=batch_size)
    # one validation sample: rank 0's share is empty, its result must still match rank 1's
    one = find_lr(distributed.wrap(net, "cpu"), optimizer, nn.CrossEntropyLoss(), train,
                  val_data=(valid[0][:1], valid[1][:1]), val_every=2, num_iters=3,
                  batch_size=batch_size)
    restored = all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    return {"losses": result.train_losses, "stop_reason": result.stop_reason,
            "suggested_lr": result.suggested_lr, "verdict": result.verdict,
            "val_losses": val.losses, "restored": restored,
            "one_sample_settings": one.settings, "one_sample_losses": one.losses}


def run_nan_on_one_rank() -> dict:
    """Rank 1's loss is NaN at the 5th step: every rank must stop there (no hang)."""
    calls = [0]

    def loss_fn(output, target):
        calls[0] += 1
        loss = nn.functional.cross_entropy(output, target)
        return loss * float("nan") if distributed.rank() == 1 and calls[0] == 5 else loss

    net = model()
    result = find_lr(distributed.wrap(net, "cpu"), torch.optim.SGD(net.parameters(), lr=0.1),
                     loss_fn, problem()[0], start_lr=1e-4, end_lr=1e-2, num_iters=20,
                     batch_size=16)
    return {"stop_reason": result.stop_reason, "steps": len(result.train_losses)}


def run_trainer_epoch(batch_size: int) -> dict:
    net = model()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
    trainer = Trainer(distributed.wrap(net, "cpu"), optimizer, nn.CrossEntropyLoss(),
                      metrics=["accuracy"], device="cpu", verbose=2)
    train, valid = problem()
    history = trainer.fit(train, valid, epochs=1, batch_size=batch_size)
    return {"batch_losses": [b["loss"] for b in history.batches],
            "sizes": [b.get("size") for b in history.batches], "epoch": history.epochs[0],
            "test": trainer.evaluate(valid, batch_size=8)}


def run_loader() -> dict:
    """A DataLoader with a DistributedSampler that gives the ranks 2 and 3 batches: no hang,
    every rank stops after 2 (the all-reduced minimum)."""
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

    (X, y), _ = problem()
    n = 64 + 16 * distributed.rank()  # rank 0: 32 samples, rank 1: 40 (3 batches of 16)
    dataset = TensorDataset(X[:n], y[:n])
    loader = DataLoader(dataset, batch_size=16, sampler=DistributedSampler(dataset, seed=0))
    net = model()
    trainer = Trainer(distributed.wrap(net, "cpu"), torch.optim.SGD(net.parameters(), lr=0.1),
                      nn.CrossEntropyLoss(), device="cpu", verbose=0)
    history = trainer.fit(loader, epochs=2)
    return {"len": len(loader), "batch_losses": [b["loss"] for b in history.batches]}


def run_resume(folder: Path) -> dict:
    """Uninterrupted 3 epochs vs 2 epochs + resume to 3, with dropout and per-rank RNG."""
    train, valid = problem()

    def fit(epochs: int, where: Path, resume=None):
        net = model(dropout=0.3)
        torch.manual_seed(100 + distributed.rank())  # a different dropout stream per rank
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        trainer = Trainer(distributed.wrap(net, "cpu"), optimizer, nn.CrossEntropyLoss(),
                          callbacks=[Checkpoint(where)], device="cpu", verbose=0)
        trainer.fit(train, valid, epochs=epochs, batch_size=16, resume=resume)
        return trainer, net

    whole, whole_net = fit(3, folder / "whole")
    fit(2, folder / "split")
    resumed, resumed_net = fit(3, folder / "split", resume=folder / "split" / "last.pt")
    return {
        "same_weights": all(torch.equal(a, b) for a, b in zip(
            whole_net.state_dict().values(), resumed_net.state_dict().values(), strict=True)),
        "whole_losses": [b["loss"] for b in whole.history.batches],
        "resumed_losses": [b["loss"] for b in resumed.history.batches],
        "rng": torch.get_rng_state(),
    }


def run_cli_train(out: Path) -> list[int]:
    """``lrtune train`` in this process group: 1 epoch, then resumed to 2 (exactness of a resume
    under DDP is :func:`run_resume`'s test)."""
    common = ["train", "--lr", "0.05", "--momentum", "0.9", "--batch-size", "16", "--verbose", "2",
              "--out", str(out / "cli")]
    return [main_cli([*common, "--epochs", "1"]),
            main_cli([*common, "--epochs", "2", "--resume"])]


def main(out: Path) -> None:
    distributed.setup_from_env("cpu", timeout_s=60)
    try:
        record = {"finder": run_finder(16), "trainer": run_trainer_epoch(16),
                  "loader": run_loader(), "nan": run_nan_on_one_rank(),
                  "resume": run_resume(out), "cli_codes": run_cli_train(out)}
        torch.save(record, out / f"rank{distributed.rank()}.pt")
    finally:
        distributed.teardown()


if __name__ == "__main__":
    main(Path(sys.argv[1]))

"""Models and data for the Lightning tests, and one rank of their two-process ``ddp`` run.

``python lightning_worker.py OUT_DIR`` starts a ``Trainer(strategy="ddp", devices=2)`` on CPU
(Lightning launches the second rank itself); each rank writes ``OUT_DIR/rank<r>.json`` with
what it recorded: ``find_lr(module, trainer)`` first, then a fit with the ``LRFinder``
callback. Everything is float64 so the curves compare tightly with one process.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset

from lrtune.integrations.lightning import LRFinder, find_lr

N, BATCH = 96, 16  # 6 batches a pass
SWEEP = dict(start_lr=1e-4, end_lr=30.0, num_iters=30)  # diverges before the end
QUIET = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False,
             enable_model_summary=False, num_sanity_val_steps=0)


def problem() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(N, 5, generator=gen, dtype=torch.float64)
    y = (X @ torch.randn(5, 3, generator=gen, dtype=torch.float64)).argmax(1)
    return X, y


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3)).double()


class Pairs(Dataset):
    """The problem as ``{"x": ..., "y": ...}`` samples: the default collate makes dict batches."""

    def __init__(self) -> None:
        self.X, self.y = problem()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.X[i], "y": self.y[i]}


def loader(*, dicts: bool = False, shuffle: bool = True, batch_size: int = BATCH) -> DataLoader:
    """A fresh loader: its own seeded generator gives every caller the same order."""
    data = Pairs() if dicts else TensorDataset(*problem())
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle,
                      generator=torch.Generator().manual_seed(0))


class ShardedOrder:
    """The global batches of a 2-rank run under Lightning's default ``DistributedSampler``
    (``shuffle=True``, ``seed=0``, one epoch per pass; each rank takes every other index):
    the same samples per optimizer step as the two ranks together, in one process."""

    def __init__(self) -> None:
        self.epoch = 0

    def __iter__(self):
        order = torch.randperm(N, generator=torch.Generator().manual_seed(self.epoch)).tolist()
        self.epoch += 1
        X, y = problem()
        shards, half = [order[0::2], order[1::2]], BATCH // 2
        for k in range(0, N // 2, half):
            index = shards[0][k:k + half] + shards[1][k:k + half]
            yield X[index], y[index]


class Plain(pl.LightningModule):
    """Cross-entropy (with optional label smoothing) on ``(x, y)`` batches; logs its loss."""

    def __init__(self, lr: float = 0.1, smoothing: float = 0.0, head_ratio: float = 1.0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = net()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y, label_smoothing=self.hparams.smoothing)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        body, head = self.net[0].parameters(), self.net[2].parameters()
        return torch.optim.SGD([{"params": body},
                                {"params": head, "lr": self.hparams.lr * self.hparams.head_ratio}],
                               lr=self.hparams.lr, momentum=0.9)


def main(out: Path) -> None:
    X, y = problem()
    # one rank sees half of each global batch: DistributedSampler(shuffle=False) interleaves
    data = DataLoader(TensorDataset(X, y), batch_size=BATCH // 2, shuffle=False)
    module = Plain()
    trainer = pl.Trainer(strategy="ddp", accelerator="cpu", devices=2, max_steps=2, **QUIET)
    found = find_lr(module, trainer, data, update_attr=True, **SWEEP)
    callback = LRFinder(**SWEEP)
    trainer = pl.Trainer(strategy="ddp", accelerator="cpu", devices=2, max_steps=2,
                         callbacks=[callback], **QUIET)
    trainer.fit(Plain(), data)
    fitted = callback.result_
    record = {
        "world_size": trainer.world_size,
        "find_lr": {"losses": found.train_losses, "lrs": found.train_lrs,
                    "suggested_lr": found.suggested_lr, "hparams_lr": module.hparams.lr},
        "callback": {"losses": fitted.train_losses, "suggested_lr": fitted.suggested_lr,
                     "optimizer_lr": trainer.optimizers[0].param_groups[0]["lr"]},
    }
    (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(Path(sys.argv[1]))

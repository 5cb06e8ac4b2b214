"""Small shared pieces for the training tests: data, models and a fake scheduler."""

from __future__ import annotations

import pytest
import torch
from torch import nn


class FakeScheduler:
    """The scheduler protocol (interval/apply/step/state_dict/load_state_dict/values), with an
    lr that halves every unit and a momentum that grows; records what the trainer did."""

    def __init__(self, optimizer, interval: str = "batch", lr: float = 0.1) -> None:
        self.optimizer, self.interval, self.lr0 = optimizer, interval, lr
        self.step_count, self.applies, self.seen_logs = 0, 0, []

    def lr_at(self, step: int) -> float:
        return self.lr0 * 0.5 ** step

    def momentum_at(self, step: int) -> float:
        return min(0.99, 0.5 + 0.01 * step)

    def apply(self) -> None:
        self.applies += 1
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step_count)
            group["momentum"] = self.momentum_at(self.step_count)

    def step(self, logs=None) -> None:
        self.seen_logs.append(None if logs is None else dict(logs))
        self.step_count += 1
        self.apply()

    def values(self):
        return {"lr": [g["lr"] for g in self.optimizer.param_groups],
                "momentum": [g["momentum"] for g in self.optimizer.param_groups]}

    def state_dict(self):
        return {"step": self.step_count}

    def load_state_dict(self, state) -> None:
        self.step_count = state["step"]
        self.apply()


def make_data(n: int = 96, features: int = 6, classes: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, features, generator=g)
    w = torch.randn(features, classes, generator=g)
    y = (X @ w).argmax(1)
    return X, y


def make_model(seed: int = 0, dropout: float = 0.0, features: int = 6, classes: int = 3):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(features, 16), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(16, classes))


@pytest.fixture
def data():
    return make_data(), make_data(48, seed=1)

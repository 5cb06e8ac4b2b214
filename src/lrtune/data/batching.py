"""Fast in-memory batching of tensors: the ``(X, y)`` path, used wherever no DataLoader is given.

Benchmark against ``DataLoader(TensorDataset)``: ``benchmarks/bench_batching.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader


class TensorBatches:
    """Iterate ``(X[idx], y[idx])`` mini-batches of in-memory tensors.

    Each pass (``iter()``) draws a new permutation from a private generator seeded with
    ``seed + pass number``, so batching is repeatable and never touches torch's global RNG.

    Args:
        X: inputs, first dimension is the sample axis.
        y: targets with the same first dimension.
        batch_size: samples per batch (> 0).
        shuffle: draw a fresh permutation each pass.
        seed: base seed of the permutations.
        drop_last: drop the last batch when it is smaller than ``batch_size``.

    Examples:
        >>> X, y = torch.arange(10.0).unsqueeze(1), torch.arange(10)
        >>> [len(yb) for _, yb in TensorBatches(X, y, batch_size=4, shuffle=False)]
        [4, 4, 2]
    """

    def __init__(
        self,
        X: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if not isinstance(X, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise TypeError("X and y must be torch tensors")
        if len(X) != len(y):
            raise ValueError(f"X and y have different lengths: {len(X)} and {len(y)}")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {batch_size}")
        self.X, self.y = X, y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.passes = 0  # how many passes have started; part of the state for exact resume

    def __len__(self) -> int:
        n = len(self.X)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, bs = len(self.X), self.batch_size
        stop = len(self) * bs
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed + self.passes)
            order = torch.randperm(n, generator=gen).to(self.X.device)
        self.passes += 1
        for start in range(0, min(stop, n), bs):
            if self.shuffle:
                idx = order[start : start + bs]
                yield self.X.index_select(0, idx), self.y.index_select(0, idx)
            else:
                yield self.X[start : start + bs], self.y[start : start + bs]


    def state_dict(self) -> dict:
        """How many passes have started: restoring it replays the same permutations."""
        return {"passes": self.passes}

    def load_state_dict(self, state: dict) -> None:
        self.passes = int(state["passes"])


def as_batches(data, batch_size: int, *, shuffle: bool = True, seed: int = 0, drop_last=False):
    """Accept a ``DataLoader`` (returned as is) or an ``(X, y)`` pair (wrapped in TensorBatches)."""
    if isinstance(data, DataLoader | TensorBatches):
        return data
    if isinstance(data, tuple | list) and len(data) == 2:
        X, y = data
        return TensorBatches(X, y, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last)
    raise TypeError(
        f"data must be a torch DataLoader or an (X, y) pair of tensors, got {type(data).__name__}"
    )

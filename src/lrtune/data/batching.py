"""Fast in-memory batching of tensors: the ``(X, y)`` path, used wherever no DataLoader is given.

Benchmark against ``DataLoader(TensorDataset)``: ``benchmarks/bench_batching.py``.
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Iterator

import numpy as np
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
        rank, world_size: this process's share under data parallelism (see below).

    Sharding (``world_size > 1``): every rank draws the same permutation; each step takes a
    global batch of ``batch_size * world_size`` samples and rank ``r`` takes its ``r``-th
    contiguous slice, so 2 ranks x 16 see exactly the samples 1 process x 32 sees. Every rank
    must take the same number of steps (a rank with one batch more would wait forever in the
    gradient all-reduce), and every rank's batch must hold as many samples (so averaging the
    ranks' gradients equals the gradient of the global mean). Hence the ragged last global
    batch of ``m`` samples is cut to ``world_size * (m // world_size)`` samples split evenly,
    and dropped when ``m < world_size`` or ``drop_last``; at most ``world_size - 1`` samples per
    pass are left out (different ones each pass when shuffling).

    Examples:
        >>> X, y = torch.arange(10.0).unsqueeze(1), torch.arange(10)
        >>> [len(yb) for _, yb in TensorBatches(X, y, batch_size=4, shuffle=False)]
        [4, 4, 2]
        >>> [yb.tolist() for _, yb in TensorBatches(X, y, 2, shuffle=False, rank=1, world_size=2)]
        [[2, 3], [6, 7], [9]]
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
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not isinstance(X, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise TypeError("X and y must be torch tensors")
        if len(X) != len(y):
            raise ValueError(f"X and y have different lengths: {len(X)} and {len(y)}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
            raise ValueError(f"batch_size must be an integer > 0, got {batch_size!r}")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {batch_size}")
        if not (isinstance(world_size, int) and world_size >= 1):
            raise ValueError(f"world_size must be an integer >= 1, got {world_size!r}")
        if not (isinstance(rank, int) and 0 <= rank < world_size):
            raise ValueError(f"rank must be an integer in [0, {world_size}), got {rank!r}")
        self.X, self.y = X, y
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.rank, self.world_size = rank, world_size
        self.passes = 0  # how many passes have started; part of the state for exact resume

    def __len__(self) -> int:
        n = len(self.X)
        if self.world_size > 1:
            full, tail = divmod(n, self.batch_size * self.world_size)
            return full + (0 if self.drop_last or tail < self.world_size else 1)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.world_size > 1:
            yield from self._shard()
            return
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

    def _shard(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's slices of the global batches (the rule in the class docstring)."""
        n, w = len(self.X), self.world_size
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed + self.passes)
            order = torch.randperm(n, generator=gen).to(self.X.device)
        else:
            order = torch.arange(n, device=self.X.device)
        self.passes += 1
        glob = self.batch_size * w
        for step in range(len(self)):
            start = step * glob
            share = min(glob, n - start) // w  # batch_size, or the even cut of the ragged tail
            idx = order[start + self.rank * share : start + (self.rank + 1) * share]
            yield self.X.index_select(0, idx), self.y.index_select(0, idx)

    def state_dict(self) -> dict:
        """How many passes have started: restoring it replays the same permutations."""
        return {"passes": self.passes}

    def load_state_dict(self, state: dict) -> None:
        self.passes = int(state["passes"])


def as_batches(data, batch_size: int, *, shuffle: bool = True, seed: int = 0, drop_last=False,
               rank: int = 0, world_size: int = 1):
    """Accept a ``DataLoader`` or any other re-iterable of batches (returned as is), or an
    ``(X, y)`` pair of tensors (wrapped in TensorBatches, sharded as ``rank`` of ``world_size``).
    """
    if isinstance(data, DataLoader | TensorBatches):
        return data
    if isinstance(data, tuple | list) and len(data) == 2 and all(
            isinstance(t, torch.Tensor) for t in data):
        X, y = data
        return TensorBatches(X, y, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last,
                             rank=rank, world_size=world_size)
    if isinstance(data, tuple | list) and len(data) == 2 and any(
            isinstance(t, np.ndarray) for t in data):
        # else iterated as two "batches", X then y, and refused later as a bare array batch
        kinds = " and ".join(type(t).__name__ for t in data)
        raise TypeError(f"data is an (X, y) pair of {kinds}; pass torch tensors: "
                        "(torch.as_tensor(X), torch.as_tensor(y))")
    if isinstance(data, torch.Tensor | str | bytes | dict) or not hasattr(data, "__iter__"):
        raise TypeError(
            f"data must be a DataLoader, an iterable of batches or an (X, y) pair of tensors, "
            f"got {type(data).__name__}"
        )
    if iter(data) is data:
        raise TypeError(
            f"data is a one-shot iterator ({type(data).__name__}); pass something that can be "
            "iterated again each pass, such as a DataLoader or a list of batches"
        )
    return data


def batches_per_epoch(batches) -> int | None:
    """``len(batches)``, or ``None`` for batches with no length (a re-iterable without
    ``__len__``, a DataLoader over an IterableDataset, whose ``len`` raises).

    Examples:
        >>> batches_per_epoch([1, 2, 3]), batches_per_epoch(range(0)), batches_per_epoch(
        ...     type("Stream", (), {"__iter__": lambda self: iter([])})())
        (3, 0, None)
    """
    try:
        return len(batches)
    except TypeError:
        return None


def data_generators(*sources) -> list[torch.Generator]:
    """The ``torch.Generator`` objects the data draw their order from: a DataLoader's own
    ``generator=`` (which also seeds its workers) and its sampler's."""
    found: list[torch.Generator] = []
    for source in sources:
        batch_sampler = getattr(source, "batch_sampler", None)
        for holder in (source, getattr(source, "sampler", None),
                       getattr(batch_sampler, "sampler", None)):
            generator = getattr(holder, "generator", None)
            if isinstance(generator, torch.Generator) and all(generator is not g for g in found):
                found.append(generator)
    return found


@contextlib.contextmanager
def kept_generators(*sources):
    """Put the data's generators (:func:`data_generators`) back afterwards: iterating a
    DataLoader seeded with ``generator=`` advances it, which would change the order of the
    user's next epoch."""
    generators = data_generators(*sources)
    states = [g.get_state() for g in generators]
    try:
        yield
    finally:
        for generator, state in zip(generators, states, strict=True):
            generator.set_state(state)

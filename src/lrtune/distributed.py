"""Rank and world helpers over ``torch.distributed``; a single process is world size 1.

Every helper works without a process group (world size 1, rank 0) and then does no
communication at all, so single-process code paths pay nothing. Under ``torchrun`` the CLI calls
:func:`setup_from_env` / :func:`teardown`; inside your own DDP script, initialise the process
group yourself and :func:`lrtune.find_lr` and :class:`lrtune.Trainer` pick it up.

Examples:
    >>> world_size(), rank(), is_main(), is_distributed()
    (1, 0, True, False)
    >>> all_reduce_mean(torch.tensor([1.0, 3.0]))
    tensor([1., 3.])
    >>> broadcast_object({"lr": 0.1})
    {'lr': 0.1}
    >>> shard_slice(10, rank=1, world_size=3)
    slice(3, 6, None)
"""

from __future__ import annotations

import datetime
import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

DEFAULT_TIMEOUT_S = 600.0  # a rank that never arrives fails the run instead of hanging it forever


def is_distributed() -> bool:
    """A process group is initialised and holds more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of processes in the default group (1 without one)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank in the default group (0 without one)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """Rank 0: the one process that writes files and prints."""
    return rank() == 0


def _comm_device() -> torch.device:
    """Where collective tensors must live: the current CUDA device for NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """``op`` ("sum", "mean", "min", "max") of ``tensor`` over all ranks, returned as a new
    tensor on ``tensor``'s device (the input is left alone). Without a group: a copy."""
    if op not in ("sum", "mean", "min", "max"):  # checked in one process too, not only under DDP
        raise ValueError(f"op must be 'sum', 'mean', 'min' or 'max', got {op!r}")
    if not is_distributed():
        return tensor.clone()
    work = tensor.detach().to(_comm_device(), copy=True)
    reduce_op = {"sum": dist.ReduceOp.SUM, "mean": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN,
                 "max": dist.ReduceOp.MAX}[op]
    dist.all_reduce(work, op=reduce_op)
    if op == "mean":
        work /= dist.get_world_size()
    return work.to(tensor.device)


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of ``tensor`` over all ranks (NaN or inf on one rank is non-finite everywhere)."""
    return all_reduce(tensor, "mean")


def all_reduce_min(value: int) -> int:
    """The smallest ``value`` over all ranks, e.g. the number of batches every rank can take."""
    if not is_distributed():
        return value
    return int(all_reduce(torch.tensor(value, dtype=torch.int64), "min").item())


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (pickled; only for objects this program made)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, device=_comm_device())
    return box[0]


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` as a list indexed by rank, on every rank."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    """Wait until every rank gets here (no-op in one process)."""
    if is_distributed():
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def shard_slice(n: int, *, rank: int, world_size: int) -> slice:
    """Rank ``rank``'s contiguous share of ``n`` items (sizes differ by at most one).

    Used for evaluation, where sums and counts are all-reduced, so uneven shares are exact.
    """
    return slice(n * rank // world_size, n * (rank + 1) // world_size)


def shard_pair(data: Any) -> Any:
    """This rank's contiguous share of an ``(X, y)`` tensor pair; anything else as is.

    A ``DataLoader`` is left to its sampler (bring a ``DistributedSampler``).
    """
    if not is_distributed() or not (isinstance(data, tuple | list) and len(data) == 2
                                    and all(isinstance(t, torch.Tensor) for t in data)):
        return data
    X, y = data
    part = shard_slice(len(X), rank=rank(), world_size=world_size())
    return X[part], y[part]


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` (or ``DataParallel``) wrapper."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel
                                      | nn.DataParallel) else model


def wrap(model: nn.Module, device: torch.device | str) -> nn.Module:
    """``model`` wrapped in ``DistributedDataParallel`` under a process group, else as is."""
    if not is_distributed():
        return model
    device = torch.device(device)
    ids = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def setup_from_env(device: str | torch.device | None = None, *,
                   timeout_s: float = DEFAULT_TIMEOUT_S) -> torch.device:
    """Join the process group ``torchrun`` describes in the environment; return this rank's device.

    ``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
    ``MASTER_PORT``. The backend is NCCL when ``device`` is CUDA (``None``: when CUDA is
    available), and gloo otherwise; a CUDA rank gets the GPU ``cuda:LOCAL_RANK``.

    Args:
        device: the device asked for (``"cpu"``, ``"cuda"``, ``None`` for auto).
        timeout_s: how long a collective waits for a missing rank before failing.

    Returns:
        The device this rank should use.
    """
    if device is None or str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs: dict[str, Any] = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s),
                                **kwargs)
    return device


def teardown() -> None:
    """Leave the process group (if one is initialised)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()

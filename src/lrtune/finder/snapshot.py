"""One CPU copy of model, optimizer, gradient and RNG state, put back bit-for-bit."""

from __future__ import annotations

import copy

import torch
from torch import nn

from lrtune.data.batching import data_generators


def cpu_copy(obj):
    """Deep-copy a (nested) state dict, moving every tensor to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(cpu_copy(v) for v in obj)
    return copy.deepcopy(obj)


class Snapshot:
    """Capture now, ``restore()`` later: parameters, buffers, optimizer state, RNG (the data's
    generators too), train mode and the parameters' ``.grad`` (``None``, usually: a loop that
    zeroes its gradients after ``optimizer.step()`` would otherwise add the sweep's last,
    diverged gradients to its first step).

    Only one copy is held, on the CPU, whatever device the model lives on.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                 data: tuple = ()) -> None:
        self.model, self.optimizer = model, optimizer
        self.generators = data_generators(*data)  # ``data``: DataLoaders whose order to keep
        self.generator_states = [g.get_state() for g in self.generators]
        self.model_state = cpu_copy(model.state_dict())
        self.optimizer_state = cpu_copy(optimizer.state_dict()) if optimizer else None
        self.modes = {name: m.training for name, m in model.named_modules()}
        self.grads = [None if p.grad is None else cpu_copy(p.grad) for p in model.parameters()]
        self.cpu_rng = torch.get_rng_state()
        self.cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None

    def restore(self) -> None:
        self.model.load_state_dict(self.model_state)
        if self.optimizer is not None:
            self.optimizer.load_state_dict(self.optimizer_state)
        for name, m in self.model.named_modules():
            m.training = self.modes.get(name, m.training)
        for p, grad in zip(self.model.parameters(), self.grads, strict=True):
            p.grad = None if grad is None else grad.to(p.device)
        torch.set_rng_state(self.cpu_rng)
        for generator, state in zip(self.generators, self.generator_states, strict=True):
            generator.set_state(state)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)

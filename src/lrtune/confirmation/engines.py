"""Three ways to train K copies of a model, one learning rate each, on the same batches.

- ``batched``: hand-written batched matmuls for plain MLPs (``nn.Sequential`` of Linear,
  Flatten, Dropout and elementwise activations). The first layer's input is shared by every
  copy, so it runs as one wide matmul; later layers run as ``baddbmm`` over the copies.
- ``vmap``: any module ``torch.func.vmap`` can batch (Conv, BatchNorm, pooling ...):
  ``functional_call`` over stacked parameters and buffers, the batch shared (``in_dims=(0, 0,
  None)``), dropout with ``randomness="same"``.
- ``sequential``: K real modules and K torch optimizers, one after another, each driven by the
  shared :class:`~lrtune.steps.StepRunner`; the fallback for modules that cannot be vectorised,
  custom steps, 16-bit precision and optimizers other than SGD/Adam/AdamW, with the same
  results.

All three see the same global RNG state at every step for every copy, so dropout draws the mask
a separate plain run (seeded the same) would draw, and K copies differ only by their rate.
The stacked engines sum the K losses and differentiate once: copies share no parameter, so the
gradient of the sum with respect to copy k's parameters is copy k's own gradient.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lrtune.confirmation.losses import per_copy_loss
from lrtune.confirmation.optim import Layout, OptimSpec, StackedOptimizer
from lrtune.steps import StepRunner, autocast, primary_output, to_device


class SweepFallbackWarning(UserWarning):
    """The model could not be vectorised; the copies train one after another instead."""


_ELEMENTWISE = (
    nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Softplus, nn.Mish,
    nn.Hardtanh, nn.ReLU6, nn.SELU, nn.CELU, nn.Hardswish, nn.Hardsigmoid, nn.Identity,
)


def _rng_state(device: torch.device):
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state, device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def _stack(t: torch.Tensor, k: int) -> torch.Tensor:
    return t.detach().unsqueeze(0).expand(k, *t.shape).clone()


@dataclass
class Training:
    """How every copy trains: the step, precision and clipping (as in the Trainer)."""

    loss_fn: Any = None
    step: Any = None
    precision: str = "32"
    clip_grad_norm: float | None = None
    clip_grad_value: float | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def runner(self, model: nn.Module, optimizer=None) -> StepRunner:
        return StepRunner(model, optimizer, self.step, self.loss_fn, device=self.device,
                          precision=self.precision, clip_grad_norm=self.clip_grad_norm,
                          clip_grad_value=self.clip_grad_value)


def _clip(grads: list[torch.Tensor | None], norm: float | None, value: float | None) -> list:
    """torch's ``clip_grad_value_`` then ``clip_grad_norm_``, for each copy separately."""
    if value is not None:
        grads = [None if g is None else g.clamp(-value, value) for g in grads]
    if norm is not None:
        present = [g for g in grads if g is not None]
        if present:
            k = present[0].shape[0]
            total = torch.stack([g.pow(2).reshape(k, -1).sum(1) for g in present]).sum(0).sqrt()
            coef = (norm / (total + 1e-6)).clamp(max=1.0)
            grads = [None if g is None else g * coef.view((k,) + (1,) * (g.dim() - 1)).to(g.dtype)
                     for g in grads]
    return grads


class _Stacked:
    """Stacked parameters ``(K, ...)`` and buffers, the optimizer, and dropping diverged copies."""

    name = "stacked"

    def __init__(self, model: nn.Module, spec: OptimSpec, lrs: list[float],
                 layout: Layout | None = None, training: Training | None = None) -> None:
        k = len(lrs)
        named = list(model.named_parameters())
        self.names = [n for n, _ in named]
        self.trainable = [p.requires_grad for _, p in named]
        self.leaves = [_stack(p, k).requires_grad_(p.requires_grad) for _, p in named]
        self.buffers = {n: _stack(b, k) for n, b in model.named_buffers()}
        scales = layout.scales(self.names) if layout is not None else None
        decays = (layout.per_param(spec.group_decays, self.names)
                  if layout is not None and spec.group_decays else None)
        self.opt = StackedOptimizer(spec, self.leaves, lrs, scales, decays)
        self.training = training or Training()
        self.alive = list(range(k))
        self.finished: dict[int, dict[str, torch.Tensor]] = {}

    def losses(self, batch, train: bool):
        """``(losses (K,), outputs (K, B, ...), target)`` of every live copy on ``batch``."""
        batch = to_device(batch, self.training.device)
        x, y = batch[0], batch[1]
        with autocast(self.training.precision, self.training.device):
            out = self.forward(x, train)
            return per_copy_loss(self.training.loss_fn, out, y), out, y

    def set_lrs(self, rates: list[float]) -> None:
        """The first group's rate of every copy, by original index (live copies take theirs)."""
        self.opt.set_lrs([rates[i] for i in self.alive])

    def _state(self, pos: int) -> dict[str, torch.Tensor]:
        state = {n: p[pos].detach().clone() for n, p in zip(self.names, self.leaves, strict=True)}
        state.update({n: b[pos].clone() for n, b in self.buffers.items()})
        return state

    def update(self, losses: torch.Tensor, ok: list[bool]) -> None:
        """Step every copy whose loss is finite; retire the others at their current weights."""
        kept = [i for i, good in enumerate(ok) if good]
        for i, good in enumerate(ok):
            if not good:
                self.finished[self.alive[i]] = self._state(i)
        if not kept:
            self.alive = []
            return
        wanted = [p for p, t in zip(self.leaves, self.trainable, strict=True) if t]
        total = losses.sum() if len(kept) == len(ok) else losses[kept].sum()
        found = torch.autograd.grad(total, wanted, allow_unused=True)
        it = iter(found)
        grads = [next(it) if t else None for t in self.trainable]
        grads = _clip(grads, self.training.clip_grad_norm, self.training.clip_grad_value)
        if len(kept) < len(ok):
            index = self._keep(kept)
            grads = [None if g is None else g.index_select(0, index) for g in grads]
        self.opt.step(self.leaves, grads)

    def retire(self, positions: list[int]) -> None:
        """Stop the live copies at ``positions``: their current weights are kept as their
        final state, and their slices leave the stacked parameters, buffers and optimizer
        state, so they cost no more compute."""
        for pos in positions:
            self.finished[self.alive[pos]] = self._state(pos)
        stop = set(positions)
        self._keep([pos for pos in range(len(self.alive)) if pos not in stop])

    def _keep(self, kept: list[int]) -> torch.Tensor:
        """Keep only the live copies at positions ``kept``; return their index tensor."""
        index = torch.tensor(kept, device=self.leaves[0].device)
        self.leaves = [p.detach().index_select(0, index).requires_grad_(t)
                       for p, t in zip(self.leaves, self.trainable, strict=True)]
        self.buffers = {n: b.index_select(0, index) for n, b in self.buffers.items()}
        self.opt.keep(index)
        self.alive = [self.alive[i] for i in kept]
        return index

    def weights(self) -> dict[int, dict[str, torch.Tensor]]:
        """Every copy's final parameters and buffers (state-dict names), by copy index."""
        out = dict(self.finished)
        out.update({orig: self._state(pos) for pos, orig in enumerate(self.alive)})
        return dict(sorted(out.items()))


# -- batched matmuls for plain MLPs ------------------------------------------------------------
def mlp_plan(model: nn.Module) -> tuple[list[tuple], str | None]:
    """The layers of a plain MLP as (kind, detail, parameter prefix), or a reason it is not one."""
    plan: list[tuple] = []

    def walk(module: nn.Module, prefix: str) -> str | None:
        for name, child in module.named_children():
            path = f"{prefix}{name}"
            kind = type(child)
            if kind is nn.Sequential:
                problem = walk(child, f"{path}.")
                if problem:
                    return problem
            elif kind is nn.Linear:
                plan.append(("linear", child.bias is not None, path))
            elif kind is nn.Flatten and child.end_dim == -1 and child.start_dim >= 0:
                plan.append(("flatten", child.start_dim, path))
            elif kind is nn.Dropout:
                plan.append(("dropout", float(child.p), path))
            elif kind in _ELEMENTWISE:
                plan.append(("act", child, path))
            else:
                return f"layer {path!r} ({kind.__name__}) is not Linear/Flatten/Dropout/activation"
        return None

    if type(model) is not nn.Sequential:
        return [], f"{type(model).__name__} is not an nn.Sequential"
    problem = walk(model, "")
    if problem is None and not any(step[0] == "linear" for step in plan):
        problem = "it has no Linear layer"
    return plan, problem


class BatchedMLPEngine(_Stacked):
    name = "batched"

    def __init__(self, model: nn.Module, spec: OptimSpec, lrs: list[float],
                 layout: Layout | None = None, training: Training | None = None) -> None:
        super().__init__(model, spec, lrs, layout, training)
        plan, problem = mlp_plan(model)
        if problem:
            raise ValueError(f"engine='batched' needs a plain MLP: {problem}")
        self.plan = plan
        self.index = {n: i for i, n in enumerate(self.names)}

    def forward(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        k = len(self.alive)
        h, shared = x, True  # shared: h is the same for every copy and has no copy dimension
        fresh = False  # h is a new tensor no autograd node saved: a ReLU may run in place
        for kind, detail, path in self.plan:
            if kind == "linear":
                w = self.leaves[self.index[f"{path}.weight"]]
                b = self.leaves[self.index[f"{path}.bias"]] if detail else None
                # (the wide matmul's output is a view: in place on it would cost a CopySlices)
                h, fresh = self._linear(h, w, b, shared, k), not shared
                shared = False
            elif kind == "flatten":
                h = h.flatten(detail if shared else detail + 1)
            elif kind == "dropout":
                if train and detail > 0:
                    # the mask of one plain forward (same shape, same RNG draws), shared by
                    # every copy as vmap's randomness="same" does
                    shape = h.shape if shared else h.shape[1:]
                    noise = torch.empty(shape, dtype=h.dtype, device=h.device)
                    noise.bernoulli_(1 - detail).div_(1 - detail)
                    h = h * noise
                    fresh = not shared
            elif fresh and type(detail) is nn.ReLU:
                h, fresh = torch.relu_(h), False  # saves an allocation and a pass over memory
            else:
                h, fresh = detail(h), False
        if shared:
            h = h.unsqueeze(0).expand(k, *h.shape)
        return h

    @staticmethod
    def _linear(h, w, b, shared: bool, k: int) -> torch.Tensor:
        """``h[k] @ w[k].T + b[k]`` per copy, each the matmul a plain ``nn.Linear`` runs (same
        orientation, so the same float rounding); a shared ``h`` is every copy's input: one
        wide matmul with all copies' weights ``(K * out, in)``."""
        out_f, in_f = w.shape[1:]
        if shared:
            if h.dim() != 2:
                raise ValueError(f"batched engine: Linear input must be 2-D, got {tuple(h.shape)}")
            wide = w.reshape(k * out_f, in_f).t()
            y = h @ wide if b is None else torch.addmm(b.reshape(-1), h, wide)
            return y.view(h.shape[0], k, out_f).transpose(0, 1)
        if h.dim() != 3:
            raise ValueError(f"batched engine: Linear input must be 2-D, got {tuple(h.shape[1:])}")
        wt = w.transpose(1, 2)
        return torch.bmm(h, wt) if b is None else torch.baddbmm(b.unsqueeze(1), h, wt)


# -- torch.func.vmap over functional_call -------------------------------------------------------
VMAP_FALLBACK_NOTE = "There is a performance drop because we have not yet implemented the batching"


class VmapEngine(_Stacked):
    name = "vmap"

    def __init__(self, model: nn.Module, spec: OptimSpec, lrs: list[float],
                 layout: Layout | None = None, training: Training | None = None) -> None:
        super().__init__(model, spec, lrs, layout, training)
        self.template = copy.deepcopy(model)
        self._vcall = torch.func.vmap(self._call, in_dims=(0, 0, None), randomness="same")

    def _call(self, params, buffers, x):
        return torch.func.functional_call(self.template, (params, buffers), (x,))

    def forward(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        self.template.train(train)
        params = dict(zip(self.names, self.leaves, strict=True))
        with warnings.catch_warnings():
            # torch's note that an op (e.g. the fused TransformerEncoderLayer of eval mode) runs
            # without a batching rule asks the reader to file a torch issue: not the user's
            warnings.filterwarnings("ignore", VMAP_FALLBACK_NOTE, UserWarning)
            out = self._vcall(params, self.buffers, x)
        return primary_output(out)  # (logits, aux) -> logits


# -- K real modules ----------------------------------------------------------------------------
class SequentialEngine:
    """K real modules, each with its own torch optimizer, stepped by the shared StepRunner."""

    name = "sequential"

    def __init__(self, model: nn.Module, spec: OptimSpec, lrs: list[float],
                 layout: Layout | None = None, training: Training | None = None) -> None:
        layout = layout or Layout((tuple(n for n, _ in model.named_parameters()),), (1.0,))
        self.training = training or Training()
        self.ratios = layout.ratios
        self.runners = []
        for lr in lrs:
            copy_ = copy.deepcopy(model)
            named = dict(copy_.named_parameters())
            groups = [[named[n] for n in group] for group in layout.groups]
            self.runners.append(self.training.runner(copy_, spec.build(groups, lr, layout.ratios)))
        self.alive = list(range(len(lrs)))
        self.finished: dict[int, dict[str, torch.Tensor]] = {}
        self._results: list = []

    def losses(self, batch, train: bool):
        """``(losses (K,), outputs (K, B, ...) or None, target)`` of every live copy."""
        device = self.training.device
        batch = to_device(batch, device)
        state = _rng_state(device)
        results = []
        for i in self.alive:
            _set_rng_state(state, device)  # every copy draws the same dropout masks
            runner = self.runners[i]
            runner.model.train(train)
            results.append(runner.forward(batch))
        self._results = results
        outputs = [r.output for r in results]
        stacked = None
        if all(isinstance(o, torch.Tensor) for o in outputs) and \
                len({tuple(o.shape) for o in outputs}) == 1:
            stacked = torch.stack(outputs)
        return torch.stack([r.loss.float() for r in results]), stacked, results[0].target

    def set_lrs(self, rates: list[float]) -> None:
        """The first group's rate of every copy, by original index; other groups keep ratios."""
        for i in self.alive:
            for group, ratio in zip(self.runners[i].optimizer.param_groups, self.ratios,
                                    strict=True):
                group["lr"] = rates[i] * ratio

    def update(self, losses: torch.Tensor, ok: list[bool]) -> None:
        kept = []
        for pos, good in enumerate(ok):
            i = self.alive[pos]
            if not good:
                self.finished[i] = self._state(i)
                continue
            kept.append(i)
            runner = self.runners[i]
            runner.optimizer.zero_grad(set_to_none=True)
            runner.backward(self._results[pos].loss)
            runner.optimizer_step()
        self.alive = kept
        self._results = []

    def retire(self, positions: list[int]) -> None:
        """Stop the live copies at ``positions`` at their current weights."""
        for pos in positions:
            i = self.alive[pos]
            self.finished[i] = self._state(i)
            self.runners[i] = None  # its module and optimizer state are freed
        stop = set(positions)
        self.alive = [i for pos, i in enumerate(self.alive) if pos not in stop]

    def _state(self, i: int) -> dict[str, torch.Tensor]:
        return {n: t.detach().clone() for n, t in self.runners[i].model.state_dict().items()}

    def weights(self) -> dict[int, dict[str, torch.Tensor]]:
        out = dict(self.finished)
        out.update({i: self._state(i) for i in self.alive})
        return dict(sorted(out.items()))


ENGINES = ("auto", "batched", "vmap", "sequential")


def _probe(engine_cls, model: nn.Module, spec: OptimSpec, x: torch.Tensor) -> str | None:
    """Why ``engine_cls`` cannot run ``model`` on ``x`` (None when it can).

    Checks that the eval-mode output of two copies equals the module's own output, then runs
    one train-mode forward and backward. The RNG state is put back afterwards.
    """
    device = x.device
    state = _rng_state(device)
    try:
        engine = engine_cls(model, spec, [0.0, 0.0])
        with torch.no_grad():  # eval first: the train pass below moves BatchNorm's statistics
            out = engine.forward(x, train=False)
            was = model.training
            model.eval()
            try:
                ref = primary_output(model(x))
            finally:
                model.train(was)
        if out.shape[1:] != ref.shape:
            return f"its vectorised output has shape {tuple(out.shape[1:])}, not {tuple(ref.shape)}"
        if not torch.allclose(out.float(), ref.float().expand_as(out), rtol=1e-4, atol=1e-5):
            return "its vectorised output differs from the module's own output"
        out = engine.forward(x, train=True)
        if out.requires_grad:
            out.float().sum().backward()
    except Exception as exc:  # any failure to vectorise means: use another engine
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"{type(exc).__name__}: {first}"[:300]
    finally:
        _set_rng_state(state, device)
    return None


def _not_vectorisable(spec: OptimSpec, training: Training) -> str | None:
    """Why no stacked engine can train this way (None when one may)."""
    if training.step is not None:
        return "a custom step runs on real modules"
    if training.precision == "16-mixed":
        return "16-mixed needs a GradScaler per copy"
    if not spec.vectorisable:
        return (f"{spec.cls.__name__} with these settings is not one of the vectorised "
                "updates (SGD, Adam, AdamW with one set of settings)")
    return None


def make_engine(kind: str, model: nn.Module, spec: OptimSpec, lrs: list[float], probe_batch,
                layout: Layout | None = None, training: Training | None = None):
    """Build the engine ``kind``; ``"auto"`` takes the fastest one that reproduces the model.

    Returns:
        ``(engine, fallback_reason)``; the reason is None unless ``auto`` fell back to
        ``sequential``, in which case a :class:`SweepFallbackWarning` says why in one line.

    Raises:
        ValueError: an explicit ``batched`` or ``vmap`` that cannot run this model.
    """
    if kind not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {kind!r}")
    training = training or Training()
    if kind == "sequential":
        return SequentialEngine(model, spec, lrs, layout, training), None
    blocked = _not_vectorisable(spec, training)
    if blocked is not None and kind != "auto":
        raise ValueError(f"engine={kind!r} cannot run this sweep: {blocked}")
    problems = {"vmap": blocked}
    probe_x = None if blocked else to_device(probe_batch, training.device)[0]
    for name, cls in (("batched", BatchedMLPEngine), ("vmap", VmapEngine)):
        if blocked or kind not in ("auto", name):
            continue
        problem = mlp_plan(model)[1] if cls is BatchedMLPEngine else None
        problem = problem or _probe(cls, model, spec, probe_x)
        if problem is None:
            return cls(model, spec, lrs, layout, training), None
        problems[name] = problem
        if kind == name:
            raise ValueError(f"engine={name!r} cannot run {type(model).__name__}: {problem}")
    what = blocked or f"cannot vectorise {type(model).__name__} with torch.func.vmap " \
                      f"({problems['vmap']})"
    reason = (f"{what}; training the {len(lrs)} copies one after another instead "
              "(same results, about K times slower)")
    warnings.warn(reason, SweepFallbackWarning, stacklevel=3)
    return SequentialEngine(model, spec, lrs, layout, training), reason

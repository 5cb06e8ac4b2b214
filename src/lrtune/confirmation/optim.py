"""SGD, Adam and AdamW over stacked parameters: K copies, one learning rate per copy.

Every update is the formula of torch's single-tensor implementation (the CPU default), applied
elementwise to tensors whose first dimension is the copy; only the learning rate differs per
copy, as a ``(K, 1, ..., 1)`` tensor. Scalars that torch computes in Python doubles (Adam's
``lr / bias_correction1``, AdamW's ``1 - lr * weight_decay``) are computed in doubles here too
and rounded once to the parameter dtype, as torch does when it passes them to a kernel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

KINDS = ("sgd", "adam", "adamw")


@dataclass(frozen=True)
class OptimSpec:
    """Which optimizer and its settings, everything but the learning rate.

    ``hyper`` holds, for ``sgd``: momentum, dampening, nesterov, weight_decay; for ``adam`` and
    ``adamw``: betas, eps, weight_decay (``adamw`` decouples the decay). Param groups that
    differ only in their weight decay (the usual "no decay for biases and norms" groups) keep
    one decay per group in ``group_decays`` (``hyper`` has the first group's). Any other
    optimizer (or groups whose other settings differ) is kind ``"generic"``: ``cls`` and the
    settings of each group in ``groups``; only the sequential engine runs it.
    """

    kind: str
    hyper: dict[str, Any] = field(default_factory=dict)
    cls: type | None = None
    groups: tuple[dict[str, Any], ...] = ()
    group_decays: tuple[float, ...] = ()

    @property
    def vectorisable(self) -> bool:
        """Whether the stacked engines implement this optimizer's update."""
        return self.kind in KINDS

    def build(self, groups: list[list[torch.Tensor]], lr: float,
              ratios: list[float]) -> torch.optim.Optimizer:
        """The plain torch optimizer (used by the sequential engine): group ``g`` holds
        ``groups[g]`` at rate ``lr * ratios[g]``."""
        if self.kind == "generic":
            param_groups = [{**settings, "params": params, "lr": lr * ratio}
                            for settings, params, ratio in zip(self.groups, groups, ratios,
                                                                strict=True)]
            return self.cls(param_groups)
        param_groups = [{"params": params, "lr": lr * ratio}
                        for params, ratio in zip(groups, ratios, strict=True)]
        for group, decay in zip(param_groups, self.group_decays, strict=False):
            group["weight_decay"] = decay
        if self.kind == "sgd":
            return torch.optim.SGD(param_groups, lr=lr, **self.hyper)
        cls = torch.optim.Adam if self.kind == "adam" else torch.optim.AdamW
        return cls(param_groups, lr=lr, **self.hyper)

    def describe(self) -> dict[str, Any]:
        if self.kind == "generic":
            return {"kind": self.cls.__name__}
        out = {"kind": self.kind, **{k: list(v) if isinstance(v, tuple) else v
                                      for k, v in self.hyper.items()}}
        if self.group_decays:
            out["weight_decay"] = list(self.group_decays)
        return out


def optim_spec(optimizer, opt_kwargs: dict | None = None) -> OptimSpec:
    """Read the optimizer kind and settings from a name, a torch optimizer class or instance.

    Names go through :func:`lrtune.training.setup.make_optimizer`, so ``momentum`` means SGD
    momentum or Adam's beta1 exactly as everywhere else in lrtune.

    An optimizer (or a setting) the vectorised update does not implement gives kind
    ``"generic"``, which the sequential engine runs.

    Raises:
        ValueError: not an optimizer name, class or instance.

    Examples:
        >>> optim_spec("sgd", {"momentum": 0.9}).hyper["momentum"]
        0.9
        >>> optim_spec("adam", {"momentum": 0.8}).hyper["betas"]
        (0.8, 0.999)
    """
    from lrtune.training.setup import make_optimizer

    kwargs = dict(opt_kwargs or {})
    kwargs.pop("lr", None)
    dummy = [torch.nn.Parameter(torch.zeros(1))]
    if isinstance(optimizer, str):
        opt = make_optimizer(optimizer.lower(), dummy, lr=1.0, **kwargs)
    elif isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer):
        opt = optimizer(dummy, lr=1.0, **kwargs)
    elif isinstance(optimizer, torch.optim.Optimizer):
        if kwargs:
            raise ValueError("opt_kwargs must be empty when optimizer is an optimizer instance")
        opt = optimizer
    else:
        raise ValueError(
            f"optimizer must be 'sgd', 'adam', 'adamw', a torch optimizer class or instance, "
            f"got {optimizer!r}"
        )
    return _spec_of(opt)


def _spec_of(opt: torch.optim.Optimizer) -> OptimSpec:
    groups = opt.param_groups
    settings = [{k: v for k, v in g.items() if k not in ("params", "lr", "initial_lr")}
                for g in groups]
    generic = OptimSpec("generic", cls=type(opt), groups=tuple(settings))
    g = settings[0]
    decays = [s.get("weight_decay") for s in settings]
    others = [{k: v for k, v in s.items() if k != "weight_decay"} for s in settings]
    if any(s != others[0] for s in others[1:]) or g.get("maximize") or g.get("differentiable") \
            or g.get("amsgrad") or not all(isinstance(d, int | float) for d in decays):
        return generic
    per_group = tuple(float(d) for d in decays) if len(set(decays)) > 1 else ()
    if type(opt) is torch.optim.SGD:
        return OptimSpec("sgd", {"momentum": float(g["momentum"]),
                                 "dampening": float(g["dampening"]),
                                 "nesterov": bool(g["nesterov"]),
                                 "weight_decay": float(g["weight_decay"])},
                         group_decays=per_group)
    if type(opt) in (torch.optim.Adam, torch.optim.AdamW):
        decoupled = type(opt) is torch.optim.AdamW or bool(g.get("decoupled_weight_decay"))
        betas = tuple(float(b) for b in g["betas"])
        return OptimSpec("adamw" if decoupled else "adam",
                         {"betas": betas, "eps": float(g["eps"]),
                          "weight_decay": float(g["weight_decay"])}, group_decays=per_group)
    return generic


@dataclass(frozen=True)
class Layout:
    """Which parameters (by name) each param group trains, and each group's rate relative to
    the first group's: a sweep's candidate rate is the first group's, the others keep their
    ratio (as in :func:`lrtune.find_lr`)."""

    groups: tuple[tuple[str, ...], ...]
    ratios: tuple[float, ...]

    def scales(self, names: list[str]) -> list[float]:
        """Per parameter name, its group's ratio (0 for a parameter no group trains)."""
        return self.per_param(self.ratios, names)

    def per_param(self, values, names: list[str]) -> list[float]:
        """Per parameter name, its group's entry of ``values`` (one per group; 0 for a
        parameter no group trains)."""
        of = {n: v for group, v in zip(self.groups, values, strict=True) for n in group}
        return [of.get(n, 0.0) for n in names]


def layout_of(model: torch.nn.Module, optimizer) -> Layout:
    """The param-group layout of ``optimizer`` (an instance built on ``model``'s parameters);
    one group of every parameter, ratio 1, for a name, a class, or an instance built on
    another model's parameters that has a single group.

    Raises:
        ValueError: several groups that do not hold ``model``'s parameters, or a first group
            whose rate is not > 0.
    """
    names = [n for n, _ in model.named_parameters()]
    if not isinstance(optimizer, torch.optim.Optimizer):
        return Layout((tuple(names),), (1.0,))
    groups = optimizer.param_groups
    by_id = {id(p): n for n, p in model.named_parameters()}
    members = tuple(tuple(by_id[id(p)] for p in g["params"] if id(p) in by_id) for g in groups)
    if not any(members):
        if len(groups) > 1:
            raise ValueError(f"the optimizer's {len(groups)} param groups do not hold the "
                             "model's parameters; build it on the model passed to sweep")
        return Layout((tuple(names),), (1.0,))
    from lrtune.finder.range_test import reference_group

    return Layout(members, tuple(reference_group(groups)[1]))  # as in find_lr


class StackedOptimizer:
    """The update of ``spec`` for a list of stacked tensors ``(K, ...)``, rate ``lrs[k]`` per copy.

    Args:
        spec: optimizer kind and settings.
        params: the stacked leaves, updated in place by :meth:`step`.
        lrs: the K learning rates (Python floats) of the first param group.
        scales: per parameter, its group's rate relative to the first group's (default 1).
        decays: per parameter, its group's weight decay (default: the spec's, for all).
    """

    def __init__(self, spec: OptimSpec, params: list[torch.Tensor], lrs: list[float],
                 scales: list[float] | None = None, decays: list[float] | None = None) -> None:
        if spec.kind not in KINDS:
            raise ValueError(f"unknown optimizer kind {spec.kind!r}")
        self.spec = spec
        self.lrs = [float(v) for v in lrs]
        self.scales = [1.0] * len(params) if scales is None else [float(v) for v in scales]
        self.decays = ([float(spec.hyper["weight_decay"])] * len(params) if decays is None
                       else [float(v) for v in decays])
        self.state: list[dict[str, torch.Tensor]] = [{} for _ in params]
        self._scalars: dict[str, list[torch.Tensor]] = {}

    def _per_copy(self, key: str, value, params) -> list[torch.Tensor]:
        """One ``(K, 1, ..., 1)`` tensor of ``value(rate, decay)`` per parameter (``rate``: the
        copy's rate times the parameter's group scale; ``decay``: its weight decay), in its
        dtype and device."""
        cached = self._scalars.get(key)
        if cached is not None:
            return cached
        out = []
        for p, scale, decay in zip(params, self.scales, self.decays, strict=True):
            t = torch.tensor([value(lr * scale, decay) for lr in self.lrs], dtype=p.dtype,
                             device=p.device)
            out.append(t.view((len(self.lrs),) + (1,) * (p.dim() - 1)))
        self._scalars[key] = out
        return out

    @torch.no_grad()
    def step(self, params: list[torch.Tensor], grads: list[torch.Tensor | None]) -> None:
        """One update of every copy; a parameter whose gradient is None is left alone (as torch)."""
        if self.spec.kind == "sgd":
            self._sgd(params, grads)
        else:
            self._adam(params, grads)

    def _sgd(self, params, grads) -> None:
        # torch's single-tensor formulas, each as one ``_foreach`` call over every parameter
        # (per tensor the same kernel, so the same rounding; one dispatch instead of one each)
        h = self.spec.hyper
        momentum, dampening, nesterov = h["momentum"], h["dampening"], h["nesterov"]
        neg_lrs = self._per_copy("neg_lr", lambda lr, _: -lr, params)
        live = [i for i, g in enumerate(grads) if g is not None]
        if not live:
            return
        ps = [params[i] for i in live]
        gs = self._coupled_decay(live, ps, [grads[i] for i in live])
        if momentum != 0:
            old = [j for j, i in enumerate(live) if "momentum_buffer" in self.state[i]]
            if old:
                bufs = [self.state[live[j]]["momentum_buffer"] for j in old]
                torch._foreach_mul_(bufs, momentum)
                torch._foreach_add_(bufs, [gs[j] for j in old], alpha=1 - dampening)
            if len(old) < len(live):  # first step of a parameter: the buffer is its gradient
                for j in set(range(len(live))) - set(old):
                    self.state[live[j]]["momentum_buffer"] = gs[j].detach().clone()
            bufs = [self.state[i]["momentum_buffer"] for i in live]
            gs = torch._foreach_add(gs, bufs, alpha=momentum) if nesterov else bufs
        torch._foreach_addcmul_(ps, gs, [neg_lrs[i] for i in live])

    def _adam(self, params, grads) -> None:
        # as _sgd: torch's single-tensor formulas as ``_foreach`` calls, over the parameters that
        # share a step count (all, unless some had no gradient on some step)
        h = self.spec.hyper
        beta1, beta2 = h["betas"]
        eps = h["eps"]
        decoupled = self.spec.kind == "adamw"
        decay = self._per_copy("decay", lambda lr, wd: 1 - lr * wd, params) if decoupled else None
        by_step: dict[int, list[int]] = {}
        for i, g in enumerate(grads):
            if g is None:
                continue
            state = self.state[i]
            if not state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(params[i])
                state["exp_avg_sq"] = torch.zeros_like(params[i])
            state["step"] += 1
            by_step.setdefault(state["step"], []).append(i)
        for step, idx in by_step.items():
            ps = [params[i] for i in idx]
            gs = [grads[i] for i in idx]
            if decoupled:
                decayed = [j for j, i in enumerate(idx) if self.decays[i] != 0]
                if decayed:
                    torch._foreach_mul_([ps[j] for j in decayed],
                                        [decay[idx[j]] for j in decayed])
            else:
                gs = self._coupled_decay(idx, ps, gs)
            exp_avgs = [self.state[i]["exp_avg"] for i in idx]
            exp_avg_sqs = [self.state[i]["exp_avg_sq"] for i in idx]
            torch._foreach_lerp_(exp_avgs, gs, 1 - beta1)
            torch._foreach_mul_(exp_avg_sqs, beta2)
            torch._foreach_addcmul_(exp_avg_sqs, gs, gs, value=1 - beta2)
            bias_correction1 = 1 - beta1**step
            bias_correction2_sqrt = (1 - beta2**step) ** 0.5
            denom = torch._foreach_sqrt(exp_avg_sqs)
            torch._foreach_div_(denom, bias_correction2_sqrt)
            torch._foreach_add_(denom, eps)
            neg_steps = self._neg_steps([(i, params[i]) for i in idx], bias_correction1)
            torch._foreach_addcdiv_(ps, torch._foreach_mul(exp_avgs, neg_steps), denom)

    def _coupled_decay(self, idx: list[int], ps: list, gs: list) -> list:
        """``grad + weight_decay * param`` (torch's SGD and Adam), one ``_foreach`` call per
        distinct decay; parameters without decay keep their gradient."""
        out = list(gs)
        for wd in {self.decays[i] for i in idx} - {0.0}:
            at = [j for j, i in enumerate(idx) if self.decays[i] == wd]
            added = torch._foreach_add([gs[j] for j in at], [ps[j] for j in at], alpha=wd)
            for j, g in zip(at, added, strict=True):
                out[j] = g
        return out

    def _neg_steps(self, indexed, bias_correction1: float) -> list[torch.Tensor]:
        """Per parameter, Adam's ``-lr / bias_correction1`` of every copy as ``(K, 1, ...)``,
        computed in doubles and rounded once to its dtype (one tensor per group scale)."""
        made: dict = {}
        out = []
        for i, p in indexed:
            key = (self.scales[i], p.dtype, p.device)
            if key not in made:
                made[key] = torch.tensor([-(lr * self.scales[i] / bias_correction1)
                                          for lr in self.lrs], dtype=p.dtype, device=p.device)
            out.append(made[key].view((-1,) + (1,) * (p.dim() - 1)))
        return out

    def set_lrs(self, lrs: list[float]) -> None:
        """Each live copy's rate from now on (a scheduled sweep calls this before each step)."""
        if len(lrs) != len(self.lrs):
            raise ValueError(f"expected {len(self.lrs)} rates, got {len(lrs)}")
        self.lrs = [float(v) for v in lrs]
        self._scalars.clear()

    def keep(self, index: torch.Tensor) -> None:
        """Keep only the copies at ``index`` (positions along the first dimension)."""
        positions = index.tolist()
        self.lrs = [self.lrs[i] for i in positions]
        self._scalars.clear()
        for state in self.state:
            for key, value in state.items():
                if isinstance(value, torch.Tensor):
                    state[key] = value.index_select(0, index.to(value.device))

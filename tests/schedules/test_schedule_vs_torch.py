"""Our schedules, applied through HyperparamScheduler, against torch's own schedulers.

Both drive an SGD (or Adam) optimizer for >= 1000 steps; the lr and momentum in force at every
step must agree to a relative difference of at most 1e-9.
"""

from __future__ import annotations

import pytest
import torch
from torch.optim import lr_scheduler as tls

from lrtune.schedules import (
    HyperparamScheduler,
    cosine,
    cosine_restarts,
    cyclic,
    cyclic_momentum,
    exponential,
    linear,
    multistep_decay,
    one_cycle,
    one_cycle_momentum,
    polynomial,
    step_decay,
)

BASE_LR = 0.1
RTOL = 1e-9


def _optimizer(kind: str = "sgd") -> torch.optim.Optimizer:
    params = [torch.zeros(2, requires_grad=True)]
    if kind == "adam":
        return torch.optim.Adam(params, lr=BASE_LR, betas=(0.9, 0.999))
    return torch.optim.SGD(params, lr=BASE_LR, momentum=0.9)


def _momentum(group) -> float:
    return group["betas"][0] if "betas" in group else group["momentum"]


def torch_trace(make, steps: int, kind: str = "sgd") -> tuple[list[float], list[float]]:
    """lr and momentum in force during each of ``steps`` optimizer steps under torch."""
    opt = _optimizer(kind)
    sched = make(opt)
    lrs, moms = [], []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        moms.append(_momentum(opt.param_groups[0]))
        opt.step()
        sched.step()
    return lrs, moms


def our_trace(schedules, steps: int, kind: str = "sgd") -> tuple[list[float], list[float]]:
    opt = _optimizer(kind)
    sched = HyperparamScheduler(opt, schedules, interval="batch")
    sched.apply()
    lrs, moms = [], []
    for _ in range(steps):
        values = sched.values()
        lrs.append(values["lr"][0])
        moms.append(values["momentum"][0] if "momentum" in values else _momentum(
            opt.param_groups[0]))
        opt.step()
        sched.step()
    return lrs, moms


def max_rel_diff(ours: list[float], theirs: list[float]) -> float:
    assert len(ours) == len(theirs)
    worst = 0.0
    for a, b in zip(ours, theirs, strict=True):
        scale = max(abs(a), abs(b))
        if scale:
            worst = max(worst, abs(a - b) / scale)
    return worst


def check(make_torch, schedules, steps: int, *, momentum: bool = False, kind: str = "sgd"):
    assert steps >= 1000
    t_lr, t_mom = torch_trace(make_torch, steps, kind)
    o_lr, o_mom = our_trace(schedules, steps, kind)
    assert max_rel_diff(o_lr, t_lr) <= RTOL
    if momentum:
        assert max_rel_diff(o_mom, t_mom) <= RTOL
        assert len(set(t_mom)) > 10  # the comparison really covers a moving momentum


ONE_CYCLE_SETTINGS = [
    {"total_steps": 1000},
    {"total_steps": 1003, "anneal_strategy": "linear"},
    {"total_steps": 1200, "pct_start": 0.25, "three_phase": True},
    {"total_steps": 1001, "div_factor": 10.0, "final_div_factor": 100.0, "pct_start": 0.45},
]


@pytest.mark.parametrize("kwargs", ONE_CYCLE_SETTINGS)
@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_one_cycle_matches_torch_lr_and_momentum(kwargs, kind):
    n = kwargs["total_steps"]
    shape = {k: kwargs[k] for k in ("pct_start", "anneal_strategy", "three_phase") if k in kwargs}
    ours = {
        "lr": one_cycle(BASE_LR, **kwargs),
        "momentum": one_cycle_momentum(n, **shape),
    }
    check(lambda opt: tls.OneCycleLR(opt, max_lr=BASE_LR, **kwargs), ours, n, momentum=True,
          kind=kind)


@pytest.mark.parametrize("eta_min", [0.0, 1e-3])
def test_cosine_matches_cosine_annealing_lr(eta_min):
    # steps 0..T_max: torch reaches eta_min at step T_max, the last step of the run
    check(lambda opt: tls.CosineAnnealingLR(opt, T_max=1000, eta_min=eta_min),
          {"lr": cosine(BASE_LR, 1000, eta_min)}, 1001)


def test_cosine_default_decays_to_zero_at_its_last_step():
    s = cosine(BASE_LR, 1000)
    assert s(1000) == 0.0
    assert s(999) > 0


@pytest.mark.parametrize(
    ("mode", "gamma", "down"),
    [("triangular", 1.0, None), ("triangular2", 1.0, 60), ("exp_range", 0.998, None)],
)
def test_cyclic_matches_cyclic_lr_and_momentum(mode, gamma, down):
    kwargs = {"step_size_up": 100, "step_size_down": down, "mode": mode, "gamma": gamma}
    ours = {"lr": cyclic(0.01, BASE_LR, **kwargs), "momentum": cyclic_momentum(0.8, 0.9, **kwargs)}
    check(lambda opt: tls.CyclicLR(opt, base_lr=0.01, max_lr=BASE_LR, base_momentum=0.8,
                                   max_momentum=0.9, **kwargs), ours, 1000, momentum=True)


@pytest.mark.parametrize(("start", "end", "iters"), [(0.1, 1.0, 500), (1.0, 0.05, 999)])
def test_linear_matches_linear_lr(start, end, iters):
    check(lambda opt: tls.LinearLR(opt, start_factor=start, end_factor=end, total_iters=iters),
          {"lr": linear(BASE_LR * start, BASE_LR * end, iters)}, 1000)


def test_exponential_matches_exponential_lr():
    check(lambda opt: tls.ExponentialLR(opt, gamma=0.995),
          {"lr": exponential(BASE_LR, 0.995)}, 1000)


@pytest.mark.parametrize(("t_0", "t_mult"), [(50, 1), (30, 2), (7, 3)])
def test_cosine_restarts_matches_warm_restarts(t_0, t_mult):
    check(lambda opt: tls.CosineAnnealingWarmRestarts(opt, T_0=t_0, T_mult=t_mult, eta_min=1e-4),
          {"lr": cosine_restarts(BASE_LR, t_0, period_mult=t_mult, end_value=1e-4)}, 1000)


def test_step_multistep_polynomial_match_torch():
    check(lambda opt: tls.StepLR(opt, step_size=150, gamma=0.5),
          {"lr": step_decay(BASE_LR, 150, 0.5)}, 1000)
    check(lambda opt: tls.MultiStepLR(opt, milestones=[300, 600, 900], gamma=0.2),
          {"lr": multistep_decay(BASE_LR, [300, 600, 900], 0.2)}, 1000)
    check(lambda opt: tls.PolynomialLR(opt, total_iters=800, power=2.0),
          {"lr": polynomial(BASE_LR, 0.0, 800, power=2.0)}, 1000)

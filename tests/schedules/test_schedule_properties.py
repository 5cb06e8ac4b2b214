"""Property tests: bounds, monotonicity, join continuity, exact resume."""

from __future__ import annotations

import json
import math
from itertools import pairwise

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lrtune.schedules import (
    HyperparamScheduler,
    ReduceLROnPlateau,
    cosine,
    cosine_restarts,
    cyclic,
    exponential,
    join,
    linear,
    named_schedule,
    one_cycle,
    polynomial,
    step_decay,
    warmup_cosine,
)
from lrtune.schedules.presets import NAMES

SETTINGS = settings(max_examples=60, deadline=None)
values = st.floats(min_value=0.0, max_value=10.0, allow_nan=False)
steps = st.integers(min_value=1, max_value=300)
EPS = 1e-12


def within(v: float, a: float, b: float) -> bool:
    lo, hi = min(a, b), max(a, b)
    return lo - EPS * max(1.0, hi) <= v <= hi + EPS * max(1.0, hi)


def monotonic(seq: list[float], decreasing: bool) -> bool:
    pairs = list(pairwise(seq))
    tol = EPS * max(1.0, max(seq))
    if decreasing:
        return all(b <= a + tol for a, b in pairs)
    return all(b >= a - tol for a, b in pairs)


@st.composite
def monotonic_primitive(draw):
    kind = draw(st.sampled_from(["linear", "cosine", "polynomial", "exponential", "step"]))
    a, b, n = draw(values), draw(values), draw(steps)
    if kind == "linear":
        return linear(a, b, n), a, b
    if kind == "cosine":
        return cosine(a, n, b), a, b
    if kind == "polynomial":
        return polynomial(a, b, n, power=draw(st.floats(0.1, 5.0))), a, b
    gamma = draw(st.floats(0.5, 1.5))
    if kind == "exponential":
        end = a * gamma**n
        return exponential(a, gamma, end_value=end), a, end
    return step_decay(a, draw(st.integers(1, 50)), min(gamma, 1.0)), a, a * min(gamma, 1.0) ** 400


@SETTINGS
@given(monotonic_primitive())
def test_primitives_stay_within_endpoints_and_are_monotonic(case):
    schedule, start, end = case
    seq = [schedule(t) for t in range(400)]
    assert seq[0] == start
    assert all(within(v, start, end) for v in seq)
    assert monotonic(seq, decreasing=end <= start)


@SETTINGS
@given(peak=st.floats(1e-4, 10.0), n=st.integers(20, 2000), pct=st.floats(0.1, 0.45),
       three=st.booleans(), anneal=st.sampled_from(["cos", "linear"]))
def test_one_cycle_bounds_and_phase_monotonicity(peak, n, pct, three, anneal):
    s = one_cycle(peak, n, pct_start=pct, three_phase=three, anneal_strategy=anneal)
    seq = [s(t) for t in range(n)]
    assert all(within(v, peak / 25 / 1e4, peak) for v in seq)
    top = max(range(n), key=seq.__getitem__)
    assert abs(top - (pct * n - 1)) <= 1  # the peak sits at torch's phase end
    assert monotonic(seq[: top + 1], decreasing=False)
    if not three:
        assert monotonic(seq[top:], decreasing=True)
    assert abs(seq[-1] - peak / 25 / 1e4) <= 1e-12 * peak


@SETTINGS
@given(base=values, top=values, up=st.integers(1, 60), down=st.integers(1, 60),
       mode=st.sampled_from(["triangular", "triangular2", "exp_range"]))
def test_cyclic_and_restarts_stay_within_bounds(base, top, up, down, mode):
    s = cyclic(base, top, up, down, mode, gamma=0.99)
    assert all(within(s(t), base, top) for t in range(300))
    r = cosine_restarts(top, up, period_mult=1 + down % 3, end_value=base)
    assert all(within(r(t), base, top) for t in range(300))


@SETTINGS
@given(a=values, b=values, c=values, n1=steps, n2=steps, n3=steps)
def test_join_is_continuous_when_pieces_meet(a, b, c, n1, n2, n3):
    # pieces that end where the next starts: no jump larger than the steepest piece's step
    s = join([linear(a, b, n1), cosine(b, n2, c), linear(c, a, n3)], [n1, n1 + n2])
    assert s(n1) == b
    assert s(n1 + n2) == c
    slope = max(abs(b - a) / n1, abs(c - b) * 3.1416 / 2 / n2, abs(a - c) / n3)
    seq = [s(t) for t in range(n1 + n2 + n3 + 5)]
    assert all(abs(y - x) <= slope * (1 + 1e-9) + 1e-12 for x, y in pairwise(seq))
    assert all(within(v, min(a, b, c), max(a, b, c)) for v in seq)


@SETTINGS
@given(peak=st.floats(1e-4, 1.0), warm=st.integers(0, 50), extra=st.integers(2, 500))
def test_warmup_cosine_rises_then_falls(peak, warm, extra):
    n = warm + extra
    s = warmup_cosine(peak, warm, n)
    seq = [s(t) for t in range(n)]
    assert seq[warm] == peak
    assert monotonic(seq[: warm + 1], decreasing=False)
    assert monotonic(seq[warm:], decreasing=True)
    assert seq[-1] == 0.0


def sgd() -> torch.optim.SGD:
    return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0, momentum=0.9)


def trace(sched, opt, n: int) -> list[tuple[float, float]]:
    out = []
    for _ in range(n):
        group = opt.param_groups[0]
        out.append((group["lr"], group["momentum"]))
        sched.step()
    return out


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(NAMES), n=st.integers(8, 200), data=st.data())
def test_resume_from_state_dict_equals_not_stopping(name, n, data):
    cut = data.draw(st.integers(0, n))
    make = lambda: named_schedule(name, lr=0.1, total_steps=n, momentum=0.9,  # noqa: E731
                                  momentum_end=0.8)
    opt = sgd()
    full = HyperparamScheduler(opt, make())
    full.apply()
    expected = trace(full, opt, n)

    opt1 = sgd()
    first = HyperparamScheduler(opt1, make())
    first.apply()
    head = trace(first, opt1, cut)
    state = json.loads(json.dumps(first.state_dict()))
    opt2 = sgd()
    second = HyperparamScheduler(opt2, make())
    second.load_state_dict(state)
    assert head + trace(second, opt2, n - cut) == expected


@settings(max_examples=40, deadline=None)
@given(metrics=st.lists(st.floats(0.0, 5.0), min_size=2, max_size=40), data=st.data())
def test_plateau_resume_equals_not_stopping(metrics, data):
    cut = data.draw(st.integers(0, len(metrics)))
    kwargs = {"factor": 0.5, "patience": 1, "cooldown": 1, "warmup_steps": 2}

    def run(plateau, opt, ms):
        out = []
        for m in ms:
            plateau.step({"valid_loss": m})
            out.append(opt.param_groups[0]["lr"])
        return out

    opt = sgd()
    expected = run(ReduceLROnPlateau(opt, **kwargs), opt, metrics)
    opt1 = sgd()
    first = ReduceLROnPlateau(opt1, **kwargs)
    head = run(first, opt1, metrics[:cut])
    opt2 = sgd()
    second = ReduceLROnPlateau(opt2, **kwargs)
    second.load_state_dict(json.loads(json.dumps(first.state_dict())))
    assert head + run(second, opt2, metrics[cut:]) == expected


def test_exponential_growth_past_float_range_holds_its_end_value():
    # 1.1 ** 10_000 overflows a float: the cap must hold instead of an OverflowError
    assert exponential(1e-7, 1.1, end_value=10.0)(10_000) == 10.0
    assert exponential(1e-7, 1.1)(10_000) == math.inf
    assert exponential(0.0, 1.1)(10_000) == 0.0

"""Primitives, join and presets: values, named presets, bad values."""

from __future__ import annotations

import re

import numpy as np
import pytest

from lrtune.schedules import (
    NAMES,
    constant,
    cosine,
    cyclic,
    join,
    linear,
    linspace,
    multistep_decay,
    named_schedule,
    one_cycle,
    one_cycle_momentum,
    warmup_cosine,
)


def values(schedule, n):
    return [schedule(t) for t in range(n)]


def test_join_pieces_see_steps_since_their_boundary():
    s = join([constant(1.0), linear(0.5, 0.0, 4), constant(0.25)], [3, 5])
    assert values(s, 7) == [1.0, 1.0, 1.0, 0.5, 0.375, 0.25, 0.25]


def test_one_cycle_defaults_are_torchs():
    s = one_cycle(0.1, 1000)
    assert s(0) == pytest.approx(0.1 / 25)
    assert s(299) == pytest.approx(0.1)
    assert s(999) == pytest.approx(0.1 / 25 / 1e4)
    m = one_cycle_momentum(1000)
    assert (m(0), m(299), m(999)) == pytest.approx((0.95, 0.85, 0.95))


def test_linspace_is_seed_004s_np_linspace():
    n = 400
    s = linspace(n, lr=(0.03, 0.0001), momentum=(0.9, 0.999))
    np.testing.assert_allclose(values(s["lr"], n), np.linspace(0.03, 0.0001, n), rtol=1e-12)
    np.testing.assert_allclose(values(s["momentum"], n), np.linspace(0.9, 0.999, n), rtol=1e-12)
    assert (s["lr"](n - 1), s["momentum"](n - 1)) == (0.0001, 0.999)
    assert linspace(1, lr=(0.5, 0.1))["lr"](0) == 0.5


@pytest.mark.parametrize("name", NAMES)
def test_every_named_preset_builds_and_starts_where_documented(name):
    s = named_schedule(name, lr=0.1, total_steps=100)
    lr = values(s["lr"], 100)
    assert max(lr) == pytest.approx(0.1)
    assert min(lr) >= 0
    assert ("momentum" in s) == (name in ("one_cycle", "cyclic"))


def test_named_linear_is_seed_004s_pair_and_keeps_momentum_constant_alone():
    s = named_schedule("linear", lr=0.03, lr_end=0.0001, momentum=0.9, momentum_end=0.999,
                       total_steps=50)
    np.testing.assert_allclose(values(s["lr"], 50), np.linspace(0.03, 0.0001, 50), rtol=1e-12)
    np.testing.assert_allclose(values(s["momentum"], 50), np.linspace(0.9, 0.999, 50),
                               rtol=1e-12)
    alone = named_schedule("linear", lr=0.03, momentum=0.9, total_steps=50)
    assert set(values(alone["momentum"], 50)) == {0.9}
    assert "momentum" not in named_schedule("linear", lr=0.03, total_steps=50)


def test_named_momentum_rules():
    # presets that do not move momentum: omitted when given alone, ramped with an end value
    assert "momentum" not in named_schedule("cosine", lr=0.1, total_steps=20, momentum=0.9)
    ramp = named_schedule("cosine", lr=0.1, total_steps=20, momentum=0.9, momentum_end=0.99)
    assert (ramp["momentum"](0), ramp["momentum"](19)) == (0.9, 0.99)
    # one_cycle with both: from momentum (lr low) to momentum_end (lr peak) and back
    oc = named_schedule("one_cycle", lr=0.1, total_steps=100, momentum=0.9, momentum_end=0.8)
    assert (oc["momentum"](0), oc["momentum"](29), oc["momentum"](99)) == pytest.approx(
        (0.9, 0.8, 0.9))
    assert set(values(named_schedule("one_cycle", lr=0.1, total_steps=100,
                                     momentum=0.9)["momentum"], 100)) == {0.9}


def test_named_lr_end_is_the_last_steps_value():
    for name in ("linear", "cosine", "warmup_cosine", "exponential", "step", "one_cycle"):
        s = named_schedule(name, lr=0.1, lr_end=0.002, total_steps=100)
        assert s["lr"](99) == pytest.approx(0.002, rel=1e-9), name


def test_warmup_cosine_and_cyclic_shapes():
    s = warmup_cosine(1.0, 10, 111, init_value=0.1)
    assert (s(0), s(5), s(10), s(110)) == pytest.approx((0.1, 0.55, 1.0, 0.0))
    c = cyclic(0.1, 1.0, 5)
    assert values(c, 11) == pytest.approx([0.1, 0.28, 0.46, 0.64, 0.82, 1.0, 0.82, 0.64, 0.46,
                                           0.28, 0.1])


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: linear(-0.1, 0.0, 10), "init_value must be a finite number >= 0, got -0.1"),
        (lambda: cosine(0.1, 0), "steps must be > 0, got 0"),
        (lambda: cosine(0.1, -5), "steps must be > 0, got -5"),
        (lambda: join([constant(1), constant(2), constant(3)], [5, 5]),
         "boundaries must be > 0 and strictly increasing, got [5, 5]"),
        (lambda: join([constant(1), constant(2)], [3, 4]), "one fewer entry than schedules"),
        (lambda: multistep_decay(1.0, [30, 10]), "milestones must be > 0 and strictly increasing"),
        (lambda: one_cycle(0.1, 0), "total_steps must be an integer > 0, got 0"),
        (lambda: one_cycle(0.1, 3), "leaves a one-cycle phase with no steps"),
        (lambda: one_cycle(0.1, 100, anneal_strategy="exp"), "anneal_strategy must be"),
        (lambda: cyclic(0.1, 1.0, 10, mode="sine"), "mode must be 'triangular'"),
        (lambda: warmup_cosine(0.1, 10, 10), "warmup_steps (10) must be < total_steps - 1"),
        (lambda: named_schedule("cosine", lr=-0.1, total_steps=10),
         "lr must be a finite number >= 0, got -0.1"),
        (lambda: named_schedule("cosine", lr=0.1, total_steps=0),
         "total_steps must be an integer >= 2, got 0"),
        (lambda: named_schedule("sgdr", lr=0.1, total_steps=10),
         "unknown schedule name 'sgdr'; choose from constant, linear"),
        (lambda: named_schedule("linear", lr=0.1, total_steps=10, momentum_end=0.9),
         "momentum_end (0.9) needs momentum"),
        (lambda: named_schedule("constant", lr=0.1, total_steps=10, lr_end=0.01),
         "lr_end is not used by 'constant'"),
        (lambda: named_schedule("exponential", lr=0.1, total_steps=10, lr_end=0.0),
         "lr_end must be > 0, got 0.0"),
    ],
)
def test_bad_values_raise_value_error_naming_argument_and_value(build, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        build()

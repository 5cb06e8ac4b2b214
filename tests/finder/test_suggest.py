import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lrtune.finder import suggest


def curve(n=200, lo=-6, hi=1, noise=0.0, seed=0):
    """Loss falls like a logistic in log10(lr) centred at 1e-3, then blows up past 1e-1."""
    x = np.linspace(lo, hi, n)
    y = 1.0 + 1.0 / (1.0 + np.exp(3.0 * (x + 3.0))) + np.where(x > -1, 5 * (x + 1) ** 2, 0)
    y = y + np.random.default_rng(seed).normal(0, noise, n)
    return 10.0**x, y


def test_steepest_finds_the_inflection_of_the_descent():
    lrs, y = curve()
    assert suggest.steepest(lrs, y) == pytest.approx(1e-3, rel=0.1)


def test_min_based_rules_follow_the_minimum():
    lrs, y = curve()
    lr_min = lrs[np.argmin(y)]
    assert suggest.min_div_10(lrs, y) == pytest.approx(lr_min / 10)
    assert suggest.half_turn(lrs, y) == pytest.approx(lr_min / 2)
    assert 1e-2 < lr_min < 2e-1


def test_valley_is_inside_the_longest_descent():
    lrs, y = curve()
    lr = suggest.valley(lrs, y)
    # the curve decreases from the start to the minimum: the middle of that run in log space
    start, end = np.log10(lrs[0]), np.log10(lrs[np.argmin(y)])
    assert np.log10(lr) == pytest.approx((start + end) / 2, abs=0.05)


def test_rules_return_none_on_a_rising_curve():
    lrs = np.logspace(-5, 0, 50)
    y = np.linspace(1, 3, 50)
    assert suggest.steepest(lrs, y) is None
    assert suggest.valley(lrs, y) is None


def test_smooth_curve_has_no_lag():
    y = np.r_[np.ones(50), np.zeros(50)]
    s = suggest.smooth_curve(y, window=10)
    assert s[49] == pytest.approx(0.5, abs=0.05)  # a centred kernel crosses half-way at the step
    assert s[0] == 1.0 and s[-1] == 0.0


def test_verdict_ok_on_a_clear_curve():
    lrs, y = curve(noise=0.02)
    assert suggest.verdict(lrs, y, suggest.smooth_curve(y, 10)) == ("ok", "")


@pytest.mark.parametrize(
    ("losses", "reason"),
    [
        (np.full(100, 2.3) + np.linspace(0, -0.02, 100), "flat"),
        (np.linspace(1, 5, 100), "no descent"),
        (np.linspace(2.3, 2.0, 100) + np.random.default_rng(0).normal(0, 0.5, 100), "too noisy"),
        (np.array([2.3, 2.0, 1.5]), "too few points"),
        (np.linspace(2.3, 0.5, 100), "no turn"),
    ],
)
def test_verdict_inconclusive_with_reason(losses, reason):
    lrs = np.logspace(-6, 0, len(losses))
    smoothed = suggest.smooth_curve(losses, 0.05 * len(losses))
    verdict, why = suggest.verdict(lrs, losses, smoothed)
    assert verdict == "inconclusive"
    assert why.startswith(reason)


@settings(max_examples=40, deadline=None)
@given(
    scale=st.floats(0.01, 100),
    shift=st.floats(-3, 3),
    noise=st.floats(0, 0.05),
    seed=st.integers(0, 1000),
)
def test_rules_are_scale_invariant_and_shift_equivariant(scale, shift, noise, seed):
    lrs, y = curve(noise=noise, seed=seed)
    y = suggest.smooth_curve(y, 10)
    for name, rule in suggest.RULES.items():
        base = rule(lrs, y)
        scaled = rule(lrs, y * scale)
        shifted = rule(lrs * 10**shift, y)
        assert (base is None) == (scaled is None) == (shifted is None), name
        if base is not None:
            assert scaled == pytest.approx(base, rel=1e-12), name
            assert shifted == pytest.approx(base * 10**shift, rel=1e-9), name
            assert lrs[0] / 10 <= base <= lrs[-1], name
    steepest = suggest.steepest(lrs, y)
    if steepest is not None:
        assert steepest < lrs[int(np.argmin(y))]


def test_rules_reject_mismatched_arrays():
    with pytest.raises(ValueError, match="one length"):
        suggest.steepest([1e-3, 1e-2], [1.0])


def test_steepest_never_returns_the_minimums_own_rate():
    # validation mode, few points: the last step into the minimum is the steepest one; the
    # rule must answer with a rate strictly before the minimum
    lrs = np.geomspace(1e-4, 1e-1, 6)
    y = np.array([2.0, 1.95, 1.9, 1.0, 2.45, 3.0])
    slope = np.gradient(y[:4], np.log10(lrs[:4]))
    assert int(np.argmin(slope)) == 3  # what the rule returned before issue 14
    assert suggest.steepest(lrs, y) == lrs[2]


STOPPED_EARLY = suggest.Stop("diverged", 1.3e-6, 43, 300)
FINISHED = suggest.Stop("finished", 10.0, 300, 300)


@pytest.mark.parametrize(
    ("losses", "stop", "says", "never"),
    [
        (np.array([2.3, 2.0, 1.5]), STOPPED_EARLY, "lower start_lr", "more iterations"),
        (np.array([2.3, 2.0, 1.5]), suggest.Stop("finished", 1e-3, 3, 3),
         "use more iterations", "start_lr"),
        (np.linspace(2.3, 2.0, 100) + np.random.default_rng(0).normal(0, 0.5, 100),
         STOPPED_EARLY, "a larger batch", "more iterations"),
        (np.full(100, 2.3) + np.linspace(0, -0.02, 100), FINISHED, "raise end_lr", "start_lr"),
        (np.full(100, 2.3) + np.linspace(0, -0.02, 100), STOPPED_EARLY, "check that the model",
         "end_lr"),
        (np.linspace(1, 5, 100), STOPPED_EARLY, "lower start_lr", "more iterations"),
        (np.linspace(2.3, 0.5, 100), FINISHED, "raise end_lr", "more iterations"),
        (np.linspace(2.3, 0.5, 100), suggest.Stop("non_finite", 0.1, 100, 300),
         "use more iterations or a lower end_lr", "raise end_lr"),
    ],
    ids=["few-diverged", "few-finished", "noisy-diverged", "flat-finished", "flat-diverged",
         "no-descent", "no-turn-finished", "no-turn-non-finite"],
)
def test_inconclusive_advice_fits_where_and_why_the_sweep_stopped(losses, stop, says, never):
    lrs = np.logspace(-6, 0, len(losses))
    smoothed = suggest.smooth_curve(losses, 0.05 * len(losses))
    verdict, why = suggest.verdict(lrs, losses, smoothed, stop=stop)
    assert verdict == "inconclusive"
    assert f"(the sweep {stop.describe()})" in why
    assert says in why and never not in why


def test_stop_describes_itself():
    assert STOPPED_EARLY.describe() == "diverged at lr 1.3e-06 after 43 of 300 steps"
    assert FINISHED.describe() == "finished after 300 of 300 steps"
    assert suggest.Stop("finished", 1.0, 5, None).describe() == "finished after 5 steps"

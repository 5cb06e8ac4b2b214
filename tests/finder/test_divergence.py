"""The divergence test: the loss's noise, not only a multiple of its best (issue 14, item 3)."""

import math

import numpy as np
import pytest
import torch
from torch import nn

import lrtune
from lrtune import find_lr
from lrtune.finder.divergence import NOISE_Z, DivergenceTest, noise_scale
from lrtune.models import mlp


def factor_rule_stop(points, alpha, factor=4.0):
    """The rule before issue 14: stop once the online average exceeds factor × its best."""
    avg, best = 0.0, math.inf
    for i, p in enumerate(points):
        avg = p if i == 0 else alpha * p + (1 - alpha) * avg
        best = min(best, avg)
        if i and avg > factor * best:
            return i + 1
    return None


@pytest.fixture
def one_thread():
    """Small float64 matmuls: one thread is faster than two on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("one_thread")
def test_partly_trained_model_runs_to_the_real_divergence():
    # the case of issue 14: an MLP trained to a small, noisy loss (SGD momentum, 12 epochs);
    # float64 so that the curve does not depend on the CPU's float32 rounding
    splits = lrtune.load_dataset("digits", seed=0)
    X, y = splits.train
    X = X.double()
    torch.manual_seed(0)
    model = mlp(splits.in_features, splits.n_outputs, (300, 100)).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    for _ in range(12):
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), 32):
            idx = perm[i:i + 32]
            opt.zero_grad()
            nn.functional.cross_entropy(model(X[idx]), y[idx]).backward()
            opt.step()
    with torch.no_grad():
        assert nn.functional.cross_entropy(model(X), y).item() < 0.02
    result = find_lr(model, opt, nn.CrossEntropyLoss(), (X, y))
    # the factor rule alone (the rule before issue 14) fires on noise at the start of the
    # sweep: the recorded curve shows it
    early = factor_rule_stop(result.losses, alpha=2.0 / (0.05 * 300 + 1.0))
    assert early is not None and early < 50 and result.lrs[early - 1] < 1e-6
    # now the sweep goes on to where the loss really blows up
    assert result.stop_reason == "diverged"
    assert len(result.train_losses) > 200 and result.stop_lr > 1e-2
    assert max(result.losses) > 10 * float(np.median(result.losses[:100]))
    assert f"after {len(result.train_losses)} of 300 steps" in result.summary()


def small_noisy(seed, n=300, level=0.01):
    """A trained model's batch losses: small, exponentially distributed (noise = level)."""
    return level * np.random.default_rng(seed).exponential(1.0, n)


def stops(points, alpha=0.125, factor=4.0):
    test = DivergenceTest(alpha, factor)
    return next((i + 1 for i, p in enumerate(points) if test.update(float(p))), None)


@pytest.mark.parametrize("seed", range(6))
def test_a_small_noisy_loss_does_not_stop_the_sweep(seed):
    points = small_noisy(seed)
    if seed in (2, 3):  # the factor rule alone stops these within the first dozen points
        assert factor_rule_stop(points, alpha=0.125) <= 11
    assert stops(points) is None


@pytest.mark.parametrize("seed", range(6))
def test_a_sustained_rise_stops_it_within_a_few_points(seed):
    points = np.r_[small_noisy(seed, 100), 0.01 * 1.5 ** np.arange(1, 30)]
    assert 100 < stops(points) <= 110


def test_where_the_factor_decides_the_stop_is_the_plain_rule():
    # a fresh model's curve: falls from 2.3 with small noise, then blows up
    rng = np.random.default_rng(1)
    fall = 0.5 + 1.8 / (1 + np.exp(np.linspace(-6, 6, 200))) + rng.normal(0, 0.03, 200)
    points = np.r_[fall, 0.5 * 1.3 ** np.arange(1, 40)]
    assert stops(points) == factor_rule_stop(points, alpha=0.125) is not None


def test_noise_scale_ignores_a_trend_and_measures_the_spread():
    x = np.linspace(0, 1, 500)
    rng = np.random.default_rng(0)
    assert noise_scale(5 - 3 * x) == pytest.approx(0.0, abs=1e-12)
    assert noise_scale(5 - 3 * x + rng.normal(0, 0.2, 500)) == pytest.approx(0.2, rel=0.15)
    assert noise_scale([1.0, 2.0]) == 0.0
    assert NOISE_Z > 1

"""A scheduled sweep (``lr_scale``): every copy trains as a plain torch run under that schedule."""

from __future__ import annotations

import pytest
import torch
from sweep_reference import assert_same_weights, plain_run
from torch import nn

from lrtune.confirmation import sweep
from lrtune.schedules.presets import one_cycle

STEPS = 30


def net64():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double()


@pytest.mark.parametrize("engine", ["batched", "vmap", "sequential"])
def test_one_cycle_sweep_equals_torch_one_cycle_runs(data64, engine):
    model, lrs = net64(), [0.05, 0.4]
    shape = one_cycle(1.0, STEPS)  # lrtune's one-cycle at peak 1: the multiplier of each rate
    res = sweep(model, "sgd", nn.CrossEntropyLoss(), data64, data64, lrs=lrs, steps=STEPS,
                batch_size=16, opt_kwargs={"momentum": 0.9}, engine=engine, keep_weights=True,
                lr_scale=shape)
    assert res.engine == engine and res.settings["scheduled"] is True
    for i, lr in enumerate(lrs):
        ref, done = plain_run(
            model, lambda p, lr_: torch.optim.SGD(p, lr=lr_, momentum=0.9),
            nn.CrossEntropyLoss(), data64, lr=lr, steps=STEPS,
            scheduler=lambda opt, lr_=lr: torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=lr_, total_steps=STEPS, cycle_momentum=False))
        assert done == STEPS
        assert_same_weights(ref, res.weights[i], rtol=1e-9, atol=1e-11)


def test_a_schedule_changes_the_result_and_per_candidate_multipliers_work(data64):
    model, lrs = net64(), [0.05, 0.4]
    kwargs = dict(lrs=lrs, steps=STEPS, batch_size=16, keep_weights=True)
    plain = sweep(model, "adam", nn.CrossEntropyLoss(), data64, data64, **kwargs)
    halved = sweep(model, "adam", nn.CrossEntropyLoss(), data64, data64,
                   lr_scale=lambda t: [1.0, 0.5], **kwargs)
    at_half = sweep(model, "adam", nn.CrossEntropyLoss(), data64, data64,
                    lrs=[0.05, 0.2], steps=STEPS, batch_size=16, keep_weights=True)
    # copy 0 is unchanged; copy 1 at 0.4 x 0.5 trains exactly as a constant 0.2
    assert_same_weights_dict(plain.weights[0], halved.weights[0])
    assert_same_weights_dict(at_half.weights[1], halved.weights[1])
    assert not torch.allclose(plain.weights[1]["0.weight"], halved.weights[1]["0.weight"])


def assert_same_weights_dict(a, b):
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-9, atol=1e-11, msg=name)


@pytest.mark.parametrize(("scale", "message"), [
    (lambda t: -1.0, "lr_scale"), (lambda t: [1.0], "2 of them"), ("cos", "callable")])
def test_a_bad_multiplier_is_named(data64, scale, message):
    with pytest.raises(ValueError, match=message):
        sweep(net64(), "sgd", nn.CrossEntropyLoss(), data64, data64, lrs=[0.1, 0.2], steps=3,
              lr_scale=scale)

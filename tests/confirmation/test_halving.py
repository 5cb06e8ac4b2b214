"""Successive halving inside the sweep: who stops where, with which weights, and what is kept."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from lrtune.confirmation import SweepResult, sweep
from lrtune.confirmation.halving import Halving, resolve_halving, to_stop

LRS = [1e-6, 1e-5, 1e-4, 0.03, 0.1, 0.3]  # three rates that cannot learn in 48 steps
EPOCHS = 8  # 96 samples / batch 16: 48 steps, rungs after steps 12 and 24


def net64():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3)).double()


def run(data, *, engine="auto", **kwargs):
    kwargs = {"lrs": LRS, "epochs": EPOCHS, **kwargs}
    return sweep(net64(), "sgd", nn.CrossEntropyLoss(), data, data, batch_size=16,
                 opt_kwargs={"momentum": 0.9}, engine=engine, keep_weights=True, **kwargs)


@pytest.mark.parametrize("engine", ["batched", "vmap", "sequential"])
def test_stopped_copies_keep_their_rung_weights_and_survivors_train_on_unchanged(data64,
                                                                                 engine):
    halved = run(data64, engine=engine, halving=True)
    full = run(data64, engine=engine, halving=False)
    assert halved.settings["halving"]["rung_steps"] == [12, 24]
    stopped = [i for i, s in enumerate(halved.stopped_step) if s is not None]
    # 1e-4 is the guard below the lowest contender (0.03) at the first rung, not at the second
    assert halved.stopped_step == [12, 12, 24, None, None, None]
    assert full.stopped_step == [None] * len(LRS)
    for i in range(3, len(LRS)):  # the survivors: the very weights of the sweep without halving
        for name, ref in full.weights[i].items():
            torch.testing.assert_close(halved.weights[i][name], ref, rtol=1e-9, atol=1e-11)
    at = {s: run(data64, engine=engine, halving=False, epochs=None, steps=s)
          for s in {halved.stopped_step[i] for i in stopped}}
    for i in stopped:  # a stopped copy ends with the weights it had at its rung
        at_rung = at[halved.stopped_step[i]]
        for name, ref in at_rung.weights[i].items():
            torch.testing.assert_close(halved.weights[i][name], ref, rtol=1e-9, atol=1e-11)
        assert halved.final_metric[i] is None and halved.valid_metric[i][-1] is None
        # its curve runs up to its rung (one point per 6-step epoch)
        points = halved.stopped_step[i] // 6
        assert None not in halved.valid_metric[i][:points]
        assert halved.valid_metric[i][points:] == [None] * (EPOCHS - points)
    assert halved.chosen_index not in stopped
    assert halved.chosen_lr == full.chosen_lr
    assert halved.copy_steps == 2 * 12 + 24 + 3 * 48
    assert halved.compute_fraction == pytest.approx((2 * 12 + 24 + 3 * 48) / (6 * 48))


def test_the_result_reports_where_rates_stopped(data64, tmp_path):
    res = run(data64, halving=[0.25])
    assert res.stopped_step == [12, 12, None, None, None, None]
    assert res.compute_fraction == pytest.approx((2 * 12 + 4 * 48) / (6 * 48))
    assert (f"2 stopped early by halving ({res.compute_fraction:.0%} of the copy-steps "
            "trained)") in res.summary()
    assert "stopped by halving at step 12 (its score there)" in res.table()
    png, js = res.save(tmp_path)
    assert png.stat().st_size > 10_000
    saved = json.loads(js.read_text())
    assert saved["stopped_step"] == res.stopped_step
    assert saved["settings"]["halving"]["rung_steps"] == [12]
    assert SweepResult.from_json(js) == res


def test_auto_halves_a_constant_rate_and_a_schedule(data64):
    constant = run(data64)
    assert constant.settings["halving"]["rungs"] == [0.25, 0.5]
    scheduled = run(data64, lr_scale=lambda t: 1.0)  # the same rates through a schedule
    assert scheduled.settings["halving"]["rungs"] == [0.25, 0.5]
    assert scheduled.stopped_step == constant.stopped_step
    few = run(data64, lrs=LRS[:3], halving=True, epochs=None, steps=5)  # 3 rates: none can stop
    assert few.settings["halving"] is None and few.steps == [5]  # and no rung evaluation


def test_the_early_leader_that_collapses_later_does_not_take_the_choice_with_it(data64):
    # the two highest rates learn fastest and lead at both rungs (steps 12 and 24), then their
    # rate jumps x30 after step 30 and they fall behind: the rates below them must still be
    # there for the final choice
    lrs = [1e-6, 1e-5, 1e-4, 0.003, 0.01, 0.03, 0.1, 0.3]

    def scale(t):
        return [1.0] * 6 + [1.0 if t < 30 else 30.0] * 2

    halved = run(data64, lrs=lrs, halving=True, lr_scale=scale)
    full = run(data64, lrs=lrs, halving=False, lr_scale=scale)
    rung = [[row[1], row[3]] for row in full.valid_metric]  # after steps 12 and 24
    assert all(max(rung[i]) < min(rung[7]) for i in range(6))  # the top rate led
    assert full.final_metric[7] < full.final_metric[5]  # ... and fell behind later
    assert halved.stopped_step[:4] == [12] * 4 and halved.stopped_step[5:] == [None] * 3
    assert halved.chosen_lr == full.chosen_lr == 0.03


def test_to_stop_keeps_the_guard_below_the_contenders_and_at_most_half():
    lrs = [0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128]
    # only the top rate is in contention; everyone else is far behind
    scores = [0.1, 0.1, 0.1, 0.2, 0.3, 0.4, 0.5, 0.95]
    stop = to_stop(lrs, scores, [0.02] * 8, mode="max", z=2.0, min_keep=3)
    assert stop == [0, 1, 2, 3]  # half of 8; 6 (the guard below 7) and 4, 5 stay
    # a loss: lower is better; nobody clearly worse -> nobody stops
    assert to_stop(lrs[:4], [1.0, 1.01, 1.0, 0.99], [0.02] * 4, mode="min", z=2.0,
                   min_keep=2) == []
    # min_keep wins over the cap
    assert to_stop(lrs[:4], [0.1, 0.1, 0.1, 0.9], [0.01] * 4, mode="max", z=2.0,
                   min_keep=3) == [0]
    # z scales the evidence needed at early rungs
    assert Halving().z_at(0.25) > Halving().z_at(0.5) == 2.0


@pytest.mark.parametrize("value", ["yes", [0.5, 0.25], [1.5], [], [0.0], (True,), 0.5])
def test_bad_halving_values_are_named(data, value):
    message = "halving must be 'auto', True, False or ascending fractions of the budget"
    with pytest.raises(ValueError, match=message):
        resolve_halving(value)
    with pytest.raises(ValueError, match=message):
        run(data, halving=value)

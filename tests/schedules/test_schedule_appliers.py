"""HyperparamScheduler and ReduceLROnPlateau: where values go, state, errors."""

from __future__ import annotations

import json

import pytest
import torch
from torch.optim import lr_scheduler as tls

from lrtune.schedules import (
    HyperparamScheduler,
    ReduceLROnPlateau,
    constant,
    linear,
    linspace,
    one_cycle,
    with_warmup,
)


def sgd(**kwargs) -> torch.optim.SGD:
    return torch.optim.SGD([torch.zeros(3, requires_grad=True)], lr=1.0, **kwargs)


def two_groups(cls=torch.optim.SGD, **kwargs):
    a, b = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    return cls([{"params": [a]}, {"params": [b]}], lr=1.0, **kwargs)


def test_sets_lr_momentum_and_weight_decay_on_sgd():
    opt = sgd(momentum=0.5, weight_decay=0.0)
    sched = HyperparamScheduler(
        opt, {"lr": linear(0.1, 0.0, 10), "momentum": constant(0.9),
              "weight_decay": linear(0.0, 1e-2, 10)}, interval="batch")
    sched.apply()
    assert opt.param_groups[0]["lr"] == 0.1
    assert opt.param_groups[0]["momentum"] == 0.9
    assert opt.param_groups[0]["weight_decay"] == 0.0
    for _ in range(5):
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    assert opt.param_groups[0]["weight_decay"] == pytest.approx(5e-3)


@pytest.mark.parametrize("cls", [torch.optim.Adam, torch.optim.AdamW])
def test_momentum_drives_beta1_on_adam(cls):
    opt = cls([torch.zeros(2, requires_grad=True)], lr=1e-3, betas=(0.9, 0.99))
    sched = HyperparamScheduler(opt, {"momentum": linear(0.95, 0.85, 2)}, interval="epoch")
    sched.apply()
    assert opt.param_groups[0]["betas"] == (0.95, 0.99)
    sched.step()
    sched.step()
    assert opt.param_groups[0]["betas"] == (0.85, 0.99)
    assert sched.values() == {"momentum": [0.85]}


def test_optimizer_step_is_not_patched():
    opt = sgd()
    step_before = opt.step
    HyperparamScheduler(opt, {"lr": constant(0.1)}).apply()
    assert opt.step == step_before
    assert "initial_lr" not in opt.param_groups[0]


def test_group_scales_scale_a_schedule_per_group():
    opt = two_groups(momentum=0.9)
    sched = HyperparamScheduler(opt, {"lr": constant(0.1), "momentum": constant(0.8)},
                                group_scales={"lr": [1.0, 0.1]})
    sched.apply()
    assert sched.values() == {"lr": [0.1, pytest.approx(0.01)], "momentum": [0.8, 0.8]}


def test_fraction_time_axis_reaches_the_end_value_at_the_last_unit():
    opt = sgd()
    sched = HyperparamScheduler(opt, {"lr": linear(0.03, 0.0001, 1)}, interval="epoch",
                                time_axis="fraction", total_steps=5)
    seen = []
    sched.apply()
    for _ in range(5):
        seen.append(opt.param_groups[0]["lr"])
        sched.step({"valid_loss": 1.0})
    assert seen == pytest.approx([0.03, 0.022525, 0.01505, 0.007575, 0.0001], rel=1e-12)


def test_resume_from_state_dict_gives_the_same_sequence():
    def run(n, sched):
        out = []
        for _ in range(n):
            out.append(sched.values()["lr"][0])
            sched.step()
        return out

    full = HyperparamScheduler(sgd(), {"lr": one_cycle(0.1, 100)})
    full.apply()
    expected = run(100, full)

    first = HyperparamScheduler(sgd(), {"lr": one_cycle(0.1, 100)})
    first.apply()
    head = run(37, first)
    state = json.loads(json.dumps(first.state_dict()))  # plain data only
    assert state == {"step": 37}
    second = HyperparamScheduler(sgd(), {"lr": one_cycle(0.1, 100)})
    second.load_state_dict(state)
    assert head + run(63, second) == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"schedules": {"betas2": constant(0.1)}}, "has no hyperparameter 'betas2'"),
        ({"schedules": {"lr": constant(0.1)}, "interval": "step"}, "interval must be"),
        ({"schedules": {"lr": 0.1}}, "schedules['lr'] must be a callable"),
        ({"schedules": {}}, "at least one"),
        ({"schedules": {"lr": constant(0.1)}, "group_scales": {"lr": [1, 2]}},
         "one scale per param group"),
        ({"schedules": {"lr": constant(0.1)}, "time_axis": "fraction"}, "total_steps"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=__import__("re").escape(message)):
        HyperparamScheduler(sgd(), **kwargs)


def test_momentum_on_an_optimizer_without_momentum_is_rejected():
    opt = torch.optim.Adagrad([torch.zeros(1, requires_grad=True)], lr=0.1)
    with pytest.raises(ValueError, match="Adagrad has no hyperparameter 'momentum'"):
        HyperparamScheduler(opt, {"momentum": constant(0.9)})


def test_negative_scheduled_value_is_rejected_at_apply():
    sched = HyperparamScheduler(sgd(), {"lr": lambda t: 0.1 - t})
    sched.apply()
    with pytest.raises(ValueError, match=r"schedule for 'lr' gave -0.9 at step 1"):
        sched.step()


def test_bad_state_dict_is_rejected():
    sched = HyperparamScheduler(sgd(), {"lr": constant(0.1)})
    with pytest.raises(ValueError, match="state_dict must hold 'step'"):
        sched.load_state_dict({"step": -1})


def test_seed_004_pair_per_epoch_like_np_linspace():
    import numpy as np

    opt = sgd(momentum=0.0)
    sched = HyperparamScheduler(opt, linspace(8, lr=(0.03, 0.0001), momentum=(0.9, 0.999)),
                                interval="epoch")
    sched.apply()
    lrs, moms = [], []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        moms.append(opt.param_groups[0]["momentum"])
        sched.step({})
    np.testing.assert_allclose(lrs, np.linspace(0.03, 0.0001, 8), rtol=1e-12)
    np.testing.assert_allclose(moms, np.linspace(0.9, 0.999, 8), rtol=1e-12)
    assert lrs[-1] == 0.0001
    assert moms[-1] == 0.999


# ReduceLROnPlateau ---------------------------------------------------------------------------

METRICS = [5.0, 4.0, 4.0, 3.99999, 4.1, 4.0, 3.0, 3.0, 3.0, 3.0, 3.0, 2.0, 2.5, 2.5, 2.5,
           2.5, 2.5, 2.5, 1.0, float("nan"), 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "min", "factor": 0.5, "patience": 2, "cooldown": 1},
        {"mode": "min", "factor": 0.1, "patience": 0, "min_value": 1e-3},
        {"mode": "max", "factor": 0.5, "patience": 1, "threshold": 0.1, "threshold_mode": "abs"},
    ],
)
def test_plateau_matches_torch_reduce_lr_on_plateau(kwargs):
    ours_opt, torch_opt = sgd(), sgd()
    ours = ReduceLROnPlateau(ours_opt, monitor="valid_loss", **kwargs)
    torch_kwargs = {("min_lr" if k == "min_value" else k): v for k, v in kwargs.items()}
    theirs = tls.ReduceLROnPlateau(torch_opt, **torch_kwargs)
    for value in METRICS:
        ours.step({"valid_loss": value})
        theirs.step(value)
        assert ours_opt.param_groups[0]["lr"] == pytest.approx(torch_opt.param_groups[0]["lr"],
                                                               rel=1e-12)
    assert ours_opt.param_groups[0]["lr"] < 1.0


def test_plateau_after_warmup_and_exact_resume():
    sched_kwargs = {"factor": 0.5, "patience": 1, "warmup_steps": 3,
                    "schedule": with_warmup(constant(0.1), 3)}
    metrics = [9.0, 9.0, 9.0, 1.0, 1.0, 1.0, 0.5, 0.6, 0.7, 0.8, 0.9]

    def run(sched, opt, values):
        out = []
        for v in values:
            sched.step({"valid_loss": v})
            out.append(opt.param_groups[0]["lr"])
        return out

    opt = sgd()
    full = ReduceLROnPlateau(opt, **sched_kwargs)
    full.apply()
    assert opt.param_groups[0]["lr"] == 0.0  # warmup starts at 0
    expected = run(full, opt, metrics)
    # warmup epochs ramp up and are not monitored despite the flat 9.0s
    assert expected[:3] == pytest.approx([0.1 / 3, 0.2 / 3, 0.1])
    assert expected[3:6] == pytest.approx([0.1, 0.1, 0.05])
    assert expected[-1] == pytest.approx(0.0125)

    opt1 = sgd()
    first = ReduceLROnPlateau(opt1, **sched_kwargs)
    head = run(first, opt1, metrics[:5])
    state = json.loads(json.dumps(first.state_dict()))
    opt2 = sgd()
    second = ReduceLROnPlateau(opt2, **sched_kwargs)
    second.load_state_dict(state)
    assert head + run(second, opt2, metrics[5:]) == expected


def test_plateau_state_keeps_base_values_over_a_reduced_optimizer():
    opt = sgd()
    plateau = ReduceLROnPlateau(opt, factor=0.5, patience=0)
    plateau.step({"valid_loss": 1.0})
    plateau.step({"valid_loss": 1.0})
    assert opt.param_groups[0]["lr"] == 0.5
    state = plateau.state_dict()
    # a new run whose optimizer already carries the reduced lr must not reduce it twice
    fresh = ReduceLROnPlateau(opt, factor=0.5, patience=0)
    fresh.load_state_dict(state)
    assert opt.param_groups[0]["lr"] == 0.5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"factor": 1.5}, "factor must be a number in (0, 1), got 1.5"),
        ({"mode": "up"}, "mode must be 'min' or 'max', got 'up'"),
        ({"patience": -1}, "patience must be an integer >= 0, got -1"),
        ({"min_value": -0.1}, "min_value must be a finite number >= 0, got -0.1"),
        ({"key": "momentum"}, "has no hyperparameter 'momentum'"),
    ],
)
def test_plateau_bad_arguments(kwargs, message):
    opt = torch.optim.Adagrad([torch.zeros(1, requires_grad=True)], lr=0.1)
    with pytest.raises(ValueError, match=__import__("re").escape(message)):
        ReduceLROnPlateau(opt, **kwargs)


def test_plateau_missing_metric_names_the_monitor():
    plateau = ReduceLROnPlateau(sgd(), monitor="valid_acc", mode="max")
    with pytest.raises(ValueError, match="monitor 'valid_acc' is not in the logs"):
        plateau.step({"valid_loss": 1.0})


def test_a_schedule_over_groups_with_different_rates_warns_and_names_the_scales():
    def opt():
        a, b, c = (torch.zeros(2, requires_grad=True) for _ in range(3))
        return torch.optim.SGD([{"params": [a], "lr": 0.0}, {"params": [b], "lr": 0.01},
                                {"params": [c], "lr": 0.1}], lr=0.1)

    with pytest.warns(UserWarning, match=r"lr \[0.0, 0.01, 0.1\].*frozen.*"
                                         r"group_scales=\{'lr': \[0.0, 1.0, 10.0\]\}"):
        HyperparamScheduler(opt(), {"lr": constant(0.5)})
    with pytest.warns(UserWarning, match="group_scales"):
        ReduceLROnPlateau(opt(), schedule=constant(0.5))
    # with the scales, or over groups that agree, nothing to say
    HyperparamScheduler(opt(), {"lr": constant(0.5)}, group_scales={"lr": [0.0, 1.0, 10.0]})
    HyperparamScheduler(two_groups(momentum=0.9), {"lr": constant(0.5)})
    ReduceLROnPlateau(opt())  # no schedule: each group keeps its own base value


def test_plateau_floor_leaves_a_frozen_group_at_zero():
    # torch's ReduceLROnPlateau never raises a rate to min_lr; a frozen group must not train
    a, b = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    opt = torch.optim.SGD([{"params": [a], "lr": 0.0}, {"params": [b], "lr": 0.1}], lr=0.1)
    ref_opt = torch.optim.SGD([{"params": [a], "lr": 0.0}, {"params": [b], "lr": 0.1}], lr=0.1)
    ours = ReduceLROnPlateau(opt, factor=0.5, patience=0, min_value=1e-3)
    ref = tls.ReduceLROnPlateau(ref_opt, factor=0.5, patience=0, min_lr=1e-3)
    for loss in (1.0, 1.0, 1.0, 1.0):
        ours.step({"valid_loss": loss})
        ref.step(loss)
        assert [g["lr"] for g in opt.param_groups] == pytest.approx(
            [g["lr"] for g in ref_opt.param_groups])
    assert opt.param_groups[0]["lr"] == 0.0
    scaled = ReduceLROnPlateau(opt, schedule=constant(0.1), group_scales=[0.0, 1.0],
                               min_value=1e-3)
    scaled.apply()
    assert opt.param_groups[0]["lr"] == 0.0


def test_construction_writes_step_0_as_torch_schedulers_do():
    # a loop that calls step() only after its first epoch trained that epoch at the
    # optimizer's own lr (0.5 here), not at the schedule's first value
    opt = sgd(momentum=0.5)
    HyperparamScheduler(opt, linspace(3, lr=(0.03, 1e-4), momentum=(0.9, 0.999)),
                        interval="epoch")
    assert (opt.param_groups[0]["lr"], opt.param_groups[0]["momentum"]) == (0.03, 0.9)
    torch_opt = sgd()
    tls.LinearLR(torch_opt, start_factor=0.1, total_iters=3)
    assert torch_opt.param_groups[0]["lr"] == pytest.approx(0.1)  # torch: the same convention
    plateau_opt = sgd()
    ReduceLROnPlateau(plateau_opt, schedule=with_warmup(constant(0.1), 3))
    assert plateau_opt.param_groups[0]["lr"] == 0.0  # the warmup's start

"""Preview: values per step, jump detection, table and plot; the torch wrapper."""

from __future__ import annotations

import json

import pytest
import torch

import lrtune
from lrtune.schedules import (
    HyperparamScheduler,
    TorchScheduler,
    constant,
    cosine,
    find_jumps,
    join,
    named_schedule,
    one_cycle,
    schedule_table,
    schedule_values,
)


@pytest.mark.parametrize(
    ("name", "jumps"),
    [("step", [50, 75]), ("cosine_restarts", [25, 50, 75]), ("one_cycle", []), ("cosine", []),
     ("warmup_cosine", []), ("cyclic", []), ("linear", []), ("exponential", [])],
)
def test_jumps_are_found_at_phase_boundaries_only(name, jumps):
    lr = schedule_values(named_schedule(name, lr=0.1, total_steps=100), 100)["lr"]
    assert find_jumps(lr) == jumps


def test_jump_in_a_join_is_flagged_in_the_table():
    s = join([cosine(1.0, 10, 0.5), constant(0.1)], [10])
    table = schedule_table(schedule_values({"lr": s}, 20), rows=3)
    lines = table.splitlines()
    assert lines[0].split() == ["step", "lr"]
    flagged = [line for line in lines if "<- jump" in line]
    assert len(flagged) == 1
    assert flagged[0].split()[:2] == ["10", "0.1"]
    assert any(line.split()[:2] == ["9", f"{s(9):.4g}"] for line in lines)


def test_plot_schedule_writes_a_png_with_one_panel_per_key(tmp_path):
    out = tmp_path / "sub" / "oc.png"
    scheds = {"lr": one_cycle(0.1, 200), "momentum": cosine(0.9, 199, 0.8)}
    fig = lrtune.plot_schedule(scheds, 200, title="one cycle", out=out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [ax.get_ylabel() for ax in fig.axes] == ["lr", "momentum"]
    line = fig.axes[0].lines[0]
    assert list(line.get_ydata()) == [one_cycle(0.1, 200)(t) for t in range(200)]


def test_torch_wrapper_is_an_lr_scheduler_and_resumes():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0, momentum=0.9)
    step_before = opt.step
    sched = TorchScheduler(opt, named_schedule("one_cycle", lr=0.1, total_steps=50))
    assert isinstance(sched, torch.optim.lr_scheduler.LRScheduler)
    assert opt.step == step_before  # not patched
    seen = []
    for _ in range(20):
        seen.append((sched.get_last_lr()[0], opt.param_groups[0]["momentum"]))
        opt.step()
        sched.step()
    assert sched.last_epoch == 20
    state = sched.state_dict()
    assert json.loads(json.dumps(state)) == {"step": 20}
    expected = [(one_cycle(0.1, 50)(t), None) for t in range(20)]
    assert [lr for lr, _ in seen] == [lr for lr, _ in expected]

    opt2 = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0, momentum=0.9)
    again = TorchScheduler(opt2, named_schedule("one_cycle", lr=0.1, total_steps=50))
    again.load_state_dict(state)
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    assert opt2.param_groups[0]["momentum"] == opt.param_groups[0]["momentum"]
    with pytest.raises(ValueError, match="epoch must be None"):
        again.step(3)


def test_torch_wrapper_last_epoch_means_what_it_means_to_torch():
    # torch's LambdaLR built with last_epoch=k writes the value of step k + 1; so do we
    lam = cosine(0.1, steps=10)
    for last_epoch in (-1, 0, 4):
        theirs_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        theirs_opt.param_groups[0]["initial_lr"] = 1.0  # torch needs it to resume
        theirs = torch.optim.lr_scheduler.LambdaLR(theirs_opt, lam, last_epoch=last_epoch)
        ours_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        ours = TorchScheduler(ours_opt, lam, last_epoch=last_epoch)
        assert ours.last_epoch == theirs.last_epoch == last_epoch + 1
        assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=1e-12)
    with pytest.raises(ValueError, match="last_epoch must be an integer >= -1, got -2"):
        TorchScheduler(ours_opt, lam, last_epoch=-2)


def test_applier_values_are_what_preview_shows():
    scheds = named_schedule("cyclic", lr=0.1, total_steps=60)
    preview = schedule_values(scheds, 60)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0, momentum=0.9)
    applier = HyperparamScheduler(opt, scheds)
    applier.apply()
    for t in range(60):
        assert applier.values() == {"lr": [preview["lr"][t]], "momentum": [preview["momentum"][t]]}
        applier.step()


def test_plot_schedule_puts_the_jump_legend_beside_the_curve(legends_clear, texts_of):
    from lrtune.plots import pyplot

    fig = lrtune.plot_schedule(named_schedule("step", lr=0.1, total_steps=90), 90)
    try:
        (legend,) = legends_clear(fig)
        assert texts_of(legend) == ["jump (2)"]
    finally:
        pyplot().close(fig)

"""From a range test to a confirmed rate: the bracket, confirm_lr and ``lrtune find --confirm``."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from lrtune.cli import main
from lrtune.confirmation import bracket_from_finder, confirm_lr
from lrtune.confirmation.confirm import confirm_budget
from lrtune.finder import find_lr


def test_cli_default_fraction_is_the_librarys():
    from lrtune.cli.setup import CONFIRM_FRACTION as cli
    from lrtune.confirmation.confirm import CONFIRM_FRACTION as lib

    assert cli == lib


def test_the_budget_is_a_share_of_the_planned_steps():
    ok, flat = SimpleNamespace(verdict="ok"), SimpleNamespace(verdict="inconclusive")
    # charlm_adamw's plan (2 epochs x 64 steps): a quarter is 32 steps, not 1 epoch (64)
    assert confirm_budget(ok, 2, 64) == {"steps": 32}
    assert confirm_budget(flat, 2, 64) == {"steps": 64}  # twice after an inconclusive test
    assert confirm_budget(ok, 2, 64, unit="epochs") == {"steps": 64}  # the earlier rule
    assert confirm_budget(ok, 5, 29) == {"steps": 36}  # 36.25 steps; whole epochs: 29
    assert confirm_budget(ok, 1, 2, fraction=0.1) == {"steps": 1}  # at least one step
    assert confirm_budget(flat, 2, 64, fraction=0.75) == {"steps": 128}  # at most the plan
    assert confirm_budget(ok, 2, None) == {"epochs": 1}  # no length: whole epochs
    with pytest.raises(ValueError, match="unit must be one of steps, epochs, got 'batches'"):
        confirm_budget(ok, 2, 64, unit="batches")


def test_bracket_rules():
    ok = SimpleNamespace(verdict="ok", min_loss_lr=0.5, suggested_lr=0.05, stop_lr=2.0)
    lo, hi = bracket_from_finder(ok)
    assert hi == 0.5 and lo == pytest.approx(0.5 / 10**1.75)
    low_suggestion = SimpleNamespace(verdict="ok", min_loss_lr=0.5, suggested_lr=1e-3, stop_lr=2.0)
    assert bracket_from_finder(low_suggestion)[0] == pytest.approx(5e-4)
    flat = SimpleNamespace(verdict="inconclusive", min_loss_lr=0.5, suggested_lr=None, stop_lr=2.0)
    assert bracket_from_finder(flat) == pytest.approx((2e-3, 2.0))
    # reaching above the minimum (a benchmark variant): never past the divergence point
    assert bracket_from_finder(ok, above=0.5) == pytest.approx((0.5 / 10**1.75, 0.5 * 10**0.5))
    assert bracket_from_finder(ok, above=1.0)[1] == 2.0
    assert bracket_from_finder(flat, above=1.0) == pytest.approx((2e-3, 2.0))  # ignored


def test_confirm_lr_runs_inside_the_range_tests_bracket(data):
    def factory():
        return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))

    torch.manual_seed(0)
    model = factory()
    finder = find_lr(model, torch.optim.SGD(model.parameters(), lr=1.0), nn.CrossEntropyLoss(),
                     data, start_lr=1e-4, end_lr=10.0, num_iters=40, batch_size=16)
    res = confirm_lr(factory, "sgd", {"momentum": 0.9}, nn.CrossEntropyLoss(), data, data,
                     finder, k=4, budget_epochs=2, batch_size=16)
    lo, hi = res.settings["bracket"]
    assert len(res.lrs) == 4 and res.lrs[0] == pytest.approx(lo, rel=1e-5)
    assert res.lrs[-1] == pytest.approx(hi, rel=1e-5)
    assert res.settings["range_test_suggestion"] == finder.suggested_lr
    assert res.settings["optimizer"]["momentum"] == 0.9
    assert res.chosen_lr in res.lrs
    with pytest.raises(ValueError, match="give a budget"):
        confirm_lr(factory, "sgd", None, nn.CrossEntropyLoss(), data, data, finder)


@pytest.mark.parametrize(
    ("options", "steps", "share"),
    [
        (["--num-iters", "30"], 68, "0.5 of the plan: the range test was inconclusive"),
        (["--momentum", "0.9"], 34, "0.25 of the plan"),
    ],
    ids=["inconclusive", "conclusive"],
)
def test_find_confirm_cli_writes_both_rates(tmp_path, capsys, options, steps, share):
    out = tmp_path / "find"
    code = main(["find", *options, "--confirm", "3", "--epochs", "4", "--out", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    # digits: 1 077 training images in batches of 32, 34 steps per epoch, 136 planned
    epochs = steps // 34
    assert (f"confirmation: 3 rates, {steps} of 136 steps ({epochs} of 4 epochs) each "
            f"({share})") in text
    data = json.loads((out / "lr_find.json").read_text())
    assert "suggested_lr" in data and "lrs" in data  # the range test's keys stay
    assert data["confirmed_lr"] in data["confirm"]["candidates"]
    assert len(data["confirm"]["valid_metric"]) == 3 and data["confirm"]["steps"] == steps
    assert data["confirm"]["epochs"] == epochs and data["confirm"]["planned_steps"] == 136
    assert (out / "sweep.png").exists() and (out / "sweep.json").exists()


def test_find_confirm_cli_rejects_a_fraction_above_one(tmp_path, capsys):
    code = main(["find", "--num-iters", "10", "--confirm", "--confirm-fraction", "2",
                 "--out", str(tmp_path)])
    assert code == 2
    assert "--confirm-fraction must be in (0, 1], got 2.0" in capsys.readouterr().err

"""auto_lr: range test, confirmation by default (and why), schedules, groups, holdout, outputs."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lrtune
from lrtune.auto import (
    WHY_CONFIRM,
    AutoLRResult,
    _compressed,
    _schedule_shape,
    confirm_range_test,
    holdout_split,
)
from lrtune.confirmation.confirm import confirm_budget
from lrtune.finder.result import FinderResult
from lrtune.schedules.presets import named_schedule


@pytest.fixture(scope="module")
def data():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(240, 8, generator=gen)
    y = (X[:, 0] + X[:, 1] > 0).long() + (X[:, 2] > 0.5).long()
    return X, y


def make(groups=False):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    if groups:
        return m, torch.optim.SGD([{"params": m[0].parameters(), "lr": 0.1},
                                   {"params": m[2].parameters(), "lr": 0.01}], lr=0.1)
    return m, torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)


def states(m, o):
    return ({k: v.clone() for k, v in m.state_dict().items()},
            json.dumps(o.state_dict()["param_groups"]))


def assert_unchanged(m, o, before):
    """The model's weights and the optimizer's groups are as they were before the call."""
    after = states(m, o)
    assert after[1] == before[1]
    for k, v in before[0].items():
        assert torch.equal(after[0][k], v), k


def test_export():
    assert lrtune.auto_lr.__module__ == "lrtune.auto" and lrtune.AutoLRResult is AutoLRResult


def test_a_conclusive_range_test_is_confirmed_by_default_saying_why(data, capsys):
    m, o = make()
    before = states(m, o)
    res = lrtune.auto_lr(m, o, nn.CrossEntropyLoss(), data, epochs=2, batch_size=16, k=3)
    out = capsys.readouterr().out
    assert res.finder.verdict == "ok" and res.decided_by == "confirmation"
    assert res.lr == res.sweep.chosen_lr and res.lrs == [res.lr]
    # the one line says why: the benchmark's measurement (RESULTS.md §8)
    assert res.reason.startswith(f"{WHY_CONFIRM}; confirmed by training: ")
    assert "2 of 13 benchmark tasks" in WHY_CONFIRM and "RESULTS.md §8" in WHY_CONFIRM
    assert out.startswith(f"auto_lr: {WHY_CONFIRM}: confirming 3 rates ")
    # top of the bracket: the range test's minimum; a quarter of the plan's steps: 192 rows
    # held out of 240, batch 16: 12 steps per epoch, 24 planned, 6 confirmed
    assert res.sweep.lrs[-1] == pytest.approx(res.finder.min_loss_lr, rel=1e-5)
    assert res.sweep.settings["steps"] == 6 and res.sweep.steps[-1] == 6
    assert res.settings["confirm_steps"] == 6 and res.settings["confirm_epochs"] == 0.5
    assert "over 6 of 24 steps (0.5 of 2 epochs)" in out
    assert_unchanged(m, o, before)


def test_confirm_false_keeps_the_range_test_rate_alone(data, capsys):
    m, o = make()
    before = states(m, o)
    res = lrtune.auto_lr(m, o, nn.CrossEntropyLoss(), data, epochs=2, batch_size=16,
                         confirm=False)
    assert res.finder.verdict == "ok" and res.sweep is None
    assert res.decided_by == "range test" and res.lr == res.finder.suggested_lr
    assert res.reason == f"range test only (confirm=False): {res.finder.summary()}"
    assert capsys.readouterr().out.strip() == f"auto_lr: {res.reason}"
    assert_unchanged(m, o, before)


def test_an_inconclusive_range_test_is_confirmed_automatically(data, capsys):
    m, o = make()
    before = states(m, o)
    res = lrtune.auto_lr(m, o, nn.CrossEntropyLoss(), data, epochs=4, batch_size=16,
                         end_lr=1e-5, num_iters=100, k=3)
    out = capsys.readouterr().out
    assert res.finder.verdict == "inconclusive"
    assert res.decided_by == "confirmation" and res.sweep is not None
    assert res.lr == res.sweep.chosen_lr and res.lr in res.sweep.lrs
    assert res.reason.startswith("the range test was inconclusive (flat")
    assert "auto_lr: the range test was inconclusive" in out and "confirming 3 rates" in out
    # half the plan (twice the quarter) after an inconclusive test; the bracket is 3 decades
    # below the last rate
    assert res.sweep.settings["steps"] == 24 and res.settings["confirm_steps"] == 24
    assert res.settings["confirm_epochs"] == 2 and res.sweep.settings["confirm_share"] == 0.5
    assert res.sweep.lrs[-1] == pytest.approx(res.finder.stop_lr, rel=1e-5)
    # held out 20 % of 240 rows for the confirmation
    assert res.sweep.settings["n_valid"] == 48 and res.settings["holdout"] == 0.2
    for k, v in before[0].items():
        assert torch.equal(m.state_dict()[k], v), k


def test_confirm_false_gives_no_rate_after_an_inconclusive_test(data):
    m, o = make()
    res = lrtune.auto_lr(m, o, nn.CrossEntropyLoss(), data, epochs=2, end_lr=1e-5, num_iters=100,
                         confirm=False, verbose=False)
    assert res.lr is None and res.lrs is None and res.sweep is None
    assert "confirm=False: no rate" in res.reason
    with pytest.raises(ValueError, match="no rate to apply"):
        res.apply(o)


def test_a_schedule_triggers_a_confirmation_under_it(data):
    m, o = make()
    res = lrtune.auto_lr(m, o, nn.CrossEntropyLoss(), data, epochs=4, batch_size=16,
                         schedule="one_cycle", k=3, num_iters=100, verbose=False)
    assert res.finder.verdict == "ok" and res.decided_by == "confirmation"
    assert "not the peak of one_cycle" in res.reason and res.schedule == "one_cycle"
    assert res.sweep.settings["scheduled"] is True and res.sweep.settings["schedule"] == "one_cycle"
    assert res.sweep.settings["steps"] == 12  # a quarter of the 48 planned steps
    assert "peak of one_cycle" in res.summary()


def test_presets_are_scaled_to_the_confirmation_and_callables_are_time_compressed():
    cands = [0.1, 0.4]
    scale = _compressed(_schedule_shape("one_cycle"), cands, planned=100, budget=50)
    ref = named_schedule("one_cycle", lr=0.4, total_steps=50)["lr"]
    assert scale(0)[1] * 0.4 == pytest.approx(ref(0))
    assert scale(14)[1] * 0.4 == pytest.approx(0.4)  # the peak at 30 % of the confirmation
    assert scale(14)[0] == pytest.approx(scale(14)[1])
    custom = _schedule_shape(lambda peak: (lambda t: peak * (1 - t / 100)))
    scale = _compressed(custom, cands, planned=100, budget=50)
    assert scale(25) == pytest.approx([0.5, 0.5])  # step 25 of 50 reads step 50 of 100


@pytest.mark.parametrize("bad", [float("nan"), -1.0])
def test_a_custom_schedule_giving_a_bad_rate_is_named_as_the_schedule(data, bad):
    # before: "lr_scale(0) must be a finite number >= 0 or 8 of them" (an argument the user
    # never passed)
    m, o = make()
    with pytest.raises(ValueError, match=r"^schedule\(0\.\d+\) gave lr (nan|-1\.0) at step 0 of "
                                         r"the planned run: it must be a finite number >= 0"):
        lrtune.auto_lr(m, o, nn.CrossEntropyLoss(), data, epochs=1, k=2, verbose=False,
                       schedule=lambda peak: (lambda t: bad))


def test_param_group_ratios_are_kept_and_applied(data):
    m, o = make(groups=True)
    res = lrtune.auto_lr(m, o, nn.CrossEntropyLoss(), data, epochs=2, batch_size=16,
                         confirm=False, verbose=False)
    assert res.lrs == pytest.approx([res.lr, res.lr / 10])
    res.apply(o)
    assert [g["lr"] for g in o.param_groups] == pytest.approx(res.lrs)


def test_apply_keeps_frozen_groups_at_zero(data):
    m, _ = make()
    o = torch.optim.SGD([{"params": m[0].parameters(), "lr": 0.1},
                         {"params": m[2].parameters(), "lr": 0.0}])
    res = AutoLRResult(0.3, [0.3, 0.0], "range test", "r", finder=None)
    res.apply(o)
    assert [g["lr"] for g in o.param_groups] == [0.3, 0.0]
    with pytest.raises(ValueError, match=r"has 2 param group\(s\) but this result has rates for 1"):
        AutoLRResult(0.3, [0.3], "range test", "r", finder=None).apply(o)


def test_holdout_split_is_seeded_and_other_data_need_valid(data):
    (a, _), (b, _) = holdout_split(data, 0.25, seed=3)
    (c, _), _ = holdout_split(data, 0.25, seed=3)
    assert len(a) == 180 and len(b) == 60 and torch.equal(a, c)
    loader = DataLoader(TensorDataset(*data), batch_size=16)
    m, o = make()
    with pytest.raises(ValueError, match="needs valid data"):
        lrtune.auto_lr(m, o, nn.CrossEntropyLoss(), loader, epochs=1)
    with pytest.raises(ValueError, match="holdout must be"):
        lrtune.auto_lr(m, o, nn.CrossEntropyLoss(), data, epochs=1, holdout=1.5)


def test_a_valid_set_the_model_cannot_read_fails_before_the_range_test(data, monkeypatch):
    import lrtune.finder as finder

    def no_range_test(*args, **kwargs):
        raise AssertionError("the range test ran before the valid data were checked")

    monkeypatch.setattr(finder, "find_lr", no_range_test)
    m, o = make()
    X, y = data
    with pytest.raises(ValueError, match=r"^the valid data does not fit the model: mat1 and"):
        lrtune.auto_lr(m, o, nn.CrossEntropyLoss(), data, valid=(X[:20, :5], y[:20]), epochs=1)
    loader = DataLoader(TensorDataset(X[:20, :5], y[:20]), batch_size=8)
    with pytest.raises(ValueError, match=r"^the valid data does not fit the model"):
        lrtune.auto_lr(m, o, nn.CrossEntropyLoss(), data, valid=loader, epochs=1)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"choice": "best"}, "choice must be one of window, final, got 'best'"),
    ({"engine": "fast"}, "engine must be one of auto, batched, vmap, sequential"),
    ({"halving": "off"}, "halving must be 'auto', True, False")])
def test_bad_sweep_options_fail_before_the_range_test(data, monkeypatch, kwargs, message):
    # they were read by the confirmation only, after a range test of seconds to minutes
    import lrtune.finder as finder

    def no_range_test(*args, **kwargs):
        raise AssertionError("the range test ran before the sweep's options were checked")

    monkeypatch.setattr(finder, "find_lr", no_range_test)
    m, o = make()
    with pytest.raises(ValueError, match=message):
        lrtune.auto_lr(m, o, nn.CrossEntropyLoss(), data, epochs=1, **kwargs)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"confirm": "yes"}, "confirm must be True or False"),
    ({"confirm": "auto"}, "confirm must be True or False"), ({"epochs": 0}, "epochs must be"),
    ({"schedule": "wiggly"}, "unknown schedule"), ({"confirm_fraction": 2}, "confirm_fraction"),
    ({"confirm_unit": "batches"}, "confirm_unit must be one of steps, epochs"),
    ({"k": 1}, r"k \(the rates the confirmation compares\) must be an integer >= 2")])
def test_bad_arguments_are_named(data, kwargs, message):
    m, o = make()
    kwargs = {"epochs": 1, **kwargs}
    with pytest.raises(ValueError, match=message):
        lrtune.auto_lr(m, o, nn.CrossEntropyLoss(), data, **kwargs)


def test_save_json_and_plot(data, tmp_path):
    m, o = make()
    res = lrtune.auto_lr(m, o, nn.CrossEntropyLoss(), data, epochs=2, batch_size=16, k=2,
                         num_iters=100, verbose=False)
    paths = res.save(tmp_path)
    assert sorted(p.name for p in paths) == ["auto_lr.json", "lr_find.json", "lr_find.png",
                                             "sweep.json", "sweep.png"]
    saved = json.loads((tmp_path / "auto_lr.json").read_text())
    assert saved["lr"] == res.lr and saved["decided_by"] == "confirmation"
    assert saved["sweep"]["chosen_lr"] == res.lr and saved["finder"]["verdict"] == "ok"
    found = json.loads((tmp_path / "lr_find.json").read_text())  # as `lrtune find --confirm`
    assert found["confirmed_lr"] == res.lr and found["confirm"]["candidates"] == res.sweep.lrs
    assert found["confirm"]["steps"] == 6 and found["confirm"]["epochs"] == 0.5
    assert found["confirm"]["planned_steps"] == 24 and found["confirm"]["planned_epochs"] == 2
    # and it still reads back as the range test's result (it was "unexpected keyword argument
    # 'confirmed_lr'")
    assert FinderResult.from_json(tmp_path / "lr_find.json") == res.finder
    assert json.loads(res.to_json())["reason"] == res.reason
    fig = res.plot()
    assert fig.axes
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_a_frozen_first_group_stays_at_zero_through_the_confirmation(data):
    m, _ = make()
    o = torch.optim.SGD([{"params": m[0].parameters(), "lr": 0.0},
                         {"params": m[2].parameters(), "lr": 0.1}])
    before = m[0].weight.detach().clone()
    res = lrtune.auto_lr(m, o, nn.CrossEntropyLoss(), data, epochs=2, batch_size=16, k=2,
                         num_iters=100, verbose=False)
    assert res.lrs == [0.0, res.lr] and res.sweep.settings["group_ratios"] == [0.0, 1.0]
    assert torch.equal(m[0].weight, before)


# -- the confirmation's budget: a share of the planned optimizer steps -----------------------

CONCLUSIVE = SimpleNamespace(verdict="ok", min_loss_lr=0.3, suggested_lr=0.03, stop_lr=3.0)
INCONCLUSIVE = SimpleNamespace(verdict="inconclusive", min_loss_lr=0.3, suggested_lr=None,
                               stop_lr=3.0)


@pytest.fixture(scope="module")
def plan_data(data):
    """240 + 16 rows in batches of 4: 64 steps per epoch, as charlm_adamw (RESULTS.md §8)."""
    X, y = data
    return torch.cat([X, X[:16]]), torch.cat([y, y[:16]])


def confirm(plan_data, finder, **kwargs):
    m, o = make()
    kwargs = {"epochs": 2, "k": 4, "batch_size": 4, "halving": False, **kwargs}
    return confirm_range_test(m, o, nn.CrossEntropyLoss(), plan_data, plan_data, finder,
                              **kwargs)


def test_a_quarter_of_two_short_epochs_is_32_steps_not_a_whole_epoch(plan_data):
    res = confirm(plan_data, CONCLUSIVE)
    assert res.settings["steps_per_epoch"] == 64 and res.settings["planned_steps"] == 128
    # every copy trained exactly 32 steps: one evaluation, at the end (no halving)
    assert res.steps == [32] and res.epochs == [0.5] and res.stopped_step == [None] * 4
    assert res.copy_steps == 4 * 32 and res.compute_fraction == 1.0
    assert res.settings["confirm_share"] == 0.25 and res.settings["confirm_unit"] == "steps"


def test_an_inconclusive_range_test_doubles_the_step_budget(plan_data):
    res = confirm(plan_data, INCONCLUSIVE)
    assert res.steps == [64] and res.copy_steps == 4 * 64 and res.settings["confirm_share"] == 0.5


def test_the_earlier_whole_epoch_rule_is_one_argument_away(plan_data):
    res = confirm(plan_data, CONCLUSIVE, confirm_unit="epochs")
    assert res.steps == [64] and res.settings["confirm_unit"] == "epochs"


def test_halving_and_the_window_on_a_budget_shorter_than_an_epoch(plan_data):
    res = confirm(plan_data, CONCLUSIVE, halving=True)
    # evaluated at the rungs (a quarter and half of the 32 steps) and at the end: 3 points,
    # so the window (the last quarter of the evaluations, at least one) is the final one
    assert res.settings["halving"]["rung_steps"] == [8, 16] and res.steps == [8, 16, 32]
    assert res.score_name == "valid loss, the final evaluation"
    finished = [i for i, s in enumerate(res.stopped_step) if s is None]
    assert [res.scores[i] for i in finished] == [res.valid_loss[i][-1] for i in finished]
    assert res.chosen_index in finished


def test_a_schedule_is_compressed_onto_the_step_budget(plan_data):
    read = []

    def schedule(peak):
        return lambda t: read.append(t) or peak

    res = confirm(plan_data, CONCLUSIVE, schedule=schedule)
    assert res.steps == [32] and res.settings["schedule"] == "custom"
    # confirmation step t of 32 reads the planned run's (128 steps) schedule at 4 t
    assert sorted(set(read)) == [4 * t for t in range(32)]
    schedule.name = "linear per epoch"  # a callable's name names it (lrtune train's schedules)
    assert confirm(plan_data, CONCLUSIVE, schedule=schedule).settings["schedule"] == \
        "linear per epoch"


class Stream:
    """A re-iterable of batches with no length."""

    def __init__(self, data):
        self.data = data

    def __iter__(self):
        X, y = self.data
        return iter([(X[i:i + 16], y[i:i + 16]) for i in range(0, len(X), 16)])


def test_data_without_a_length_fall_back_to_whole_epochs(data):
    from lrtune.auto import steps_per_epoch

    stream = Stream(data)
    loader = DataLoader(Iterable(data), batch_size=16)
    assert steps_per_epoch(stream, 16) is None and steps_per_epoch(loader, 16) is None
    assert confirm_budget(CONCLUSIVE, 8, steps_per_epoch(stream, 16)) == {"epochs": 2}
    # the sweep itself needs a length (it evaluates per epoch): one clear error, either way
    for train in (stream, loader):
        with pytest.raises(ValueError, match="train data must have a length"):
            confirm_range_test(*make(), nn.CrossEntropyLoss(), train, data, CONCLUSIVE,
                               epochs=8, k=4)


class Iterable(torch.utils.data.IterableDataset):
    def __init__(self, data):
        self.data = data

    def __iter__(self):
        return iter(zip(*self.data, strict=True))


def test_accumulation_steps_reach_the_confirmation_as_whole_optimizer_step_batches(data):
    # before: only the range test accumulated; the confirmation trained batches of batch_size,
    # a quarter of what `lrtune train --accumulation-steps 4` puts into each optimizer step
    m, o = make()
    res = lrtune.auto_lr(m, o, nn.CrossEntropyLoss(), data, epochs=2, batch_size=16, k=2,
                         accumulation_steps=2, verbose=False)
    assert res.finder.settings["accumulation_steps"] == 2
    assert res.sweep.settings["batch_size"] == 32
    assert res.sweep.settings["steps_per_epoch"] == 6  # 192 rows held out of 240, in 32s
    assert res.settings["accumulation_steps"] == 2
    loader = DataLoader(TensorDataset(*data), batch_size=16)
    X, y = data
    with pytest.raises(ValueError, match=r"^accumulation_steps=2: the confirmation trains"):
        lrtune.auto_lr(m, o, nn.CrossEntropyLoss(), loader, valid=(X[:40], y[:40]), epochs=1,
                       accumulation_steps=2, verbose=False)


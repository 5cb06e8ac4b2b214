import math
import re

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lrtune import find_lr
from lrtune.finder.result import FinderResult


class RecordingSGD(torch.optim.SGD):
    """SGD that remembers every group's lr at each step."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen: list[list[float]] = []

    def step(self, closure=None):
        self.seen.append([g["lr"] for g in self.param_groups])
        return super().step(closure)


def snapshot_everything(model, optimizer):
    state = {k: v.clone() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    opt_tensors = {
        (i, k): v.clone()
        for i, s in opt["state"].items()
        for k, v in s.items()
        if torch.is_tensor(v)
    }
    groups = [{k: v for k, v in g.items() if k != "params"} for g in opt["param_groups"]]
    return state, opt_tensors, groups, torch.get_rng_state().clone()


def assert_same(before, model, optimizer):
    state, opt_tensors, groups, rng = before
    now = snapshot_everything(model, optimizer)
    assert state.keys() == now[0].keys()
    for k in state:
        assert torch.equal(state[k], now[0][k]), k
    assert opt_tensors.keys() == now[1].keys()
    for k in opt_tensors:
        assert torch.equal(opt_tensors[k], now[1][k]), k
    assert groups == now[2]
    assert torch.equal(rng, now[3])


def bn_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2),
                         nn.Linear(16, 3))


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda p: torch.optim.SGD(p, lr=0.1),
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
        lambda p: torch.optim.Adam(p, lr=1e-3),
        lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.1),
    ],
    ids=["sgd", "sgd-momentum", "adam", "adamw"],
)
def test_restore_is_bit_identical(blobs, make_opt):
    model = bn_net()
    opt = make_opt(model.parameters())
    X, y = blobs
    for _ in range(3):  # give the optimizer real state (momentum buffers, Adam moments, step)
        opt.zero_grad()
        nn.functional.cross_entropy(model(X[:32]), y[:32]).backward()
        opt.step()
    model.eval()  # the mode must come back too
    before = snapshot_everything(model, opt)
    result = find_lr(model, opt, nn.CrossEntropyLoss(), blobs, num_iters=30, start_lr=1e-4,
                     end_lr=1.0)
    assert len(result.train_losses) > 5
    assert_same(before, model, opt)
    assert not model.training and not model[1].training


def test_restore_puts_the_gradients_back(blobs, small_net):
    # a loop that zeroes after optimizer.step() must not step on the sweep's last gradients
    opt = torch.optim.SGD(small_net.parameters(), lr=0.1)
    first, *rest = small_net.parameters()
    first.grad = torch.full_like(first, 0.5)  # the user's own accumulated gradient
    find_lr(small_net, opt, nn.CrossEntropyLoss(), blobs, num_iters=10)
    assert torch.equal(first.grad, torch.full_like(first, 0.5))
    assert all(p.grad is None for p in rest)


def test_restore_puts_the_data_loaders_generators_back(blobs, small_net):
    # a DataLoader seeded with generator= (torch's recipe for a reproducible order) came back
    # advanced, so training after the range test saw another order than without it
    X, y = blobs
    gen, val_gen = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    loader = DataLoader(TensorDataset(X, y), batch_size=16, shuffle=True, generator=gen)
    val = DataLoader(TensorDataset(X, y), batch_size=64, shuffle=True, generator=val_gen)
    states = [gen.get_state(), val_gen.get_state()]
    rng = torch.get_rng_state()
    opt = torch.optim.SGD(small_net.parameters(), lr=0.1)
    find_lr(small_net, opt, nn.CrossEntropyLoss(), loader, val_data=val, num_iters=20)
    assert torch.equal(gen.get_state(), states[0]) and torch.equal(val_gen.get_state(), states[1])
    assert torch.equal(torch.get_rng_state(), rng)


def test_fresh_optimizer_state_stays_empty(blobs, small_net):
    opt = torch.optim.Adam(small_net.parameters(), lr=1e-3)
    find_lr(small_net, opt, nn.CrossEntropyLoss(), blobs, num_iters=10)
    assert len(opt.state) == 0


def test_restore_false_leaves_the_trained_model(blobs, small_net):
    before = [p.clone() for p in small_net.parameters()]
    opt = torch.optim.SGD(small_net.parameters(), lr=0.1)
    find_lr(small_net, opt, nn.CrossEntropyLoss(), blobs, num_iters=10, restore=False)
    assert any(not torch.equal(a, b) for a, b in zip(before, small_net.parameters(), strict=True))


@pytest.mark.parametrize("mode", ["exp", "linear"])
def test_rates_follow_the_sweep_and_groups_keep_their_ratio(blobs, small_net, mode):
    opt = RecordingSGD([
        {"params": small_net[0].parameters(), "lr": 1.0},
        {"params": small_net[2].parameters(), "lr": 0.25},
    ], lr=1.0)
    result = find_lr(small_net, opt, nn.CrossEntropyLoss(), blobs, start_lr=1e-5, end_lr=1e-2,
                     num_iters=20, mode=mode, diverge_factor=1e9)
    assert result.stop_reason == "finished"
    expected = (np.geomspace if mode == "exp" else np.linspace)(1e-5, 1e-2, 20)
    np.testing.assert_allclose(result.lrs, expected, rtol=1e-12)
    np.testing.assert_allclose([s[0] for s in opt.seen], expected, rtol=1e-12)
    np.testing.assert_allclose([s[1] for s in opt.seen], expected * 0.25, rtol=1e-12)
    assert [g["lr"] for g in opt.param_groups] == [1.0, 0.25]  # restored


def test_accumulation_advances_the_rate_per_optimizer_step(blobs, small_net):
    calls = []

    def loss_fn(out, target):
        calls.append(len(target))
        return nn.functional.cross_entropy(out, target)

    opt = RecordingSGD(small_net.parameters(), lr=0.1)
    result = find_lr(small_net, opt, loss_fn, blobs, num_iters=10, accumulation_steps=4,
                     batch_size=16, diverge_factor=1e9, end_lr=1e-3)
    assert len(calls) == 40 and len(opt.seen) == 10 and len(result.lrs) == 10
    assert result.settings["accumulation_steps"] == 4


def test_data_wraps_around_and_dataloaders_work(blobs, small_net):
    X, y = blobs
    loader = DataLoader(TensorDataset(X[:64], y[:64]), batch_size=32)  # 2 batches a pass
    opt = torch.optim.SGD(small_net.parameters(), lr=0.1)
    result = find_lr(small_net, opt, nn.CrossEntropyLoss(), loader, num_iters=15, end_lr=1e-2)
    assert len(result.train_losses) == 15


def test_empty_data_is_a_clear_error(small_net):
    empty = DataLoader(TensorDataset(torch.zeros(0, 8), torch.zeros(0, dtype=torch.long)))
    opt = torch.optim.SGD(small_net.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="data is empty"):
        find_lr(small_net, opt, nn.CrossEntropyLoss(), empty)


def test_non_finite_first_loss_names_the_rate_and_restores(blobs, small_net):
    opt = torch.optim.SGD(small_net.parameters(), lr=0.1)
    before = [p.clone() for p in small_net.parameters()]
    with pytest.raises(FloatingPointError, match=r"first step \(lr=1e-06\)"):
        find_lr(small_net, opt, lambda out, t: out.sum() * math.nan, blobs, start_lr=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(before, small_net.parameters(), strict=True))


def test_sweep_stops_on_divergence():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(256, 8, generator=gen)
    y = X @ torch.randn(8, 1, generator=gen) + 0.1 * torch.randn(256, 1, generator=gen)
    torch.manual_seed(0)
    linear = nn.Linear(8, 1)  # least squares diverges once lr > 2 / the largest curvature
    opt = torch.optim.SGD(linear.parameters(), lr=0.1)
    result = find_lr(linear, opt, nn.MSELoss(), (X, y), start_lr=1e-4, end_lr=1e3, num_iters=200)
    assert result.stop_reason == "diverged"
    assert len(result.train_losses) < 200
    assert all(math.isfinite(v) for v in result.losses)
    assert result.smoothed_losses[-1] > min(result.smoothed_losses)
    assert result.stop_lr == result.lrs[-1] < 10
    assert result.verdict == "ok" and result.suggested_lr < result.stop_lr


def test_non_finite_loss_mid_sweep_stops_it(blobs, small_net):
    calls = []

    def loss_fn(out, target):
        calls.append(1)
        loss = nn.functional.cross_entropy(out, target)
        return loss * math.inf if len(calls) == 12 else loss

    opt = torch.optim.SGD(small_net.parameters(), lr=0.1)
    result = find_lr(small_net, opt, loss_fn, blobs, num_iters=50)
    assert result.stop_reason == "non_finite"
    assert len(result.lrs) == 11 and result.stop_lr > result.lrs[-1]


def test_a_clear_problem_gives_an_ok_verdict(blobs, small_net):
    opt = torch.optim.SGD(small_net.parameters(), lr=0.1, momentum=0.9)
    result = find_lr(small_net, opt, nn.CrossEntropyLoss(), blobs, start_lr=1e-5, end_lr=10,
                     num_iters=150)
    assert result.verdict == "ok", result.reason
    assert 1e-5 < result.suggested_lr < result.stop_lr
    assert result.suggested_lr == result.suggestions[result.rule]


def test_flat_curve_is_inconclusive(blobs, small_net):
    opt = torch.optim.SGD(small_net.parameters(), lr=0.1)
    result = find_lr(small_net, opt, nn.CrossEntropyLoss(), blobs, start_lr=1e-9, end_lr=1e-7,
                     num_iters=50, batch_size=240)  # full batch: no noise, no descent
    assert result.verdict == "inconclusive" and result.suggested_lr is None
    assert result.reason.startswith("flat")


def test_validation_mode_monitors_the_validation_loss(blobs, small_net):
    X, y = blobs
    opt = torch.optim.SGD(small_net.parameters(), lr=0.1)
    result = find_lr(small_net, opt, nn.CrossEntropyLoss(), (X[:200], y[:200]),
                     val_data=(X[200:], y[200:]), val_every=5, num_iters=40, end_lr=1e-2)
    assert result.monitor == "valid"
    assert len(result.train_lrs) == 40
    assert result.lrs == [*result.train_lrs[::5], result.train_lrs[-1]]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start_lr": 0}, "start_lr must be a finite number > 0, got 0"),
        ({"start_lr": 1e-3, "end_lr": 1e-4}, "end_lr must be a finite number > start_lr"),
        ({"num_iters": 1}, "num_iters must be an integer >= 2, got 1"),
        ({"batch_size": 0}, "batch_size must be an integer > 0, got 0"),
        ({"mode": "log"}, "mode must be 'exp' or 'linear', got 'log'"),
        ({"accumulation_steps": 0}, "accumulation_steps must be an integer >= 1"),
        ({"rule": "magic"}, "rule must be one of"),
        ({"smooth": "0.1"}, "smooth must be a number in [0, 1), got '0.1'"),
        ({"diverge_factor": None}, "diverge_factor must be a number > 1, got None"),
    ],
)
def test_bad_arguments(blobs, small_net, kwargs, message):
    opt = torch.optim.SGD(small_net.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=re.escape(message)):
        find_lr(small_net, opt, nn.CrossEntropyLoss(), blobs, **kwargs)


def test_bad_data_type(small_net):
    opt = torch.optim.SGD(small_net.parameters(), lr=0.1)
    with pytest.raises(TypeError, match="DataLoader, an iterable of batches or an"):
        find_lr(small_net, opt, nn.CrossEntropyLoss(), "not data")


def test_result_round_trips_through_json_and_saves(blobs, small_net, tmp_path):
    opt = torch.optim.SGD(small_net.parameters(), lr=0.1, momentum=0.9)
    result = find_lr(small_net, opt, nn.CrossEntropyLoss(), blobs, num_iters=60, start_lr=1e-5)
    again = FinderResult.from_json(result.to_json())
    assert again == result
    png, js = result.save(tmp_path)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import json

    data = json.loads(js.read_text())
    assert {"lrs", "losses", "suggested_lr", "verdict"} <= data.keys()
    assert FinderResult.from_json(js) == result


def test_from_json_rejects_garbage(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="invalid JSON"):
        FinderResult.from_json(bad)
    with pytest.raises(ValueError, match="not a range-test result"):
        FinderResult.from_json('{"lrs": []}')


def test_plot_has_log_axis_min_line_and_a_marker_per_rule(blobs, small_net):
    opt = torch.optim.SGD(small_net.parameters(), lr=0.1, momentum=0.9)
    result = find_lr(small_net, opt, nn.CrossEntropyLoss(), blobs, num_iters=80, start_lr=1e-5)
    fig = result.plot()
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    labels = [line.get_label() for line in ax.get_lines()]
    assert "minimum (smoothed)" in labels
    found = [name for name, lr in result.suggestions.items() if lr is not None]
    entries = [t.get_text().split(":")[0].split(" = ") for t in ax.get_legend().get_texts()]
    assert all(sum(n in names for names in entries) == 1 for n in found)  # once each


def test_a_suggestion_on_the_first_point_is_inconclusive():
    from lrtune.finder.range_test import analyse

    lrs = np.geomspace(1e-6, 1.0, 60)
    losses = np.r_[10.0, np.linspace(2.0, 1.5, 50), np.linspace(1.6, 4.0, 9)]
    curve = dict(lrs=lrs, losses=losses, train_lrs=lrs, train_losses=losses,
                 stop_reason="diverged", stop_lr=1.0, monitor="train")
    result = analyse(curve, rule="steepest", smooth=0.0, settings={})
    assert result.suggestions["steepest"] == lrs[0]
    assert result.verdict == "inconclusive" and result.suggested_lr is None
    assert result.reason.startswith("the steepest rule lands on the first point")


def test_inconclusive_summary_says_where_and_why_the_sweep_stopped():
    from lrtune.finder.range_test import analyse

    lrs = np.geomspace(1e-7, 1.3e-6, 5)
    curve = dict(lrs=lrs, losses=[0.02, 0.01, 0.03, 0.2, 0.5], train_lrs=lrs,
                 train_losses=[0.02, 0.01, 0.03, 0.2, 0.5], stop_reason="diverged",
                 stop_lr=1.3e-6, monitor="train")
    result = analyse(curve, rule="steepest", smooth=0.05, settings={"num_iters": 300})
    assert result.summary() == (
        "inconclusive: too few points (5) (the sweep diverged at lr 1.3e-06 after 5 of 300 "
        "steps); the loss blew up within the first points: lower start_lr; "
        "stopped: diverged at lr 1.3e-06 after 5 of 300 steps")


def test_a_rule_without_a_point_names_the_others():
    from lrtune.finder.range_test import analyse

    lrs = np.geomspace(1e-6, 1.0, 60)
    losses = np.r_[3.0, 3.0, 1.0, np.linspace(1.05, 4.0, 57)]  # no run of 2 decreases
    curve = dict(lrs=lrs, losses=losses, train_lrs=lrs, train_losses=losses,
                 stop_reason="diverged", stop_lr=1.0, monitor="train")
    result = analyse(curve, rule="valley", smooth=0.0, settings={})
    assert result.verdict == "inconclusive" and result.suggestions["valley"] is None
    assert result.reason == ("the valley rule found no point on this curve; see "
                             "result.suggestions for the other rules")


class FrozenFirst(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed, self.body, self.head = nn.Linear(8, 8), nn.Linear(8, 16), nn.Linear(16, 3)

    def forward(self, x):
        return self.head(torch.relu(self.body(self.embed(x))))


def frozen_first_optimizer(model, lrs=(0.0, 0.1, 0.05)):
    return RecordingSGD([{"params": m.parameters(), "lr": lr}
                         for m, lr in zip((model.embed, model.body, model.head), lrs,
                                          strict=True)], lr=0.1, momentum=0.9)


def test_frozen_groups_stay_at_zero_and_every_group_gets_its_rate(blobs, small_net):
    model = FrozenFirst()
    opt = frozen_first_optimizer(model)
    result = find_lr(model, opt, nn.CrossEntropyLoss(), blobs, start_lr=1e-5, end_lr=10,
                     num_iters=150)
    assert result.settings["reference_group"] == 1
    assert result.settings["group_ratios"] == [0.0, 1.0, 0.5]
    assert all(seen[0] == 0.0 for seen in opt.seen)
    np.testing.assert_allclose([s[1] for s in opt.seen], result.train_lrs, rtol=1e-12)
    np.testing.assert_allclose([s[2] for s in opt.seen], np.array(result.train_lrs) / 2,
                               rtol=1e-12)
    assert result.verdict == "ok", result.reason
    s = result.suggested_lr
    assert result.suggested_lrs == [0.0, s, s * 0.5]
    assert "(per group: 0, " in result.summary()

    fresh = frozen_first_optimizer(FrozenFirst(), lrs=(0.0, 1.0, 1.0))
    result.apply(fresh)
    assert [g["lr"] for g in fresh.param_groups] == [0.0, s, s * 0.5]
    assert FinderResult.from_json(result.to_json()).suggested_lrs == result.suggested_lrs

    # an optimizer with other groups, or an inconclusive result: one clear line, nothing set
    other = torch.optim.SGD(small_net.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"^the optimizer has 1 param group\(s\) but the "
                                         r"range test has rates for 3: apply it to an optimizer"):
        result.apply(other)
    assert other.param_groups[0]["lr"] == 0.1
    result.suggested_lr, result.reason = None, "flat: ..."
    with pytest.raises(ValueError, match=r"no suggestion to apply: .*\(flat: \.\.\.\)"):
        result.apply(other)


def test_all_groups_frozen_is_a_clear_error(blobs, small_net):
    opt = torch.optim.SGD(small_net.parameters(), lr=0.0)
    with pytest.raises(ValueError, match="every param group has lr=0"):
        find_lr(small_net, opt, nn.CrossEntropyLoss(), blobs)


def test_an_optimizer_built_on_another_instance_of_the_model_is_refused(blobs, small_net):
    # before: the sweep trained nothing and ended "inconclusive (flat ... check that the model
    # can learn)"; auto_lr then confirmed a rate for an optimizer that cannot train the model
    import copy

    import lrtune

    other = copy.deepcopy(small_net)
    opt = torch.optim.SGD(other.parameters(), lr=0.1)
    for call in (lambda: find_lr(small_net, opt, nn.CrossEntropyLoss(), blobs, num_iters=20),
                 lambda: lrtune.auto_lr(small_net, opt, nn.CrossEntropyLoss(), blobs, epochs=1,
                                        verbose=False)):
        with pytest.raises(ValueError, match="the optimizer holds none of the model's param"):
            call()
    # an extra parameter outside the model (a learnable loss scale) is fine
    scale = nn.Parameter(torch.ones(()))
    both = torch.optim.SGD([*small_net.parameters(), scale], lr=0.1)
    assert find_lr(small_net, both, nn.CrossEntropyLoss(), blobs, num_iters=20).lrs


def test_results_saved_before_per_group_rates_still_load(blobs, small_net):
    import json

    opt = torch.optim.SGD(small_net.parameters(), lr=0.1, momentum=0.9)
    result = find_lr(small_net, opt, nn.CrossEntropyLoss(), blobs, num_iters=60, start_lr=1e-5)
    data = json.loads(result.to_json())
    del data["suggested_lrs"]
    old = FinderResult.from_json(json.dumps(data))
    assert old.suggested_lrs is None and old.suggested_lr == result.suggested_lr
    assert result.suggested_lr is not None, result.reason
    old.apply(opt)  # one group: the suggestion itself
    assert opt.param_groups[0]["lr"] == result.suggested_lr

"""The sweep's arguments, budget, curves, RNG hygiene, and the choice it makes."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lrtune
from lrtune.confirmation import SweepResult, candidate_lrs, choose, sweep


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


def test_public_names():
    assert lrtune.SweepResult is SweepResult
    assert callable(lrtune.sweep)


def test_the_package_and_the_function_do_not_share_a_name():
    import importlib
    import types

    import lrtune.confirmation.core  # importing the package must not rebind lrtune.sweep

    assert lrtune.sweep is lrtune.confirmation.core.sweep
    assert not isinstance(lrtune.sweep, types.ModuleType)
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("lrtune.sweep")


def test_curves_have_one_point_per_epoch_and_a_last_partial_one(data):
    # 96 samples / 16 = 6 steps an epoch; 14 steps = 2 epochs and a third of one
    res = sweep(net(), "sgd", nn.CrossEntropyLoss(), data, data, lrs=[0.05, 0.5], steps=14,
                batch_size=16)
    assert res.steps == [6, 12, 14]
    assert res.epochs == [1.0, 2.0, pytest.approx(14 / 6, abs=1e-6)]
    assert res.metric == "accuracy" and res.mode == "max"
    for key in ("train_loss", "train_metric", "valid_loss", "valid_metric"):
        rows = getattr(res, key)
        assert len(rows) == 2 and all(len(r) == 3 for r in rows)
    assert all(0 <= v <= 1 for row in res.valid_metric for v in row)
    assert res.final_metric == [row[-1] for row in res.valid_metric]
    assert res.lrs[res.chosen_index] == res.chosen_lr


def test_caller_state_is_untouched_and_factories_are_seeded(data):
    model = net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(123)
    rng = torch.get_rng_state()
    sweep(model, "adam", nn.CrossEntropyLoss(), data, data, lrs=[1e-3], steps=3)
    assert torch.equal(torch.get_rng_state(), rng)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    a = sweep(lambda: nn.Linear(6, 3), "sgd", nn.CrossEntropyLoss(), data, data, lrs=[0.1],
              steps=3, seed=7)
    b = sweep(lambda: nn.Linear(6, 3), "sgd", nn.CrossEntropyLoss(), data, data, lrs=[0.1],
              steps=3, seed=7)
    assert a.valid_loss == b.valid_loss and a.engine == "vmap"


def test_the_data_loaders_generators_are_put_back(data):
    # a DataLoader seeded with generator= came back advanced: the caller's next epoch had
    # another order than without the sweep
    X, y = data
    train_gen, sampler_gen = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    train = DataLoader(TensorDataset(X, y), batch_size=16, shuffle=True, generator=train_gen)
    valid = DataLoader(TensorDataset(X, y), batch_size=16, sampler=torch.utils.data.RandomSampler(
        TensorDataset(X, y), generator=sampler_gen))
    states = [g.get_state() for g in (train_gen, sampler_gen)]
    sweep(net(), "sgd", nn.CrossEntropyLoss(), train, valid, lrs=[0.1, 0.2], steps=3)
    assert all(torch.equal(g.get_state(), s)
               for g, s in zip((train_gen, sampler_gen), states, strict=True))


def test_regression_uses_the_loss_and_dataloaders_work():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(64, 3, generator=gen)
    y = X @ torch.tensor([[1.0], [-2.0], [0.5]])
    loader = DataLoader(TensorDataset(X, y), batch_size=16, shuffle=False)
    res = sweep(lambda: nn.Linear(3, 1), "sgd", nn.MSELoss(), loader, (X, y),
                lrs=[1e-3, 0.1], epochs=5)
    assert res.metric == "loss" and res.mode == "min"
    assert res.valid_metric == res.valid_loss
    assert res.chosen_lr == 0.1  # the faster rate reaches a clearly lower loss
    assert res.final_metric[1] < res.final_metric[0]


def test_choice_prefers_the_lower_rate_within_noise():
    lrs = [0.01, 0.03, 0.1, 0.3]
    scores = [0.80, 0.949, 0.955, 0.93]
    assert choose(lrs, scores, mode="max", tolerance=0.01)[0] == 1
    assert choose(lrs, scores, mode="max", tolerance=0.001)[0] == 2
    assert choose(lrs, [1.0, 0.5, 0.52, None], mode="min", tolerance=0.05)[0] == 1
    with pytest.raises(ValueError, match="mode must be"):
        choose(lrs, scores, mode="best", tolerance=0.0)


def test_result_round_trips_through_json_and_saves_a_figure(data, tmp_path):
    res = sweep(net(), "sgd", nn.CrossEntropyLoss(), data, data, lrs=[0.01, 1e5], epochs=2,
                batch_size=16)
    png, js = res.save(tmp_path)
    assert png.stat().st_size > 10_000
    data_ = json.loads(js.read_text())
    assert data_["chosen_lr"] == 0.01 and data_["diverged_step"][1] is not None
    back = SweepResult.from_json(js)
    assert back == res
    assert "chosen" in res.table() and "diverged at step" in res.table()
    with pytest.raises(ValueError, match="not a sweep result"):
        SweepResult.from_json('{"lrs": []}')


def test_to_json_leaves_kept_weights_alone(data):
    class NoCopy:  # a kept weight must not be deep-copied just to be left out of the JSON
        def __deepcopy__(self, memo):
            raise AssertionError("weights were deep-copied")

    res = sweep(net(), "sgd", nn.CrossEntropyLoss(), data, data, lrs=[0.01, 0.1], steps=2,
                batch_size=16)
    res.weights = {0: {"w": NoCopy()}}
    assert "weights" not in json.loads(res.to_json())


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"lrs": [0.1]}, "exactly one budget"),
    ({"lrs": [0.1], "epochs": 1, "steps": 2}, "exactly one budget"),
    ({"lrs": [0.1], "epochs": 0}, "epochs must be an integer >= 1, got 0"),
    ({"lrs": [0.1, -1.0], "epochs": 1}, "lrs must be a non-empty list"),
    ({"lrs": [0.1, 0.1], "epochs": 1}, "lrs must be distinct"),
    ({"epochs": 1}, "exactly one of lrs"),
    ({"bracket": (1.0, 0.1), "epochs": 1}, "bracket must be"),
    ({"lrs": [0.1], "epochs": 1, "batch_size": 0}, "batch_size must be"),
    ({"lrs": [0.1], "epochs": 1, "tolerance": -1.0}, "tolerance must be"),
    ({"lrs": [0.1], "epochs": 1, "metric": "f1"}, "metric must be"),
])
def test_bad_arguments_are_named(data, kwargs, message):
    with pytest.raises(ValueError, match=message):
        sweep(net(), "sgd", nn.CrossEntropyLoss(), data, data, **kwargs)


def test_bracket_spacing():
    assert candidate_lrs(bracket=(1e-3, 1e-1), k=5) == [0.001, 0.00316228, 0.01, 0.0316228, 0.1]
    assert candidate_lrs(bracket=(1e-3, 1e-1), k=1) == [0.1]


def reg_data():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(64, 6, generator=g)
    return X, X[:, :3] - X[:, 3:]


def test_the_table_shows_the_scores_the_choice_compared_and_its_reason(data):
    # the window rule compares valid losses; with accuracies tied the table alone could not
    # say why the chosen rate won
    res = sweep(net(), "sgd", nn.CrossEntropyLoss(), data, data, lrs=[0.01, 0.1, 0.5],
                epochs=2, batch_size=16)
    lines = res.table().splitlines()
    assert lines[0].split() == ["lr", "valid", "accuracy", "compared", "status"]
    for line, lr, score in zip(lines[1:4], res.lrs, res.scores, strict=True):
        assert line.split()[:3] == [f"{lr:.3g}", f"{res.final_metric[res.lrs.index(lr)]:.4f}",
                                    f"{score:.4g}"]
    assert lines[-1] == f"choice: {res.reason}" and "valid loss" in res.reason
    final = sweep(net(), "sgd", nn.CrossEntropyLoss(), data, data, lrs=[0.01, 0.1],
                  epochs=2, batch_size=16, choice="final")
    assert "compared" not in final.table().splitlines()[0]  # the metric shown is the score
    loss = sweep(net(), "sgd", nn.MSELoss(), reg_data(), reg_data(), lrs=[0.01, 0.1], epochs=2,
                 batch_size=16)  # the window of a loss metric over 2 evaluations: its final one
    assert loss.scores == loss.final_metric and "compared" not in loss.table().splitlines()[0]


def test_choosing_the_highest_rate_tried_says_a_higher_one_may_be_better(data):
    # before: only auto_lr's reason said so, and `lrtune train --lr auto` never printed it
    top = sweep(net(), "sgd", nn.CrossEntropyLoss(), data, data, lrs=[1e-4, 1e-3, 0.05],
                epochs=2, batch_size=16)
    assert top.chosen_index == 2 and top.chose_the_top
    note = "the highest rate tried: a higher one may be better"
    assert top.summary().endswith(f"({note})")
    assert f"chosen ({note})" in top.table()
    inner = sweep(net(), "sgd", nn.CrossEntropyLoss(), data, data, lrs=[0.05, 1e5],
                  epochs=2, batch_size=16)
    assert inner.chosen_index == 0 and not inner.chose_the_top and note not in inner.table()


def test_a_validation_set_too_small_to_compare_rates_is_warned_about(data):
    from lrtune.confirmation import SmallValidationWarning

    X, y = data
    small = (X[:12], y[:12])
    with pytest.warns(SmallValidationWarning, match=r"on 12 validation samples.*30 or more"):
        res = sweep(net(), "sgd", nn.CrossEntropyLoss(), data, small, lrs=[0.05, 0.5], steps=2)
    assert res.settings["n_valid"] == 12
    with warnings.catch_warnings():
        warnings.simplefilter("error", SmallValidationWarning)
        sweep(net(), "sgd", nn.CrossEntropyLoss(), data, (X[:30], y[:30]), lrs=[0.05, 0.5],
              steps=2)

"""The sweep on the step protocol: param-group ratios, any optimizer, custom steps, outputs."""

from __future__ import annotations

import copy

import pytest
import torch
from sweep_reference import assert_same_weights, plain_run
from torch import nn
from torch.utils.data import DataLoader

from lrtune.confirmation import SweepFallbackWarning, sweep

LRS = [1e-3, 2e-2, 0.3]


def mlp():
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))


def two_groups(net, lr, opt_cls=torch.optim.Adam, **kw):
    return opt_cls([{"params": net[0].parameters(), "lr": lr * 0.1},
                    {"params": net[2].parameters(), "lr": lr}], lr=lr, **kw)


@pytest.mark.parametrize("engine", ["batched", "vmap", "sequential"])
def test_each_rate_scales_every_group_by_the_same_factor(data64, engine):
    net = mlp().double()
    opt = two_groups(net, 1.0)  # backbone at a tenth of the head's rate
    res = sweep(net, opt, nn.CrossEntropyLoss(), data64, data64, lrs=[0.01, 0.1], steps=20,
                batch_size=16, engine=engine, keep_weights=True)
    assert res.engine == engine and res.settings["group_ratios"] == [1.0, 10.0]
    for i, lr in enumerate([0.01, 0.1]):
        # the candidate is the first group's rate; the second keeps 10x it
        ref = copy.deepcopy(net)
        opt_ref = torch.optim.Adam([{"params": ref[0].parameters(), "lr": lr},
                                    {"params": ref[2].parameters(), "lr": lr * 10}])
        ref, _ = _plain_with(ref, opt_ref, data64, steps=20)
        assert_same_weights(ref, res.weights[i], rtol=1e-9, atol=1e-11)


def decay_groups(net, lr, opt_cls):
    """The usual transformer setup: weights decay, biases do not (and a rate ratio too)."""
    return opt_cls([{"params": [net[0].weight, net[2].weight], "weight_decay": 0.1},
                    {"params": [net[0].bias, net[2].bias], "weight_decay": 0.0,
                     "lr": lr * 0.5}], lr=lr)


@pytest.mark.parametrize("opt_cls", [torch.optim.AdamW, torch.optim.Adam, torch.optim.SGD])
@pytest.mark.parametrize("engine", ["auto", "vmap", "sequential"])
def test_groups_differing_only_in_weight_decay_are_vectorised(data64, opt_cls, engine):
    net = mlp().double()
    res = sweep(net, decay_groups(net, 1.0, opt_cls), nn.CrossEntropyLoss(), data64, data64,
                lrs=[0.01, 0.1], steps=20, batch_size=16, engine=engine, keep_weights=True)
    assert res.engine == ("batched" if engine == "auto" else engine)  # no sequential fallback
    assert res.settings["optimizer"]["weight_decay"] == [0.1, 0.0]
    for i, lr in enumerate([0.01, 0.1]):
        ref = copy.deepcopy(net)
        ref, _ = _plain_with(ref, decay_groups(ref, lr, opt_cls), data64, steps=20)
        assert_same_weights(ref, res.weights[i], rtol=1e-9, atol=1e-11)


def test_apply_writes_the_chosen_rate_with_the_groups_ratios(data64):
    net = mlp().double()
    res = sweep(net, two_groups(net, 1.0), nn.CrossEntropyLoss(), data64, data64,
                lrs=[0.01, 0.1], steps=10, batch_size=16)
    fresh = two_groups(net, 1.0)
    torch.optim.lr_scheduler.StepLR(fresh, step_size=1)  # an earlier scheduler set initial_lr
    res.apply(fresh)
    assert [g["lr"] for g in fresh.param_groups] == pytest.approx(
        [res.chosen_lr, res.chosen_lr * 10])
    # a scheduler built now starts from the applied rates, not the earlier initial_lr
    assert torch.optim.lr_scheduler.StepLR(fresh, step_size=1).base_lrs == [
        g["lr"] for g in fresh.param_groups]
    frozen = torch.optim.SGD([{"params": net[0].parameters(), "lr": 0.0},
                              {"params": net[2].parameters(), "lr": 0.5}])
    res.apply(frozen)  # the reference is the first group with lr > 0: frozen stays 0
    assert [g["lr"] for g in frozen.param_groups] == [0.0, res.chosen_lr]
    res.chosen_lr, res.reason = None, "every copy diverged"
    with pytest.raises(ValueError, match="no rate to apply: every copy diverged"):
        res.apply(frozen)


def _plain_with(model, opt, data, steps, batch_size=16, seed=0):
    from lrtune.data.batching import as_batches

    batches = as_batches(data, batch_size, shuffle=True, seed=seed)
    torch.manual_seed(seed)
    done = 0
    while done < steps:
        for x, y in batches:
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            done += 1
            if done == steps:
                break
    return model, done


def test_an_optimizer_the_engines_lack_trains_sequentially_with_a_notice(data):
    net = mlp()
    with pytest.warns(SweepFallbackWarning, match="RMSprop .* is not one of the vectorised"):
        res = sweep(net, torch.optim.RMSprop, nn.CrossEntropyLoss(), data, data, lrs=LRS,
                    steps=15, batch_size=16, keep_weights=True)
    assert res.engine == "sequential"
    for i, lr in enumerate(LRS):
        ref, _ = plain_run(net, lambda p, lr: torch.optim.RMSprop(p, lr=lr),
                           nn.CrossEntropyLoss(), data, lr=lr, steps=15)
        assert_same_weights(ref, res.weights[i], rtol=0, atol=0)


class HFStyle(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed, self.head = nn.Embedding(20, 8), nn.Linear(8, 3)

    def forward(self, input_ids, labels=None):
        logits = self.head(self.embed(input_ids).mean(1))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return {"loss": loss, "logits": logits}


def _token_loader(seed, n=64):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 20, (n, 5), generator=gen)
    rows = [{"input_ids": ids[i], "labels": ids[i, 0] % 3} for i in range(n)]
    return DataLoader(rows, batch_size=16)


def test_a_model_computed_loss_on_dict_batches_sweeps_without_crashing():
    with pytest.warns(SweepFallbackWarning, match="a custom step runs on real modules"):
        res = sweep(HFStyle(), "adam", None, _token_loader(0), _token_loader(1),
                    step=lambda m, b: m(**b), lrs=[1e-3, 1e-2], epochs=2)
    assert res.metric == "accuracy" and res.chosen_lr in (1e-3, 1e-2)
    assert len(res.valid_metric[0]) == 2 and res.settings["step"] == "custom"


class DictOut(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))

    def forward(self, x):
        return {"logits": self.net(x), "features": x}


def test_a_model_returning_a_dict_is_vectorised_on_its_logits(data):
    res = sweep(DictOut(), "sgd", nn.CrossEntropyLoss(), data, data, lrs=LRS, steps=10,
                batch_size=16, keep_weights=True)
    assert res.engine == "vmap"
    plain = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    plain.load_state_dict(DictOut().net.state_dict())
    ref, _ = plain_run(plain, lambda p, lr: torch.optim.SGD(p, lr=lr), nn.CrossEntropyLoss(),
                       data, lr=LRS[1], steps=10)
    got = {k.removeprefix("net."): v for k, v in res.weights[1].items()}
    assert_same_weights(ref, got, rtol=1e-5, atol=1e-6)


def test_clipping_per_copy_equals_clipped_plain_runs(data64):
    net = mlp().double()
    res = sweep(net, "sgd", nn.CrossEntropyLoss(), data64, data64, lrs=LRS, steps=10,
                batch_size=16, engine="batched", clip_grad_norm=0.05, keep_weights=True)
    for i, lr in enumerate(LRS):
        ref = copy.deepcopy(net)
        _plain_with(ref, ClippedSGD(ref.parameters(), lr=lr, max_norm=0.05), data64, steps=10)
        assert_same_weights(ref, res.weights[i], rtol=1e-9, atol=1e-11)


class ClippedSGD(torch.optim.SGD):
    """What a hand-written loop does: clip_grad_norm_ over the parameters, then step."""

    def __init__(self, params, lr, max_norm):
        super().__init__(params, lr=lr)
        self.max_norm = max_norm

    def step(self, closure=None):
        nn.utils.clip_grad_norm_([p for g in self.param_groups for p in g["params"]],
                                 self.max_norm)
        return super().step(closure)


def test_bf16_and_fp16_sweeps_run_and_choose(data):
    res = sweep(mlp(), "sgd", nn.CrossEntropyLoss(), data, data, lrs=LRS, steps=12,
                batch_size=16, precision="bf16-mixed")
    assert res.engine == "batched" and res.chosen_lr in LRS
    with pytest.warns(SweepFallbackWarning, match="16-mixed needs a GradScaler per copy"):
        res = sweep(mlp(), "sgd", nn.CrossEntropyLoss(), data, data, lrs=LRS, steps=12,
                    batch_size=16, precision="16-mixed")
    assert res.engine == "sequential" and res.chosen_lr in LRS


def test_explicit_vectorised_engine_with_a_custom_step_says_why(data):
    with pytest.raises(ValueError, match="engine='vmap' cannot run this sweep: a custom step"):
        sweep(mlp(), "sgd", None, data, data, step=lambda m, b: m(b[0]).sum(), lrs=LRS,
              steps=2, engine="vmap")

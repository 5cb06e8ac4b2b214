"""The stacked optimizer computes torch's SGD/Adam/AdamW updates, per-copy learning rates."""

from __future__ import annotations

import pytest
import torch

from lrtune.confirmation.optim import StackedOptimizer, optim_spec

CONFIGS = [
    ("sgd", {}),
    ("sgd", {"momentum": 0.9}),
    ("sgd", {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-2}),
    ("sgd", {"momentum": 0.5, "dampening": 0.3, "weight_decay": 1e-3}),
    ("adam", {}),
    ("adam", {"weight_decay": 1e-2, "betas": (0.8, 0.99), "eps": 1e-6}),
    ("adamw", {"weight_decay": 0.1}),
]


def _torch_cls(kind):
    return {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[kind]


def _assert_stacked_equals_torch(kind, kwargs, lrs, start, grads_seq):
    """Steps the stacked optimizer and, per copy, torch's own on the same gradients (``None``:
    no gradient at that step); the weights must agree."""
    stacked = [p.unsqueeze(0).repeat(len(lrs), *[1] * p.dim()) for p in start]
    opt = StackedOptimizer(optim_spec(_torch_cls(kind), kwargs), stacked, lrs)
    for grads in grads_seq:
        opt.step(stacked, grads)
    for k, lr in enumerate(lrs):
        params = [torch.nn.Parameter(p.clone()) for p in start]
        ref = _torch_cls(kind)(params, lr=lr, **kwargs)
        for grads in grads_seq:
            for p, g in zip(params, grads, strict=True):
                p.grad = None if g is None else g[k].clone()
            ref.step()
        for p, s in zip(params, stacked, strict=True):
            torch.testing.assert_close(s[k], p.detach(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(("kind", "kwargs"), CONFIGS)
def test_stacked_update_equals_torch_per_copy(kind, kwargs):
    lrs = [1e-3, 3e-2, 0.5]
    gen = torch.Generator().manual_seed(0)
    start = [torch.randn(5, 4, generator=gen), torch.randn(4, generator=gen)]
    grads_seq = [[torch.randn(3, *p.shape, generator=gen) for p in start] for _ in range(50)]
    _assert_stacked_equals_torch(kind, kwargs, lrs, start, grads_seq)


@pytest.mark.parametrize(("kind", "kwargs"), CONFIGS)
def test_a_parameter_without_gradient_is_left_alone_as_torch_does(kind, kwargs):
    # the second parameter gets no gradient for 3 steps (no momentum buffer, no decay, no step)
    lrs = [1e-2, 0.3]
    gen = torch.Generator().manual_seed(1)
    start = [torch.randn(3, 2, generator=gen), torch.randn(2, generator=gen)]
    grads_seq = [[torch.randn(2, *p.shape, generator=gen) for p in start] for _ in range(8)]
    for grads in grads_seq[:3]:
        grads[1] = None
    _assert_stacked_equals_torch(kind, kwargs, lrs, start, grads_seq)


def test_spec_reads_names_classes_and_instances():
    assert optim_spec("adamw").kind == "adamw"
    assert optim_spec("adamw").hyper["weight_decay"] == 0.01  # torch's AdamW default
    assert optim_spec("sgd", {"momentum": 0.9, "nesterov": True}).hyper["nesterov"] is True
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.8)
    assert optim_spec(opt).hyper["momentum"] == 0.8
    assert optim_spec(torch.optim.Adam, {"lr": 5.0}).kind == "adam"  # lr is ignored


@pytest.mark.parametrize(("optimizer", "kwargs", "message"), [
    ("rmsprop", {}, "unknown optimizer 'rmsprop'"),
    (42, {}, "optimizer must be"),
])
def test_bad_optimizers_are_named(optimizer, kwargs, message):
    with pytest.raises(ValueError, match=message):
        optim_spec(optimizer, kwargs)


@pytest.mark.parametrize(("optimizer", "kwargs"), [
    (torch.optim.RMSprop, {}),
    (torch.optim.Adam, {"amsgrad": True}),
    (torch.optim.SGD, {"maximize": True}),
])
def test_updates_the_stacked_engines_lack_are_generic(optimizer, kwargs):
    spec = optim_spec(optimizer, kwargs)
    assert spec.kind == "generic" and not spec.vectorisable and spec.cls is optimizer


def test_param_groups_with_different_settings_are_generic():
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [a]}, {"params": [b], "momentum": 0.9}], lr=0.1)
    spec = optim_spec(opt)
    assert spec.kind == "generic" and [g["momentum"] for g in spec.groups] == [0.0, 0.9]
    built = spec.build([[a], [b]], 0.5, [1.0, 0.1])
    assert [g["lr"] for g in built.param_groups] == [0.5, 0.05]

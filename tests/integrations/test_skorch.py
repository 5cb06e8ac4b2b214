"""skorch: lrtune schedules as LRScheduler policies; the range test on a NeuralNet."""

from __future__ import annotations

import copy
import importlib
import sys

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from skorch import NeuralNetClassifier
from skorch.callbacks import Callback, LRScheduler
from skorch.dataset import Dataset
from torch import nn

import lrtune
from lrtune.integrations.skorch import LRScheduler as SkorchLRScheduler
from lrtune.integrations.skorch import find_lr
from lrtune.schedules import cosine, linspace, one_cycle, one_cycle_momentum

SWEEP = dict(start_lr=1e-4, end_lr=10.0, num_iters=40)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X[:512] / 16).astype(np.float32), y[:512].astype(np.int64)


class MLP(nn.Module):
    """Softmax output, as skorch's NeuralNetClassifier expects with its default NLLLoss."""

    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x):
        return torch.softmax(self.body(x), dim=-1)


class DictMLP(MLP):
    def forward(self, pixels):
        return super().forward(pixels)


def make_net(**kwargs) -> NeuralNetClassifier:
    torch.manual_seed(0)
    params = dict(module=MLP, lr=0.05, optimizer=torch.optim.SGD, optimizer__momentum=0.9,
                  batch_size=64, max_epochs=1, train_split=None, verbose=0)
    return NeuralNetClassifier(**{**params, **kwargs})


def state(net):
    return copy.deepcopy((net.module_.state_dict(), net.optimizer_.state_dict()))


# --- the range test -----------------------------------------------------------------------


def test_curve_is_lrtune_find_lr_on_the_equivalent_plain_pytorch_code(digits):
    X, y = digits
    net = make_net().initialize()
    plain = MLP()
    plain.load_state_dict(net.module_.state_dict())
    opt = torch.optim.SGD(plain.parameters(), lr=0.05, momentum=0.9)
    eps = torch.finfo(torch.float32).eps

    def nll_of_probabilities(p, target):  # what NeuralNetClassifier.get_loss does
        return nn.functional.nll_loss(torch.log(p + eps), target)

    ours = find_lr(net, X, y, **SWEEP)
    theirs = lrtune.find_lr(plain, opt, nll_of_probabilities, (torch.from_numpy(X),
                            torch.from_numpy(y)), batch_size=64, **SWEEP)
    assert ours.stop_reason == theirs.stop_reason
    np.testing.assert_allclose(ours.train_lrs, theirs.train_lrs, rtol=1e-12)
    np.testing.assert_allclose(ours.train_losses, theirs.train_losses, rtol=1e-5)
    np.testing.assert_allclose(ours.losses, theirs.losses, rtol=1e-5)
    assert ours.suggested_lr == pytest.approx(theirs.suggested_lr, rel=1e-6)
    assert ours.verdict == "ok"
    # a different loss (cross-entropy on the softmax output) gives another curve: the test
    # above does tell skorch's own loss apart
    other = lrtune.find_lr(plain, opt, nn.CrossEntropyLoss(), (torch.from_numpy(X),
                           torch.from_numpy(y)), batch_size=64, **SWEEP)
    n = min(len(ours.train_losses), len(other.train_losses))
    assert not np.allclose(ours.train_losses[:n], other.train_losses[:n], rtol=1e-3)


def test_numpy_and_tensor_inputs_initialised_or_not_give_one_curve(digits):
    X, y = digits
    fresh = make_net()
    assert not fresh.initialized_
    from_numpy = find_lr(fresh, X, y, **SWEEP)
    assert fresh.initialized_
    from_tensors = find_lr(make_net().initialize(), torch.from_numpy(X), torch.from_numpy(y),
                           **SWEEP)
    assert from_numpy.train_losses == pytest.approx(from_tensors.train_losses, rel=1e-6)
    assert from_numpy.settings["batch_size"] == 64  # the net's batch size
    assert from_numpy.settings["optimizer"] == "SGD"


def test_weights_optimizer_history_and_mode_are_restored(digits):
    X, y = digits
    net = make_net()
    net.partial_fit(X, y)  # momentum buffers exist, one epoch in the history
    weights, opt_state = state(net)
    net.module_.eval()
    find_lr(net, X, y, **SWEEP)
    after_weights, after_opt = state(net)
    for key, value in weights.items():
        assert torch.equal(after_weights[key], value)
    assert after_opt["param_groups"] == opt_state["param_groups"]
    for key, buf in opt_state["state"].items():
        assert torch.equal(after_opt["state"][key]["momentum_buffer"], buf["momentum_buffer"])
    assert len(net.history) == 1
    assert not net.module_.training


def test_apply_sets_the_suggestion_with_set_params_and_fit_starts_from_it(digits):
    X, y = digits
    net = make_net()
    result = find_lr(net, X, y, apply=True, **SWEEP)
    assert result.suggested_lr is not None
    assert net.lr == result.suggested_lr
    assert [g["lr"] for g in net.optimizer_.param_groups] == [result.suggested_lr]
    net.fit(X, y)  # re-initialises the optimizer from net.lr
    assert net.optimizer_.param_groups[0]["lr"] == result.suggested_lr
    untouched = make_net()
    find_lr(untouched, X, y, **SWEEP)
    assert untouched.lr == 0.05
    flat = find_lr(untouched, X, y, apply=True, start_lr=1e-7, end_lr=1e-6, num_iters=10)
    assert flat.verdict != "ok" and flat.suggested_lr is None  # nothing to apply
    assert untouched.lr == 0.05


def test_apply_keeps_the_ratios_of_param_groups(digits):
    """optimizer__param_groups: a first layer at a tenth of net.lr, or frozen. The test
    sweeps with the ratios kept; apply gives every group its own suggestion (set_params(lr=)
    alone would give them all the first group's) and net.lr the rate of skorch's last group,
    the one net.lr sets."""
    X, y = digits
    for first in (0.005, 0.0):
        net = make_net(optimizer__param_groups=[("body.0.*", {"lr": first})])
        result = find_lr(net, X, y, apply=True, start_lr=1e-3, end_lr=100.0, num_iters=40)
        ratio = first / 0.05
        assert result.suggested_lr is not None
        expected = result.suggested_lr * (1 / ratio if ratio else 1.0)  # the last group's
        assert net.lr == pytest.approx(expected, rel=1e-12)
        assert [g["lr"] for g in net.optimizer_.param_groups] == pytest.approx(
            [expected * ratio, expected], rel=1e-12)


def test_other_inputs_go_through_the_nets_own_iterator(digits):
    X, y = digits
    net = make_net(iterator_train__batch_size=32)
    result = find_lr(net, Dataset(X, y), None, start_lr=1e-4, end_lr=1e-1, num_iters=20)
    assert len(result.train_losses) == 20
    assert all(np.isfinite(result.train_losses))
    assert result.settings["batch_size"] == 32  # the net's training iterator's
    # a dict X reaches the module as keyword arguments, as in net.fit
    as_dict = find_lr(make_net(module=DictMLP), {"pixels": X}, y, **SWEEP)
    assert as_dict.train_losses[0] == pytest.approx(np.log(10), rel=0.05)  # 10 classes, untrained
    assert as_dict.settings["batch_size"] == 64


def test_bad_inputs_say_what_is_wrong(digits):
    X, y = digits
    with pytest.raises(ValueError, match="X is float64 but the module's parameters are float32"):
        find_lr(make_net(), X.astype(np.float64), y, **SWEEP)
    with pytest.raises(ValueError, match="No y-values are given"):  # skorch's own check
        find_lr(make_net(), X, None, **SWEEP)
    with pytest.raises(TypeError, match="net must be a skorch NeuralNet, got Sequential"):
        find_lr(nn.Sequential(), X, y)


def test_import_without_skorch_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "skorch", None)  # makes `import skorch` fail
    monkeypatch.delitem(sys.modules, "lrtune.integrations.skorch")
    with pytest.raises(ImportError) as info:
        importlib.import_module("lrtune.integrations.skorch")
    assert str(info.value) == ("lrtune.integrations.skorch needs skorch: "
                               "pip install 'lrtune[skorch]'")


# --- schedules as skorch LRScheduler policies ---------------------------------------------


class Record(Callback):
    """The lr and momentum in force during each training batch and at each epoch's start."""

    def initialize(self):
        self.batches, self.epochs = [], []
        return self

    def _now(self, net):
        group = net.optimizer_.param_groups[0]
        return group["lr"], group["momentum"]

    def on_epoch_begin(self, net, **kwargs):
        self.epochs.append(self._now(net))

    def on_batch_begin(self, net, batch=None, training=None, **kwargs):
        if training:
            self.batches.append(self._now(net))


def test_policy_per_batch_drives_lr_and_momentum(digits):
    X, y = digits  # 512 samples / 64 = 8 batches per epoch
    schedules = {"lr": one_cycle(0.1, 24), "momentum": one_cycle_momentum(24)}
    record = Record()
    net = make_net(max_epochs=3, callbacks=[
        ("sched", LRScheduler(policy=lrtune.TorchScheduler, schedules=schedules,
                              step_every="batch")),
        ("record", record)])
    net.fit(X, y)
    expected = [(schedules["lr"](t), schedules["momentum"](t)) for t in range(24)]
    np.testing.assert_allclose(record.batches, expected, rtol=1e-12)
    assert net.history[:, "batches", :, "event_lr"] == [
        [lr for lr, _ in expected[i:i + 8]] for i in (0, 8, 16)]


def test_policy_per_epoch_and_its_resume_with_partial_fit(digits):
    X, y = digits
    schedules = linspace(5, lr=(0.1, 0.001), momentum=(0.8, 0.95))
    record = Record()
    net = make_net(max_epochs=3, callbacks=[
        ("sched", LRScheduler(policy=lrtune.TorchScheduler, schedules=schedules)),
        ("record", record)])
    net.fit(X, y)
    net.partial_fit(X, y, epochs=2)  # skorch passes last_epoch=2: the schedule goes on
    expected = [(schedules["lr"](t), schedules["momentum"](t)) for t in range(5)]
    np.testing.assert_allclose(record.epochs, expected, rtol=1e-12)
    assert net.history[:, "event_lr"] == pytest.approx([lr for lr, _ in expected], rel=1e-12)


def test_policy_simulate_shows_the_schedule():
    sched = LRScheduler(policy=lrtune.TorchScheduler, schedules=cosine(0.1, steps=10))
    assert sched.simulate(10, initial_lr=1.0) == pytest.approx(
        [cosine(0.1, steps=10)(t) for t in range(10)], rel=1e-12)


def test_our_lr_scheduler_resumes_a_per_batch_schedule_at_the_batch_count(digits):
    X, y = digits
    schedules = {"lr": one_cycle(0.1, 24), "momentum": one_cycle_momentum(24)}
    record = Record()
    net = make_net(max_epochs=2, callbacks=[
        ("sched", SkorchLRScheduler(schedules=schedules, step_every="batch")),
        ("record", record)])
    net.fit(X, y)
    net.partial_fit(X, y, epochs=1)  # skorch's own callback would pass last_epoch=1
    expected = [(schedules["lr"](t), schedules["momentum"](t)) for t in range(24)]
    np.testing.assert_allclose(record.batches, expected, rtol=1e-12)
    net.fit(X, y)  # fit starts over
    np.testing.assert_allclose(record.batches, expected[:16], rtol=1e-12)


def test_validation_arrays_drive_the_curve(digits):
    X, y = digits
    result = find_lr(make_net(), X[:384], y[:384], val_data=(X[384:], y[384:]), val_every=5,
                     **SWEEP)
    assert result.monitor == "valid"
    assert len(result.losses) < len(result.train_losses)
    assert result.settings["val_every"] == 5

"""find_lr with the step protocol: any batch, model-computed losses, precision, clipping."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lrtune import find_lr

KW = dict(num_iters=40, start_lr=1e-4, end_lr=1.0, batch_size=16)


class HFStyle(nn.Module):
    """``forward(input_ids, attention_mask, labels) -> {"loss", "logits"}``."""

    def __init__(self):
        super().__init__()
        self.embed, self.head = nn.Embedding(20, 8), nn.Linear(8, 3)

    def forward(self, input_ids, attention_mask, labels=None):
        mask = attention_mask.unsqueeze(-1).float()
        logits = self.head((self.embed(input_ids) * mask).sum(1) / mask.sum(1))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return {"loss": loss, "logits": logits}


class Tokens(Dataset):
    def __init__(self, n=96):
        gen = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, 20, (n, 6), generator=gen)
        self.mask = (torch.rand(n, 6, generator=gen) > 0.2).long()
        self.mask[:, 0] = 1
        self.labels = self.ids[:, 0] % 3

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": self.mask[i], "labels": self.labels[i]}


def hf_step(model, batch):
    return model(**batch)


def test_dict_batches_and_a_model_computed_loss():
    torch.manual_seed(0)
    model = HFStyle()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = copy.deepcopy(model.state_dict())
    loader = DataLoader(Tokens(), batch_size=16, shuffle=False)
    result = find_lr(model, opt, data=loader, step=hf_step, **KW)
    assert len(result.train_losses) == 40 or result.stop_reason != "finished"
    assert result.settings["step"] == "custom"
    # the same curve as the equivalent (x, y) code: the model's loss is cross-entropy
    torch.manual_seed(0)
    again = HFStyle()
    again.load_state_dict(before)
    pairs = [((b["input_ids"], b["attention_mask"]), b["labels"]) for b in loader]
    ref = find_lr(again, torch.optim.Adam(again.parameters(), lr=1e-3),
                  nn.CrossEntropyLoss(), pairs,
                  step=lambda m, b: nn.functional.cross_entropy(m(*b[0])["logits"], b[1]), **KW)
    np.testing.assert_allclose(result.losses, ref.losses, rtol=1e-5)
    for k, v in before.items():  # restored
        assert torch.equal(model.state_dict()[k], v)


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 3), nn.Linear(2, 3)

    def forward(self, x1, x2):
        return self.a(x1) + self.b(x2)


def test_two_input_model_with_a_custom_step():
    torch.manual_seed(1)
    x1, x2 = torch.randn(64, 4), torch.randn(64, 2)
    y = (x1[:, 0] + x2[:, 0] > 0).long()
    batches = [((x1[i:i + 16], x2[i:i + 16]), y[i:i + 16]) for i in range(0, 64, 16)]
    model = TwoInputs()
    with torch.no_grad():
        first = nn.functional.cross_entropy(model(x1[:16], x2[:16]), y[:16]).item()

    def step(model, batch):
        (a, b), target = batch
        return nn.functional.cross_entropy(model(a, b), target)

    result = find_lr(model, torch.optim.SGD(model.parameters(), lr=0.1), data=batches,
                     step=step, **KW)
    assert result.train_losses[0] == pytest.approx(first, rel=1e-6)  # batches in their order
    assert len(result.train_losses) == 40 or result.stop_reason != "finished"


class WithAux(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(4, 3)

    def forward(self, x):
        return self.net(x), {"aux": x.mean()}


def test_a_model_returning_logits_and_aux_works_with_the_default_step():
    torch.manual_seed(2)
    X, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    model = WithAux()
    plain = nn.Linear(4, 3)
    plain.load_state_dict(model.net.state_dict())
    a = find_lr(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                (X, y), **KW)
    b = find_lr(plain, torch.optim.SGD(plain.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                (X, y), **KW)
    assert a.losses == b.losses  # the same operations: primary_output is the logits


def test_dict_batches_without_a_step_say_what_to_do():
    model = HFStyle()
    with pytest.raises(TypeError, match=r"dict with keys \['attention_mask', 'input_ids', "
                                        r"'labels'\]; pass step=fn"):
        find_lr(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                DataLoader(Tokens(), batch_size=16), **KW)


def test_non_scalar_loss_is_refused():
    model = nn.Linear(4, 3)
    X, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    with pytest.raises(ValueError, match="the loss must be a 0-d tensor"):
        find_lr(model, torch.optim.SGD(model.parameters(), lr=0.1),
                nn.CrossEntropyLoss(reduction="none"), (X, y), **KW)


def test_an_optimizer_without_param_groups_is_refused():
    with pytest.raises(ValueError, match="optimizer must be a torch optimizer"):
        find_lr(nn.Linear(2, 2), object(), nn.MSELoss(), (torch.zeros(4, 2), torch.zeros(4, 2)))


def _blobs():
    gen = torch.Generator().manual_seed(3)
    X = torch.randn(256, 8, generator=gen)
    return X, (X[:, 0] > 0).long() + (X[:, 1] > 0).long()


def _net():
    torch.manual_seed(4)
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))


def test_bf16_curve_is_close_to_fp32():
    data = _blobs()
    curves = {}
    for precision in ("32", "bf16-mixed"):
        net = _net()
        curves[precision] = find_lr(net, torch.optim.SGD(net.parameters(), lr=0.1),
                                    nn.CrossEntropyLoss(), data, precision=precision,
                                    num_iters=60, start_lr=1e-3, end_lr=3.0)
    a, b = (np.array(c.smoothed_losses) for c in curves.values())
    n = min(len(a), len(b))
    assert n >= 40
    np.testing.assert_allclose(b[:n], a[:n], rtol=0.05)  # bfloat16 keeps ~3 significant digits
    assert curves["bf16-mixed"].settings["precision"] == "bf16-mixed"


def test_fp16_overflow_skips_exactly_one_step_without_recording_it():
    data = _blobs()
    calls = []

    def step(model, batch):
        x, y = batch
        loss = nn.functional.cross_entropy(model(x), y)
        calls.append(1)
        return loss * 1e30 if len(calls) == 5 else loss  # overflows in the scaled backward

    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    result = find_lr(net, opt, data=data, step=step, precision="16-mixed", num_iters=30,
                     start_lr=1e-4, end_lr=1e-2)
    assert len(calls) == 31  # one call more than points: the skipped one
    assert len(result.train_lrs) == 30
    expected = np.geomspace(1e-4, 1e-2, 30)
    np.testing.assert_allclose(result.train_lrs, expected, rtol=1e-9)  # the rate did not advance
    assert result.train_losses[4] < 1e3  # the overflowing loss is not a point


def _infinite_gradients(model, batch):
    x, y = batch
    h = model(x)
    return nn.functional.cross_entropy(h + torch.sqrt(h - h.detach()), y)  # finite, grad inf


def test_gradients_never_finite_under_fp16_raise_instead_of_an_empty_curve():
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    before = copy.deepcopy(net.state_dict())
    # it answered "inconclusive: too few points (0) ... lower start_lr", which cannot help
    with pytest.raises(FloatingPointError, match=r"GradScaler skipped 64 optimizer steps in a "
                                                 r"row at lr 0.0001: the gradients are inf/NaN"):
        find_lr(net, opt, data=_blobs(), step=_infinite_gradients, precision="16-mixed",
                num_iters=30, start_lr=1e-4, end_lr=1e-2)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())


def test_clipping_reaches_the_optimizer():
    data = _blobs()
    seen = []

    class Spy(torch.optim.SGD):
        def step(self, closure=None):
            seen.append(torch.cat([p.grad.flatten() for g in self.param_groups
                                   for p in g["params"]]).norm().item())
            return super().step(closure)

    net = _net()
    find_lr(net, Spy(net.parameters(), lr=0.1), nn.CrossEntropyLoss(), data, num_iters=20,
            start_lr=1e-3, end_lr=1.0, clip_grad_norm=0.01)
    assert max(seen) <= 0.01 * (1 + 1e-5)

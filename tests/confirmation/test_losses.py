"""Per-copy losses of stacked outputs equal the loss of each copy alone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lrtune.confirmation.losses import per_copy_loss


def _each(loss_fn, out, y):
    return torch.stack([loss_fn(out[k], y) for k in range(out.shape[0])])


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("layout", ["contiguous", "view"])
def test_cross_entropy_of_every_copy_in_one_call(smoothing, layout):
    gen = torch.Generator().manual_seed(0)
    if layout == "contiguous":
        out = torch.randn(4, 7, 5, generator=gen, dtype=torch.float64)
    else:  # (K, B, C) as a view of (B, K, C), the batched engine's one-Linear output
        out = torch.randn(7, 4, 5, generator=gen, dtype=torch.float64).transpose(0, 1)
    y = torch.randint(0, 5, (7,), generator=gen)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=smoothing)
    got = per_copy_loss(loss_fn, out, y)
    assert got.shape == (4,)
    torch.testing.assert_close(got, _each(loss_fn, out, y), rtol=1e-12, atol=1e-14)


def test_cross_entropy_gradient_is_each_copys_own():
    gen = torch.Generator().manual_seed(1)
    out = torch.randn(3, 6, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 4, (6,), generator=gen)
    (grad,) = torch.autograd.grad(per_copy_loss(nn.CrossEntropyLoss(), out, y).sum(), out)
    (ref,) = torch.autograd.grad(_each(nn.CrossEntropyLoss(), out, y).sum(), out)
    torch.testing.assert_close(grad, ref, rtol=1e-12, atol=1e-14)


def test_ignored_targets_average_over_the_rest_as_torch_does():
    out = torch.randn(2, 5, 3, dtype=torch.float64)
    y = torch.tensor([0, -100, 2, 1, -100])
    got = per_copy_loss(nn.CrossEntropyLoss(), out, y)  # per copy: mean over the 3 kept rows
    torch.testing.assert_close(got, _each(nn.CrossEntropyLoss(), out, y), rtol=0, atol=0)


def test_any_other_loss_gets_each_copys_output_contiguous():
    def flat_l1(output, target):  # .view needs contiguous memory
        return (output.view(-1) - target.view(-1)).abs().mean()

    out = torch.randn(5, 3, 2).transpose(0, 1)  # (3, 5, 2), not contiguous per copy
    y = torch.randn(5, 2)
    got = per_copy_loss(flat_l1, out, y)
    torch.testing.assert_close(got, torch.stack([(out[k] - y).abs().mean() for k in range(3)]))

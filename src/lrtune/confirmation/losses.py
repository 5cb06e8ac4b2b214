"""Per-copy losses and metrics of K stacked outputs ``(K, B, ...)`` against shared targets."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def per_copy_loss(loss_fn: Callable, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``loss_fn(out[k], y)`` for every copy k, as a ``(K,)`` tensor.

    Cross-entropy and MSE (mean reduction, no class weights) run as one fused call over all
    copies; any other loss is called once per copy, which is exact for every loss.
    Cross-entropy takes the copies' logits as ``(K, C, B)`` (classes in dimension 1, as
    ``F.cross_entropy`` takes ``(N, C, d)``): its log-softmax over a middle dimension runs
    vectorised along the batch, about ten times faster on a CPU than over a last dimension of
    a few classes; the batched engine's ``(K, B, C)`` output is a view of such a tensor.
    """
    k = out.shape[0]
    if (type(loss_fn) is nn.CrossEntropyLoss and loss_fn.weight is None
            and loss_fn.reduction == "mean" and y.dim() == 1 and not y.is_floating_point()
            and out.dim() == 3 and not bool((y == loss_fn.ignore_index).any())):
        per_row = F.cross_entropy(out.transpose(1, 2), y.expand(k, -1), reduction="none",
                                  label_smoothing=loss_fn.label_smoothing)
        return per_row.mean(1)
    if type(loss_fn) is nn.MSELoss and loss_fn.reduction == "mean" and out.shape[1:] == y.shape:
        return F.mse_loss(out, y.expand_as(out), reduction="none").reshape(k, -1).mean(1)
    return torch.stack([loss_fn(out[i].contiguous(), y) for i in range(k)])


def correct_rows(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(K, B)`` booleans: copy k's arg-max equals ``y``; a non-finite logit counts as wrong."""
    return (out.argmax(-1) == y) & torch.isfinite(out).all(-1)


def correct_counts(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per copy, how many rows of ``out`` (K, B, C) have their arg-max equal to ``y`` (B,)."""
    return correct_rows(out, y).sum(1)


def resolve_metric(metric: str, y: torch.Tensor) -> str:
    """``"auto"`` is accuracy for integer class targets of shape (B,), the loss otherwise."""
    if metric not in ("auto", "accuracy", "loss"):
        raise ValueError(f"metric must be 'auto', 'accuracy' or 'loss', got {metric!r}")
    if metric == "auto":
        return "accuracy" if (y.dim() == 1 and not y.is_floating_point()) else "loss"
    if metric == "accuracy" and (y.dim() != 1 or y.is_floating_point()):
        raise ValueError("metric='accuracy' needs integer class targets of shape (batch,), "
                         f"got dtype {y.dtype} and shape {tuple(y.shape)}")
    return metric

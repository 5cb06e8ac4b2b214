"""Build optimizers and losses by name (shared by the CLI, benchmarks and examples)."""

from __future__ import annotations

import math

import torch
from torch import nn

from lrtune.lr_free import LR_FREE

OPTIMIZERS = ("sgd", "adam", "adamw", *LR_FREE)


def make_optimizer(name: str, params, *, lr: float | None, momentum: float = 0.0,
                   weight_decay: float = 0.0, nesterov: bool = False) -> torch.optim.Optimizer:
    """``sgd`` (with ``momentum``/``nesterov``), ``adam``, ``adamw``, or a learning-rate-free
    optimizer (``prodigy``, ``schedulefree-adamw``, ``schedulefree-sgd``, ``dadapt-adam``; see
    :mod:`lrtune.lr_free`, ``lr=None`` there means the package's default).

    For Adam/AdamW a non-zero ``momentum`` sets beta1, the quantity that plays its role.
    """
    if not 0 <= momentum < 1:  # also refuses NaN; 1 or more never decays and diverges
        what = "momentum" if name == "sgd" else "momentum (beta1)"
        raise ValueError(f"{what} must be in [0, 1), got {momentum}")
    if not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay}")
    if name in LR_FREE:
        if nesterov:
            raise ValueError(f"nesterov applies to sgd only, not to {name}")
        from lrtune.lr_free import make_lr_free

        return make_lr_free(name, params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if lr is None:
        raise ValueError(f"{name} needs a learning rate (lr=None is for learning-rate-free ones)")
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                               nesterov=nesterov)
    if name in ("adam", "adamw"):
        betas = (momentum if momentum else 0.9, 0.999)
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        kwargs = {} if name == "adamw" and not weight_decay else {"weight_decay": weight_decay}
        return cls(params, lr=lr, betas=betas, **kwargs)
    raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")


def make_loss(task: str) -> nn.Module:
    """Cross-entropy for classification, mean squared error for regression."""
    if task == "classification":
        return nn.CrossEntropyLoss()
    if task == "regression":
        return nn.MSELoss()
    raise ValueError(f"unknown task {task!r}; expected 'classification' or 'regression'")


def loss_for(splits) -> nn.Module:
    """The loss a dataset asks for: its ``extra["loss"]`` if named, else by its task."""
    if splits.extra.get("loss") == "masked_mse":  # keypoints with NaN where a point is missing
        from lrtune.data.keypoints import MaskedMSELoss

        return MaskedMSELoss()
    return make_loss(splits.task)

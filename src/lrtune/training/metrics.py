"""Metrics by name, and the optimizer hyperparameters the history records."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from lrtune.lr_free import effective_lrs

Metric = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def accuracy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Fraction of rows whose largest logit is the target class (a 0-d tensor, no sync).

    Examples:
        >>> accuracy(torch.tensor([[2.0, 1.0], [0.0, 3.0]]), torch.tensor([0, 0]))
        tensor(0.5000)
    """
    if target.dim() == output.dim():  # one-hot or probabilities
        target = target.argmax(dim=1)
    return (output.argmax(dim=1) == target).float().mean()


METRICS: dict[str, Metric] = {"accuracy": accuracy}


def resolve_metrics(metrics: Sequence[str] | Mapping[str, Metric] | None) -> dict[str, Metric]:
    """Names from :data:`METRICS` or a ``{name: fn(output, target) -> 0-d tensor}`` mapping.

    Examples:
        >>> list(resolve_metrics(["accuracy"]))
        ['accuracy']
    """
    if metrics is None:
        return {}
    if isinstance(metrics, Mapping):
        for name, fn in metrics.items():
            if not callable(fn):
                raise ValueError(f"metric {name!r} must be callable, got {type(fn).__name__}")
        return dict(metrics)
    if isinstance(metrics, str):
        metrics = [metrics]
    resolved = {}
    for name in metrics:
        if name not in METRICS:
            raise ValueError(f"unknown metric {name!r}; choose from {', '.join(METRICS)}")
        resolved[name] = METRICS[name]
    return resolved


def momentum_of(group: dict) -> float | None:
    """SGD's ``momentum``, or Adam's ``betas[0]``, the quantity that plays its role."""
    if "momentum" in group:
        return float(group["momentum"])
    if "betas" in group:
        return float(group["betas"][0])
    return None


def read_hyperparams(optimizer: torch.optim.Optimizer) -> dict[str, list[float]]:
    """``{"lr": [...], "momentum": [...], "weight_decay": [...]}``, one value per param group.

    Keys an optimizer does not have are left out. Optimizers that estimate their own step size
    (Prodigy, D-Adaptation) add ``"effective_lr"``: ``d * lr``, the rate they actually use.

    Examples:
        >>> p = torch.nn.Parameter(torch.zeros(1))
        >>> read_hyperparams(torch.optim.Adam([p], lr=0.01, betas=(0.8, 0.99)))
        {'lr': [0.01], 'momentum': [0.8], 'weight_decay': [0.0]}
    """
    groups = optimizer.param_groups
    values = {"lr": [float(g["lr"]) for g in groups]}
    momenta = [momentum_of(g) for g in groups]
    if all(m is not None for m in momenta):
        values["momentum"] = momenta
    if all("weight_decay" in g for g in groups):
        values["weight_decay"] = [float(g["weight_decay"]) for g in groups]
    effective = effective_lrs(optimizer)  # Prodigy, D-Adaptation: the step they take is d * lr
    if effective is not None:
        values["effective_lr"] = effective
    return values


def flatten_hyperparams(values: dict[str, list[float]]) -> dict[str, float]:
    """One record key per group: ``lr`` for the first, ``lr_group1`` … for the others.

    Examples:
        >>> flatten_hyperparams({"lr": [0.1, 0.01], "momentum": [0.9, 0.9]})
        {'lr': 0.1, 'lr_group1': 0.01, 'momentum': 0.9, 'momentum_group1': 0.9}
    """
    flat = {}
    for name, per_group in values.items():
        for i, value in enumerate(per_group):
            flat[name if i == 0 else f"{name}_group{i}"] = value
    return flat

"""The seeds' networks."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def mlp(in_features: int, n_outputs: int, hidden: Sequence[int] = (300, 100)) -> nn.Sequential:
    """Seed 000's MLP: Flatten -> Linear+ReLU per hidden size -> Linear (logits).

    The softmax of the seed lives in the loss (``CrossEntropyLoss``), which is numerically safer.

    Examples:
        >>> model = mlp(64, 10)
        >>> [m.out_features for m in model if isinstance(m, nn.Linear)]
        [300, 100, 10]
    """
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    layers.append(nn.Linear(width, n_outputs))
    return nn.Sequential(*layers)


MODELS = {"mlp": mlp}


def build_model(name: str, in_features: int, n_outputs: int) -> nn.Module:
    """Build a model of the registry by name; unknown names raise ``ValueError``."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(sorted(MODELS))}")
    return MODELS[name](in_features, n_outputs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["MODELS", "build_model", "count_parameters", "mlp"]

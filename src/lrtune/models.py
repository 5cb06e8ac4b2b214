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


def keypoint_cnn(input_shape: Sequence[int], n_outputs: int, *,
                 channels: Sequence[int] = (16, 32, 64), hidden: int = 256,
                 dropout: float = 0.0) -> nn.Sequential:
    """Seed 004's convolutional regressor, slimmed for CPUs.

    ``(Conv 3×3 + ReLU + MaxPool 2)`` per entry of ``channels``, then Linear ``hidden`` +
    ReLU and a Linear head of ``n_outputs`` (30 for 15 keypoints). The seed's net had
    32-64-128 filters and two 500-unit layers on 96×96 faces; this one trains on 48×48 faces
    in minutes on two cores. ``dropout`` (seed 004's next technique) precedes each Linear.

    Args:
        input_shape: ``(C, H, W)`` or ``(H, W)`` (one channel is added) of one sample.
        n_outputs: size of the output.

    Examples:
        >>> model = keypoint_cnn((1, 48, 48), 30)
        >>> import torch
        >>> model(torch.zeros(2, 1, 48, 48)).shape
        torch.Size([2, 30])
    """
    shape = tuple(int(d) for d in input_shape)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or min(shape) <= 0:
        raise ValueError(
            f"input_shape must be (C, H, W) or (H, W) images, got {tuple(input_shape)}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    c, h, w = shape
    layers: list[nn.Module] = [nn.Unflatten(1, (1, h))] if len(input_shape) == 2 else []
    for width in channels:
        layers += [nn.Conv2d(c, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        c, h, w = width, h // 2, w // 2
    if h == 0 or w == 0:
        raise ValueError(f"input_shape {tuple(input_shape)} is too small for "
                         f"{len(channels)} poolings")
    layers += [nn.Flatten(), nn.Dropout(dropout), nn.Linear(c * h * w, hidden), nn.ReLU(),
               nn.Dropout(dropout), nn.Linear(hidden, n_outputs)]
    return nn.Sequential(*layers)


MODELS = {"mlp": mlp, "cnn": keypoint_cnn}
IMAGE_MODELS = {"cnn"}  # built from the sample shape rather than a feature count


def build_model(name: str, in_features: int, n_outputs: int, *,
                input_shape: Sequence[int] | None = None) -> nn.Module:
    """Build a model of the registry by name; unknown names raise ``ValueError``.

    Args:
        name: ``"mlp"`` (uses ``in_features``) or ``"cnn"`` (needs ``input_shape``).
        in_features: flattened size of one sample.
        n_outputs: classes or regression targets.
        input_shape: shape of one sample, e.g. ``splits.input_shape``.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(sorted(MODELS))}")
    if name in IMAGE_MODELS:
        if input_shape is None or len(input_shape) not in (2, 3):
            raise ValueError(f"model {name!r} needs images (C, H, W) or (H, W); got sample "
                             f"shape {None if input_shape is None else tuple(input_shape)}")
        return MODELS[name](input_shape, n_outputs)
    return MODELS[name](in_features, n_outputs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["MODELS", "build_model", "count_parameters", "keypoint_cnn", "mlp"]

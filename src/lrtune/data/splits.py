"""Train/valid/test splits as tensors, with what a model needs to know about them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class Splits:
    """A dataset split three ways; each part is an ``(X, y)`` pair of tensors.

    Images are ``(N, 1, H, W)`` float32 (channels first, ready for ``nn.Conv2d``; the MLP
    flattens them). Keypoint datasets put ``flip_pairs``, ``keypoint_names``, ``image_size``
    and ``loss`` (``"mse"`` or ``"masked_mse"``) in ``extra``.
    """

    name: str
    train: tuple[torch.Tensor, torch.Tensor]
    valid: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    task: str  # "classification" or "regression"
    class_names: list[str] | None = None
    extra: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train[0].shape[1:])

    @property
    def in_features(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def n_outputs(self) -> int:
        y = self.train[1]
        if self.task == "classification":
            return len(self.class_names) if self.class_names else int(y.max()) + 1
        return int(np.prod(y.shape[1:])) if y.dim() > 1 else 1


def split_three_ways(
    X: np.ndarray,
    y: np.ndarray,
    *,
    valid_fraction: float,
    test_fraction: float,
    seed: int,
    stratify: bool,
    task: str,
    name: str,
    class_names: list[str] | None = None,
    extra: dict | None = None,
) -> Splits:
    """Shuffle with ``seed`` and cut into train/valid/test (stratified by label when asked)."""
    from sklearn.model_selection import train_test_split

    labels = y if stratify else None
    X_rest, X_test, y_rest, y_test = train_test_split(
        X, y, test_size=test_fraction, random_state=seed, stratify=labels
    )
    rest_valid = valid_fraction / (1.0 - test_fraction)
    X_train, X_valid, y_train, y_valid = train_test_split(
        X_rest, y_rest, test_size=rest_valid, random_state=seed,
        stratify=y_rest if stratify else None,
    )

    def pair(a, b):
        return torch.from_numpy(np.ascontiguousarray(a)), torch.from_numpy(np.ascontiguousarray(b))

    return Splits(
        name=name, train=pair(X_train, y_train), valid=pair(X_valid, y_valid),
        test=pair(X_test, y_test), task=task, class_names=class_names, extra=dict(extra or {}),
    )

"""Batch augmentation: ``augment(x, y) -> (x, y)``, applied by the Trainer to each training batch.

``flip`` is seed 004's: a random half of every batch is mirrored left to right, and, because
the targets are keypoints, their x coordinates are negated and the left/right keypoints swap
places (a mirrored left eye is a right eye).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from lrtune.data.keypoints import check_flip_pairs, flip_keypoints

AUGMENTATIONS = ("none", "flip")

Augment = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class HorizontalFlip:
    """Mirror a random half of each batch of keypoint images (seed 004's ``FlipBatchIterator``).

    ``x`` is ``(B, C, H, W)`` or ``(B, H, W)``; ``y`` is ``(B, 2K)`` unit coordinates
    ``x0, y0, x1, y1, …`` centred on the image (see :mod:`lrtune.data.keypoints`), so a
    mirror negates x. Returns new tensors; the caller's are never modified.

    Args:
        flip_pairs: ``(left, right)`` keypoint indices to swap.
        generator: a CPU ``torch.Generator`` that picks the flipped half; ``None`` uses
            torch's global RNG (repeatable after ``torch.manual_seed``).

    Examples:
        >>> flip = HorizontalFlip([(0, 1)], generator=torch.Generator().manual_seed(0))
        >>> x, y = torch.rand(4, 1, 8, 8), torch.rand(4, 4) * 2 - 1
        >>> x2, y2 = flip(x, y)
        >>> int((x2 != x).flatten(1).any(1).sum())  # exactly half of the batch
        2
    """

    def __init__(self, flip_pairs, *, generator: torch.Generator | None = None) -> None:
        self.flip_pairs = check_flip_pairs(flip_pairs)
        self.generator = generator

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if len(x) != len(y):
            raise ValueError(f"x and y have different batch sizes: {len(x)} and {len(y)}")
        if x.dim() < 3:
            raise ValueError(
                f"x must be images (B, H, W) or (B, C, H, W), got shape {tuple(x.shape)}")
        chosen = torch.randperm(len(x), generator=self.generator)[: len(x) // 2].to(x.device)
        x, y = x.clone(), y.clone()
        x[chosen] = x[chosen].flip(-1)
        y[chosen] = flip_keypoints(y[chosen], self.flip_pairs)
        return x, y

    def state_dict(self) -> dict:
        """The generator's state, so a resumed run flips the same halves."""
        return {"generator": None if self.generator is None else self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("generator") is not None and self.generator is not None:
            self.generator.set_state(state["generator"])

    def __repr__(self) -> str:
        return f"HorizontalFlip(flip_pairs={list(self.flip_pairs)})"


def make_augment(name: str, splits, *, generator: torch.Generator | None = None) -> Augment | None:
    """The augmentation called ``name`` for a dataset, or None for ``"none"``.

    Args:
        name: ``"none"`` or ``"flip"``.
        splits: the :class:`~lrtune.data.splits.Splits` it will augment; ``flip`` needs
            ``splits.extra["flip_pairs"]`` (a keypoint dataset).
        generator: passed to the augmentation for repeatable randomness.

    Examples:
        >>> from lrtune.data import load_dataset
        >>> make_augment("none", load_dataset("digits")) is None
        True
    """
    if name == "none":
        return None
    if name == "flip":
        pairs = splits.extra.get("flip_pairs")
        if pairs is None:
            raise ValueError(
                f"augment 'flip' needs a keypoint dataset with flip pairs; {splits.name!r} has "
                "none (try --dataset synthetic-faces or facial-keypoints)"
            )
        n_keypoints = splits.n_outputs // 2
        return HorizontalFlip(check_flip_pairs(pairs, n_keypoints), generator=generator)
    raise ValueError(f"unknown augment {name!r}; choose from {', '.join(AUGMENTATIONS)}")

"""Facial keypoints: the Kaggle CSV format, coordinate conventions, flipping and a masked loss.

Layout shared by the real and the synthetic faces:

* images ``(N, 1, S, S)`` float32 in [0, 1];
* targets ``(N, 30)`` float32: ``x0, y0, x1, y1, …`` for the 15 keypoints of
  :data:`KEYPOINT_NAMES`, scaled to [-1, 1] by :func:`pixels_to_unit`;
* a keypoint that was not annotated is ``NaN`` in both coordinates (the "masked" variant);
  :func:`masked_mse` averages the squared error over the annotated values only.

Pixel centres sit at integer coordinates ``0 … S-1`` (the convention of the Kaggle CSV), so
the unit coordinate is ``u = (x - (S - 1) / 2) / (S / 2)`` and mirroring an image left to right
is exactly ``u -> -u``.
"""

from __future__ import annotations

import csv
from os import PathLike
from pathlib import Path

import numpy as np
import torch

KEYPOINT_NAMES = (
    "left_eye_center", "right_eye_center",
    "left_eye_inner_corner", "left_eye_outer_corner",
    "right_eye_inner_corner", "right_eye_outer_corner",
    "left_eyebrow_inner_end", "left_eyebrow_outer_end",
    "right_eyebrow_inner_end", "right_eyebrow_outer_end",
    "nose_tip",
    "mouth_left_corner", "mouth_right_corner",
    "mouth_center_top_lip", "mouth_center_bottom_lip",
)
"""The 15 keypoints in the column order of the Kaggle CSV ("left" is the subject's left)."""

FLIP_PAIRS = ((0, 1), (2, 4), (3, 5), (6, 8), (7, 9), (11, 12))
"""(left, right) keypoint indices that trade places when a face is mirrored."""

COORD_COLUMNS = tuple(f"{name}_{axis}" for name in KEYPOINT_NAMES for axis in "xy")
KAGGLE_IMAGE_SIZE = 96
KAGGLE_URL = "https://www.kaggle.com/c/facial-keypoints-detection/data"


def pixels_to_unit(coords, size: int):
    """Pixel coordinates (centres at ``0 … size-1``) to [-1, 1].

    Examples:
        >>> pixels_to_unit(np.array([0.0, 47.5, 95.0]), 96)
        array([-0.98958333,  0.        ,  0.98958333])
    """
    return (coords - (size - 1) / 2) / (size / 2)


def unit_to_pixels(coords, size: int):
    """Inverse of :func:`pixels_to_unit`.

    Examples:
        >>> unit_to_pixels(np.array([-1.0, 0.0, 1.0]), 48)
        array([-0.5, 23.5, 47.5])
    """
    return coords * (size / 2) + (size - 1) / 2


def check_flip_pairs(flip_pairs, n_keypoints: int | None = None) -> tuple[tuple[int, int], ...]:
    """Validate ``(left, right)`` pairs: disjoint, non-negative, below ``n_keypoints`` if given.

    Examples:
        >>> check_flip_pairs([(0, 1), (2, 0)])
        Traceback (most recent call last):
        ValueError: flip_pairs must be disjoint pairs of keypoint indices, got ((0, 1), (2, 0))
    """
    pairs = tuple((int(a), int(b)) for a, b in flip_pairs)
    seen = [i for pair in pairs for i in pair]
    limit = float("inf") if n_keypoints is None else n_keypoints
    if any(not 0 <= i < limit for i in seen) or len(set(seen)) != len(seen):
        bound = "" if n_keypoints is None else f" < {n_keypoints}"
        raise ValueError(f"flip_pairs must be disjoint pairs of keypoint indices{bound}, "
                         f"got {pairs}")
    return pairs


def flip_permutation(flip_pairs, n_keypoints: int) -> list[int]:
    """Keypoint order after a mirror: each pair swapped, other keypoints in place.

    Examples:
        >>> flip_permutation([(0, 1), (2, 4)], 5)
        [1, 0, 4, 3, 2]
    """
    order = list(range(n_keypoints))
    for left, right in check_flip_pairs(flip_pairs, n_keypoints):
        order[left], order[right] = right, left
    return order


def flip_keypoints(y: torch.Tensor, flip_pairs) -> torch.Tensor:
    """Targets of mirrored faces: x negated, left/right keypoints swapped (a new tensor).

    Args:
        y: ``(N, 2K)`` unit coordinates ``x0, y0, x1, y1, …`` (NaN stays NaN).
        flip_pairs: ``(left, right)`` keypoint index pairs.

    Examples:
        >>> flip_keypoints(torch.tensor([[0.5, 0.1, -0.25, 0.2, 0.0, 0.3]]), [(0, 1)])
        tensor([[ 0.2500,  0.2000, -0.5000,  0.1000, -0.0000,  0.3000]])
    """
    n_keypoints = y.shape[-1] // 2
    if y.shape[-1] != 2 * n_keypoints:
        raise ValueError(f"y must have an even number of columns (x, y pairs), got {y.shape}")
    points = y.reshape(*y.shape[:-1], n_keypoints, 2)
    points = points[..., flip_permutation(flip_pairs, n_keypoints), :]
    sign = torch.tensor([-1.0, 1.0], dtype=y.dtype, device=y.device)
    return (points * sign).reshape(y.shape)


def masked_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the target values that are not NaN (missing keypoints).

    With no NaN it equals ``torch.nn.functional.mse_loss``.

    Examples:
        >>> masked_mse(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, float("nan")]]))
        tensor(1.)
    """
    mask = ~torch.isnan(target)
    diff = torch.where(mask, pred - torch.nan_to_num(target), torch.zeros_like(pred))
    return diff.pow(2).sum() / mask.sum().clamp(min=1)


class MaskedMSELoss(torch.nn.Module):
    """:func:`masked_mse` as a loss module, for the masked facial-keypoints variant."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return masked_mse(pred, target)


def read_keypoints_csv(path: str | PathLike, *, missing: str = "drop",
                       image_size: int = KAGGLE_IMAGE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Read Kaggle's facial-keypoints ``training.csv``.

    Args:
        path: the CSV: 30 coordinate columns (any order, named as in :data:`COORD_COLUMNS`)
            and an ``Image`` column of ``image_size**2`` space-separated pixel values 0–255.
        missing: ``"drop"`` keeps only faces with all 15 keypoints (seed 004, 2 140 of the
            7 049 faces); ``"mask"`` keeps every face with NaN for the missing values.
        image_size: side of the square images in pixels.

    Returns:
        ``(images, targets)``: ``(N, 1, S, S)`` float32 in [0, 1] and ``(N, 30)`` float32 in
        unit coordinates (see the module docstring).
    """
    if missing not in ("drop", "mask"):
        raise ValueError(f"missing must be 'drop' or 'mask', got {missing!r}")
    path = Path(path)
    try:
        return _read_rows(path, missing, image_size)
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a text CSV (it holds bytes that are not UTF-8 text)") \
            from None
    except csv.Error as exc:
        raise ValueError(f"{path} is not a valid CSV ({exc})") from None


def _read_rows(path: Path, missing: str, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    n_pixels = image_size * image_size
    images, targets = [], []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: empty file, expected a header with the keypoint columns")
        absent = [c for c in (*COORD_COLUMNS, "Image") if c not in header]
        if absent:
            raise ValueError(f"{path}: missing column(s) {', '.join(absent)}")
        coord_idx = [header.index(c) for c in COORD_COLUMNS]
        image_idx = header.index("Image")
        for line, row in enumerate(reader, start=2):
            if len(row) != len(header):
                raise ValueError(f"{path}, line {line}: {len(row)} fields, expected {len(header)}")
            try:
                coords = np.array([float(row[i]) if row[i].strip() else np.nan
                                   for i in coord_idx], dtype=np.float32)
            except ValueError:
                raise ValueError(
                    f"{path}, line {line}: a keypoint coordinate is not a number") from None
            if missing == "drop" and np.isnan(coords).any():
                continue
            try:
                pixels = np.array(row[image_idx].split(), dtype=np.float32)
            except ValueError:
                raise ValueError(
                    f"{path}, line {line}: Image holds a value that is not a number") from None
            if pixels.size != n_pixels:
                raise ValueError(f"{path}, line {line}: Image has {pixels.size} values, expected "
                                 f"{n_pixels} ({image_size}x{image_size})")
            images.append(pixels)
            targets.append(coords)
    if not images:
        raise ValueError(f"{path}: no usable faces (missing={missing!r})")
    X = np.stack(images).reshape(-1, 1, image_size, image_size) / np.float32(255.0)
    y = pixels_to_unit(np.stack(targets), image_size).astype(np.float32)
    return X.astype(np.float32), y


def keypoint_extra(image_size: int, *, masked: bool = False) -> dict:
    """What :class:`~lrtune.data.splits.Splits` carries in ``extra`` for keypoint data."""
    return {
        "flip_pairs": list(FLIP_PAIRS),
        "keypoint_names": list(KEYPOINT_NAMES),
        "image_size": image_size,
        "loss": "masked_mse" if masked else "mse",
    }


def load_facial_keypoints(data_dir: str | PathLike | None, *, missing: str = "drop",
                          seed: int = 0):
    """Kaggle's facial keypoints from ``data_dir/training.csv``, split 70/20/10 with ``seed``.

    Kaggle's ``test.csv`` has no keypoints, so the test part is cut from ``training.csv``
    too. With ``missing="mask"`` the targets hold NaN for unannotated keypoints and
    ``extra["loss"]`` is ``"masked_mse"`` (use :class:`MaskedMSELoss`).

    Raises:
        FileNotFoundError: no ``training.csv`` in ``data_dir``, naming where to get it.
    """
    from lrtune.data.splits import split_three_ways

    name = "facial-keypoints" if missing == "drop" else "facial-keypoints-masked"
    path = Path(data_dir).expanduser() / "training.csv" if data_dir is not None else None
    if path is None or not path.is_file():
        where = f"in {Path(data_dir).expanduser()}" if data_dir is not None else "(no --data-dir)"
        raise FileNotFoundError(
            f"{name}: training.csv not found {where}; download it from {KAGGLE_URL} "
            "(unzip training.zip) and pass its folder with --data-dir"
        )
    X, y = read_keypoints_csv(path, missing=missing)
    return split_three_ways(
        X, y, valid_fraction=0.2, test_fraction=0.1, seed=seed, stratify=False,
        task="regression", name=name, extra=keypoint_extra(X.shape[-1], masked=missing == "mask"),
    )

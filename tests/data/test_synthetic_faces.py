import numpy as np
import pytest
import torch

from lrtune.data import load_dataset
from lrtune.data.augment import HorizontalFlip
from lrtune.data.keypoints import FLIP_PAIRS, flip_permutation, pixels_to_unit, unit_to_pixels
from lrtune.data.synthetic_faces import (
    flip_style,
    make_synthetic_faces,
    render_faces,
    sample_keypoints,
    sample_style,
)

SIZE = 40


def faces(n=24, seed=0):
    rng = np.random.default_rng(seed)
    return sample_keypoints(rng, n, SIZE), sample_style(rng, n)


def mirror_keypoints(kp):
    """Mirror pixel keypoints by hand: x -> S-1-x, then swap left/right (see the Kaggle names)."""
    out = kp[:, flip_permutation(FLIP_PAIRS, 15)].copy()
    out[..., 0] = SIZE - 1 - out[..., 0]
    return out


def test_mirrored_rendering_is_rendering_of_mirrored_keypoints():
    kp, style = faces()
    mirrored_image = render_faces(kp, style, SIZE)[:, :, ::-1]
    rendered = render_faces(mirror_keypoints(kp), flip_style(style), SIZE)
    np.testing.assert_allclose(mirrored_image, rendered, atol=1e-4)
    # the faces are not symmetric, so the comparison has teeth
    assert np.abs(mirrored_image - render_faces(kp, style, SIZE)).max() > 0.3


def test_flip_augment_keeps_points_on_their_features():
    kp, style = faces()
    x = torch.from_numpy(render_faces(kp, style, SIZE)).unsqueeze(1)
    y = torch.from_numpy(pixels_to_unit(kp, SIZE).reshape(len(kp), 30).astype(np.float32))
    flip = HorizontalFlip(FLIP_PAIRS, generator=torch.Generator().manual_seed(1))
    x2, y2 = flip(x, y)
    flipped = (x2 != x).flatten(1).any(1).numpy()
    assert flipped.sum() == len(kp) // 2
    new_kp = unit_to_pixels(y2.numpy().reshape(-1, 15, 2).astype(np.float64), SIZE)
    new_style = {k: np.where(flipped, flip_style(style)[k], v) for k, v in style.items()}
    np.testing.assert_allclose(x2[:, 0].numpy(), render_faces(new_kp, new_style, SIZE), atol=1e-4)


def test_pupils_are_dark_where_the_eye_centres_are():
    rng = np.random.default_rng(5)
    kp, style = sample_keypoints(rng, 24, 64), sample_style(rng, 24)
    style["light_x"][:] = style["light_y"][:] = 0.0
    images = render_faces(kp, style, 64)
    rows = np.arange(len(kp))
    for eye in (0, 1):
        x, y = np.rint(kp[:, eye]).astype(int).T
        # the pupil (radius > 1.1 px here) covers the pixel nearest the eye centre
        assert (images[rows, y, x] <= style["iris"] + 0.12).all()
    assert (style["iris"] < style["skin"] - 0.3).all()


def test_deterministic_per_seed_and_varied():
    X1, y1 = make_synthetic_faces(16, size=SIZE, seed=2)
    X2, y2 = make_synthetic_faces(16, size=SIZE, seed=2)
    X3, _ = make_synthetic_faces(16, size=SIZE, seed=3)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(X1, X3)
    assert X1.shape == (16, 1, SIZE, SIZE)
    assert X1.min() >= 0.0
    assert X1.max() <= 1.0
    assert np.abs(y1).max() < 1.0  # every keypoint inside the image
    assert y1.std(axis=0).min() > 0.02  # every coordinate varies


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="n must be > 0, got 0"):
        make_synthetic_faces(0)
    with pytest.raises(ValueError, match="size must be >= 16 pixels, got 8"):
        make_synthetic_faces(4, size=8)


def test_registry_dataset():
    splits = load_dataset("synthetic-faces", seed=0)
    assert [len(p[0]) for p in (splits.train, splits.valid, splits.test)] == [2800, 600, 600]
    assert splits.input_shape == (1, 48, 48)
    assert splits.n_outputs == 30
    assert splits.task == "regression"
    assert len(splits.extra["keypoint_names"]) == 15
    assert splits.extra["flip_pairs"] == list(FLIP_PAIRS)

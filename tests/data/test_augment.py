import pytest
import torch

from lrtune.data import load_dataset
from lrtune.data.augment import HorizontalFlip, make_augment
from lrtune.data.keypoints import FLIP_PAIRS, flip_keypoints
from lrtune.data.splits import Splits


def keypoint_splits():
    x, y = torch.rand(6, 1, 8, 8), torch.rand(6, 30) * 2 - 1
    return Splits("kp", (x, y), (x, y), (x, y), task="regression",
                  extra={"flip_pairs": list(FLIP_PAIRS)})


def batch(n=9, layout=(1, 12, 12)):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, *layout, generator=g), torch.rand(n, 30, generator=g) * 2 - 1


def seeded(seed=0):
    return HorizontalFlip(FLIP_PAIRS, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("layout", [(1, 12, 12), (12, 12)])
def test_flips_a_random_half_correctly(layout):
    x, y = batch(layout=layout)
    x2, y2 = seeded()(x, y)
    flipped = (x2 != x).flatten(1).any(1)
    assert int(flipped.sum()) == 4  # half of 9, rounded down
    torch.testing.assert_close(x2[flipped], x[flipped].flip(-1))
    torch.testing.assert_close(y2[flipped], flip_keypoints(y[flipped], FLIP_PAIRS))
    torch.testing.assert_close(x2[~flipped], x[~flipped])
    torch.testing.assert_close(y2[~flipped], y[~flipped])


def test_does_not_modify_the_callers_tensors():
    x, y = batch()
    x0, y0 = x.clone(), y.clone()
    seeded()(x, y)
    assert torch.equal(x, x0)
    assert torch.equal(y, y0)


def test_flipping_twice_with_the_same_draw_is_the_identity():
    x, y = batch()
    flip = seeded(3)
    state = flip.state_dict()
    x1, y1 = flip(x, y)
    flip.load_state_dict(state)
    x2, y2 = flip(x1, y1)
    assert torch.equal(x2, x)
    assert torch.equal(y2, y)
    assert not torch.equal(x1, x)


def test_deterministic_given_a_generator_and_varies_between_batches():
    x, y = batch(n=32)
    a1, a2 = seeded(7), seeded(7)
    first = a1(x, y)[0]
    assert torch.equal(first, a2(x, y)[0])
    assert not torch.equal(first, a1(x, y)[0])  # a new half on the next batch


def test_global_rng_when_no_generator():
    x, y = batch(n=32)
    flip = HorizontalFlip(FLIP_PAIRS)
    torch.manual_seed(11)
    first = flip(x, y)[0]
    torch.manual_seed(11)
    assert torch.equal(first, flip(x, y)[0])


def test_missing_keypoints_stay_missing_after_the_swap():
    x, y = batch(n=2)
    y[:, 0:2] = float("nan")  # left eye centre unknown
    x2, y2 = HorizontalFlip(FLIP_PAIRS, generator=torch.Generator().manual_seed(0))(x, y)
    flipped = (x2 != x).flatten(1).any(1)
    assert torch.isnan(y2[flipped, 2:4]).all()  # it became the right eye centre
    assert not torch.isnan(y2[flipped, 0:2]).any()


def test_make_augment():
    assert make_augment("none", keypoint_splits()) is None
    flip = make_augment("flip", keypoint_splits(), generator=torch.Generator().manual_seed(0))
    assert isinstance(flip, HorizontalFlip)
    assert flip.flip_pairs == FLIP_PAIRS
    with pytest.raises(ValueError, match=r"augment 'flip' needs a keypoint dataset .*'digits'"):
        make_augment("flip", load_dataset("digits"))
    with pytest.raises(ValueError, match=r"unknown augment 'rotate'; choose from none, flip"):
        make_augment("rotate", keypoint_splits())


def test_bad_inputs():
    with pytest.raises(ValueError, match="flip_pairs must be disjoint"):
        HorizontalFlip([(0, 1), (1, 2)])
    with pytest.raises(ValueError, match="different batch sizes: 2 and 3"):
        seeded()(torch.rand(2, 1, 4, 4), torch.rand(3, 30))
    with pytest.raises(ValueError, match=r"x must be images .* got shape \(2, 16\)"):
        seeded()(torch.rand(2, 16), torch.rand(2, 30))

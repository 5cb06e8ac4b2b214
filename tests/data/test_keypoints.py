import csv

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lrtune.cli import main
from lrtune.data import load_dataset
from lrtune.data.keypoints import (
    COORD_COLUMNS,
    FLIP_PAIRS,
    KEYPOINT_NAMES,
    MaskedMSELoss,
    flip_keypoints,
    masked_mse,
    pixels_to_unit,
    read_keypoints_csv,
    unit_to_pixels,
)


def write_kaggle_csv(path, n, *, missing_rows=(), columns=None, size=96, seed=0):
    """A training.csv in Kaggle's format; returns (pixels (n, size, size), coords (n, 30))."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (n, size, size))
    coords = rng.uniform(10, 85, (n, 30)).round(4)
    columns = list(columns or [*COORD_COLUMNS, "Image"])
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for i in range(n):
            values = {c: "" if i in missing_rows and c.startswith("mouth") else str(float(v))
                      for c, v in zip(COORD_COLUMNS, coords[i], strict=True)}
            values["Image"] = " ".join(map(str, pixels[i].ravel()))
            writer.writerow([values[c] for c in columns])
    return pixels, coords


def test_reads_kaggle_csv_and_drops_incomplete_faces(tmp_path):
    pixels, coords = write_kaggle_csv(tmp_path / "training.csv", 5, missing_rows={1, 3})
    X, y = read_keypoints_csv(tmp_path / "training.csv")
    assert X.shape == (3, 1, 96, 96)
    assert y.shape == (3, 30)
    assert X.dtype == np.float32
    assert y.dtype == np.float32
    np.testing.assert_allclose(X[:, 0], pixels[[0, 2, 4]] / 255.0, rtol=1e-6)
    np.testing.assert_allclose(y, (coords[[0, 2, 4]] - 47.5) / 48.0, rtol=1e-5)


def test_mask_keeps_every_face_with_nan_for_missing(tmp_path):
    write_kaggle_csv(tmp_path / "training.csv", 4, missing_rows={2})
    _, y = read_keypoints_csv(tmp_path / "training.csv", missing="mask")
    assert y.shape == (4, 30)
    mouth = [i for i, c in enumerate(COORD_COLUMNS) if c.startswith("mouth")]
    assert np.isnan(y[2, mouth]).all()
    assert not np.isnan(np.delete(y, mouth, axis=1)).any()
    assert not np.isnan(y[[0, 1, 3]]).any()


def test_column_order_does_not_matter(tmp_path):
    write_kaggle_csv(tmp_path / "a.csv", 3)
    columns = ["Image", *reversed(COORD_COLUMNS)]
    write_kaggle_csv(tmp_path / "b.csv", 3, columns=columns)
    for a, b in zip(read_keypoints_csv(tmp_path / "a.csv"), read_keypoints_csv(tmp_path / "b.csv"),
                    strict=True):
        np.testing.assert_array_equal(a, b)


def test_csv_errors_name_file_and_line(tmp_path):
    path = tmp_path / "training.csv"
    write_kaggle_csv(path, 2, columns=[*COORD_COLUMNS[:-1], "Image"])
    with pytest.raises(ValueError, match=r"training.csv: missing column\(s\) mouth_center_bottom"):
        read_keypoints_csv(path)
    write_kaggle_csv(path, 2, size=90)
    with pytest.raises(ValueError, match=r"training.csv, line 2: Image has 8100 values, expected "
                                         r"9216 \(96x96\)"):
        read_keypoints_csv(path)
    path.write_text(",".join([*COORD_COLUMNS, "Image"]) + "\n" + "1," * 30 + "1 x\n")
    with pytest.raises(ValueError, match="line 2: Image holds a value that is not a number"):
        read_keypoints_csv(path)
    with pytest.raises(ValueError, match="missing must be 'drop' or 'mask', got 'zero'"):
        read_keypoints_csv(path, missing="zero")


def test_registry_splits_and_extra(tmp_path):
    write_kaggle_csv(tmp_path / "training.csv", 30, missing_rows={0, 1})
    splits = load_dataset("facial-keypoints", data_dir=tmp_path, seed=3)
    assert [len(p[0]) for p in (splits.train, splits.valid, splits.test)] == [19, 6, 3]
    assert splits.task == "regression"
    assert splits.n_outputs == 30
    assert splits.input_shape == (1, 96, 96)
    assert splits.extra["flip_pairs"] == list(FLIP_PAIRS)
    assert splits.extra["keypoint_names"] == list(KEYPOINT_NAMES)
    assert splits.extra["loss"] == "mse"
    masked = load_dataset("facial-keypoints-masked", data_dir=tmp_path)
    assert sum(len(p[0]) for p in (masked.train, masked.valid, masked.test)) == 30
    assert masked.extra["loss"] == "masked_mse"


def test_missing_training_csv_is_one_clear_cli_line(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match=r"training.csv not found in .*kaggle.com/c/facial"):
        load_dataset("facial-keypoints", data_dir=tmp_path)
    assert main(["find", "--dataset", "facial-keypoints", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "training.csv not found" in err[0]
    assert "--data-dir" in err[0]


def test_flip_pairs_are_the_left_right_mirror_of_each_other():
    names = KEYPOINT_NAMES
    paired = {i for pair in FLIP_PAIRS for i in pair}
    for left, right in FLIP_PAIRS:
        assert names[left].replace("left", "right") == names[right]
    sided = {i for i, n in enumerate(names) if "left" in n or "right" in n}
    assert paired == sided  # every sided keypoint has its partner; midline points stay
    assert len(paired) == 2 * len(FLIP_PAIRS)


def test_flip_keypoints_negates_x_swaps_pairs_and_is_an_involution():
    y = torch.randn(7, 30)
    flipped = flip_keypoints(y, FLIP_PAIRS)
    points, fpoints = y.view(7, 15, 2), flipped.view(7, 15, 2)
    torch.testing.assert_close(fpoints[:, 1], points[:, 0] * torch.tensor([-1.0, 1.0]))
    torch.testing.assert_close(fpoints[:, 10], points[:, 10] * torch.tensor([-1.0, 1.0]))
    torch.testing.assert_close(flip_keypoints(flipped, FLIP_PAIRS), y)
    assert not torch.equal(flipped, y)


def test_unit_coordinates_round_trip_and_mirror_exactly():
    pixels = np.array([0.0, 10.25, 95.0])
    np.testing.assert_allclose(unit_to_pixels(pixels_to_unit(pixels, 96), 96), pixels)
    np.testing.assert_allclose(pixels_to_unit(95.0 - pixels, 96), -pixels_to_unit(pixels, 96))


def test_masked_mse():
    pred, target = torch.randn(4, 6), torch.randn(4, 6)
    torch.testing.assert_close(masked_mse(pred, target), F.mse_loss(pred, target))
    target[0, :2] = float("nan")
    keep = ~torch.isnan(target)
    torch.testing.assert_close(masked_mse(pred, target), F.mse_loss(pred[keep], target[keep]))
    pred.requires_grad_(True)
    MaskedMSELoss()(pred, target).backward()
    assert torch.isfinite(pred.grad).all()
    assert (pred.grad[0, :2] == 0).all()

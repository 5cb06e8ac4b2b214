import numpy as np
import pytest
import torch

from lrtune.data.figures import plot_keypoints, plot_sample_grid
from lrtune.data.synthetic_faces import make_synthetic_faces
from lrtune.plots import pyplot

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_sample_grid_titles_are_class_names_and_png_is_written(tmp_path):
    X, y = torch.rand(12, 1, 28, 28), torch.tensor([0, 9, 3] * 4)
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
             "Sneaker", "Bag", "Ankle boot"]
    path = tmp_path / "images" / "fashion_samples.png"
    fig = plot_sample_grid(X, y, names, n_rows=2, n_cols=7, path=path, dpi=40)
    try:
        titles = [ax.get_title() for ax in fig.axes]
        assert titles[:3] == ["T-shirt/top", "Ankle boot", "Dress"]
        assert titles[12:] == ["", ""]  # empty cells when there are fewer images
        assert path.read_bytes().startswith(PNG_MAGIC)
    finally:
        pyplot().close(fig)


def test_keypoint_overlay_draws_truth_and_predictions(tmp_path, legends_clear, texts_of):
    X, y = make_synthetic_faces(5, size=32, seed=0)
    y[0, :2] = np.nan  # a missing keypoint is simply not drawn
    path = tmp_path / "faces.png"
    fig = plot_keypoints(X, y, predicted=torch.from_numpy(y) * 0.9, n=5, n_cols=3, path=path,
                         dpi=40)
    try:
        assert len(fig.axes) == 6
        points = fig.axes[1].collections
        assert len(points) == 2
        assert points[0].get_offsets().shape == (15, 2)
        np.testing.assert_allclose(points[0].get_offsets()[10], (y[1, 20:22] * 16 + 15.5))
        assert path.read_bytes().startswith(PNG_MAGIC)
        (legend,) = legends_clear(fig)  # above the faces, not over them
        assert texts_of(legend) == ["keypoints", "predicted"]
    finally:
        pyplot().close(fig)


def test_images_must_be_grayscale():
    with pytest.raises(ValueError, match=r"grayscale images .* got shape \(2, 3, 4, 4\)"):
        plot_sample_grid(torch.rand(2, 3, 4, 4), torch.tensor([0, 1]))

import pytest
import torch

from lrtune.models import build_model, count_parameters, keypoint_cnn, mlp


@pytest.mark.parametrize(("shape", "batch"), [
    ((1, 48, 48), (3, 1, 48, 48)), ((48, 48), (3, 48, 48)), ((1, 96, 96), (3, 1, 96, 96))])
def test_keypoint_cnn_maps_images_to_outputs(shape, batch):
    model = keypoint_cnn(shape, 30)
    assert model(torch.rand(batch)).shape == (3, 30)


def test_build_model_cnn_needs_an_image_shape_and_mlp_keeps_its_signature():
    cnn = build_model("cnn", 2304, 30, input_shape=(1, 48, 48))
    assert count_parameters(cnn) == count_parameters(keypoint_cnn((1, 48, 48), 30))
    with pytest.raises(ValueError, match=r"model 'cnn' needs images .* got sample shape \(64,\)"):
        build_model("cnn", 64, 10, input_shape=(64,))
    with pytest.raises(ValueError, match="got sample shape None"):
        build_model("cnn", 64, 10)
    model = build_model("mlp", 64, 10)
    assert count_parameters(model) == count_parameters(mlp(64, 10))
    with_shape = build_model("mlp", 64, 10, input_shape=(1, 8, 8))
    assert with_shape(torch.rand(2, 1, 8, 8)).shape == (2, 10)


def test_keypoint_cnn_rejects_bad_shapes():
    with pytest.raises(ValueError, match="too small for 3 poolings"):
        keypoint_cnn((1, 4, 4), 30)
    with pytest.raises(ValueError, match=r"input_shape must be \(C, H, W\) or \(H, W\)"):
        keypoint_cnn((1, 2, 8, 8), 30)
    with pytest.raises(ValueError, match="dropout must be in"):
        keypoint_cnn((1, 48, 48), 30, dropout=1.0)

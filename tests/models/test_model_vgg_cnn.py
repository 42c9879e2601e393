import pytest
import torch
import torch.nn as nn

from fedleak.models import build_model


def test_same_padding_keeps_size_into_first_dense(forward_backward):
    model = build_model("vgg_cnn", (3, 32, 32), 10, channels=(4, 8, 16), hidden=32)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (3, 4, (3, 3)), (4, 8, (3, 3)), (8, 16, (3, 3))]
    assert model.fc1.linear.in_features == 16 * 32 * 32
    assert model.fc1.linear is next(m for m in model.modules() if isinstance(m, nn.Linear))
    forward_backward(model, torch.randn(1, 3, 32, 32), 10)
    forward_backward(build_model("vgg_cnn", (1, 28, 28), 10, channels=(4, 8, 16), hidden=32),
                     torch.randn(2, 1, 28, 28), 10)


def test_bad_shape_and_channels_are_refused():
    with pytest.raises(ValueError, match="vgg_cnn takes images"):
        build_model("vgg_cnn", (28, 28), 10, channels=(4,), hidden=8)
    with pytest.raises(ValueError, match="vgg_cnn: channels must be"):
        build_model("vgg_cnn", (1, 28, 28), 10, channels=(), hidden=8)

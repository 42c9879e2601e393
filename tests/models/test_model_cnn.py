import pytest
import torch
import torch.nn as nn

from fedleak.models import build_model


def test_cifar_features_end_at_64x1x1_with_paper_parameter_count(forward_backward):
    model = build_model("cnn", (3, 32, 32), 10)
    assert model.classifier.in_features == 64
    # paper 001 §4.2: 660 gradient entries remain at 99% pruning, i.e. ~66k parameters
    assert sum(p.numel() for p in model.parameters()) == 65_962
    assert [m.stride for m in model.modules() if isinstance(m, nn.Conv2d)] == [(2, 2)] * 3
    forward_backward(model, torch.randn(4, 3, 32, 32), 10)
    forward_backward(model, torch.randn(1, 3, 32, 32), 10)


def test_mnist_size_needs_padding_and_works_with_it(forward_backward):
    with pytest.raises(ValueError, match=r"cnn: input_shape \(1, 28, 28\) is too small.*padding=2"):
        build_model("cnn", (1, 28, 28), 10)
    model = build_model("cnn", (1, 28, 28), 10, padding=2)
    assert model.classifier.in_features == 64 * 4 * 4  # 28 -> 14 -> 7 -> 4
    forward_backward(model, torch.randn(1, 1, 28, 28), 10)


def test_non_image_shape_is_refused():
    with pytest.raises(ValueError, match=r"cnn takes images of shape \(channels, height, width\); got input_shape"):
        build_model("cnn", (784,), 10)


def test_double_backward_matches_finite_differences(second_order_check):
    torch.manual_seed(0)
    second_order_check(build_model("cnn", (3, 32, 32), 10), torch.rand(1, 3, 32, 32), torch.tensor([3]))


def test_optional_norm_sits_between_conv_and_relu():
    for norm, kind in (("batch", nn.BatchNorm2d), ("group", nn.GroupNorm), ("layer", nn.GroupNorm)):
        model = build_model("cnn", (1, 32, 32), 10, padding=2, norm=norm)
        assert list(model.block2._modules) == ["conv", "norm", "relu"] and isinstance(model.block2.norm, kind)
    assert model.block2.norm.num_groups == 1  # layer norm: one group over (C, H, W)
    assert list(build_model("cnn", (1, 32, 32), 10)._modules["block1"]._modules) == ["conv", "relu"]
    with pytest.raises(ValueError, match="cnn: unknown norm 'instance'"):
        build_model("cnn", (1, 32, 32), 10, norm="instance")

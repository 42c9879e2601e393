import pytest
import torch
import torch.nn as nn

from fedleak.models import build_model


def test_default_is_cifar_resnet18():
    model = build_model("resnet18", (3, 32, 32), 10)
    assert sum(p.numel() for p in model.parameters()) == 11_173_962  # the standard CIFAR ResNet-18
    assert model.stem.conv.kernel_size == (3, 3) and model.stem.conv.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert [name for name, _ in model.named_children()] == [
        "stem", "layer1", "layer2", "layer3", "layer4", "pool", "flatten", "classifier"]


@pytest.mark.parametrize("norm", ["batch", "group"])
@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28)])
def test_forward_backward(norm, shape, forward_backward):
    model = build_model("resnet18", shape, 10, norm=norm, width=8)
    norms = [m for m in model.modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm))]
    assert len(norms) == 1 + 4 * 4 + 3  # stem, two per block, three projection shortcuts
    assert all(isinstance(m, nn.BatchNorm2d if norm == "batch" else nn.GroupNorm) for m in norms)
    forward_backward(model, torch.randn(1, *shape), 10)
    forward_backward(model, torch.randn(3, *shape), 10)


def test_group_norm_groups():
    model = build_model("resnet18", (3, 32, 32), 10, norm="group", width=8)
    assert model.stem.norm.num_groups == 8
    assert model.layer4[1].norm2.num_groups == 32 and model.layer4[1].norm2.num_channels == 64


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="resnet18: unknown norm 'instance'; valid norms: batch, group, layer"):
        build_model("resnet18", (3, 32, 32), 10, norm="instance")
    assert build_model("resnet18", (3, 32, 32), 10, norm="layer", width=8).stem.norm.num_groups == 1
    with pytest.raises(ValueError, match=r"resnet18: input_shape \(3, 8, 8\) leaves a 1x1 map"):
        build_model("resnet18", (3, 8, 8), 10, width=8)
    build_model("resnet18", (3, 8, 8), 10, width=8, norm="group")(torch.randn(1, 3, 8, 8))


def test_double_backward_with_group_norm(second_order_check):
    torch.manual_seed(0)
    model = build_model("resnet18", (3, 16, 16), 10, norm="group", width=4)
    second_order_check(model, torch.rand(1, 3, 16, 16), torch.tensor([1]))

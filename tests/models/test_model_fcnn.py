import pytest
import torch
import torch.nn as nn

from fedleak.models import build_model


def test_table7_widths_by_default():
    model = build_model("fcnn", (1, 28, 28), 10)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (784, 1000), (1000, 3000), (3000, 3000), (3000, 2000), (2000, 1000), (1000, 10)]


def test_first_linear_has_bias_and_is_followed_by_relu(forward_backward):
    model = build_model("fcnn", (3, 32, 32), 10, widths=(64, 32))
    modules = list(model.modules())
    first = next(i for i, m in enumerate(modules) if isinstance(m, nn.Linear))
    assert modules[first] is model.fc1.linear and modules[first].bias is not None
    assert isinstance(modules[first + 1], nn.ReLU)
    assert model.classifier is [m for m in modules if isinstance(m, nn.Linear)][-1]
    forward_backward(model, torch.randn(1, 3, 32, 32), 10)
    forward_backward(model, torch.randn(5, 3, 32, 32), 10)


def test_bad_widths_are_refused():
    with pytest.raises(ValueError, match="fcnn: widths must be"):
        build_model("fcnn", (1, 28, 28), 10, widths=(64, 0))

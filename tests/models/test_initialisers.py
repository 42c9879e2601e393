"""Paper 002 Table 2's initialisers on every linear layer."""
import pytest
import torch

from fedleak.models import build_model
from fedleak.models.initialisers import initialise_linear_layers


def test_initialisers_draw_every_layer_with_zero_biases_except_pytorch_default():
    model = build_model("fcnn", (1, 8, 8), 10, widths=(200, 32))
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    initialise_linear_layers(model, "gaussian_2", seed=0)
    assert all(float(m.bias.detach().abs().max()) == 0 for m in linears)
    assert all(abs(float(m.weight.detach().std()) - 2) < 0.2 for m in linears)
    first = linears[0].weight.detach().clone()
    initialise_linear_layers(model, "gaussian_2", seed=0)
    assert torch.equal(linears[0].weight, first)  # drawn from the seed
    initialise_linear_layers(model, "pytorch_default", seed=0)
    assert all(float(m.bias.detach().abs().max()) > 0 for m in linears)  # the PyTorch row keeps non-zero biases


@pytest.mark.parametrize("name", ["gaussian_x", "gaussian_-1", "kaiming"])
def test_an_unknown_initialiser_is_named(name):
    model = build_model("fcnn", (1, 8, 8), 10, widths=(20,))
    with pytest.raises(ValueError, match=f"unknown initialiser '{name}'"):
        initialise_linear_layers(model, name, seed=0)

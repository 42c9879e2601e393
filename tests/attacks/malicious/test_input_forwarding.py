"""Convolutional (paper 002 §7) and fully connected (App. B) input forwarding, measured on real images."""
import pytest
import torch
from skimage import data as skdata

from fedleak.attacks.analytic import extract_at_layer, map_to_input
from fedleak.attacks.malicious.forwarding import InputForwardingConfig, input_forwarding
from fedleak.attacks.malicious.trap_weights import TrapWeightsConfig, trap_weights
from fedleak.data import load_dataset
from fedleak.fl.training import batch_gradients
from fedleak.cases.scoring import score
from fedleak.models import build_model

COLOUR = (3, 32, 32)


def astronaut() -> torch.Tensor:
    return torch.from_numpy(skdata.astronaut()[90:122, 180:212].copy()).permute(2, 0, 1).float().div(255).unsqueeze(0)


def layer_input(model, layer, x):
    seen = {}

    def keep(module, args, output):
        seen["x"] = args[0]

    hook = model.get_submodule(layer).register_forward_hook(keep)
    with torch.no_grad():
        model(x)
    hook.remove()
    return seen["x"]


def test_convolutions_carry_a_colour_image_unaltered_to_the_first_linear_layer():
    torch.manual_seed(0)
    model = build_model("vgg_cnn", COLOUR, 10, channels=(8, 16, 16), hidden=200)
    forwarded, secret = input_forwarding(model, InputForwardingConfig(COLOUR))
    x = astronaut()
    assert x.std() > 0.1  # a real photo crop, not a flat patch
    received = layer_input(forwarded, secret.layer, x)
    assert secret.layer == "fc1.linear"
    assert torch.equal(map_to_input(received, secret.input_map), x)
    carried = torch.zeros(received.shape[1], dtype=torch.bool)
    carried[secret.input_map.positions] = True
    assert received[0, ~carried].eq(0).all()  # the noise maps are zeroed by the last conv's ReLU
    # B = 1: the passive attack at fc1 then returns the image
    reconstruction = extract_at_layer(batch_gradients(forwarded, x, torch.tensor([3])), secret)
    assert reconstruction.declared.all()
    assert torch.allclose(reconstruction.inputs, x.expand_as(reconstruction.inputs), atol=1e-5)


def test_fully_connected_forwarding_moves_extraction_to_a_later_layer():
    images = load_dataset("bundled")
    x, y = images[torch.arange(20)]
    torch.manual_seed(0)
    model = build_model("fcnn", (1, 28, 28), 10, widths=(800, 1500, 32))
    trapped, secret = trap_weights(model, TrapWeightsConfig((1, 28, 28), scale_factor=0.8, layer="fc2.linear"))
    received = layer_input(trapped, "fc2.linear", x)
    assert torch.allclose(map_to_input(received, secret.input_map), x, atol=1e-6)
    grads = batch_gradients(trapped, x, y)
    reconstruction = extract_at_layer(grads, secret)
    assert score(reconstruction, x)["R"] >= 0.5


def test_layers_that_cannot_forward_are_named():
    model = build_model("cnn", COLOUR, 10)  # stride-2 unpadded convolutions
    with pytest.raises(ValueError, match=r"'block1.conv'.*stride \(2, 2\)"):
        input_forwarding(model, InputForwardingConfig(COLOUR))
    narrow = build_model("vgg_cnn", COLOUR, 10, channels=(2, 8), hidden=10)
    with pytest.raises(ValueError, match="2 filters, fewer than the 3 channels"):
        input_forwarding(narrow, InputForwardingConfig(COLOUR))

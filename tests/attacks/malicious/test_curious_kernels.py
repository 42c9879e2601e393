"""Scaled identity convolution kernels (paper 000 App. A.1.2): the effect on what the first linear layer sees."""
import torch
from skimage import data as skdata

from fedleak.attacks.analytic import extract_at_layer
from fedleak.attacks.malicious.curious_kernels import CuriousKernelsConfig, curious_kernels
from fedleak.fl.training import batch_gradients
from fedleak.models import build_model

COLOUR = (3, 32, 32)


def filter_ratio(conv: torch.nn.Conv2d) -> torch.Tensor:
    """Largest entry over the sum of the others, per filter (the quick check of paper 000 §3.2)."""
    flat = conv.weight.detach().abs().flatten(1)
    top = flat.amax(dim=1)
    return top / (flat.sum(dim=1) - top)


def test_identity_kernels_pass_a_scaled_copy_that_extraction_rescales():
    image = torch.from_numpy(skdata.astronaut()[200:232, 200:232].copy()).permute(2, 0, 1).float().div(255)
    x = image.unsqueeze(0)
    torch.manual_seed(0)
    model = build_model("vgg_cnn", COLOUR, 10, channels=(6, 12), hidden=100)
    curious, secret = curious_kernels(model, CuriousKernelsConfig(COLOUR, scale=0.5))
    seen = {}

    def keep(module, args, output):
        seen["x"] = args[0]

    curious.get_submodule("fc1.linear").register_forward_hook(keep)
    with torch.no_grad():
        curious(x)
    copies = seen["x"].reshape(12, 32, 32)
    expected = (0.5 ** 2) * image[torch.arange(12) % 3]  # channel k holds input channel k mod 3, times c^L
    assert torch.allclose(copies, expected, atol=1e-7)
    assert torch.isinf(filter_ratio(curious.block1.conv)).all()
    assert torch.isfinite(filter_ratio(model.block1.conv)).all()
    reconstruction = extract_at_layer(batch_gradients(curious, x, torch.tensor([0])), secret)
    assert len(reconstruction.meta['rows']) > 0 and reconstruction.declared.all()
    assert torch.allclose(reconstruction.inputs, x.expand_as(reconstruction.inputs), atol=1e-5)

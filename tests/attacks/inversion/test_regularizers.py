"""The image priors (fedleak.attacks.inversion.regularizers): total variation's value is the expression's bit for
bit, and its gradient (written by hand) is autograd's up to float rounding, to the second derivative."""
import torch

from fedleak.attacks.inversion.regularizers import total_variation


def _expression(x):
    dx = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().flatten(1).mean(1)
    dy = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().flatten(1).mean(1)
    return dx + dy


def test_total_variation_and_its_gradient_equal_autograds():
    torch.manual_seed(0)
    for shape in [(4, 3, 8, 8), (2, 1, 5, 3)]:
        x = torch.rand(shape, requires_grad=True)
        weights = torch.rand(shape[0])
        ours, theirs = total_variation(x), _expression(x)
        assert torch.equal(ours, theirs)
        (grad,) = torch.autograd.grad((ours * weights).sum(), x)
        (expected,) = torch.autograd.grad((theirs * weights).sum(), x)
        assert torch.allclose(grad, expected, rtol=1e-6, atol=1e-7 * float(expected.abs().max()))
    x = torch.rand(2, 2, 5, 4, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(total_variation, x)
    assert torch.autograd.gradgradcheck(total_variation, x)

import pytest
import torch
import torch.nn.functional as F

from fedleak.fl.constant_layers import FixedConv, ReLU, transposed_conv


@pytest.mark.parametrize("size,stride,padding,dilation,groups", [
    (8, 2, 1, 1, 1),  # the output misses the input's last row and column: output padding 1
    (9, 2, 0, 2, 2),
    (14, 2, 0, 1, 1),  # the cnn's second layer
    (7, 1, 1, 1, 1),
])
def test_transposed_convolution_is_the_convolutions_input_gradient(size, stride, padding, dilation, groups):
    """``transposed_conv`` is ``conv2d_input`` (the same sum; mkldnn may add it in another order), and
    :class:`FixedConv`'s first, second and third derivatives in the input are the plain convolution's."""
    torch.manual_seed(5)
    weight = torch.randn(6, 4 // groups, 3, 3, dtype=torch.double)
    x = torch.rand(2, 4, size, size, dtype=torch.double, requires_grad=True)
    options = ((stride,) * 2, (padding,) * 2, (dilation,) * 2, groups)
    out = F.conv2d(x, weight, None, *options)
    cotangent = torch.randn_like(out, requires_grad=True)
    expected = torch.nn.grad.conv2d_input(x.shape, weight, cotangent, *options)
    torch.testing.assert_close(transposed_conv(cotangent, weight, x.shape, *options), expected, rtol=1e-12,
                               atol=1e-12)

    def fixed(t):
        return FixedConv.apply(t, weight, None, *options)

    assert torch.equal(fixed(x), out)
    torch.autograd.gradcheck(fixed, x)
    torch.autograd.gradgradcheck(fixed, x)
    derivatives = []
    for forward in (fixed, lambda t: F.conv2d(t, weight, None, *options)):
        (dx,) = torch.autograd.grad(forward(x), x, cotangent, create_graph=True)
        (dc,) = torch.autograd.grad(dx.square().sum(), cotangent, create_graph=True)
        derivatives.append((dx, dc, torch.autograd.grad(dc.square().sum(), cotangent)[0]))
    for ours, theirs in zip(*derivatives):
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


def test_relu_equals_autograds_to_the_third_derivative():
    """The ReLU the engine runs when the gradients are differentiated again: the values and derivatives of
    torch.relu's (it only leaves out the zero gradient autograd gives the ReLU's output)."""

    torch.manual_seed(4)
    x = torch.randn(3, 5, dtype=torch.double, requires_grad=True)
    torch.autograd.gradcheck(ReLU.apply, x)
    torch.autograd.gradgradcheck(ReLU.apply, x)
    cotangent = torch.randn(3, 5, dtype=torch.double, requires_grad=True)
    derivatives = []
    for relu in (ReLU.apply, torch.relu):
        (dx,) = torch.autograd.grad(relu(x).sin().sum(), x, create_graph=True)
        (dc,) = torch.autograd.grad(torch.autograd.grad(relu(x), x, cotangent, create_graph=True)[0].square().sum(),
                                    cotangent, create_graph=True)
        derivatives.append((relu(x), dx, dc, torch.autograd.grad(dc.square().sum(), cotangent)[0]))
    for ours, theirs in zip(*derivatives):
        assert torch.equal(ours, theirs)

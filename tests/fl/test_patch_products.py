"""A convolution's two products with its input's patches (fedleak.fl.patch_products): the values and the
derivatives of the plain products, the patches' two gradients summed in one product only within one backward
pass."""
import torch

from fedleak.fl.patch_products import PatchProducts


def _objective(products, patches, weight):
    """An inversion-like objective: the output feeds the gradient ``g`` at the output, and both the per-sample
    weight gradient ``g P^T`` and the output enter the value."""
    out = products.output(patches) if products else torch.bmm(weight.expand(len(patches), *weight.shape), patches)
    g = torch.tanh(out) * 0.5 + out.square() * 0.1
    grads = products.weight_gradient(g, patches, out) if products else torch.bmm(g, patches.transpose(1, 2))
    return (grads.sin().sum((1, 2)) + out.cos().sum((1, 2))).sum(), out, grads


def test_patch_products_equal_the_plain_products_to_the_second_derivative():
    torch.manual_seed(0)
    weight = torch.randn(4, 6, dtype=torch.double)
    patches = torch.randn(3, 6, 5, dtype=torch.double, requires_grad=True)
    ours, plain = _objective(PatchProducts(weight), patches, weight), _objective(None, patches, weight)
    assert torch.equal(ours[1], plain[1]) and torch.equal(ours[2], plain[2])
    (grad,) = torch.autograd.grad(ours[0], patches, create_graph=True)
    (expected,) = torch.autograd.grad(plain[0], patches, create_graph=True)
    assert torch.allclose(grad, expected, rtol=1e-12, atol=1e-12)
    cotangent = torch.randn_like(grad)
    (second,) = torch.autograd.grad(grad, patches, cotangent)
    (expected_second,) = torch.autograd.grad(expected, patches, cotangent)
    assert torch.allclose(second, expected_second, rtol=1e-10, atol=1e-10)
    torch.autograd.gradgradcheck(lambda p: _objective(PatchProducts(weight), p, weight)[0], patches)


def test_a_pass_that_skips_the_output_leaves_nothing_for_the_next():
    """A backward pass that reaches the weight gradient but not the output (here: to ``g`` only) must not hand
    its patches' gradient to a later pass over the same graph."""
    torch.manual_seed(1)
    weight = torch.randn(4, 6, dtype=torch.double)
    patches = torch.randn(3, 6, 5, dtype=torch.double, requires_grad=True)
    products = PatchProducts(weight)
    out = products.output(patches)
    g = torch.randn(3, 4, 5, dtype=torch.double, requires_grad=True)
    grads = products.weight_gradient(g, patches, out)
    torch.autograd.grad(grads.sum(), g, retain_graph=True)
    (grad,) = torch.autograd.grad(out.sum(), patches)
    assert torch.allclose(grad, weight.sum(0).view(1, -1, 1).expand_as(patches), rtol=1e-12, atol=1e-12)

"""DAGER's span check (Petrov et al. 2024 §4, Eq. 4): a linear layer's weight gradient spans exactly its inputs."""
import torch

from fedleak.attacks.dager_span import LayerSpan, input_basis


def test_a_weight_gradient_spans_its_inputs_and_nothing_else():
    torch.manual_seed(0)
    inputs, upstream = torch.randn(3, 16), torch.randn(3, 8)  # 3 input vectors of width 16, their output gradients
    grad = upstream.T @ inputs  # dL/dW of Y = X W^T, (out, in)
    basis, rank = input_basis(grad.T, 1e-6, most=3)
    assert rank == 3 and basis.shape == (16, 3)
    layer = LayerSpan(torch.nn.Identity(), [(basis, None)], rank, 16, False)
    inside = torch.randn(5, 3) @ inputs  # any combination of the inputs is in the span
    assert layer.distance(inside).max() < 1e-6
    assert layer.distance(torch.randn(5, 16)).min() > 0.1  # a random vector of 16 dimensions is not
    _, capped = input_basis(grad.T, 1e-6, most=2)
    assert capped == 2  # never more than the B·n inputs the server knows of

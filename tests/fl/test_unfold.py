"""The patches of a convolution and their sum back into an image (fedleak.fl.unfold): bit for bit ATen's unfold and
fold (on the CPU, an index_select and an index_add_ in col2im's order), and twice differentiable."""
import pytest
import torch
import torch.nn.functional as F

from fedleak.fl.unfold import fold_patches, unfold_patches


@pytest.mark.parametrize("shape, kernel, stride, padding", [
    ((128, 16, 14, 14), 5, 2, 0), ((8, 64, 16, 16), 3, 1, 1), ((80, 8, 15, 15), 3, 2, 1), ((2, 3, 9, 9), 4, 3, 2),
    ((16, 3, 32, 32), 5, 2, 0), ((3, 2, 10, 7), 3, 2, 1)])
def test_fold_and_unfold_are_bit_for_bit_atens(shape, kernel, stride, padding):
    torch.manual_seed(0)
    x = torch.randn(*shape)
    columns = F.unfold(x, kernel, stride=stride, padding=padding) * 3.7
    size, k, s, p = shape[2:], (kernel, kernel), (stride, stride), (padding, padding)
    assert torch.equal(unfold_patches(x, k, s, p), F.unfold(x, kernel, stride=stride, padding=padding))
    assert torch.equal(fold_patches(columns, size, k, s, p), F.fold(columns, size, kernel, stride=stride,
                                                                     padding=padding))
    strided = columns.transpose(1, 2).contiguous().transpose(1, 2)  # a layout the fold must read as it is
    assert torch.equal(fold_patches(strided, size, k, s, p), F.fold(columns, size, kernel, stride=stride,
                                                                     padding=padding))


def test_fold_and_unfold_are_twice_differentiable():
    x = torch.randn(2, 3, 7, 7, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: unfold_patches(t, (3, 3), (2, 2), (1, 1)), (x,))
    assert torch.autograd.gradgradcheck(lambda t: unfold_patches(t, (3, 3), (2, 2), (1, 1)), (x,))
    columns = torch.randn(2, 27, 16, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: fold_patches(t, (7, 7), (3, 3), (2, 2), (1, 1)), (columns,))
    assert torch.autograd.gradgradcheck(lambda t: fold_patches(t, (7, 7), (3, 3), (2, 2), (1, 1)), (columns,))


def test_fold_is_bit_for_bit_atens_on_two_threads():
    """The fold's sums keep col2im's order when the intra-op threads split the work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x = torch.randn(128, 16, 14, 14)
        columns = F.unfold(x, 5, stride=2) * 1.3
        assert torch.equal(fold_patches(columns, (14, 14), (5, 5), (2, 2), (0, 0)), F.fold(columns, (14, 14), 5,
                                                                                             stride=2))
    finally:
        torch.set_num_threads(threads)

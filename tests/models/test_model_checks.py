import pytest
import torch

from fedleak.models import check_batch_shape


def test_matching_batch_passes():
    check_batch_shape((1, 28, 28), torch.zeros(4, 1, 28, 28))


def test_wrong_input_shape_names_both_shapes():
    with pytest.raises(ValueError) as error:
        check_batch_shape((1, 28, 28), torch.zeros(4, 3, 32, 32))
    assert str(error.value) == "model expects inputs of shape (1, 28, 28) but data has (3, 32, 32)"


def test_missing_batch_dimension_and_wrong_rank_are_named():
    with pytest.raises(ValueError, match=r"data of shape \(1, 28, 28\) has no batch dimension"):
        check_batch_shape((1, 28, 28), torch.zeros(1, 28, 28))
    with pytest.raises(ValueError, match=r"expects inputs of shape \(250,\) but data is a tensor of shape \(2, 250"):
        check_batch_shape((250,), torch.zeros(2, 250, 3))

import pytest
import torch

from fedleak.models import build_model
from fedleak.models.attention import Attention

SMALL = dict(depth=2, width=32, heads=4)


def test_default_size_matches_paper_pruning_count():
    model = build_model("vit_small", (3, 32, 32), 10)
    count = sum(p.numel() for p in model.parameters())
    # paper 001 §4.2: 16,092 gradient entries remain at 99% pruning, i.e. ~1.61M parameters
    assert abs(count / 100 - 16_092) / 16_092 < 0.01
    assert len(model.blocks) == 4 and model.blocks[0].attn.heads == 16
    assert model.embed.pos_embedding.shape == (1, 64 + 1, 256)


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28)])
def test_forward_backward(shape, forward_backward):
    model = build_model("vit_small", shape, 10, **SMALL)
    attentions = [m for m in model.modules() if isinstance(m, Attention)]
    assert attentions == [model.blocks[0].attn, model.blocks[1].attn]
    forward_backward(model, torch.randn(1, *shape), 10)
    forward_backward(model, torch.randn(2, *shape), 10)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match=r"vit_small: input_shape \(3, 30, 30\) has height/width not divisible"):
        build_model("vit_small", (3, 30, 30), 10)
    with pytest.raises(ValueError, match="vit_small: width=30 is not divisible by heads=4"):
        build_model("vit_small", (3, 32, 32), 10, depth=1, width=30, heads=4)


def test_double_backward_matches_finite_differences(second_order_check):
    torch.manual_seed(0)
    model = build_model("vit_small", (3, 16, 16), 10, **SMALL)
    second_order_check(model, torch.rand(1, 3, 16, 16), torch.tensor([7]))

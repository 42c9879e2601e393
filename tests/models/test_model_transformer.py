import pytest
import torch

from fedleak.models import build_model


def test_forward_backward_on_token_sequences(forward_backward):
    model = build_model("text_transformer", (12,), 4, vocab_size=50)
    assert model.embed.token.weight.shape == (50, 64) and len(model.blocks) == 2
    assert model.blocks[0].attn.heads == 4
    forward_backward(model, torch.randint(0, 50, (1, 12)), 4)
    forward_backward(model, torch.randint(0, 50, (3, 12)), 4)


def test_positions_matter():
    torch.manual_seed(0)
    model = build_model("text_transformer", (6,), 3, vocab_size=20)
    tokens = torch.tensor([[1, 2, 3, 4, 5, 6]])
    assert not torch.allclose(model(tokens), model(tokens.flip(1)))


def test_image_shape_is_refused():
    with pytest.raises(ValueError, match=r"text_transformer takes token sequences"):
        build_model("text_transformer", (3, 32, 32), 10)


def test_double_backward_through_embeddings(second_order_check):
    torch.manual_seed(0)
    model = build_model("text_transformer", (8,), 4, vocab_size=30, width=16)
    embeddings = model.embed(torch.randint(0, 30, (1, 8))).detach()
    second_order_check(model[1:], embeddings, torch.tensor([2]))

import pytest
import torch

from fedleak.models import build_model


def test_binary_model_outputs_one_logit_from_flattened_embeddings(forward_backward):
    model = build_model("imdb_fc", (20,), 2, vocab_size=100, embed_dim=8, hidden=16)
    assert model.fc1.linear.in_features == 20 * 8
    assert model.classifier.out_features == 1
    tokens = torch.randint(0, 100, (3, 20))
    logits = forward_backward(model, tokens, 1)
    # the flattened input of fc1 is exactly the concatenated token embeddings (what extraction recovers)
    assert torch.equal(model.flatten(model.embedding(tokens))[1], model.embedding.weight[tokens[1]].reshape(-1))
    loss = torch.nn.BCEWithLogitsLoss()(logits.squeeze(1), torch.tensor([0.0, 1.0, 1.0]))
    assert torch.isfinite(loss)
    forward_backward(model, tokens[:1], 1)


def test_paper_defaults_and_multiclass_outputs(forward_backward):
    assert build_model("imdb_fc", (4,), 2).embedding.weight.shape == (10_000, 250)
    model = build_model("imdb_fc", (6,), 5, vocab_size=50, embed_dim=4, hidden=8)
    forward_backward(model, torch.randint(0, 50, (2, 6)), 5)


def test_image_shape_is_refused():
    with pytest.raises(ValueError, match=r"imdb_fc takes token sequences of shape \(seq_len,\)"):
        build_model("imdb_fc", (1, 28, 28), 2)

"""The embedding+linear language model: (B, L, V) logits, trained on next tokens; what the manipulations and the
first-contact chain do with it."""
from __future__ import annotations

import pytest
import torch

from fedleak.attacks import AttackContext, prepare
from fedleak.detection import SIGNATURES, first_contact_chain
from fedleak.fl.training import batch_gradients, task_loss
from fedleak.models import build_model


def test_logits_over_the_vocabulary_at_every_position():
    model = build_model("embedding_lm", (12,), 20, embed_dim=8)
    assert [name for name, _ in model.named_children()] == ["embedding", "classifier"]
    assert model.embedding.num_embeddings == 20  # one vocabulary in and out by default
    tokens = torch.randint(0, 20, (3, 12))
    assert model(tokens).shape == (3, 12, 20)
    deep = build_model("embedding_lm", (12,), 20, vocab_size=30, embed_dim=8, hidden=16)
    assert deep.hidden.linear.out_features == 16 and deep.embedding.num_embeddings == 30
    logits = deep(torch.randint(0, 30, (2, 12)))
    assert logits.shape == (2, 12, 20)
    task_loss(deep, logits, torch.randint(0, 20, (2, 12))).backward()
    assert all(torch.isfinite(p.grad).all() for p in deep.parameters())


def test_it_learns_a_next_token_rule():
    torch.manual_seed(0)
    model = build_model("embedding_lm", (8,), 10, embed_dim=16, hidden=32)
    x = torch.randint(0, 10, (256, 8))
    y = (x + 1) % 10  # the next token is the successor
    optimizer = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(150):
        optimizer.zero_grad()
        task_loss(model, model(x), y).backward()
        optimizer.step()
    assert float((model(x).argmax(-1) == y).float().mean()) > 0.95


def test_bad_shapes_and_options_are_refused():
    with pytest.raises(ValueError, match=r"embedding_lm takes token sequences of shape \(seq_len,\)"):
        build_model("embedding_lm", (1, 8, 8), 10)
    with pytest.raises(ValueError, match="hidden"):
        build_model("embedding_lm", (8,), 10, hidden=-1)


def test_model_inconsistency_silences_it_on_token_ids_and_the_chain_refuses_the_manipulations():
    torch.manual_seed(0)
    model = build_model("embedding_lm", (15,), 16, embed_dim=16, hidden=32)
    context = AttackContext((15,), 16, clients=(0, 1))
    sent, _ = prepare("model_inconsistency", model, context, target=0, inner="class_fishing",
                      inner_options={"target_class": 0})
    tokens, labels = torch.randint(0, 16, (32, 15)), torch.randint(0, 16, (32, 15))
    moving = {k for k, g in batch_gradients(sent[1], tokens, labels).items() if g.abs().max() > 0}
    assert moving == {"classifier.bias"}  # the silenced client adds nothing but label counts
    fishing, _ = prepare("class_fishing", model, AttackContext((15,), 16), target_class=0)
    chain = first_contact_chain(model, samples=32, names=SIGNATURES)  # degenerate_rows, demoted, refuses them
    for malicious in (fishing, sent[0], sent[1]):
        assert chain.refusal(chain.check(malicious, (tokens, labels), remember=False)) is not None
    assert chain.refusal(chain.check(model, (tokens, labels), remember=False)) is None

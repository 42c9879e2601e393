"""Passive text extraction (paper 002 Table 3, "passive"): the model unchanged, tokens read back through its own
embedding table and scored against the true sentences."""
import pytest
import torch

from fedleak.attacks import ATTACKS, AttackContext
from fedleak.cases.batch import attack_batches
from fedleak.checks import NotApplicable
from fedleak.models import build_model


def test_passive_text_reads_true_sentences_of_a_small_batch_through_the_models_own_table():
    torch.manual_seed(0)
    model = build_model("imdb_fc", (10,), 2, vocab_size=50, embed_dim=8, hidden=200)
    x = torch.randint(1, 50, (3, 10), generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 0])
    attack = ATTACKS.build("passive_text")
    sent, secret = attack.prepare(model, AttackContext((10,)))
    assert sent is model and torch.equal(secret.table, model.embedding.weight)
    (outcome,) = attack_batches(attack, sent, secret, [(x, y)])
    assert outcome.scores["R"] > 0 and outcome.scores["R"] == outcome.scores["recall"]
    assert 0 < outcome.scores["P"] <= outcome.scores["A"] <= 1
    declared = outcome.reconstruction.declared_points()
    assert (declared.unsqueeze(1) == x.unsqueeze(0)).all(dim=2).any(dim=1).all()  # every declared row is true


def test_passive_text_refuses_an_image_model():
    with pytest.raises(NotApplicable, match="not a text model"):
        ATTACKS.build("passive_text").prepare(build_model("fcnn", (1, 8, 8), 10, widths=(20,)),
                                             AttackContext((1, 8, 8)))

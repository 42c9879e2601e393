import pytest
import torch

from fedleak.metrics.text import pairing, rouge_n, text_scores


def test_rouge_by_hand():
    assert rouge_n([1, 2, 3, 4], [1, 2, 3, 4], 1) == 1.0
    # unigrams: 2 of 4 shared -> P = R = 0.5; bigrams: (1, 2) of 3 -> 1/3
    assert rouge_n([1, 2, 7, 8], [1, 2, 3, 4], 1) == pytest.approx(0.5)
    assert rouge_n([1, 2, 7, 8], [1, 2, 3, 4], 2) == pytest.approx(1 / 3)
    assert rouge_n([-1, -1], [1, 2], 1) == 0.0


def test_one_recovered_sentence_cannot_stand_for_two():
    truth = torch.tensor([[1, 2, 3], [1, 2, 3], [4, 5, 6]])
    scores = text_scores(torch.tensor([[1, 2, 3]]), truth)
    assert scores["exact"] == pytest.approx(2 / 3)  # both copies are in the recovered set
    assert scores["rouge1"] == pytest.approx(1 / 3)  # but one row pairs with one true sentence
    assert scores["token_recall"] == pytest.approx(3 / 9)


def test_nothing_recovered():
    scores = text_scores(torch.zeros(0, 3, dtype=torch.long), torch.tensor([[1, 2, 3]]))
    assert scores == {"exact": 0.0, "rouge1": 0.0, "rouge2": 0.0, "token_recall": 0.0}


def test_pairing_gives_each_true_row_its_own_partner():
    truth = torch.tensor([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    recovered = torch.tensor([[4, 5, 0], [1, 2, 3]])
    assert pairing(recovered, truth) == [1, 0, None]

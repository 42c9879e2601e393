import torch

from fedleak.data import load_dataset


def test_digits_split_is_disjoint_and_scaled():
    train, test = load_dataset("digits"), load_dataset("digits", split="test")
    assert len(train) + len(test) == 1797 and len(test) == 359
    assert train.info.input_shape == (1, 8, 8) and train.info.num_classes == 10
    assert train.x.max() == 255 and train.x.min() == 0
    rows = {tuple(r) for r in train.x.flatten(1).tolist()}
    assert sum(tuple(r) in rows for r in test.x.flatten(1).tolist()) < 5  # (the UCI set has a few duplicates)
    assert torch.bincount(test.y, minlength=10).min() >= 20

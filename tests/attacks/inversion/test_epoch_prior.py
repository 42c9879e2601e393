"""The matching of the epoch order-invariant prior (Dimitrov et al. 2022, §4.2)."""
import torch

from fedleak.attacks.inversion.epoch_prior import aligned, match_epochs, matched_mean, matched_prior


def test_matching_undoes_each_epochs_order():
    torch.manual_seed(0)
    first = torch.rand(2, 5, 1, 4, 4)  # 2 lanes of 5 samples, one label
    labels = torch.zeros(2, 5, dtype=torch.long)
    orders = [[torch.arange(5), torch.randperm(5), torch.randperm(5)] for _ in range(2)]
    copies = torch.stack([torch.stack([first[lane, o] for o in orders[lane]]) for lane in range(2)])
    noisy = copies + 0.01 * torch.randn_like(copies)
    noisy[:, 0] = first  # epoch 0 is the anchor
    restored = aligned(noisy, match_epochs(noisy, labels))
    assert (restored - first.unsqueeze(1)).abs().max() < 0.05
    assert (matched_mean(noisy, labels) - first).abs().max() < 0.05
    # the prior ignores the order: the permuted copies cost as little as aligned ones, unrelated images more
    assert (matched_prior(noisy, labels) < 1e-3).all()
    assert (matched_prior(torch.rand_like(noisy), labels) > 1e-2).all()


def test_matching_never_pairs_samples_of_different_labels():
    x = torch.zeros(1, 2, 2, 3)
    x[0, 0, 1] = 1.0  # anchors: sample 0 (label 0) = 0, sample 1 (label 1) = 1
    x[0, 1, 0] = 1.0  # epoch 1: sample 0 (label 0) = 1, sample 1 (label 1) = 0; swapping them would cost nothing
    order = match_epochs(x, torch.tensor([[0, 1]]))
    assert order[0, 1].tolist() == [0, 1]
    assert match_epochs(x, torch.tensor([[0, 0]]))[0, 1].tolist() == [1, 0]  # one label: the free swap

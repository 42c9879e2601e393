import pytest
import torch

from fedleak.data import dirichlet_partition, iid_partition, load_dataset, split_clients

LABELS = torch.arange(2000) % 10


def check_disjoint_cover(parts, n):
    everything = torch.cat(parts)
    assert len(everything) == n and len(torch.unique(everything)) == n


def label_skew(parts, labels):
    """Mean over clients of the share of their most common label (0.1 = balanced over 10 classes, 1 = one class)."""
    return sum(torch.bincount(labels[p], minlength=10).max().item() / len(p) for p in parts) / len(parts)


def test_iid_partition():
    parts = iid_partition(LABELS, 7, seed=3)
    check_disjoint_cover(parts, 2000)
    assert {len(p) for p in parts} <= {285, 286}
    assert label_skew(parts, LABELS) < 0.2
    assert all(torch.equal(a, b) for a, b in zip(parts, iid_partition(LABELS, 7, seed=3)))
    assert not torch.equal(parts[0], iid_partition(LABELS, 7, seed=4)[0])


def test_dirichlet_skew_depends_on_alpha():
    skewed = dirichlet_partition(LABELS, 10, alpha=0.05, seed=0)
    even = dirichlet_partition(LABELS, 10, alpha=100.0, seed=0)
    for parts in (skewed, even):
        check_disjoint_cover(parts, 2000)
        assert min(len(p) for p in parts) >= 10
    assert label_skew(skewed, LABELS) > 0.7
    assert label_skew(even, LABELS) < 0.2
    again = dirichlet_partition(LABELS, 10, alpha=0.05, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(skewed, again))


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_clients must be between 1 and the 2000"):
        iid_partition(LABELS, 0)
    with pytest.raises(ValueError, match="alpha must be positive"):
        dirichlet_partition(LABELS, 5, alpha=0.0)
    with pytest.raises(ValueError, match="lower min_size"):
        dirichlet_partition(LABELS[:30], 5, alpha=1.0, min_size=10)


def test_split_clients():
    data = load_dataset("bundled")
    clients = split_clients(data, 10, scheme="dirichlet", alpha=0.5, val_fraction=0.1, seed=1)
    assert len(clients) == 10
    assert sum(len(c.train) + len(c.val) for c in clients) == 2000
    for c in clients:
        assert len(c.val) == int(0.1 * (len(c.train) + len(c.val)))
        assert c.train.info == data.info and c.train.x.dtype == torch.uint8
    rows = torch.cat([torch.cat([c.train.x, c.val.x]) for c in clients]).flatten(1)
    assert len(torch.unique(rows, dim=0)) == 2000  # disjoint: every image used exactly once
    again = split_clients(data, 10, scheme="dirichlet", alpha=0.5, val_fraction=0.1, seed=1)
    assert all(torch.equal(a.val.y, b.val.y) and torch.equal(a.train.x, b.train.x) for a, b in zip(clients, again))
    iid = split_clients(data, 4, val_fraction=0.0)
    assert [len(c.train) for c in iid] == [500] * 4 and all(len(c.val) == 0 for c in iid)
    with pytest.raises(ValueError, match="unknown partition scheme 'shards'"):
        split_clients(data, 4, scheme="shards")

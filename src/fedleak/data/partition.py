"""Splitting a dataset among federated clients: IID shards or label-skewed Dirichlet shares."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fedleak.data.base import TensorDataset

_MAX_DIRICHLET_DRAWS = 1000


def _check_clients(n: int, num_clients: int) -> None:
    if not 1 <= num_clients <= n:
        raise ValueError(f"num_clients must be between 1 and the {n} samples, got {num_clients}")


def iid_partition(labels: torch.Tensor, num_clients: int, seed: int = 0) -> list[torch.Tensor]:
    """Disjoint index tensors of near-equal size (differing by at most one) from a seeded random permutation."""
    labels = torch.as_tensor(labels)
    _check_clients(len(labels), num_clients)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    return [part.to(labels.device) for part in torch.tensor_split(order, num_clients)]


def dirichlet_partition(labels: torch.Tensor, num_clients: int, alpha: float, seed: int = 0,
                        min_size: int = 10) -> list[torch.Tensor]:
    """Label-skewed shares: each class is divided among clients by proportions drawn from Dir(alpha).

    Hsu et al. (2019), "Measuring the Effects of Non-Identical Data Distribution for Federated Visual
    Classification", Sec. 3; as in NIID-Bench (Li et al., 2022), a client already holding an equal share gets no
    more, and draws repeat until every client holds at least ``min_size`` samples. Small ``alpha`` means strong skew.
    Sequence labels ``(N, L)`` (a language model's next tokens) are skewed by their first token.
    """
    labels = torch.as_tensor(labels)
    if labels.dim() > 1:
        labels = labels[:, 0]
    n = len(labels)
    _check_clients(n, num_clients)
    if alpha <= 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    if min_size * num_clients > n:
        raise ValueError(f"cannot give {num_clients} clients {min_size} samples each from {n}; lower min_size")
    y = labels.cpu().numpy()
    rng = np.random.default_rng(seed)
    for _ in range(_MAX_DIRICHLET_DRAWS):
        shares: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        sizes = np.zeros(num_clients, dtype=np.int64)
        for label in np.unique(y):
            members = rng.permutation(np.flatnonzero(y == label))
            proportions = rng.dirichlet(np.full(num_clients, float(alpha))) * (sizes < n / num_clients)
            cuts = (np.cumsum(proportions / proportions.sum()) * len(members)).astype(np.int64)[:-1]
            for client, part in enumerate(np.split(members, cuts)):
                shares[client].append(part)
                sizes[client] += len(part)
        if sizes.min() >= min_size:
            return [torch.from_numpy(np.sort(np.concatenate(parts))).to(labels.device) for parts in shares]
    raise ValueError(f"no Dirichlet(alpha={alpha}) split gave all {num_clients} clients >= {min_size} samples in "
                     f"{_MAX_DIRICHLET_DRAWS} draws; raise alpha or lower min_size")


@dataclass
class ClientData:
    """One client's local data: what it trains on and what it holds out for validation."""

    train: TensorDataset
    val: TensorDataset


def split_clients(dataset: TensorDataset, num_clients: int, *, scheme: str = "iid", alpha: float = 0.5,
                  val_fraction: float = 0.1, seed: int = 0, min_size: int = 10) -> list[ClientData]:
    """Partition ``dataset`` among ``num_clients`` (``scheme`` "iid" or "dirichlet") and hold out, per client, a
    random ``val_fraction`` of its samples (rounded down) for validation. The same seed gives the same split."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if scheme == "iid":
        parts = iid_partition(dataset.y, num_clients, seed)
    elif scheme == "dirichlet":
        parts = dirichlet_partition(dataset.y, num_clients, alpha, seed, min_size=min_size)
    else:
        raise ValueError(f"unknown partition scheme {scheme!r}; valid: iid, dirichlet")
    generator = torch.Generator().manual_seed(seed + 1)
    clients = []
    for part in parts:
        part = part.cpu()[torch.randperm(len(part), generator=generator)]
        n_val = int(val_fraction * len(part))
        clients.append(ClientData(train=dataset.subset(part[n_val:]), val=dataset.subset(part[:n_val])))
    return clients

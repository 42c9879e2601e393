"""SPEAR's search for the batch's directions (Dimitrov et al., NeurIPS 2024, §4; see :mod:`fedleak.attacks.spear`):
proposals of directions ``q`` whose ``L q`` is sparse (uniform, steered by the zero sets already found, anchored in
one found sample's zero set), their merging and greedy selection, and the completion of the last direction from
the other B - 1."""
from __future__ import annotations

import math

import torch

SAME = 3e-5  # two unit directions closer than this per entry are one (the proposals' round-off)
WEIGHT_POWER = 3.0  # how strongly steered proposals favour rows that the directions found leave at zero
COMPLETE = 1e-6  # a zero set's rows of L whose smallest singular value is below this share hold a null vector
INDEPENDENT = 1e-4  # a direction raises the rank when this share of it lies off the chosen ones' span
SPARE = 2  # zero rows outside a sparser direction's zero set that a mixture may have


def sign_normalised(q: torch.Tensor) -> torch.Tensor:
    """Unit directions (K, B) with their largest-magnitude entry positive (q and -q are one direction)."""
    q = q / q.norm(dim=1, keepdim=True)
    lead = q.gather(1, q.abs().argmax(dim=1, keepdim=True))
    return q * torch.where(lead < 0, -1.0, 1.0).to(q.dtype)


def merge(q: torch.Tensor, zeros: torch.Tensor, hits: torch.Tensor, keep: int
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The distinct directions of ``q`` (K, B) (unit, sign-normalised) with their zero counts and hit counts (how
    many proposals gave each), best first: most hits, then sparsest; at most ``keep`` of them. A sample's true
    direction comes back from every set of its zero rows, a mixture of two samples' directions from one set only,
    so hits rank it. Directions within :data:`SAME` per entry are one (a sort, not K x K products)."""
    if len(q) == 0:
        return q, zeros, hits
    order = (q @ torch.linspace(1.0, 2.0, q.shape[1], dtype=q.dtype, device=q.device)).argsort()
    ordered = q[order]  # equal directions sort next to each other along any fixed projection
    start = torch.cat([torch.ones(1, dtype=torch.bool, device=q.device),
                       (ordered[1:] - ordered[:-1]).abs().amax(dim=1) > SAME])
    group = torch.empty_like(order).scatter_(0, order, start.long().cumsum(0) - 1)
    total = torch.zeros(int(group.max()) + 1, dtype=hits.dtype, device=q.device).index_add_(0, group, hits)
    first = torch.full_like(total, len(q)).scatter_reduce_(0, group, torch.arange(len(q), device=q.device), "amin")
    q, zeros, hits = q[first], zeros[first], total
    order = (hits * (int(zeros.max()) + 1) + zeros).argsort(descending=True, stable=True)[:keep]
    return q[order], zeros[order], hits[order]


def undominated(left: torch.Tensor, pool: torch.Tensor, zero_share: float) -> torch.Tensor:
    """Which directions of ``pool`` (K, B) are not mixtures: a mixture of s samples' directions is zero where all
    of them are, plus at most s - 1 rows its proposal forced, so its zero set lies (but for :data:`SPARE` rows)
    inside a sparser direction's zero set. Correlated inputs (Fashion-MNIST) share most inactive neurons, so a
    mixture can be nearly as sparse as a true direction; this test, not the count alone, ranks them below."""
    columns = left @ pool.T
    zero = (columns.abs() <= zero_share * columns.abs().amax(dim=0).clamp_min(1e-300)).T.to(left.dtype)  # (K, M')
    sizes = zero.sum(dim=1)
    shared = zero @ zero.T  # |Z_w & Z_q|
    outside = sizes.unsqueeze(1) - shared  # |Z_w \ Z_q|
    dominated = (outside <= SPARE) & (sizes.unsqueeze(0) > sizes.unsqueeze(1))
    return ~dominated.any(dim=1)


def greedy(pool: torch.Tensor, batch: int) -> torch.Tensor:
    """The greedy selection: the best directions of ``pool`` (sorted) that each raise the rank, up to
    ``batch`` of them (fewer when the pool does not span B dimensions). Each round projects the whole pool off
    the chosen span at once (Gram-Schmidt) and takes the first direction with a part left."""
    chosen: list[int] = []
    basis = pool.new_zeros(0, pool.shape[1])
    for _ in range(batch):
        residual = pool - (pool @ basis.T) @ basis
        raising = torch.nonzero(residual.norm(dim=1) > INDEPENDENT * pool.norm(dim=1)).squeeze(1)
        if len(raising) == 0:
            break
        index = int(raising[0])
        chosen.append(index)
        basis = torch.cat([basis, (residual[index] / residual[index].norm()).unsqueeze(0)])
    return pool[chosen]


def _directions(left: torch.Tensor, picks: torch.Tensor) -> torch.Tensor:
    """For each row of ``picks`` (K, B-1) the direction (K, B) that the rows ``left[picks]`` annihilate, with its
    last entry fixed to 1: one batched LU solve instead of an SVD each (singular systems are dropped)."""
    system = left[picks]  # (K, B-1, B)
    solution, info = torch.linalg.solve_ex(system[:, :, :-1], -system[:, :, -1:])
    q = torch.cat([solution.squeeze(-1), left.new_ones(len(picks), 1)], dim=1)
    return q[(info == 0) & torch.isfinite(q).all(dim=1)]


def uniform_proposals(left: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """The paper's sampling: up to ``size`` proposal directions (K, B), each annihilated by B - 1 rows of ``left``
    (M', B) drawn uniformly (draws that repeat a row are dropped). One lands on sample i's direction when all
    its rows lie in i's zero set: probability about ``p_i^(B-1)``."""
    rows, batch = left.shape
    picks = torch.randint(rows, (size, batch - 1), generator=generator, device=left.device)
    ordered = picks.sort(dim=1).values
    return _directions(left, picks[(ordered[:, 1:] != ordered[:, :-1]).all(dim=1)])


def weighted_proposals(left: torch.Tensor, weights: torch.Tensor, size: int, generator: torch.Generator
                        ) -> torch.Tensor:
    """fedleak's addition (not in the paper): proposals whose B - 1 distinct rows are drawn with probability
    growing with ``weights`` (M',) (Efraimidis-Spirakis keys), here the share of the directions found so far
    whose zero set holds the row, raised to :data:`WEIGHT_POWER`. Inputs of one distribution share most inactive
    neurons, so a row inactive for most samples found is likely inactive for one not yet found: on a B = 16
    Fashion-MNIST batch this raised the hits per proposal on the hardest sample ~50-fold over uniform rows."""
    rows, batch = left.shape
    keys = -torch.rand(size, rows, generator=generator, device=left.device, dtype=left.dtype).log_() / weights
    return _directions(left, keys.topk(batch - 1, dim=1, largest=False).indices)


def anchored_proposals(left: torch.Tensor, anchors: torch.Tensor, size: int, generator: torch.Generator
                        ) -> torch.Tensor:
    """fedleak's addition (not in the paper): proposals conditioned on a sample already found. ``anchors``
    (A, M') marks the zero set Z_a of each found direction q_a. A proposal takes B - 2 distinct rows inside a
    random Z_a and one row outside it: rows inside Z_a are orthogonal to q_a, so the outside row rules q_a out,
    and the proposal is sample j's direction when the B - 2 rows lie in Z_a & Z_j and the outside one in Z_j.
    Inputs of one distribution share most inactive neurons (Fashion-MNIST: P(n in Z_j | n in Z_a) ~ 0.7 against
    P(n in Z_j) ~ 0.47), so at B = 16 this hits about 0.7^14 * 0.3 ~ 2e-3 per proposal against 0.47^15 ~ 1e-5."""
    rows, batch = left.shape
    anchors = anchors[(anchors.sum(dim=1) >= batch - 2) & ~anchors.all(dim=1)]
    if len(anchors) == 0 or batch < 3:
        return left.new_zeros(0, batch)
    inside = anchors[torch.randint(len(anchors), (size,), generator=generator, device=left.device)]  # (K, M')
    keys = torch.rand(size, rows, generator=generator, device=left.device, dtype=left.dtype)
    within = (keys + 2 * (~inside).to(keys.dtype)).topk(batch - 2, dim=1, largest=False).indices
    outside = (keys + 2 * inside.to(keys.dtype)).argmin(dim=1, keepdim=True)
    return _directions(left, torch.cat([within, outside], dim=1))


def complete(left: torch.Tensor, right: torch.Tensor, known: torch.Tensor, weight: torch.Tensor,
              bias: torch.Tensor) -> torch.Tensor | None:
    """fedleak's addition (not in the paper): the last direction from B - 1 known ones. Row i of ``Q^-1`` is
    orthogonal to every column of Q but the i-th, so the missing sample's input is ``x = c p R`` with ``p`` the
    null vector of ``known`` (B-1, B) and an unknown scale c. Its zero set is ``{n: c (W x)_n + b_n < 0}``
    (``weight`` (M', D), ``bias`` (M',): the active rows of the layer sent), which changes only where c crosses a
    breakpoint ``-b_n / (W p R)_n``; the direction is the null vector of the rows of ``left`` in the zero set
    that has one. One batched SVD over the breakpoints' intervals; None when no interval gives a null vector."""
    p = torch.linalg.svd(known)[2][-1]
    slope = weight @ (p @ right)  # (M',)
    cuts = (-bias / slope)[slope.abs() > 0].sort().values
    if len(cuts) == 0:
        return None
    inner = (cuts[1:] + cuts[:-1]) / 2
    tests = torch.cat([cuts[:1] - 1.0 - cuts[:1].abs(), inner, cuts[-1:] + 1.0 + cuts[-1:].abs()])
    tests = tests[tests != 0]
    zero_sets = (tests.unsqueeze(1) * slope + bias) < 0  # (C, M')
    _, values, vh = torch.linalg.svd(left * zero_sets.unsqueeze(2).to(left.dtype), full_matrices=False)
    ratio = values[:, -1] / values[:, 0].clamp_min(1e-300)
    ratio = torch.where(zero_sets.sum(dim=1) >= left.shape[1] - 1, ratio, torch.full_like(ratio, math.inf))
    best = int(ratio.argmin())
    if not bool(ratio[best] < COMPLETE):
        return None
    return sign_normalised(vh[best, -1].unsqueeze(0))[0]

"""SPEAR: exact recovery of a whole batch from the gradient of a linear layer followed by ReLU (Dimitrov et al.,
"SPEAR: Exact Gradient Inversion of Batches in Federated Learning", NeurIPS 2024, arXiv:2403.03945; section
numbers below are not given: the paper's text is not among /work/shared/papers).

For ``Z = X W^T + b`` (batch ``X`` of B inputs) and ``Y = ReLU(Z)`` the weight gradient is
``dL/dW = dL/dZ^T X``: of rank at most B. Decompose it as ``dL/dW = L R`` (here by the SVD,
``L = U_B S_B``, ``R = V_B^T``); then ``dL/dZ^T = L Q`` and ``X = Q^{-1} R`` for an unknown B x B
*disaggregation matrix* Q. ReLU makes every column of ``dL/dZ^T`` sparse: sample i has no gradient at
the neurons it leaves inactive. So a random set of B - 1 rows of L that all lie in the zero set of one sample
spans the orthogonal complement of that sample's column ``q_i`` of Q: the null space of those rows is ``q_i``
(sampling). Proposals are drawn in batches; those whose ``L q`` is not sparse are filtered out, the distinct
sparse ones are picked greedily (each raising the rank), and the column scales come from the bias gradient
``dL/db = dL/dZ^T 1 = L Q 1`` (least squares). fedleak's additions, each said where it is: once some directions
are found, three quarters of the proposals are steered by their zero sets (:func:`_weighted_proposals`,
:func:`_anchored_proposals`): inputs of one distribution share most inactive neurons, so the rows the found samples
leave at zero are likely zero for the rest too (the paper draws rows uniformly, which needs ~``p^-(B-1)`` proposals
per sample: ~3e5 at B = 16 on Fashion-MNIST, where the steered draws found whole batches in 5e4 - 5e5); proposals
are ranked by how often they recur (:func:`_merge`) and mixtures of two samples' directions are ranked last
(:func:`_undominated`); the last sample's direction is solved for from the other B - 1 and the layer's weights
(:func:`_complete`), so the rarest sample need not be drawn at all; sampling stops when the chosen batch passes the
ReLU check below.

The attacker checks its own answer without the truth (``declared``): the bias gradient must be reproduced
(residual below :data:`RESIDUAL`; a weak test, since any B independent directions reproduce it), and each
recovered input must agree with ReLU, i.e. pass no gradient through a
neuron its own pre-activation ``x W^T + b`` (with the weights the client was sent) keeps negative. DP noise makes
the weight gradient full-rank (the rank estimate exceeds ``max_batch``: nothing is reconstructed) or fills the
zeros (no sparse proposal: nothing declared). The number of proposals needed grows like ``(1/p)^(B-1)`` for a
share p of inactive neurons per sample (about ``2^(B-1)``):
the ``proposals`` budget bounds B on this machine.

A FedAvg update of plain SGD on one client is ``-lr`` times a sum of such gradients: still of rank at most the
number of distinct inputs and still sparse, so the same readout applies (the paper reports FedAvg too); the ReLU
check then uses the sent weights, from which the local steps drift slightly (:data:`ALLOWED_VIOLATIONS`).
"""
from __future__ import annotations

import dataclasses
import inspect
import math
from dataclasses import dataclass
from typing import Callable, Mapping

import torch
import torch.nn as nn

from fedleak.attacks.analytic import layer_gradients
from fedleak.attacks.base import AttackContext, Observed, Reconstruction
from fedleak.attacks.passive import input_layer
from fedleak.checks import check_number
from fedleak.models.anatomy import trace

RANK_TOLERANCE = 1e-5  # singular values below this share of the largest are float round-off
ZERO = 1e-6  # an entry of L q below this share of the column's largest counts as zero
NOISE_MARGIN = 100.0  # ... or below this many times the update's noise floor (its first discarded singular value)
SAME = 3e-5  # two unit directions closer than this per entry are one (the proposals' round-off)
WEIGHT_POWER = 3.0  # how strongly steered proposals favour rows that the directions found leave at zero
COMPLETE = 1e-6  # a zero set's rows of L whose smallest singular value is below this share hold a null vector
INDEPENDENT = 1e-4  # a direction raises the rank when this share of it lies off the chosen ones' span
RESIDUAL = 1e-4  # relative residual of dL/db that an exact disaggregation leaves at most
SPARE = 2  # zero rows outside a sparser direction's zero set that a mixture may have
ALLOWED_VIOLATIONS = 0.01  # share of a sample's neurons whose ReLU state may disagree (FedAvg drift)
FLOW = 1e-4  # a recovered output gradient above this share of the sample's largest passes through its neuron
PRE_MARGIN = 1e-3  # pre-activations within this share of a sample's largest are too close to 0 to judge


@dataclass
class SpearConfig:
    """``layer``: the linear layer read (default: the first to run, which must feed a ReLU); ``max_batch``: the
    largest rank taken for a batch (above: refused as not low-rank); ``proposals``: the budget of sampled
    directions per update, drawn ``chunk`` at a time; ``sparsity``: the share of the layer's active neurons at
    which a proposal ``L q`` must be zero to be kept (the paper's tau); ``seed`` of the sampling."""

    layer: str | None = None
    max_batch: int = 32
    proposals: int = 400_000
    chunk: int = 8_192
    sparsity: float = 0.1
    seed: int = 0

    def __post_init__(self):
        check_number("SPEAR max_batch", self.max_batch, low=1, integer=True)
        check_number("SPEAR proposals", self.proposals, low=1, integer=True)
        check_number("SPEAR chunk", self.chunk, low=1, integer=True)
        check_number("SPEAR sparsity", self.sparsity, low=0, high=1)
        check_number("SPEAR seed", self.seed, low=0, integer=True)


@dataclass(frozen=True)
class SpearSecret:
    """The layer read and, when it reads the raw input, the input shape the features are reshaped to."""

    layer: str
    input_shape: tuple[int, ...] | None


@dataclass
class Disaggregation:
    """What :func:`disaggregate` found: ``inputs`` (K, D) and their output gradients ``grads`` (K, M), the
    estimated ``batch`` size (rank), the relative bias ``residual``, the ``proposals`` drawn, a ``status`` and the
    ``flow`` share above which an output gradient is no round-off (for :func:`relu_violations`)."""

    inputs: torch.Tensor
    grads: torch.Tensor
    batch: int
    residual: float
    proposals: int
    status: str
    flow: float = 0.0


def _sign_normalised(q: torch.Tensor) -> torch.Tensor:
    """Unit directions (K, B) with their largest-magnitude entry positive (q and -q are one direction)."""
    q = q / q.norm(dim=1, keepdim=True)
    lead = q.gather(1, q.abs().argmax(dim=1, keepdim=True))
    return q * torch.where(lead < 0, -1.0, 1.0).to(q.dtype)


def _merge(q: torch.Tensor, zeros: torch.Tensor, hits: torch.Tensor, keep: int
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


def _undominated(left: torch.Tensor, pool: torch.Tensor, zero_share: float) -> torch.Tensor:
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


def _greedy(pool: torch.Tensor, batch: int) -> torch.Tensor:
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


def _proposals(left: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """The paper's sampling: up to ``size`` proposal directions (K, B), each annihilated by B - 1 rows of ``left``
    (M', B) drawn uniformly (draws that repeat a row are dropped). One lands on sample i's direction when all
    its rows lie in i's zero set: probability about ``p_i^(B-1)``."""
    rows, batch = left.shape
    picks = torch.randint(rows, (size, batch - 1), generator=generator, device=left.device)
    ordered = picks.sort(dim=1).values
    return _directions(left, picks[(ordered[:, 1:] != ordered[:, :-1]).all(dim=1)])


def _weighted_proposals(left: torch.Tensor, weights: torch.Tensor, size: int, generator: torch.Generator
                        ) -> torch.Tensor:
    """fedleak's addition (not in the paper): proposals whose B - 1 distinct rows are drawn with probability
    growing with ``weights`` (M',) (Efraimidis-Spirakis keys), here the share of the directions found so far
    whose zero set holds the row, raised to :data:`WEIGHT_POWER`. Inputs of one distribution share most inactive
    neurons, so a row inactive for most samples found is likely inactive for one not yet found: on a B = 16
    Fashion-MNIST batch this raised the hits per proposal on the hardest sample ~50-fold over uniform rows."""
    rows, batch = left.shape
    keys = -torch.rand(size, rows, generator=generator, device=left.device, dtype=left.dtype).log_() / weights
    return _directions(left, keys.topk(batch - 1, dim=1, largest=False).indices)


def _anchored_proposals(left: torch.Tensor, anchors: torch.Tensor, size: int, generator: torch.Generator
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


def _complete(left: torch.Tensor, right: torch.Tensor, known: torch.Tensor, weight: torch.Tensor,
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
    return _sign_normalised(vh[best, -1].unsqueeze(0))[0]


def disaggregate(weight_grad: torch.Tensor, bias_grad: torch.Tensor, config: SpearConfig, *,
                 generator: torch.Generator, accept: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor] | None = None,
                 layer: tuple[torch.Tensor, torch.Tensor] | None = None, device=None) -> Disaggregation:
    """SPEAR on one weight gradient (M, D) and bias gradient (M,): the batch's inputs and their output
    gradients, computed in float64 on ``device``. Proposals are drawn until the B best directions give inputs
    that ``accept(inputs (B, D), grads (B, M), flow)`` passes (``flow``: the share of a
    sample's largest output gradient above which it is no round-off) (every one of them; by default: any) or the budget is
    spent. With ``layer`` (the weight and bias sent), a set one direction short is completed by :func:`_complete`."""
    device = device if device is not None else weight_grad.device
    grad = weight_grad.to(device, torch.float64)
    bias = bias_grad.to(device, torch.float64)
    rows = grad.norm(dim=1)
    active = torch.nonzero(rows > 1e-10 * rows.max().clamp_min(torch.finfo(torch.float64).tiny)).squeeze(1)
    empty = Disaggregation(grad.new_zeros(0, grad.shape[1]), grad.new_zeros(0, grad.shape[0]), 0, math.inf, 0, "")
    if len(active) == 0:
        return dataclasses.replace(empty, status="zero gradient")
    u, s, vh = torch.linalg.svd(grad[active], full_matrices=False)
    batch = int((s > RANK_TOLERANCE * s[0]).sum())
    if batch > config.max_batch:
        return dataclasses.replace(empty, batch=batch, status=f"not low-rank: rank {batch} > max_batch "
                                                              f"{config.max_batch} (DP noise, or too large a batch)")
    if batch >= len(active):
        return dataclasses.replace(empty, batch=batch, status=f"rank {batch} needs more than {len(active)} "
                                                              f"active neurons")
    left, right = u[:, :batch] * s[:batch], vh[:batch]  # dL/dW = L R
    # the update's own noise floor (float32 round-off of a FedAvg delta is far above a gradient's) sets what "zero" is
    floor = float(s[batch] / s[0]) if batch < len(s) else 0.0
    zero = max(ZERO, NOISE_MARGIN * floor)
    need = max(batch, math.ceil(config.sparsity * len(active)))
    keep = 64 * batch
    pool = grad.new_zeros(0, batch)
    zeros = hits = torch.zeros(0, dtype=torch.long, device=device)
    drawn, best, tried, anchors = 0, None, None, None
    if layer is not None:
        weight_active = layer[0].to(device, torch.float64)[active]
        bias_active = layer[1].to(device, torch.float64)[active]

    def _attempt(chosen: torch.Tensor) -> Disaggregation | None:
        """The batch that B directions give: scales from the bias gradient, inputs ``X = Q^-1 R``."""
        scales = torch.linalg.lstsq(left @ chosen.T, bias[active].unsqueeze(1)).solution.squeeze(1)
        residual = float((left @ chosen.T @ scales - bias[active]).norm() / bias[active].norm().clamp_min(1e-300))
        disaggregation = chosen.T * scales  # Q: column i is sample i's direction times its scale
        inputs, info = torch.linalg.solve_ex(disaggregation, right)  # X = Q^-1 R
        if int(info) != 0 or not bool(torch.isfinite(inputs).all()):
            return None  # a zero scale: these directions do not reproduce the bias gradient
        grads = grad.new_zeros(batch, grad.shape[0])
        grads[:, active] = (left @ disaggregation).T
        return Disaggregation(inputs, grads, batch, residual, drawn, "exact", max(FLOW, zero))

    while drawn < config.proposals:
        size = min(config.chunk, config.proposals - drawn)
        drawn += size
        if batch == 1:
            q = grad.new_ones(1, 1)
        elif anchors is None:
            q = _proposals(left, size, generator)
        else:  # a quarter the paper's uniform draws, the rest steered by the directions found so far
            weights = (anchors.to(left.dtype).mean(dim=0) + 0.05) ** WEIGHT_POWER
            q = torch.cat([_proposals(left, size // 4, generator),
                           _weighted_proposals(left, weights, size // 2, generator),
                           _anchored_proposals(left, anchors, size - size // 4 - size // 2, generator)])
        magnitude = (left @ q.T).abs_()  # (M', K): each proposal's output gradient over the active neurons
        count = (magnitude <= zero * magnitude.amax(dim=0).clamp_min(1e-300)).sum(dim=0)
        sparse = (count >= need) | (batch == 1)
        pool, zeros, hits = _merge(torch.cat([pool, _sign_normalised(q[sparse])]), torch.cat([zeros, count[sparse]]),
                                   torch.cat([hits, torch.ones_like(count[sparse])]), keep)
        plain = _undominated(left, pool, zero)  # mixtures last: a true direction may itself look dominated
        if plain.any():
            found = left @ pool[plain][:2 * batch].T  # (M', A): the zero sets of the best plain directions
            anchors = (found.abs() <= zero * found.abs().amax(dim=0).clamp_min(1e-300)).T
        chosen = _greedy(torch.cat([pool[plain], pool[~plain]]), batch) if len(pool) >= batch - 1 else pool[:0]
        if len(chosen) < batch - 1 or (layer is None and len(chosen) < batch) or (
                tried is not None and torch.equal(chosen, tried)):
            continue
        tried = chosen
        sets = [chosen] if len(chosen) == batch else []
        if layer is not None and batch > 1:  # the set one short, or each set leaving one chosen out, completed
            shorter = [chosen] if len(chosen) < batch else [torch.cat([chosen[:i], chosen[i + 1:]])
                                                           for i in reversed(range(batch))]
            for known in shorter:
                last = _complete(left, right, known, weight_active, bias_active)
                if last is not None:
                    sets.append(torch.cat([known, last.unsqueeze(0)]))
        for candidate in sets:
            result = _attempt(candidate)
            if result is None:
                continue
            best = result if best is None or result.residual <= best.residual else best
            if result.residual <= RESIDUAL and (accept is None or bool(accept(result.inputs, result.grads,
                                                                              result.flow).all())):
                return result
    if best is None:
        return dataclasses.replace(empty, batch=batch, proposals=drawn,
                                   status=f"found {len(pool)} of {batch} sparse directions in {drawn} proposals")
    return dataclasses.replace(best, proposals=drawn, status=f"no consistent batch in {drawn} proposals; "
                                                             f"returned the best {batch} directions")


def relu_violations(inputs: torch.Tensor, grads: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                    flow: float = FLOW) -> torch.Tensor:
    """Per recovered sample (K,): the share of neurons where it passes a gradient although its own pre-activation
    ``x W^T + b`` is negative, which ReLU forbids."""
    if len(inputs) == 0:
        return inputs.new_zeros(0)
    weight, bias = weight.to(inputs), bias.to(inputs)
    pre = inputs @ weight.T + bias
    flowing = grads.abs() > flow * grads.abs().amax(dim=1, keepdim=True).clamp_min(1e-300)
    margin = PRE_MARGIN * pre.abs().amax(dim=1, keepdim=True)
    return (flowing & (pre < -margin)).float().mean(dim=1)


class SpearAttack:
    """SPEAR (module docstring): an honest server (``prepare`` sends the model unchanged) that reads the whole
    batch out of each observed update of the extraction layer."""

    name = "spear"

    def __init__(self, **options):
        self.config = SpearConfig(**options)

    def prepare(self, model: nn.Module, context: AttackContext) -> tuple[nn.Module, SpearSecret]:
        anatomy = trace(model, input_shape=context.input_shape)
        layer = anatomy.pick("linear", self.config.layer)
        if layer.module.bias is None:
            raise ValueError(f"SPEAR reads the bias gradient; linear layer {layer.name!r} has no bias")
        activation = anatomy.activation_after(layer.name)  # from the traced run: F.relu in forward counts too
        if activation is None or activation.function != "relu":
            readers = ", ".join(r.layer.type if r.layer is not None else str(r.function)
                                for r in anatomy.readers(layer.name))
            what = f"its output is read by {readers}" if readers else "it is the model's output layer"
            raise ValueError(f"SPEAR needs a ReLU alone after linear layer {layer.name!r}; {what}")
        secret = input_layer(anatomy, context.input_shape, layer.name, levels=None)
        return model, SpearSecret(layer.name, None if secret is None else tuple(context.input_shape))

    def reconstruct(self, observed: Observed, secret: SpearSecret, knowledge=None, *,
                    device: str | torch.device = "cpu") -> Reconstruction:
        parts = []
        for index in range(len(observed.sources)):
            parts.append(self.read(observed.row(index), observed.sent[index], secret, index, device=device))
        return Reconstruction.concat(parts)

    def read(self, update: Mapping[str, torch.Tensor], sent: nn.Module, secret: SpearSecret, index: int = 0, *,
             device: str | torch.device = "cpu") -> Reconstruction:
        """SPEAR on one update (gradient or FedAvg delta) of the model ``sent``: one point per recovered input,
        declared when the bias gradient is reproduced and the point agrees with ReLU."""
        weight_grad, bias_grad = layer_gradients(update, secret.layer, device=device)
        generator = torch.Generator(device=device).manual_seed(self.config.seed * 1_000_003 + index)
        linear = sent.get_submodule(secret.layer)
        weight, bias = linear.weight.detach().to(device), linear.bias.detach().to(device)

        def consistent(inputs: torch.Tensor, grads: torch.Tensor, flow: float) -> torch.Tensor:
            return relu_violations(inputs, grads, weight, bias, flow) <= ALLOWED_VIOLATIONS

        found = disaggregate(weight_grad, bias_grad, self.config, generator=generator, accept=consistent,
                             layer=(weight, bias), device=device)
        violations = relu_violations(found.inputs, found.grads, weight, bias, found.flow or FLOW)
        declared = violations <= ALLOWED_VIOLATIONS
        inputs = found.inputs.to(weight_grad.dtype)
        if secret.input_shape is not None:
            inputs = inputs.reshape(len(inputs), *secret.input_shape)
        return Reconstruction(inputs, declared=declared, meta={"relu_violations": violations.float()},
                              info={"batch": found.batch, "status": found.status, "proposals": found.proposals,
                                    "residual": found.residual})


def spear(**options) -> SpearAttack:
    """SPEAR: exact recovery of a whole batch from the gradient of a linear layer followed by ReLU (Dimitrov et
    al., NeurIPS 2024)."""
    return SpearAttack(**options)


spear.__signature__ = inspect.Signature([  # the registry reads the options from the signature
    inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default) for f in dataclasses.fields(SpearConfig)])

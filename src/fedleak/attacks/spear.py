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
are found, three quarters of the proposals are steered by their zero sets (:func:`weighted_proposals`,
:func:`anchored_proposals`): inputs of one distribution share most inactive neurons, so the rows the found samples
leave at zero are likely zero for the rest too (the paper draws rows uniformly, which needs ~``p^-(B-1)`` proposals
per sample: ~3e5 at B = 16 on Fashion-MNIST, where the steered draws found whole batches in 5e4 - 5e5); proposals
are ranked by how often they recur (:func:`merge`) and mixtures of two samples' directions are ranked last
(:func:`undominated`); the last sample's direction is solved for from the other B - 1 and the layer's weights
(:func:`complete`), so the rarest sample need not be drawn at all; sampling stops when the chosen batch passes the
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
from fedleak.attacks.spear_directions import (WEIGHT_POWER, anchored_proposals, complete, greedy, merge, sign_normalised,
                                              undominated, uniform_proposals, weighted_proposals)
from fedleak.checks import CheckedConfig, checked, count_field, seed_field
from fedleak.models.anatomy import trace

RANK_TOLERANCE = 1e-5  # singular values below this share of the largest are float round-off
ZERO = 1e-6  # an entry of L q below this share of the column's largest counts as zero
NOISE_MARGIN = 100.0  # ... or below this many times the update's noise floor (its first discarded singular value)
RESIDUAL = 1e-4  # relative residual of dL/db that an exact disaggregation leaves at most
ALLOWED_VIOLATIONS = 0.01  # share of a sample's neurons whose ReLU state may disagree (FedAvg drift)
FLOW = 1e-4  # a recovered output gradient above this share of the sample's largest passes through its neuron
PRE_MARGIN = 1e-3  # pre-activations within this share of a sample's largest are too close to 0 to judge


@dataclass
class SpearConfig(CheckedConfig, what="SPEAR"):
    """``layer``: the linear layer read (default: the first to run, which must feed a ReLU); ``max_batch``: the
    largest rank taken for a batch (above: refused as not low-rank); ``proposals``: the budget of sampled
    directions per update, drawn ``chunk`` at a time; ``sparsity``: the share of the layer's active neurons at
    which a proposal ``L q`` must be zero to be kept (the paper's tau); ``seed`` of the sampling."""

    layer: str | None = None
    max_batch: int = count_field(32)
    proposals: int = count_field(400_000)
    chunk: int = count_field(8_192)
    sparsity: float = checked(0.1, low=0, high=1)
    seed: int = seed_field()


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


def disaggregate(weight_grad: torch.Tensor, bias_grad: torch.Tensor, config: SpearConfig, *,
                 generator: torch.Generator, accept: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor] | None = None,
                 layer: tuple[torch.Tensor, torch.Tensor] | None = None, device=None) -> Disaggregation:
    """SPEAR on one weight gradient (M, D) and bias gradient (M,): the batch's inputs and their output
    gradients, computed in float64 on ``device``. Proposals are drawn until the B best directions give inputs
    that ``accept(inputs (B, D), grads (B, M), flow)`` passes (``flow``: the share of a
    sample's largest output gradient above which it is no round-off) (every one of them; by default: any) or the budget is
    spent. With ``layer`` (the weight and bias sent), a set one direction short is completed by :func:`complete`."""
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
            q = uniform_proposals(left, size, generator)
        else:  # a quarter the paper's uniform draws, the rest steered by the directions found so far
            weights = (anchors.to(left.dtype).mean(dim=0) + 0.05) ** WEIGHT_POWER
            q = torch.cat([uniform_proposals(left, size // 4, generator),
                           weighted_proposals(left, weights, size // 2, generator),
                           anchored_proposals(left, anchors, size - size // 4 - size // 2, generator)])
        magnitude = (left @ q.T).abs_()  # (M', K): each proposal's output gradient over the active neurons
        count = (magnitude <= zero * magnitude.amax(dim=0).clamp_min(1e-300)).sum(dim=0)
        sparse = (count >= need) | (batch == 1)
        pool, zeros, hits = merge(torch.cat([pool, sign_normalised(q[sparse])]), torch.cat([zeros, count[sparse]]),
                                   torch.cat([hits, torch.ones_like(count[sparse])]), keep)
        plain = undominated(left, pool, zero)  # mixtures last: a true direction may itself look dominated
        if plain.any():
            found = left @ pool[plain][:2 * batch].T  # (M', A): the zero sets of the best plain directions
            anchors = (found.abs() <= zero * found.abs().amax(dim=0).clamp_min(1e-300)).T
        chosen = greedy(torch.cat([pool[plain], pool[~plain]]), batch) if len(pool) >= batch - 1 else pool[:0]
        if len(chosen) < batch - 1 or (layer is None and len(chosen) < batch) or (
                tried is not None and torch.equal(chosen, tried)):
            continue
        tried = chosen
        sets = [chosen] if len(chosen) == batch else []
        if layer is not None and batch > 1:  # the set one short, or each set leaving one chosen out, completed
            shorter = [chosen] if len(chosen) < batch else [torch.cat([chosen[:i], chosen[i + 1:]])
                                                           for i in reversed(range(batch))]
            for known in shorter:
                last = complete(left, right, known, weight_active, bias_active)
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

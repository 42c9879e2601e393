"""The leakage guard: before an update leaves the client, neutralise every row of it that gives one local sample away
to a readout any server can run, whatever the received weights look like (beyond Wang & Li, paper 000: the guard
needs no signature of the attacker).

What it reads. The client holds its update (a FedSGD gradient or a FedAvg delta) and the samples it trained on.
For every fully connected layer ``y = W a + b`` it runs the server's readouts on the *update it is about to send*:
paper 002 Eq. 5, ``â_i = ΔW_i / Δb_i`` for every row (for one batch the ``dL/dy``-weighted mean of the inputs that
reach row ``i``, Eq. 6), and the bin differences of Robbing the Fed (paper 000 App. A.1.1 Eq. 16),
``(ΔW_i - ΔW_j) / (Δb_i - Δb_j)``, for *every pair* of rows, so that an imprint whose rows are neither parallel nor
ordered is read too. A readout *leaks* unit ``m`` (a sample; a token of a sequence) when it lies within
``tolerance`` of that unit's layer input relative to how far the input stands from the batch's centre,
``‖â - a_m‖ ≤ tolerance · ‖a_m - ā‖``, and the units it reproduces so belong to fewer than a quarter of the batch's
samples (``COMMON``: a pattern that many samples share, a black image patch of a ViT, a frequent token, singles out
no one; two near-copies of one image are both given away) (the yardstick of :mod:`fedleak.detection.self_audit`; the layer inputs come
from one forward pass of the received model on the client's samples, so a forwarded copy of the input, as trap
weights on a CNN, curious kernels or input forwarding make, is read where the server reads it). For an embedding
layer the readout is the set of rows the update touches (token ids present, paper 002 §8); a token that occurs in
one local sample only gives that sample's token away, and its row is leaking.

What it does. :meth:`LeakageGuard.sanitise` sets every leaking row of the update to zero (weight row and bias
entry; for a FedAvg delta: those weights are sent unchanged), so the server reads nothing there, and reports the
rows it zeroed per layer. ``refuse=True`` in :func:`leakage_guard_mod` refuses the round instead when any row
leaks. After zeroing, a pair containing a zeroed row reads out a single row, which was checked. The refusing form of
the same readout, applied to the would-be gradient before training, is the detector
:mod:`fedleak.detection.self_audit` (whose unit bookkeeping the guard shares); the guard acts on the update
that is actually sent, so it also covers FedAvg deltas.

Why ``tolerance`` = 0.3 (set before measuring). Images in [0, 1] whose pixels stand 0.1 or more (root mean square)
from the batch mean, which holds for nearly every image of the offline data sets, are matched at >= 30 dB PSNR
(root mean square error 0.032) only by readouts within 0.32 of that spread: the guard's bound covers the near-exact
leakage (``near_recall_psnr30`` of :func:`fedleak.cases.score`) as well as the exact one.

What is taken from AGGP (Nowak et al. 2024, "QBI", their Active Gradient-sparsity defense): the threat it answers
(a server arranging rows so that a single sample activates them, and reading it from the ratio of weight and bias
gradients) and its remedy, to remove the gradient rows a single sample dominates before sending. Not taken: AGGP
decides from the activation pattern alone (how many samples a neuron fires for) and covers a bounded look-back of
row differences; the guard decides by the readout itself (a row several samples reach may still reproduce one of
them: fishing) and checks every pair of rows. Cost: one forward pass of the received model on the trained samples
and, per layer, readouts in a random projection of ``projection`` dimensions (distances kept within a few per cent
at 64), each candidate confirmed exactly.

Measured (``fedleak detect-eval --quick --adaptive`` and ``--guard-cost``, seed 0; CPU under load). On a 64-image
batch the guard leaves every accepted camouflaged manipulation 0 exact and 0 near-exact readouts (trap weights,
Robbing the Fed with a paired-bins imprint, input forwarding, curious kernels, class and feature fishing;
unguarded up to 0.156 / 0.188), and the honest FC-NN's own 0.14 goes to 0 too; the SSIM of the remaining
overlays is not bounded (0.50-0.54 on the VGG-CNN against the honest model's 0.01). FedAvg accuracy (2 rounds of one
Adam epoch) is unchanged for every registry model: multi-step deltas hardly read out samples and 0-0.5 rows are
zeroed. FedSGD (one batch gradient) pays: 10 rounds, FC-NN 0.486 -> 0.384 (115 rows zeroed per update), ResNet-18
0.186 -> 0.100, and a ViT's rows are nearly all zeroed (629 per update). Time: 0.25x (ResNet-18) to 26x (ViT,
hidden tokens as units) a FedAvg local epoch.

Limits (stated, not hidden): combinations of three or more rows are not checked; convolution rows are not read
(a channel's readout is a weighted mean of k x k patches, of which a batch holds thousands of near copies; an
attack that forwards the input through convolutions is read at the linear layer it reaches); a linear layer
without bias has no Eq. 5 readout and is not checked; hidden inputs of a FedAvg delta are taken at the received
weights (exact for the first layer and for forwarded inputs).
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch
import torch.nn as nn

from fedleak.checks import check_number
from fedleak.detection.self_audit import unit_owners
from fedleak.fl.client import CallNext, Client, ClientMod, ClientUpdate, ModelRefused
from fedleak.models.anatomy import trace

DEFAULT_TOLERANCE = 0.3  # module docstring: covers the >= 30 dB readouts of images; set a priori
NEGLIGIBLE = 1e-10  # bias updates this small relative to the layer's largest are round-off (as attacks/analytic.py)
COMMON = 0.25  # a readout reproducing units of this share of the batch's samples or more reads a common pattern
GUARD_KEY = "leakage_guard"


@dataclass
class GuardReport:
    """What the guard found in one update: per layer, the rows zeroed (``rows``), the layer's row count, the local
    samples some readout of the unsanitised update reached (``samples``) and the seconds it took."""

    layers: dict[str, dict] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def zeroed(self) -> int:
        return sum(len(v["rows"]) for v in self.layers.values())

    def to_dict(self) -> dict:
        return {"layers": self.layers, "zeroed_rows": self.zeroed, "seconds": self.seconds}


def _project(a: torch.Tensor, k: int, seed: int = 0) -> torch.Tensor:
    """A fixed random projection (D, k) scaled to keep distances (Johnson-Lindenstrauss); identity when D <= k."""
    if a.shape[1] <= k:
        return torch.eye(a.shape[1], dtype=a.dtype, device=a.device)
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(a.shape[1], k, generator=generator, dtype=a.dtype) / k ** 0.5).to(a.device)


def leaking_readouts(weight: torch.Tensor, bias: torch.Tensor, inputs: torch.Tensor, owners: torch.Tensor, *,
                     tolerance: float = DEFAULT_TOLERANCE, pairs: bool = True, projection: int = 64,
                     budget: int = 2 ** 22, common: float = COMMON) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of a linear layer's update ``(weight (N, D), bias (N,))`` whose Eq. 5 readout, or whose difference with
    another row (Eq. 16, every pair), lies within ``tolerance`` of one unit's ``inputs (U, D)`` (module docstring).
    Returns ``(leaking rows (N,) bool, samples reached (owners of the units read))``. Candidates are found in a
    random projection at 1.5 x tolerance and confirmed on the full vectors."""
    weight, bias, a = weight.double(), bias.double(), inputs.double()
    n = len(bias)
    leaking = torch.zeros(n, dtype=torch.bool, device=weight.device)
    reached = torch.zeros(len(a), dtype=torch.bool, device=weight.device)
    scale = bias.abs().max()
    if not bool(scale > 0):
        return leaking, owners[reached]
    spread = (a - a.mean(dim=0)).norm(dim=1)
    valid = spread > 0
    projector = _project(a, projection)
    owned = torch.nn.functional.one_hot(owners, int(owners.max()) + 1).double()  # (units, samples)
    ap, wp = a @ projector, weight @ projector

    def confirm(num_w: torch.Tensor, den: torch.Tensor, rows_i: torch.Tensor, rows_j: torch.Tensor | None):
        """Readouts ``num_w / den`` (projected numerators): candidates near a unit in the projection, then the
        exact readouts of the candidates in full dimension."""
        close = (torch.cdist(num_w / den[:, None], ap) <= 1.5 * tolerance * spread[None, :]) & valid[None, :]
        hit = close.any(dim=1).nonzero().flatten()
        if not len(hit):
            return
        full = weight[rows_i[hit]] - (weight[rows_j[hit]] if rows_j is not None else 0)
        readout = full / den[hit, None]
        exact = (torch.cdist(readout, a) <= tolerance * spread[None, :]) & valid[None, :]
        samples = (exact.double() @ owned).gt(0)  # (candidates, samples) the readout reproduces
        count = samples.sum(dim=1)  # a pattern shared by a quarter of the batch or more singles out no one
        found = (count >= 1) & (count < max(2.0, common * owned.shape[1]))
        reached.logical_or_(exact[found].any(dim=0))
        leaking[rows_i[hit[found]]] = True
        if rows_j is not None:
            leaking[rows_j[hit[found]]] = True

    active = (bias.abs() > NEGLIGIBLE * scale).nonzero().flatten()
    if len(active):
        confirm(wp[active], bias[active], active, None)
    if pairs and n > 1:
        chunk = max(1, min(n, budget // max(1, n * len(a))))  # rows per block: at most ~budget distances at once
        for start in range(0, n, chunk):
            i = torch.arange(start, min(start + chunk, n), device=weight.device)
            j = torch.arange(n, device=weight.device)
            ii, jj = torch.meshgrid(i, j, indexing="ij")
            keep = jj > ii
            ii, jj = ii[keep], jj[keep]
            den = bias[ii] - bias[jj]
            usable = den.abs() > NEGLIGIBLE * scale
            ii, jj, den = ii[usable], jj[usable], den[usable]
            if len(ii):
                confirm(wp[ii] - wp[jj], den, ii, jj)
    return leaking, torch.unique(owners[reached])


def capture_inputs(model: nn.Module, x: torch.Tensor, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """The input of each named layer on ``x`` (one forward pass, no gradient), as (units, features) with units =
    calls x samples x positions; embedding layers keep their (samples, positions) token ids."""
    found: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    handles = [model.get_submodule(name).register_forward_hook(
        lambda module, args, output, name=name: found[name].append(args[0].detach())) for name in names]
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):  # a dropout draw here must not shift training's
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    out = {}
    for name, calls in found.items():
        if not calls:
            continue
        if calls[0].is_floating_point():
            out[name] = torch.cat([t.reshape(-1, t.shape[-1]) for t in calls])
        else:
            out[name] = torch.cat([t.reshape(len(x), -1) for t in calls], dim=1)
    return out


@dataclass(frozen=True)
class LeakageGuard:
    """Finds and zeroes the rows of an update that give one local sample away (module docstring). ``tolerance``
    the relative readout error that counts as a leak, ``pairs`` whether row differences are read too,
    ``projection`` the dimensions of the candidate search."""

    tolerance: float = DEFAULT_TOLERANCE
    pairs: bool = True
    projection: int = 64

    def __post_init__(self):
        check_number("leakage guard tolerance", self.tolerance, low=0, low_open=True)
        check_number("leakage guard projection", self.projection, low=1, integer=True)

    def leaking_rows(self, model: nn.Module, samples: torch.Tensor, update: Mapping[str, torch.Tensor], *,
                     device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], GuardReport]:
        """``{state key: rows to zero (bool over dim 0)}`` of ``update`` for ``model`` (the model as received)
        trained on ``samples``, and the report."""
        start = time.perf_counter()
        model = copy.deepcopy(model).to(device).train()
        x = samples.to(device)
        anatomy = trace(model, x[:2])
        linears = [layer.name for layer in anatomy.layers("linear") if layer.module.bias is not None
                   and f"{layer.name}.weight" in update and f"{layer.name}.bias" in update]
        embeddings = [layer.name for layer in anatomy.layers("embedding") if f"{layer.name}.weight" in update]
        captured = capture_inputs(model, x, linears + embeddings)
        masks, report = {}, GuardReport()
        for name in linears:
            if name not in captured:
                continue
            a = captured[name]
            owners = unit_owners(x, len(a), anatomy.layer(name).calls)
            weight, bias = update[f"{name}.weight"].to(device), update[f"{name}.bias"].to(device)
            rows, reached = leaking_readouts(weight.flatten(1), bias, a, owners, tolerance=self.tolerance,
                                             pairs=self.pairs, projection=self.projection)
            if bool(rows.any()):
                masks[f"{name}.weight"] = masks[f"{name}.bias"] = rows
            report.layers[name] = {"rows": rows.nonzero().flatten().tolist(), "of": len(bias),
                                   "samples": reached.tolist()}
        for name in embeddings:
            if name not in captured:
                continue
            tokens = captured[name]
            table = update[f"{name}.weight"]
            present = torch.zeros(len(tokens), len(table), dtype=torch.bool, device=tokens.device)
            present.scatter_(1, tokens.clamp(0, len(table) - 1), True)
            alone = present.sum(dim=0) == 1  # tokens in exactly one local sample
            if bool(alone.any()):
                masks[f"{name}.weight"] = alone.to(table.device)
            report.layers[name] = {"rows": alone.nonzero().flatten().tolist(), "of": len(table),
                                   "samples": torch.unique(present[:, alone].nonzero()[:, 0]).tolist()}
        report.seconds = time.perf_counter() - start
        return masks, report

    def sanitise(self, model: nn.Module, samples: torch.Tensor, update: Mapping[str, torch.Tensor], *,
                 device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], GuardReport]:
        """``update`` with every leaking row zeroed (:meth:`leaking_rows`), and the report."""
        masks, report = self.leaking_rows(model, samples, update, device=device)
        return zero_rows(update, masks), report


def zero_rows(update: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A copy of ``update`` with the rows ``masks[key]`` (bool over dim 0) of each tensor set to zero."""
    out = dict(update)
    for key, rows in masks.items():
        if key in out:
            tensor = out[key].clone()
            tensor[rows.to(tensor.device)] = 0
            out[key] = tensor
    return out


def leakage_guard_mod(guard: LeakageGuard | None = None, *, refuse: bool = False) -> ClientMod:
    """The guard as a client mod (an update defense: it wraps local training): after ``call_next`` trains on a copy
    of the received model, the update's leaking rows are zeroed (or, with ``refuse``, the round is refused when
    any row leaks) and the report goes to ``update.metrics["leakage_guard"]``."""
    guard = guard or LeakageGuard()
    if not isinstance(guard, LeakageGuard):
        raise TypeError(f"leakage_guard_mod takes a LeakageGuard, got {type(guard).__name__}")

    def mod(model: nn.Module, client: Client, call_next: CallNext) -> ClientUpdate:
        received = copy.deepcopy(model)
        update = call_next(model)
        if client.truth is None:
            raise ValueError(f"client {client.client_id} kept no record of the samples it trained on")
        tensors, report = guard.sanitise(received, client.truth[0], update.tensors, device=client.config.device)
        if refuse and report.zeroed:
            layer = next(name for name, v in report.layers.items() if v["rows"])
            raise ModelRefused(client.client_id, GUARD_KEY, f"{report.zeroed} rows of the update read out local "
                               f"samples (first at {layer})")
        update.tensors = tensors
        update.metrics[GUARD_KEY] = report.to_dict()
        return update

    return mod


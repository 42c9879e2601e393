"""Leakage self-audit: what a server could read out of this client's own update, measured before sending it.

The client owns its batch, so it need not guess whether a received model is malicious from the model alone: it can
compute the gradient it would send and apply the server's analytic readout to it. For every fully connected layer
with a bias, ``y = W a + b``, the batch gradient is ``dW = Σ_m g_m a_mᵀ`` and ``db = Σ_m g_m`` with ``g_m = dL/dy_m``
the output gradient of unit ``m`` (a sample, or a token of a sequence), so row ``i`` read out with paper 002 Eq. 5,
``â_i = dW_i / db_i``, is the ``g_{m,i}``-weighted average of the units' layer inputs (Eq. 6). It equals one unit's
input ``a_m`` exactly when that unit alone drives row ``i``: a ReLU row activated by one sample (trap weights, the
imprint bins of Robbing the Fed, LOKI), or a row whose other units have (near-)zero loss gradient (fishing, which
makes a few samples' gradients dominate). The audit computes ``â_i`` for every active row, and the bin differences
of rows with parallel weights (:func:`bin_differences`, Robbing the Fed's readout), and the relative distance of
each readout to every unit's true input, ``‖â - a_m‖ / ‖a_m - ā‖`` (``ā`` the mean input of the batch's units);
unit ``m`` is *recovered* at the layer when some readout lies within ``tolerance`` of it. The readout needs nothing
the client does not have: the output gradients come from one forward and backward pass on its batch (exact also
with batch norm, whose coupling they include), with no per-sample gradients.

What is counted as at risk. A layer's input is the model input itself for the first layer of a fully connected
network, a forwarded copy of it when a manipulation passes the input through convolutions or embeddings
(curious kernels, input forwarding, trap weights on a CNN, text embedding), and otherwise features from which the
input can often be inverted. The audit counts a recovered unit at every layer and reports per layer; the score is
the largest fraction of the audited local samples with a recovered unit at any one layer.

Why the yardstick is the distance from the batch's centre. Hidden features of a benign network (ReLU outputs,
post-convolution features) are nearly the same vector for every sample: a large shared component plus small
per-sample parts. Measured against ``‖a_m‖`` any average of them lies within 5% of each one, so a benign FC-NN's
hidden layers and a benign VGG-CNN's first linear layer were "recovered" for 53-100% of the batch (the false
alarms of the first version). Against ``‖a_m - ā‖`` a readout must reproduce what sets ``a_m`` apart.

Where the line falls (32-sample batches of 16x16 bundled images, ``fedleak detect-eval --first-contact``). Benign
models leak this way too (paper 002 Table 2: passive recall 4-25%), and how much depends on the architecture, not
on the server: the benign CNN and text transformer score 0, the VGG-CNN 0-0.16, but a benign FC-NN (widths
256/128) 0.28-0.34 at its first layer, untrained or trained: its rows that one sample alone activates give that
sample away exactly. Trap weights on the same FC-NN score 0.34-0.38, so no threshold separates them there; the
audit is therefore in no default chain (:mod:`fedleak.detection.first_contact` relies on weight signatures) and
tells a client truthfully what it would give away. It does not see class fishing: with several target-class
samples in the batch the fished rows read out their average, not one of them.
:data:`DEFAULT_THRESHOLD` (a quarter of the batch) was chosen before measuring, not fitted.

Options: ``batch_size`` local samples audited (the size of a local batch the client would send a gradient of),
``tolerance`` the relative error below which a readout counts as recovering a unit, ``threshold`` the fraction of
samples at risk above which the model is flagged. The verdict names the layer, and ``details`` lists per layer the
samples at risk (indices into the audited batch), each one's readout error and row.
"""
from __future__ import annotations

import time
from typing import Sequence

import torch
import torch.nn as nn

from fedleak.attacks.analytic import extract_linear
from fedleak.detection.verdict import Batch, Verdict, gather_samples, working_copy
from fedleak.fl.training import task_loss
from fedleak.models.anatomy import trace

EXACT = 1e-4  # relative readout error of an exact copy (float32 round-off)
DEFAULT_TOLERANCE = 0.05  # a near-exact copy: readout within 5% of the input's norm
DEFAULT_THRESHOLD = 0.25  # a quarter of the audited batch; chosen a priori (module docstring: where the line falls)


def capture_linear_io(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                      layers: Sequence[str]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """For each named linear layer, its inputs ``a`` and output gradients ``g = dL/dy`` on the batch, both
    ``(units, features)`` with units = samples x positions (a sequence model's tokens are units of their own);
    the training loss is :func:`task_loss`. A layer called more than once keeps all its calls as units."""
    inputs: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    grads: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    handles = []

    def hook(name):
        def forward_hook(module, args, output):
            inputs[name].append(args[0].detach())
            if output.requires_grad:
                output.register_hook(lambda grad: grads[name].append(grad.detach()))
        return forward_hook

    for name in layers:
        handles.append(model.get_submodule(name).register_forward_hook(hook(name)))
    try:
        model.zero_grad(set_to_none=True)
        task_loss(model, model(x), y).backward()
    finally:
        for handle in handles:
            handle.remove()
        model.zero_grad(set_to_none=True)
    out = {}
    for name in layers:
        if not inputs[name] or len(grads[name]) != len(inputs[name]):
            continue  # the layer did not take part in the loss
        a = torch.cat([t.reshape(-1, t.shape[-1]) for t in inputs[name]])
        g = torch.cat([t.reshape(-1, t.shape[-1]) for t in reversed(grads[name])])  # backward runs calls in reverse
        out[name] = (a, g)
    return out


def unit_owners(x: torch.Tensor, units: int, calls: int = 1) -> torch.Tensor:
    """The sample each unit belongs to: units are the layer's calls, each (samples x positions) in order."""
    per_call = units // calls
    positions = per_call // len(x)
    if positions * len(x) * calls != units:
        raise ValueError(f"cannot assign {units} layer inputs to {len(x)} samples")
    return torch.arange(len(x), device=x.device).repeat_interleave(positions).repeat(calls)


def bin_differences(weight: torch.Tensor, bias: torch.Tensor, weight_grad: torch.Tensor,
                    bias_grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Robbing the Fed's readout (paper 000 App. A.1.1 Eq. 16) wherever a layer has it: rows whose weights are
    parallel measure one function of the input and cut it at thresholds ``-b_i / ‖W_i‖``; the difference of the
    gradients of two adjacent cuts holds only the units between them, so ``(dW_i - dW_j) / (db_i - db_j)`` reads a
    unit alone in its bin. A benign layer has no parallel rows and gives no candidates. Returns
    ``(readouts (K, D), rows (K,))`` with the lower row of each pair."""
    norm = weight.norm(dim=1).clamp_min(torch.finfo(weight.dtype).tiny)
    direction = weight / norm[:, None]
    # groups from 16 fixed random projections (rows x 16), then each row tested exactly against its group's first
    # row only: a rows x rows x features comparison would cost more than the rest of the audit on a wide layer
    probe = torch.randn(weight.shape[1], 16, generator=torch.Generator().manual_seed(0), dtype=weight.dtype)
    sketch = direction @ probe.to(weight.device)
    sketch = sketch / sketch.norm(dim=1, keepdim=True).clamp_min(torch.finfo(weight.dtype).tiny)
    first = (sketch @ sketch.T > 1 - 1e-6).int().argmax(dim=1)  # the diagonal is true: a row is its own group
    exact = (direction * direction[first]).sum(dim=1) > 1 - 1e-6
    group = torch.where(exact, first, torch.arange(len(weight), device=weight.device))
    parallel = group[:, None] == group[None, :]
    parallel.fill_diagonal_(False)
    cut = -bias / norm
    above = parallel & (cut[None, :] > cut[:, None])  # j parallel to i with a higher cut
    has_next = above.any(dim=1)
    rows = has_next.nonzero().flatten()
    nxt = torch.where(above[rows], cut[None, :].expand(len(rows), -1), torch.inf).argmin(dim=1)
    dw, db = weight_grad[rows] - weight_grad[nxt], bias_grad[rows] - bias_grad[nxt]
    keep = db.abs() > 1e-10 * bias_grad.abs().max()
    return dw[keep] / db[keep, None], rows[keep]


def layer_readout(layer: nn.Linear, a: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The server's readouts of one layer from the batch gradient ``(gᵀa, Σg)``: Eq. 5 on every active row and
    the bin differences of parallel rows (:func:`bin_differences`). For each unit the smallest relative error of
    any readout against its input, and that readout's row: ``(error (units,), row (units,), readouts)``."""
    weight_grad, bias_grad = (g.T @ a).double(), g.sum(0).double()
    if not bool(bias_grad.abs().max() > 0):
        inf = torch.full((len(a),), torch.inf, device=a.device)
        return inf, torch.full((len(a),), -1, device=a.device, dtype=torch.long), 0
    readout, rows = extract_linear(weight_grad, bias_grad)
    binned, bin_rows = bin_differences(layer.weight.detach().double(), layer.bias.detach().double(), weight_grad,
                                       bias_grad)
    readout, rows = torch.cat([readout, binned]), torch.cat([rows, bin_rows])
    a = a.double()
    spread = (a - a.mean(dim=0)).norm(dim=1)  # how far each unit's input stands from the batch's centre
    distance = torch.cdist(readout, a)  # (readouts, units); float64 keeps the mm path exact enough
    relative = distance / spread.clamp_min(torch.finfo(torch.float64).tiny)
    relative = torch.where(torch.isfinite(relative) & (spread > 0), relative, torch.inf)
    error, best = relative.min(dim=0)
    return error, rows[best], len(readout)


def self_audit(received_model: nn.Module, local_model: nn.Module | None = None, batches: Sequence[Batch] = (), *,
               device: str | torch.device = "cpu", batch_size: int = 64, tolerance: float = DEFAULT_TOLERANCE,
               threshold: float = DEFAULT_THRESHOLD, seed: int = 0) -> Verdict:
    """Detector: flag when the analytic readout (paper 002 Eq. 5) of this client's would-be gradient recovers the
    inputs of more than ``threshold`` of its ``batch_size`` local samples at one fully connected layer to within
    ``tolerance`` (module docstring). Names the layer and, in ``details["at_risk"]``, the samples per layer."""
    start = time.perf_counter()
    model = working_copy(received_model, device).train()
    generator = torch.Generator().manual_seed(seed)
    x, y = gather_samples(batches, batch_size, generator=generator, device=device)
    anatomy = trace(model, x[:2])  # two samples: batch norm in training mode needs more than one
    linears = [layer for layer in anatomy.layers("linear") if layer.module.bias is not None]
    if not linears:
        raise ValueError(f"the self-audit reads fully connected layers with a bias; {type(received_model).__name__}"
                         f" has none")
    captured = capture_linear_io(model, x, y, [layer.name for layer in linears])
    if not captured:
        raise ValueError("the self-audit found no fully connected layer with a bias that the training loss reaches")
    per_layer, at_risk = {}, {}
    worst_layer, worst = None, -1.0
    for layer in linears:
        if layer.name not in captured:
            continue
        a, g = captured[layer.name]
        owners = unit_owners(x, len(a), layer.calls)
        error, row, readouts = layer_readout(layer.module, a, g)
        hit = error <= tolerance
        samples = torch.unique(owners[hit])
        fraction = len(samples) / len(x)
        per_layer[layer.name] = {"fraction": fraction, "readouts": readouts, "rows": g.shape[1],
                                 "exact": int(torch.unique(owners[error <= EXACT]).numel())}
        if len(samples):
            best = {}
            for unit in hit.nonzero().flatten().tolist():
                sample = int(owners[unit])
                if sample not in best or float(error[unit]) < best[sample]["error"]:
                    best[sample] = {"error": float(error[unit]), "row": int(row[unit])}
            at_risk[layer.name] = {str(s): best[s] for s in sorted(best)}
        if fraction > worst:
            worst_layer, worst = layer.name, fraction
    score = worst
    flagged = score > threshold
    samples = sorted(int(s) for s in at_risk.get(worst_layer, {}))
    summary = (f"self-audit: the readout of {worst_layer} recovers {len(samples)} of {len(x)} local samples within "
               f"{tolerance:g} ({score:.3f} {'>' if flagged else '<='} threshold {threshold:.3g})")
    return Verdict(flagged, "self_audit", worst_layer, "recovered_fraction", score, threshold,
                   time.perf_counter() - start,
                   {"summary": summary, "samples": samples, "per_layer": per_layer, "at_risk": at_risk,
                    "batch_size": len(x), "tolerance": tolerance})

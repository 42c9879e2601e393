"""The one per-sample-gradient engine: the gradient of :func:`fedleak.fl.training.sample_losses` (the training
loss, KL term included) of each sample on its own, for DP-SGD (Abadi et al. 2016, per-sample clipping), the
inversion's dummy gradients (paper 001 Algorithm 1, one lane per victim) and D-SNR (Wang & Li eq. 1).

Models whose samples never meet (linear and convolution layers, element-wise activations, pooling: see
:mod:`fedleak.fl.layerwise_gradients`) take one batched forward and backward and the per-layer outer products;
any other model takes ``torch.func``'s ``vmap(grad(functional_call))`` over the samples, or plain autograd for
one sample alone (no ``vmap`` overhead). The result is differentiable in the inputs, labels and draws (double
backpropagation), so an attacker can optimise them. Random defense modules use each sample's draw where one is
given (the hook of :mod:`fedleak.models.stochastic`), and make a fresh, independent draw per sample otherwise.

Where batch norm in training mode couples the samples, "each sample on its own" and "each sample's loss term in the
batch" differ; :func:`batch_sample_gradients` gives the latter (the rows of the Jacobian of the batch's per-sample
losses, D-SNR's per-sample gradients), all the backward passes at once.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call, grad, vjp, vmap
from torch.nn.modules.batchnorm import _BatchNorm

from fedleak.models.stochastic import forget_last_forward, overriding, stochastic_modules
from fedleak.fl.layerwise_gradients import layerwise_gradients, layerwise_layers
from fedleak.fl.training import auxiliary_modules, sample_losses

Draws = Mapping[str, torch.Tensor]


class SampleGradients:
    """``engine(x (B, *input), y (B, ...) labels or label probabilities, draws name -> (B, 1, ...))`` ->
    ``name -> (B, *shape)``: each sample's gradient for the parameters ``names`` (default: every parameter that
    requires grad) at the model's current weights. The module walks happen once, here; build one engine per
    model and call it in the loop. ``chunk_size`` bounds how many samples ``vmap`` processes at once."""

    def __init__(self, model: nn.Module, names: Sequence[str] | None = None, *, chunk_size: int | None = None):
        parameters = dict(model.named_parameters())
        if names is None:
            names = [n for n, p in parameters.items() if p.requires_grad]
        missing = [n for n in names if n not in parameters]
        if missing:
            raise ValueError(f"the model has no parameters {missing}")
        if not names:
            raise ValueError("per-sample gradients need at least one parameter")
        self.model, self.names = model, list(names)
        self.randoms = dict(stochastic_modules(model))
        self.auxiliary = auxiliary_modules(model)
        self._constants = {n: p.detach() for n, p in parameters.items() if n not in self.names}
        self._constants.update(dict(model.named_buffers()))
        self._weights = {n: parameters[n].detach() for n in self.names}
        self._layers = None if self.randoms or self.auxiliary else layerwise_layers(model, self.names)
        self._vmapped = vmap(grad(self._one_sample), in_dims=(None, 0, 0, 0), randomness="different",
                             chunk_size=chunk_size)

    def _check_draws(self, draws: Draws) -> None:
        unknown = sorted(set(draws) - set(self.randoms))
        if unknown:
            raise ValueError(f"no random defense module named {', '.join(unknown)}; the model's random modules: "
                             f"{', '.join(self.randoms) or 'none'}")

    def _one_sample(self, weights: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, draws: Draws):
        with overriding(self.randoms, draws):
            outputs = functional_call(self.model, {**weights, **self._constants}, (x.unsqueeze(0),))
            return sample_losses(self.model, outputs, y.unsqueeze(0), modules=self.auxiliary).sum()

    def _losses(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return sample_losses(self.model, outputs, y, modules=self.auxiliary)

    def _single(self, x: torch.Tensor, y: torch.Tensor, draws: Draws) -> dict[str, torch.Tensor]:
        """One sample with plain autograd: the graph is kept when an input requires grad."""
        leaves = {n: w.detach().requires_grad_(True) for n, w in self._weights.items()}
        connected = torch.is_grad_enabled() and (
            x.requires_grad or y.requires_grad or any(d.requires_grad for d in draws.values()))
        with torch.enable_grad(), overriding(self.randoms, {n: d[0] for n, d in draws.items()}):
            outputs = functional_call(self.model, {**leaves, **self._constants}, (x,))
            loss = sample_losses(self.model, outputs, y, modules=self.auxiliary).sum()
            grads = torch.autograd.grad(loss, list(leaves.values()), create_graph=connected)
        return {n: g.unsqueeze(0) for n, g in zip(leaves, grads)}

    def __call__(self, x: torch.Tensor, y: torch.Tensor, draws: Draws | None = None) -> dict[str, torch.Tensor]:
        draws = {} if draws is None else dict(draws)
        self._check_draws(draws)
        if self._layers is not None:
            connected = torch.is_grad_enabled() and (x.requires_grad or y.requires_grad)
            grads = layerwise_gradients(self.model, self._layers, self.names, {**self._weights, **self._constants},
                                        x, y, self._losses, create_graph=connected)
        elif len(x) == 1:
            grads = self._single(x, y, draws)
        else:
            grads = self._vmapped(self._weights, x, y, draws)
        forget_last_forward(self.randoms.values())  # the per-sample forwards left batched tensors behind
        return grads


def per_sample_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, draws: Draws | None = None,
                         names: Sequence[str] | None = None, *, chunk_size: int | None = None
                         ) -> dict[str, torch.Tensor]:
    """One call of a :class:`SampleGradients` engine: ``name -> (B, *shape)``."""
    return SampleGradients(model, names, chunk_size=chunk_size)(x, y, draws)


def couples_samples(model: nn.Module) -> bool:
    """Whether a batch norm in training mode mixes the samples of a batch (its statistics are the batch's)."""
    return any(isinstance(m, _BatchNorm) and m.training for m in model.modules())


def batch_sample_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, names: Sequence[str] | None = None,
                           *, norms: bool = False, chunk_size: int = 16) -> dict[str, torch.Tensor]:
    """``∇_θ ℓ_i(θ; X)`` for each sample ``i`` of one batch forward of ``X``: row ``i`` of the Jacobian of the
    per-sample losses (:func:`sample_losses`), where batch norm's statistics couple the samples (D-SNR, Wang & Li
    eq. 1; without coupling this is :class:`SampleGradients`'s gradient of each sample on its own).
    ``name -> (B, *shape)``, or with ``norms`` each gradient's norm, ``name -> (B,)``.

    One forward; then the backward of all ``B`` losses at once, ``chunk_size`` one-hot cotangents at a time
    (autograd's batched gradients, a ``vmap``): to the outputs of the linear, convolution and batch-norm layers
    owning ``names`` when only those are asked (:func:`_lane_gradients`: each lane's weight gradient is one matrix
    product of its output cotangents over the whole batch with the layer's unfolded inputs), else to the
    parameters themselves (``torch.func.vjp``). The cost is that of ``B`` backward passes: every loss reaches every
    sample through the batch statistics. The model's parameters and buffers (running statistics) are unchanged.
    """
    parameters = dict(model.named_parameters())
    names = [n for n, p in parameters.items() if p.requires_grad] if names is None else list(names)
    missing = [n for n in names if n not in parameters]
    if missing or not names:
        raise ValueError(f"the model has no parameters {missing}" if missing else
                         "per-sample gradients need at least one parameter")
    if len(x) != len(y):
        raise ValueError(f"{len(x)} inputs but {len(y)} labels")
    layers = _lane_layers(model, names)
    values = {n: p.detach() for n, p in parameters.items()}
    values.update({n: b.clone() for n, b in model.named_buffers()})  # the forward's statistics update these copies
    grads = None if layers is None else _lane_gradients(model, layers, names, values, x, y, norms, chunk_size)
    if grads is None:
        grads = _vjp_gradients(model, names, values, x, y, chunk_size)
        if norms:
            grads = {n: g.flatten(1).norm(dim=1) for n, g in grads.items()}
    return grads


def _vjp_gradients(model: nn.Module, names: Sequence[str], values: dict[str, torch.Tensor], x: torch.Tensor,
                   y: torch.Tensor, chunk_size: int) -> dict[str, torch.Tensor]:
    """The general case of :func:`batch_sample_gradients`: ``vmap`` of the pullback of the per-sample losses
    with respect to the parameters over one-hot cotangents."""
    watched = {n: values[n] for n in names}
    coupled = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    for module in coupled:
        module.track_running_stats = False  # vjp may not mutate the running-statistics buffers
    try:
        losses, pullback = vjp(lambda w: sample_losses(model, functional_call(model, {**values, **w}, (x,)), y),
                               watched)
    finally:
        for module in coupled:
            module.track_running_stats = True
    eye = torch.eye(len(losses), device=losses.device, dtype=losses.dtype)
    return vmap(lambda cotangent: pullback(cotangent)[0], chunk_size=chunk_size)(eye)


def _lane_layers(model: nn.Module, names: Sequence[str]) -> dict[str, nn.Module] | None:
    """``layer -> module`` owning ``names`` when each is the weight or bias of a ``Linear``, a zero-padded
    ``Conv2d`` (any groups) or an affine batch norm, and no module appears twice; else None."""
    modules = dict(model.named_modules())
    if len(modules) != len(list(model.named_modules(remove_duplicate=False))):
        return None
    layers = {}
    for name in names:
        layer, _, kind = name.rpartition(".")
        module = modules.get(layer)
        conv = isinstance(module, nn.Conv2d) and module.padding_mode == "zeros" and not isinstance(module.padding, str)
        if kind not in ("weight", "bias") or not (conv or isinstance(module, (nn.Linear, _BatchNorm))):
            return None
        layers[layer] = module
    return layers


def _lane_gradients(model: nn.Module, layers: dict[str, nn.Module], names: Sequence[str],
                    values: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, norms: bool,
                    chunk_size: int) -> dict[str, torch.Tensor] | None:
    """:func:`batch_sample_gradients` by the per-layer rule; None when a layer ran other than once or its input
    was overwritten in place (then the general case applies)."""
    seen: dict[str, list] = {name: [] for name in layers}

    def probe(name):  # a zero added to the output: its gradient is the output's, even after in-place changes
        def hook(module, args, output):
            zero = torch.zeros_like(output, requires_grad=True)
            seen[name].append((args[0], args[0]._version, zero))
            return output + zero
        return hook

    handles = [module.register_forward_hook(probe(name)) for name, module in layers.items()]
    try:
        with torch.enable_grad():
            losses = sample_losses(model, functional_call(model, values, (x.detach(),)), y)
    finally:
        for handle in handles:
            handle.remove()
    if any(len(calls) != 1 or calls[0][0]._version != calls[0][1] for calls in seen.values()):
        return None
    inputs = {name: calls[0][0].detach() for name, calls in seen.items()}
    probes = [seen[name][0][2] for name in layers]
    wanted = {name: [kind for kind in ("weight", "bias") if f"{name}.{kind}" in names] for name in layers}
    eye = torch.eye(len(losses), device=losses.device, dtype=losses.dtype)
    parts: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    for start in range(0, len(losses), chunk_size):
        cotangents = torch.autograd.grad(losses, probes, eye[start:start + chunk_size], retain_graph=True,
                                         is_grads_batched=True)
        for (name, module), g in zip(layers.items(), cotangents):
            for kind, lane in zip(wanted[name], _layer_rule(module, inputs[name], g, wanted[name])):
                parts[f"{name}.{kind}"].append(lane.flatten(1).norm(dim=1) if norms else lane)
    return {n: torch.cat(parts[n]) for n in names}


def _layer_rule(module: nn.Module, a: torch.Tensor, g: torch.Tensor, kinds: Sequence[str]) -> list[torch.Tensor]:
    """Each lane's gradients ``kinds`` of ``module`` from its input ``a (B, ...)`` and the lanes' cotangents at its
    output ``g (L, B, ...)``: every sample's outer product (Goodfellow 2015), summed over the batch."""
    lanes = g.shape[0]
    out = []
    if isinstance(module, nn.Linear):
        g = g.reshape(lanes, -1, module.out_features)
        for kind in kinds:
            out.append(g.transpose(1, 2) @ a.reshape(-1, module.in_features) if kind == "weight" else g.sum(1))
        return out
    if isinstance(module, nn.Conv2d):
        groups = module.groups
        for kind in kinds:
            if kind == "bias":
                out.append(g.sum(dim=(1, 3, 4)))
                continue
            patches = F.unfold(a, module.kernel_size, dilation=module.dilation, padding=module.padding,
                               stride=module.stride)  # (B, C_in k k, P), channel-major
            batch, _, positions = patches.shape
            patches = patches.view(batch, groups, -1, positions).permute(1, 0, 3, 2)
            patches = patches.reshape(groups, batch * positions, -1)
            lane = g.reshape(lanes, batch, groups, -1, positions).permute(2, 0, 3, 1, 4)
            lane = lane.reshape(groups, -1, batch * positions)
            weight = torch.bmm(lane, patches).view(groups, lanes, -1, patches.shape[2]).transpose(0, 1)
            out.append(weight.reshape(lanes, *module.weight.shape))
        return out
    # batch norm: y = γ x̂ + β with the batch's statistics in training mode (or without running ones)
    dims = [0] + list(range(2, a.dim()))
    shape = [1, -1] + [1] * (a.dim() - 2)
    if module.training or module.running_mean is None:
        mean, var = a.mean(dim=dims), a.var(dim=dims, unbiased=False)
    else:
        mean, var = module.running_mean, module.running_var
    sums = [1 + d for d in dims]
    for kind in kinds:
        if kind == "bias":
            out.append(g.sum(dim=sums))
        else:
            normalised = (a - mean.view(shape)) * torch.rsqrt(var.view(shape) + module.eps)
            out.append((g * normalised).sum(dim=sums))
    return out

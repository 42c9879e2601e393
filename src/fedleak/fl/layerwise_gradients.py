"""Per-sample gradients from one batched forward and backward, for models whose samples never meet (the
per-layer rule behind Opacus's grad samplers, Goodfellow 2015 "Efficient per-example gradient computations").

A sample's gradient for a ``Linear`` or ``Conv2d`` weight is the outer product of the gradient at the layer's
output with the layer's input (unfolded into patches for a convolution): ``G_i = dL_i/dz_i  a_i^T``. One forward
of the whole batch and one backward to the layers' outputs give every ``dL_i/dz_i``, because sample ``i``'s loss
depends on its own outputs only; the outer products are batched matrix products. Everything stays differentiable
in the inputs (double backpropagation for gradient inversion), and no ``vmap`` turns the convolutions' weight
gradients into grouped convolutions.

It applies only where that independence is known: every module is one of :data:`SAMPLEWISE` (elementwise
layers, pooling, containers, the residual block of :mod:`fedleak.models.resnet`; random defense modules only
when the caller gives each sample its own draw, see :func:`layerwise_layers`), none runs twice, and every
requested parameter is the weight or bias of a ``Linear``, a ``Conv2d`` (any groups, depthwise included; zero
padding, ``"same"`` where it is symmetric), a ``GroupNorm`` or ``LayerNorm`` (each normalises one sample), or a
batch norm that normalises each sample on its own: in eval mode (running statistics), or without running
statistics in training mode, where a sample on its own is a batch of one (as ``vmap`` over samples and the
inversion's lanes see it) and batch norm is instance norm. A batch norm that would update running statistics
from the batch couples the samples and is left to ``vmap``.
"""
from __future__ import annotations

import functools
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from fedleak.fl.constant_layers import FixedConv, ReLU
from fedleak.fl.factored import LowRank, RankOne, factor_at, outer_sum
from fedleak.fl.patch_products import PatchProducts
from fedleak.fl.unfold import unfold_patches
from fedleak.models.resnet import BasicBlock
from fedleak.models.stochastic import StochasticModule

# Modules that act on each sample on its own (containers included); a model made only of these qualifies.
SAMPLEWISE = (nn.Sequential, nn.ModuleList, nn.ModuleDict, nn.Conv2d, nn.Linear, nn.ReLU, nn.LeakyReLU, nn.ELU,
              nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.ReLU6, nn.Hardswish, nn.Flatten, nn.Identity, nn.MaxPool2d,
              nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.GroupNorm, nn.LayerNorm, BasicBlock)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _padding(module: nn.Conv2d) -> tuple[int, ...] | None:
    """A convolution's zero padding per side as numbers: ``"valid"`` is none, ``"same"`` (stride 1) is
    ``d (k - 1) / 2`` on each side where that is whole (an odd kernel), else None (asymmetric padding)."""
    if not isinstance(module.padding, str):
        return tuple(module.padding)
    if module.padding == "valid":
        return (0,) * len(module.kernel_size)
    total = [d * (k - 1) for d, k in zip(module.dilation, module.kernel_size)]
    return tuple(t // 2 for t in total) if all(t % 2 == 0 for t in total) else None


def _plain_conv(module: nn.Module, same: bool = False) -> bool:
    if not isinstance(module, nn.Conv2d) or module.padding_mode != "zeros":
        return False
    return (same or not isinstance(module.padding, str)) and _padding(module) is not None


def _per_sample_batch_norm(module: nn.Module) -> bool:
    """Whether ``module`` is a batch norm that treats every sample on its own (see the module docstring)."""
    if type(module) not in _BATCH_NORMS:
        return False
    return module.running_mean is None or not module.training


def _qualifies(module: nn.Module, drawn: bool = False) -> bool:
    if getattr(module, "inplace", False):
        return False  # in place activations would overwrite the recorded layer outputs
    if drawn and isinstance(module, StochasticModule):
        return module.samplewise
    return type(module) in SAMPLEWISE or _per_sample_batch_norm(module)


def _batch_statistics(module: nn.Module) -> bool:
    return isinstance(module, _BATCH_NORMS) and (module.training or module.running_mean is None)


def _sample_batch_norm(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Batch norm of every sample as a batch of one: instance norm with the layer's affine parameters."""
    if x.dim() < 3:
        raise ValueError(f"batch norm of one sample needs positions to average over; got inputs of shape "
                         f"{tuple(x.shape)} (a batch of one has one value per channel)")
    return F.instance_norm(x, weight=module.weight, bias=module.bias, eps=module.eps)


_OWNERS = (nn.Linear, nn.GroupNorm, nn.LayerNorm) + _BATCH_NORMS


def layerwise_layers(model: nn.Module, names: Sequence[str], *, drawn: bool = False, same: bool = False
                     ) -> dict[str, nn.Module] | None:
    """``layer name -> module`` of the layers owning ``names`` when the per-layer rule applies to ``model``,
    else None. With ``drawn``, the caller gives every random defense module one draw per sample (its
    ``override``), and those whose output then depends on each sample's own input and draw only
    (``samplewise``: Dropout, the variational bottlenecks, their KL terms per sample) qualify too. With ``same``,
    a ``Conv2d`` with ``padding="same"`` (the CVB's encoders, vgg_cnn) qualifies where that padding is symmetric
    (an odd kernel); the defaults keep the engine's older reach for its other callers (DP-SGD, D-SNR), whose
    figures stay on the path they were made with."""
    modules = dict(model.named_modules())
    if len(modules) != len(list(model.named_modules(remove_duplicate=False))):
        return None  # a module that runs twice would record only its last call
    if not all(_qualifies(m, drawn) for m in modules.values()):
        return None
    layers = {}
    for name in names:
        layer, _, kind = name.rpartition(".")
        module = modules.get(layer)
        if kind not in ("weight", "bias") or not (isinstance(module, _OWNERS) or _plain_conv(module, same)):
            return None
        layers[layer] = module
    return layers

def _weight_gradients(weight: torch.Tensor, g: torch.Tensor, a: torch.Tensor, factored: bool,
                      products: PatchProducts | None = None, output: torch.Tensor | None = None):
    """The weight's and the bias's per-sample gradients from ``g`` ``(B, O, P)`` and ``a`` ``(B, I, P)``
    (through ``products``, the layer's :class:`PatchProducts`, when it ran as one, with its ``output``)."""
    if factored and g.shape[2] == 1:
        g = g.squeeze(2)  # a view whose derivative is a view (a select's writes into a tensor of zeros)
        return RankOne(g, a.squeeze(2), weight.shape), g
    if factored and factor_at(g.shape[1], a.shape[1], g.shape[2]):
        return LowRank(g, a, weight.shape), g.sum(2)
    if products is not None and g.shape[2] > 1:
        return products.weight_gradient(g, a, output).view(len(g), *weight.shape), g.sum(2)
    return outer_sum(g, a).view(len(g), *weight.shape), g.sum(2)


def _linear_gradients(module: nn.Linear, inputs: torch.Tensor, grad_out: torch.Tensor, factored: bool):
    a = inputs.reshape(len(inputs), -1, module.in_features).transpose(1, 2)
    g = grad_out.reshape(len(grad_out), -1, module.out_features).transpose(1, 2)
    return _weight_gradients(module.weight, g, a, factored)


def _patches(module: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``(B, C kh kw, P)``: the input patches each output position sees. A convolution with one output
    position and no padding sees the top-left ``kh x kw`` window: a view, not an unfolding."""
    kernel, padding = module.kernel_size, _padding(module)
    if all(p == 0 for p in padding) and all(d == 1 for d in module.dilation) and all(
            (n - k) // s == 0 for n, k, s in zip(x.shape[2:], kernel, module.stride)):
        return x[:, :, :kernel[0], :kernel[1]].reshape(len(x), -1, 1)
    if all(d == 1 for d in module.dilation):
        return unfold_patches(x, kernel, module.stride, padding)
    return F.unfold(x, kernel, dilation=module.dilation, padding=padding, stride=module.stride)


def _conv(module: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``module``'s forward; through :class:`fedleak.fl.constant_layers.FixedConv` when its parameters are
    constants (as in every engine call, first-order ones included) and its input is differentiated."""
    weight, bias = module.weight, module.bias
    if weight.requires_grad or (bias is not None and bias.requires_grad) or not x.requires_grad:
        return module._conv_forward(x, weight, bias)
    return FixedConv.apply(x, weight, bias, module.stride, _padding(module), module.dilation, module.groups)


def _recorded_conv(module: nn.Conv2d, seen: dict, name: str, model_input: torch.Tensor, twice: bool,
                   x: torch.Tensor) -> torch.Tensor:
    """``module``'s forward for one engine call, which records what its weight gradient needs. A single sample,
    or the model input itself (few channels) seen at more than one position, runs as a matrix product with its
    patches: one unfolding serves the forward and the weight gradient, and the input's gradient costs a product
    and the fold the patches need anyway (mkldnn's input gradient of a 3-channel convolution costs 5x its
    forward). Measured on one CPU thread: 1.3x faster than mkldnn for one sample, 5-10% faster per inversion
    iteration on the cnn's first layer at 16 and 128 samples; deeper layers of a batch keep mkldnn (0.8x).
    When the gradients are differentiated again (``twice``: the inversion), a convolution that sees one window
    of its unpadded input (the cnn's last, 5 x 5 into 1 x 1) is a linear layer on that window: ``F.linear`` and
    its derivatives are matrix products (one thread, 16 samples, 32 x 5 x 5 into 64: mkldnn's four convolutions
    per inversion iteration took 0.2-0.3 ms each, 8% of it; F.linear's products a tenth of that or less)."""
    size = [(n + 2 * p - d * (k - 1) - 1) // s + 1 for n, p, d, k, s in
            zip(x.shape[2:], _padding(module), module.dilation, module.kernel_size, module.stride)]
    if twice and size == [1, 1] and module.groups == 1 and not any(_padding(module)) and all(
            d == 1 for d in module.dilation):
        patches = _patches(module, x)  # (B, C kh kw, 1): the top-left window, a view
        out = F.linear(patches.squeeze(2), module.weight.flatten(1), module.bias).view(len(x), -1, 1, 1)
        seen[name] = (patches, out, True)
        return out
    if module.groups > 1 or (len(x) > 1 and (x is not model_input or size == [1, 1])):
        out = _conv(module, x)
        seen[name] = (x, out, False)
        return out
    patches = _patches(module, x)
    weight = module.weight.flatten(1)
    if weight.requires_grad:  # PatchProducts treats the weight as a constant
        products, out = True, torch.bmm(weight.expand(len(x), *weight.shape), patches)
    else:
        products = PatchProducts(weight)
        out = products.output(patches)
    if module.bias is not None:
        out = out + module.bias.unsqueeze(1)
    out = out.view(len(x), -1, *size)
    seen[name] = (patches, out, products)
    return out


def _normalised(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The normalised input ``x_hat`` that a norm layer scales by its weight and shifts by its bias."""
    if isinstance(module, nn.GroupNorm):
        return F.group_norm(x, module.num_groups, eps=module.eps)
    if isinstance(module, nn.LayerNorm):
        return F.layer_norm(x, module.normalized_shape, eps=module.eps)
    if _batch_statistics(module):
        return F.instance_norm(x, eps=module.eps)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return (x - module.running_mean.view(shape)) * torch.rsqrt(module.running_var.view(shape) + module.eps)


def _norm_gradients(module: nn.Module, inputs: torch.Tensor, grad_out: torch.Tensor):
    """A norm layer's per-sample weight and bias gradients: ``sum dL/dy * x_hat`` and ``sum dL/dy`` over every
    position its affine parameters are shared across."""
    shape = module.normalized_shape if isinstance(module, nn.LayerNorm) else (grad_out.shape[1],)

    def shared_sum(t: torch.Tensor) -> torch.Tensor:
        if isinstance(module, nn.LayerNorm):
            return t.reshape(len(t), -1, *shape).sum(1)
        return t.reshape(len(t), shape[0], -1).sum(2)

    weight = shared_sum(grad_out * _normalised(module, inputs)) if module.weight is not None else None
    return weight, shared_sum(grad_out) if module.bias is not None else None


def _grouped_conv_gradients(module: nn.Conv2d, patches: torch.Tensor, grad_out: torch.Tensor):
    """A grouped (e.g. depthwise) convolution's per-sample weight gradient: one outer product per group."""
    groups, batch = module.groups, len(patches)
    g = grad_out.flatten(2)
    per_group = outer_sum(g.reshape(batch * groups, -1, g.shape[2]),
                           patches.reshape(batch * groups, -1, patches.shape[2]))
    return per_group.reshape(batch, *module.weight.shape), g.sum(2)


def layerwise_gradients(model: nn.Module, layers: dict[str, nn.Module], names: Sequence[str],
                        values: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                        losses: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *, create_graph: bool,
                        factored: bool = False) -> dict[str, torch.Tensor | RankOne | LowRank]:
    """``name -> (B, *shape)``: each sample's gradient of ``losses(outputs, y)`` (one loss per sample) for the
    parameters ``names`` of ``layers`` (from :func:`layerwise_layers`), the model run with ``values`` as its
    parameters and buffers. The result is differentiable in ``x`` and ``y`` when ``create_graph``. With
    ``factored``, the weights applied once per sample get a :class:`RankOne` instead, and those applied at few
    positions (:func:`fedleak.fl.factored.factor_at`) a :class:`LowRank` (see
    :func:`fedleak.fl.factored.materialised`)."""
    seen: dict[str, tuple[torch.Tensor, torch.Tensor, bool | PatchProducts]] = {}  # input, output, unfolded

    def record(name):
        def hook(module, args, output):
            seen[name] = (args[0], output, False)
        return hook

    if not x.requires_grad:
        x = x.detach().requires_grad_(True)  # a graph to the layers' outputs; x's own gradient is unused
    handles, replaced = [], []
    for name, module in layers.items():
        if isinstance(module, nn.Conv2d):  # for this call only (see _recorded_conv)
            module.forward = functools.partial(_recorded_conv, module, seen, name, x, create_graph)
            replaced.append(module)
        else:
            handles.append(module.register_forward_hook(record(name)))
    for module in model.modules():
        if _batch_statistics(module):  # for this call only: each sample its own batch
            module.forward = functools.partial(_sample_batch_norm, module)
            replaced.append(module)
        elif type(module) is nn.ReLU and create_graph:  # for this call only (see ReLU)
            module.forward = ReLU.apply
            replaced.append(module)
    try:
        with torch.enable_grad():
            outputs = functional_call(model, values, (x,))
            outs = [seen[name][1] for name in layers]
            grad_outs = torch.autograd.grad(losses(outputs, y).sum(), outs, create_graph=create_graph)
    finally:
        for handle in handles:
            handle.remove()
        for module in replaced:
            del module.forward
    grads = {}
    unfolded_inputs: dict[tuple, torch.Tensor] = {}  # convolutions reading one input (the CVB's encoders) share

    def patches_of(module: nn.Conv2d, inputs: torch.Tensor) -> torch.Tensor:
        key = (id(inputs), module.kernel_size, module.stride, _padding(module), module.dilation)
        if key not in unfolded_inputs:
            unfolded_inputs[key] = _patches(module, inputs)
        return unfolded_inputs[key]

    with torch.set_grad_enabled(create_graph):
        for (name, module), grad_out in zip(layers.items(), grad_outs):
            inputs, output, unfolded = seen[name]
            if isinstance(module, nn.Linear):
                weight, bias = _linear_gradients(module, inputs, grad_out, factored)
            elif not isinstance(module, nn.Conv2d):
                weight, bias = _norm_gradients(module, inputs, grad_out)
            elif module.groups > 1:
                weight, bias = _grouped_conv_gradients(module, patches_of(module, inputs), grad_out)
            else:
                patches = inputs if unfolded else patches_of(module, inputs)
                products = unfolded if isinstance(unfolded, PatchProducts) else None
                weight, bias = _weight_gradients(module.weight, grad_out.flatten(2), patches, factored, products,
                                                 output)
            grads[f"{name}.weight"], grads[f"{name}.bias"] = weight, bias
    return {n: grads[n] for n in names}

"""The one per-sample-gradient engine: the gradient of :func:`fedleak.fl.training.sample_losses` (the training
loss, KL term included) of each sample on its own, for DP-SGD (Abadi et al. 2016, per-sample clipping), the
inversion's dummy gradients (paper 001 Algorithm 1, one lane per victim) and D-SNR (Wang & Li eq. 1).

Models whose samples never meet (linear and convolution layers, element-wise activations, pooling: see
:mod:`fedleak.fl.layerwise_gradients`) take one batched forward and backward and the per-layer outer products;
any other model takes ``torch.func``'s ``vmap(grad(functional_call))`` over the samples, or plain autograd for
one sample alone (no ``vmap`` overhead). The result is differentiable in the inputs, labels and draws (double
backpropagation), so an attacker can optimise them. Random defense modules use each sample's draw where one is
given (the hook of :mod:`fedleak.defenses.stochastic`), and make a fresh, independent draw per sample otherwise.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn as nn
from torch.func import functional_call, grad, vmap

from fedleak.models.stochastic import overriding, stochastic_modules
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
        for module in self.randoms.values():  # the per-sample forwards left batched tensors behind
            module.last_draw = None
            for attr in module.transient:
                setattr(module, attr, None)
        return grads


def per_sample_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, draws: Draws | None = None,
                         names: Sequence[str] | None = None, *, chunk_size: int | None = None
                         ) -> dict[str, torch.Tensor]:
    """One call of a :class:`SampleGradients` engine: ``name -> (B, *shape)``."""
    return SampleGradients(model, names, chunk_size=chunk_size)(x, y, draws)

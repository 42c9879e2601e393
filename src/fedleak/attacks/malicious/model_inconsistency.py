"""Model inconsistency (Pasquini et al., CCS 2022; paper 000 §2, ref. [31]): eluding secure aggregation by sending
each client its own model.

The target client receives what another attack (``inner``) would send it; every other client receives a
*silenced* copy of the honest model, in which every convolution and linear layer but the output layer has zero
weights and bias -1, so every ReLU after them is dead and no parameter before the output layer receives a
gradient, in any number of local steps. The secure aggregate of the round then equals the target's update scaled
by its share of the examples, except the output layer's bias, which also holds the other clients' label counts;
the inner attack reads it as if it were the target's own update. Readouts that are ratios of one update's entries
(passive extraction, trap weights, imprints) do not see the scale; an inversion sees it only in the output bias.
"""
from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any, Mapping

import torch
import torch.nn as nn

from fedleak.attacks import ATTACKS
from fedleak.attacks.base import AttackContext, Observed, Reconstruction
from fedleak.checks import NotApplicable
from fedleak.fl.training import batch_gradients
from fedleak.models.anatomy import trace


def silenced(model: nn.Module, input_shape: tuple[int, ...], num_classes: int | None) -> nn.Module:
    """A copy of ``model`` whose update is zero on every parameter but the output layer's bias: every conv and
    linear layer before the output layer gets zero weights and bias -1 (dead ReLUs). Checked on a random batch
    (:func:`check_batch`); a model this does not silence (e.g. a normalisation layer re-centres the dead
    activations) is refused."""
    model = copy.deepcopy(model)
    anatomy = trace(model, input_shape=input_shape)
    layers = [layer for layer in anatomy.executed if layer.kind in ("conv", "linear")]
    if not layers:
        raise NotApplicable("model inconsistency silences conv and linear layers; the model has none")
    *hidden, output = layers
    with torch.no_grad():
        for layer in hidden:
            layer.module.weight.zero_()
            if getattr(layer.module, "bias", None) is not None:
                layer.module.bias.fill_(-1.0)
    x, y = check_batch(model, anatomy, input_shape, num_classes)
    allowed = {f"{output.name}.bias"}
    moving = [name for name, grad in batch_gradients(model, x, y).items()
              if name not in allowed and bool(grad.abs().max() > 0)]
    if moving:
        norms = [layer.name for layer in anatomy.layers("norm")]
        why = f" (its normalisation layers {', '.join(norms[:3])} re-centre the dead activations)" if norms else ""
        raise NotApplicable(f"cannot silence this model: {', '.join(moving[:3])} still receive a gradient{why}")
    return model


def check_batch(model: nn.Module, anatomy, input_shape: tuple[int, ...], num_classes: int | None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random batch of 4 the model reads, with labels of the shape its outputs take: token ids below the
    first embedding's vocabulary for a model that embeds tokens (:func:`fedleak.models.anatomy.example_input`'s
    rule), floats in [0, 1) otherwise; a label per position for sequence outputs ``(B, L, V)``."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(0)
    embeddings = [m for m in model.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag))]
    if embeddings:
        x = torch.randint(0, embeddings[0].num_embeddings, (4, *input_shape), generator=generator)
    else:
        x = torch.rand(4, *input_shape, generator=generator)
    outputs = anatomy.output_layer().output_shape  # without the batch dimension
    labels = (4, *outputs[:-1]) if len(outputs) > 1 else (4,)
    y = torch.randint(0, max(2, num_classes or 2), labels, generator=generator)
    return x.to(device), y.to(device)


class ModelInconsistency:
    """Model inconsistency (module docstring) around the attack ``inner`` of :data:`fedleak.attacks.ATTACKS`
    (built with ``inner_options``), aimed at client ``target`` (``None``: the first client the round targets).
    Every client of the round must receive a model from it (``ThreatModel(victims=None)``): a client sent the
    global model instead adds its own update."""

    name = "model_inconsistency"

    def __init__(self, target: int | None = None, inner: str = "trap_weights",
                 inner_options: Mapping[str, Any] | None = None):
        if target is not None and (isinstance(target, bool) or not isinstance(target, int) or target < 0):
            raise ValueError(f"model inconsistency needs a target client id >= 0, got {target!r}")
        if inner == self.name:
            raise ValueError("model inconsistency cannot wrap itself")
        self.target, self.inner = target, ATTACKS.build(inner, **dict(inner_options or {}))

    def prepare(self, model: nn.Module, context: AttackContext) -> tuple[dict[int, nn.Module], tuple]:
        """The inner attack's model for the target, a silenced model for every other client of the round."""
        if not context.clients:
            raise ValueError("model inconsistency sends each client of the round its own model; the context names "
                             "no clients (AttackContext(clients=...))")
        target = context.clients[0] if self.target is None else self.target
        if target not in context.clients:
            raise ValueError(f"model inconsistency targets client {target}, which is not among the round's "
                             f"targeted clients {list(context.clients)}")
        try:
            sent, secret = self.inner.prepare(model, replace(context, clients=(target,)))
        except NotApplicable as error:
            raise NotApplicable(f"model inconsistency sends the target what {self.inner.name} would, and "
                                f"{self.inner.name} does not apply: {error}") from error
        own = sent[target] if isinstance(sent, Mapping) else sent
        silent = silenced(model, context.input_shape, context.num_classes)
        return {c: own if c == target else silent for c in context.clients}, (secret, own)

    def reconstruct(self, observed: Observed, secret: tuple, knowledge=None, *,
                    device: str | torch.device = "cpu") -> Reconstruction:
        """The inner attack's reconstruction from each observed update, read as the target's (with the model the
        target received)."""
        inner_secret, own = secret
        seen = Observed(observed.updates, observed.kind, observed.sources, observed.num_examples,
                        tuple(own for _ in observed.sources))
        return self.inner.reconstruct(seen, inner_secret, knowledge, device=device)


def model_inconsistency(*, target: int | None = None, inner: str = "trap_weights",
                        inner_options: Mapping[str, Any] | None = None) -> ModelInconsistency:
    """Model inconsistency: the target gets the inner attack's model, every other client a model with a zero update,
    so the secure aggregate is the target's update (Pasquini et al., CCS 2022)."""
    return ModelInconsistency(target, inner, inner_options)

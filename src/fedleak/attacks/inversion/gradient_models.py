"""How a targeted attack mimics the client's gradient computation (paper 001 §4 and Algorithm 2), plugged into
the one inversion loop: which draws the random modules use, what is done to the dummy gradient before it is
compared (DP clipping and noise, the pruning mask), which layers are compared, and the extra free tensors
optimised jointly with the images, with their regularisers and constraints.

- Dropout masks (DIA, Scheliga et al. 2023): free tensors initialised Bernoulli(1 - p), clamped to [0, 1]
  after each step, their mean pulled toward the keep rate 1 - p.
- Bottleneck noise (VBIA, §4.3): free eps_VB_A initialised N(0, I), optimised jointly.
- Pruning (GPIA, §4.2): the client's mask Phi_C = 1(|G~| > 0) (eq. 2) multiplies the dummy gradient.
- DP-SGD (DPIA, §4.1): dummy noise Xi_A ~ N(0, sigma^2 tau^2) added to the clipped dummy gradient, pulled
  toward mean 0 and standard deviation sigma tau. WIIG uses the client's true clipping noise Xi_C instead.
- PIG ("ignore" attack, Scheliga et al. 2024b): the bottleneck decoder's and every later layer's gradients are
  left out of the distance.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from fedleak.attacks.inversion.config import InversionConfig
from fedleak.attacks.base import Knowledge
from fedleak.fl.factored import materialised
from fedleak.models.stochastic import stochastic_modules
from fedleak.models.anatomy import trace

PRUNING_DEFENSE = "prune"
_DRAW = "draw:"
_NOISE = "noise:"


@dataclass
class GradientModel:
    """The attacker's model of one client's gradient computation, for ``lanes`` attack lanes."""

    names: list[str]
    fixed_draws: dict[str, torch.Tensor] = field(default_factory=dict)
    free_draws: dict[str, torch.Tensor] = field(default_factory=dict)
    keep_rates: dict[str, float] = field(default_factory=dict)
    pruning_masks: dict[str, torch.Tensor] = field(default_factory=dict)
    dp_clip: float | None = None
    fixed_noise: dict[str, torch.Tensor] = field(default_factory=dict)
    free_noise: dict[str, torch.Tensor] = field(default_factory=dict)
    noise_std: float = 0.0
    mask_weight: float = 0.0
    noise_weight: float = 0.0

    def initial_state(self) -> dict[str, torch.Tensor]:
        """The free tensors, keyed ``draw:<module>`` and ``noise:<parameter>``, to optimise with the images."""
        state = {_DRAW + name: value.clone() for name, value in self.free_draws.items()}
        state.update({_NOISE + name: value.clone() for name, value in self.free_noise.items()})
        return state

    def draws(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Module name -> ``(L, 1, ...)`` draws to use instead of fresh randomness."""
        draws = dict(self.fixed_draws)
        draws.update({name: state[_DRAW + name] for name in self.free_draws})
        return draws

    def shared(self, grads: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """What the client would have sent for these dummy gradients: GP_Phi(DP_Xi(G')) (Algorithm 2, input).
        Factored gradients (:data:`fedleak.fl.factored.FACTORED`) are multiplied out only where a
        defense changes them."""
        if self.dp_clip is not None or self.pruning_masks:
            grads = materialised(grads)
        if self.dp_clip is not None:
            norm = torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in grads.values()))
            scale = 1 / torch.clamp(norm / self.dp_clip, min=1.0)
            grads = {n: g * scale.view(-1, *([1] * (g.dim() - 1))) for n, g in grads.items()}
            noise = dict(self.fixed_noise)
            noise.update({n: state[_NOISE + n] for n in self.free_noise})
            grads = {n: g + noise[n] if n in noise else g for n, g in grads.items()}
        if self.pruning_masks:
            grads = {n: g * self.pruning_masks[n] if n in self.pruning_masks else g for n, g in grads.items()}
        return grads

    def penalty(self, state: dict[str, torch.Tensor], lanes: int) -> torch.Tensor | float:
        """Per-lane regularisers of the free tensors: mask mean toward the keep rate (DIA), noise toward
        N(0, sigma^2 tau^2) moments (DPIA)."""
        total: torch.Tensor | float = 0.0
        for name, keep in self.keep_rates.items():
            mask = state[_DRAW + name].reshape(lanes, -1)
            total = total + self.mask_weight * (mask.mean(1) - keep).pow(2)
        if self.free_noise:
            flat = torch.cat([state[_NOISE + n].reshape(lanes, -1) for n in self.free_noise], 1) / self.noise_std
            total = total + self.noise_weight * (flat.mean(1).pow(2) + (flat.std(1) - 1).pow(2))
        return total

    @torch.no_grad()
    def project(self, state: dict[str, torch.Tensor]) -> None:
        """Relaxed Dropout masks stay in [0, 1] (DIA)."""
        for name in self.keep_rates:
            state[_DRAW + name].clamp_(0.0, 1.0)


def _decoder_onwards(model: nn.Module, example: torch.Tensor, bottlenecks: list[str]) -> set[str]:
    """Parameters of each bottleneck's decoder (its last parameterised layer to run) and of every layer
    that runs after it."""
    order = [layer for layer in trace(model, example).executed if layer.parameters]
    first = None
    for bottleneck in bottlenecks:
        inside = [i for i, layer in enumerate(order)
                  if layer.name == bottleneck or layer.name.startswith(bottleneck + ".")]
        if inside:
            first = inside[-1] if first is None else min(first, inside[-1])
    if first is None:
        return set()
    return {p for layer in order[first:] for p in layer.parameters}


def build_gradient_model(config: InversionConfig, model: nn.Module, received: dict[str, torch.Tensor],
                         knowledge: Knowledge, lane_victim: torch.Tensor,
                         generator: torch.Generator) -> GradientModel:
    """The gradient model ``config`` describes for a model (the attacker's copy, in training mode), the
    received gradients ``name -> (V, ...)`` and the server's knowledge; lane ``l`` attacks victim
    ``lane_victim[l]``. Free tensors are initialised from ``generator``."""
    device = lane_victim.device
    lanes = len(lane_victim)
    names = list(received)
    example = torch.zeros((1, *knowledge.input_shape), device=device)
    randoms = stochastic_modules(model)
    if randoms:
        with torch.no_grad():
            model(example)  # every random module records a draw of the shape one input needs
    gm = GradientModel(names=names, mask_weight=config.mask_weight, noise_weight=config.noise_weight)
    for name, module in randoms:
        mode = config.dropout if module.kind == "mask" else config.bottleneck
        if mode == "true":
            if name not in knowledge.true_draws:
                raise ValueError(f"attack {config.name!r} needs the client's true draw of random module {name!r} "
                                 f"(Knowledge.true_draws)")
            gm.fixed_draws[name] = knowledge.true_draws[name].to(device).float()[lane_victim]
        elif mode == "optimised":
            shape = (lanes, *module.last_draw.shape)
            if module.kind == "mask":
                keep = 1.0 - module.p
                gm.keep_rates[name] = keep
                init = torch.bernoulli(torch.full(shape, keep), generator=generator)
            else:
                init = torch.randn(shape, generator=generator)
            gm.free_draws[name] = init.to(device)
    if config.ignore_after_bottleneck:
        dropped = _decoder_onwards(model, example, [n for n, m in randoms if m.kind == "noise"])
        gm.names = [n for n in names if n not in dropped]
        if not gm.names:
            raise ValueError(f"attack {config.name!r} left every gradient out of the distance")
    if config.pruning == "mask" or (config.pruning == "known" and PRUNING_DEFENSE in knowledge.defenses):
        gm.pruning_masks = {n: (g != 0).float()[lane_victim] for n, g in received.items()}
    if config.dp != "ignore" and knowledge.dp_clip is not None:
        gm.dp_clip = float(knowledge.dp_clip)
        if config.dp == "true":
            missing = [n for n in names if n not in knowledge.true_dp_noise]
            if missing:
                raise ValueError(f"attack {config.name!r} needs the client's true DP noise for {missing[:3]} ... "
                                 f"(Knowledge.true_dp_noise)")
            gm.fixed_noise = {n: knowledge.true_dp_noise[n].to(device).float()[lane_victim] for n in names}
        else:
            if not knowledge.dp_sigma:
                raise ValueError(f"attack {config.name!r} needs the DP noise multiplier (Knowledge.dp_sigma)")
            gm.noise_std = float(knowledge.dp_sigma) * gm.dp_clip
            gm.free_noise = {n: (torch.randn((lanes, *received[n].shape[1:]), generator=generator)
                                 * gm.noise_std).to(device) for n in names}
    elif config.dp == "optimised":
        raise ValueError(f"attack {config.name!r} models DP-SGD but the server knowledge has no dp_clip")
    return gm

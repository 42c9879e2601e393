"""DP-SGD on the client (Abadi et al. 2016; paper 001 §3.4.2) and its privacy accounting.

Each sample's gradient g_i is scaled by 1 / max(1, ||g_i||_2 / tau) (norm over all parameters), the scaled
gradients are summed, Gaussian noise Xi ~ N(0, sigma^2 tau^2 I) is added and the sum is divided by the batch
size B. Paper 001 uses tau = 20 with sigma = 1e-4 (ablation, §5.3) and 1e-3 (Table 1). The privacy spent is
computed by Opacus's RDP accountant, whose ``noise_multiplier`` is this sigma (noise std = sigma * tau).

Where BatchNorm mixes the samples of a batch, a sample's gradient is no longer its own: each sample's loss term
in the batch has a gradient (:func:`fedleak.fl.per_sample.batch_sample_gradients`), but every sample also moves
the others' through the batch statistics, so clipping per-sample gradients bounds no sample's influence (Opacus
refuses such models too). ``dp`` refuses them with that reason, and ``dp:batchnorm=group`` trains them with
GroupNorm in place of every BatchNorm (Wu & He 2018; :func:`replace_batchnorm`), which normalises each sample on
its own.
"""
from __future__ import annotations

import math
import warnings

import torch
import torch.nn as nn
from opacus.accountants import RDPAccountant

from fedleak.checks import NotApplicable, check_number
from fedleak.defenses import DEFENSES
from fedleak.defenses.defended import Defended
from fedleak.fl import per_sample  # a module: fedleak.fl.per_sample imports this package


def privatize(per_sample: dict[str, torch.Tensor], clip: float,
              noise: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """DP_Xi(G) of paper 001 §3.4.2 on per-sample gradients ``(B, *shape)``: clip each sample's total norm to
    ``clip``, sum, add ``noise`` (one tensor per name, or none), divide by B. Differentiable in both inputs,
    so the DPIA attacker can use it with its dummy noise."""
    if not per_sample:
        raise ValueError("privatize needs at least one per-sample gradient")
    batch = next(iter(per_sample.values())).shape[0]
    squared = sum(g.reshape(batch, -1).pow(2).sum(dim=1) for g in per_sample.values())
    scale = 1.0 / torch.clamp(squared.sqrt() / clip, min=1.0)
    out = {}
    for name, g in per_sample.items():
        total = (g * scale.reshape(batch, *([1] * (g.dim() - 1)))).sum(dim=0)
        if noise is not None:
            total = total + noise[name]
        out[name] = total / batch
    return out


class DPSGD:
    """A client ``gradient_fn`` ``(model, x, y) -> {name: gradient}`` computing the DP-SGD gradient.

    Per-sample gradients come from :class:`fedleak.fl.per_sample.SampleGradients`. The model's
    random defense modules draw once for the whole batch (a forward without gradients), and each sample's
    gradient uses its slice of those draws, so ``last_draw`` afterwards holds the client's true draws. The
    noise of the last call is kept in ``last_noise`` (what a well-informed attacker, WIIG, is given).
    """

    def __init__(self, clip: float = 20.0, sigma: float = 1e-4, generator: torch.Generator | None = None):
        check_number("DP clipping threshold tau", clip, low=0, low_open=True)
        check_number("DP noise multiplier sigma", sigma, low=0)
        self.clip, self.sigma, self.generator = float(clip), float(sigma), generator
        self.last_noise: dict[str, torch.Tensor] = {}

    def per_sample_gradients(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Gradients of the training loss for each sample on its own, ``{name: (B, *param.shape)}``
        (:class:`fedleak.fl.per_sample.SampleGradients`)."""
        check_per_sample(model)
        engine = per_sample.SampleGradients(model)
        with torch.no_grad():
            if engine.randoms:
                model(x)
        draws = {name: m.last_draw for name, m in engine.randoms.items() if m.last_draw is not None}
        try:
            grads = engine(x, y, {name: d.unsqueeze(1) for name, d in draws.items()})
        except RuntimeError as error:
            if "vmap" not in str(error):
                raise
            raise NotApplicable(f"DP-SGD needs per-sample gradients, and torch.func.vmap cannot compute them for "
                                f"{type(model).__name__}: {str(error).split('. ')[0]} (e.g. an `if` on a batch "
                                f"statistic, which also mixes the samples)") from error
        for name, module in engine.randoms.items():
            module.last_draw = draws.get(name)
        return grads

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        grads = self.per_sample_gradients(model, x, y)
        std = self.sigma * self.clip
        device = self.generator.device if self.generator is not None else None
        self.last_noise = {  # drawn where the generator lives, then moved to the gradients' device
            n: (torch.randn(g.shape[1:], generator=self.generator, device=device or g.device, dtype=g.dtype)
                * std).to(g.device)
            for n, g in grads.items()
        }
        return {n: g.detach() for n, g in privatize(grads, self.clip, self.last_noise).items()}


def dp_gradient_fn(clip: float = 20.0, sigma: float = 1e-4, generator: torch.Generator | None = None) -> DPSGD:
    """The DP-SGD ``gradient_fn`` with clipping threshold ``clip`` (tau) and noise multiplier ``sigma``."""
    return DPSGD(clip, sigma, generator)


def check_per_sample(model: nn.Module) -> None:
    """Per-sample gradients are undefined where BatchNorm mixes the samples of a batch (Opacus refuses it too)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            raise NotApplicable(
                f"DP-SGD needs per-sample gradients, but {name!r} is a BatchNorm layer, which mixes the samples of a "
                f"batch; train with GroupNorm in its place (dp:batchnorm=group swaps every BatchNorm for GroupNorm, "
                f"or build the model with GroupNorm, e.g. resnet18 with norm='group')")


BATCHNORM_CHOICES = ("refuse", "group")
GROUPS = 32  # GroupNorm's usual group count (Wu & He 2018), lowered to a divisor of the channels


def replace_batchnorm(model: nn.Module) -> list[str]:
    """Swap every BatchNorm of ``model`` in place for a GroupNorm over the same channels, with gcd(32, C) groups
    (Wu & He 2018) and the BatchNorm's affine weight and bias; returns the swapped paths. The running statistics
    are dropped: GroupNorm normalises each sample on its own, in training and evaluation alike."""
    swapped = []
    for name, module in list(model.named_modules()):
        if not isinstance(module, nn.modules.batchnorm._BatchNorm):
            continue
        channels = module.num_features
        norm = nn.GroupNorm(math.gcd(GROUPS, channels), channels, eps=module.eps, affine=module.affine)
        if module.affine:
            with torch.no_grad():
                norm.weight.copy_(module.weight)
                norm.bias.copy_(module.bias)
        reference = module.weight if module.affine else module.running_mean
        if reference is not None:
            norm = norm.to(reference.device)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, norm)
        swapped.append(name)
    return swapped


class DPAccountant:
    """Privacy spent by DP-SGD steps: Opacus's RDP accountant (Mironov 2017) with a history of
    ``(noise_multiplier, sample_rate, steps)``."""

    def __init__(self):
        self._accountant = RDPAccountant()

    def step(self, noise_multiplier: float, sample_rate: float, steps: int = 1) -> None:
        """Record ``steps`` DP-SGD steps with noise multiplier sigma on Poisson batches of rate ``sample_rate``."""
        check_number("accounting's noise multiplier", noise_multiplier, low=0, low_open=True)
        check_number("sample_rate", sample_rate, low=0, high=1, low_open=True)
        check_number("steps", steps, low=1, integer=True)
        for _ in range(steps):
            self._accountant.step(noise_multiplier=noise_multiplier, sample_rate=sample_rate)

    @property
    def history(self) -> list[tuple[float, float, int]]:
        return list(self._accountant.history)

    def epsilon(self, delta: float) -> float:
        """The epsilon of (epsilon, delta)-DP spent so far. With paper 001's tiny sigma (1e-4) it is finite but
        astronomically large (no formal guarantee); Opacus's warning that the optimal order is the smallest
        one is silenced for that reason."""
        check_number("delta", delta, low=0, high=1, low_open=True, high_open=True)
        if not self._accountant.history:
            return 0.0
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Optimal order is the smallest alpha")
            return float(self._accountant.get_epsilon(delta))


def dp_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float = 1e-5) -> float:
    """epsilon spent by ``steps`` DP-SGD steps with noise multiplier sigma and sampling rate q = B / n."""
    accountant = DPAccountant()
    accountant.step(noise_multiplier, sample_rate, steps)
    return accountant.epsilon(delta)


@DEFENSES.register("dp")
def add_dp(target: Defended, sigma: float = 1e-4, clip: float = 20.0, seed: int | None = None,
           batchnorm: str = "refuse") -> Defended:
    """Train with DP-SGD (``gradient_fn`` = :class:`DPSGD`); ``seed`` seeds the noise (global RNG when None).
    A model with BatchNorm is refused (``batchnorm="refuse"``), or trained with GroupNorm in its place
    (``batchnorm="group"``, :func:`replace_batchnorm`)."""
    check_number("dp option sigma", sigma, low=0)
    check_number("dp option clip", clip, low=0, low_open=True)
    if seed is not None:
        check_number("dp option seed", seed, low=0, integer=True)
    if batchnorm not in BATCHNORM_CHOICES:
        raise ValueError(f"dp option batchnorm must be one of {', '.join(BATCHNORM_CHOICES)}, got {batchnorm!r}")
    if batchnorm == "group":
        replace_batchnorm(target.model)
    check_per_sample(target.model)
    generator = None if seed is None else torch.Generator().manual_seed(int(seed))
    target.gradient_fn = dp_gradient_fn(clip, sigma, generator)
    target.disclosure.update(dp_clip=target.gradient_fn.clip, dp_sigma=target.gradient_fn.sigma)
    target.last_noise = lambda fn=target.gradient_fn: fn.last_noise
    return target

"""Variational bottlenecks as privacy modules: PRECODE (Scheliga et al. 2022) and CVB (Scheliga et al. 2024b),
paper 001 §3.4.4.

An encoder E maps features z to [mu, std]; a bottleneck beta_VB = mu + std * eps with eps ~ N(0, I) is sampled
(reparameterisation trick, Kingma & Welling 2013); a decoder D maps it back to the feature shape. Both sample in
training *and* evaluation mode, as the authors' code does. The draw of the :class:`StochasticModule` protocol is
eps. ``auxiliary_loss()`` is beta * KL(N(mu, std^2) || N(0, I)) of the last forward, which
:func:`fedleak.fl.training.task_loss` adds to the training loss. The KL is summed over the latent channels and
averaged over the batch and (CVB) the spatial positions: the reduction of the authors' code, so that their beta
values keep their scale (their CVB code plugs std in as a log-variance; fedleak uses the KL of std itself).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from fedleak.checks import NotApplicable, check_number
from fedleak.defenses import DEFENSES
from fedleak.models.stochastic import StochasticModule
from fedleak.defenses.defended import Defended
from fedleak.models.anatomy import Anatomy, trace
from fedleak.models.insertion import insert_module


def gaussian_kl(mu: torch.Tensor, std: torch.Tensor, *, per_sample: bool = False) -> torch.Tensor:
    """KL(N(mu, std^2) || N(0, 1)) summed over dim 1 (the latent channels), averaged over all other dims; with
    ``per_sample`` averaged over all dims but the batch dim, shape (B,)."""
    log_std = torch.log(std.clamp_min(1e-12))
    kl = (0.5 * (mu.pow(2) + std.pow(2) - 1.0) - log_std).sum(dim=1)
    return kl.reshape(len(kl), -1).mean(1) if per_sample else kl.mean()


class VariationalBottleneck(StochasticModule):
    """Shared forward of PRECODE and CVB: ``D(mu + std * eps)`` with ``[mu, std] = E(x)``; eps is the draw."""

    kind = "noise"
    transient = ("mu", "std")
    samplewise = True  # encoder, noise and decoder act on each sample; the KL per sample: sample_auxiliary_loss

    def __init__(self, beta: float):
        super().__init__()
        check_number("bottleneck KL weight beta", beta, low=0)
        self.beta = float(beta)
        self.mu: torch.Tensor | None = None
        self.std: torch.Tensor | None = None

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def decode(self, z: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def fresh_draw(self, like: torch.Tensor) -> torch.Tensor:
        return torch.randn_like(like)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu, std = self.encode(x)
        self.mu, self.std = mu, std
        return self.decode(mu + std * self.draw(std), x)

    def auxiliary_loss(self) -> torch.Tensor:
        """beta * KL of the last forward's posterior against N(0, I)."""
        if self.mu is None:
            raise RuntimeError(f"{type(self).__name__}.auxiliary_loss() needs a forward pass first")
        return self.beta * gaussian_kl(self.mu, self.std)

    def sample_auxiliary_loss(self) -> torch.Tensor:
        """:meth:`auxiliary_loss` of each sample of the last forward, shape (B,); its mean is the batch's."""
        if self.mu is None:
            raise RuntimeError(f"{type(self).__name__}.sample_auxiliary_loss() needs a forward pass first")
        return self.beta * gaussian_kl(self.mu, self.std, per_sample=True)


class Precode(VariationalBottleneck):
    """PRECODE: fully connected VB on flattened features of ``in_shape``: Linear(d, 2K) -> mu and
    softplus std, Linear(K, d) back (Scheliga et al. 2022; defaults K = 256, beta = 1e-3)."""

    def __init__(self, in_shape: tuple[int, ...], K: int = 256, beta: float = 1e-3):
        super().__init__(beta)
        if isinstance(K, bool) or not isinstance(K, int) or K < 1:
            raise ValueError(f"PRECODE latent size K must be a positive int, got {K!r}")
        self.in_shape, self.K = tuple(in_shape), K
        features = math.prod(self.in_shape)
        self.encoder = nn.Linear(features, 2 * K)
        self.decoder = nn.Linear(K, features)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        stats = self.encoder(x.flatten(1))
        return stats[:, : self.K], F.softplus(stats[:, self.K :])

    def decode(self, z: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).reshape(like.shape)

    def extra_repr(self) -> str:
        return f"in_shape={self.in_shape}, K={self.K}, beta={self.beta}"


class ConvBottleneck(VariationalBottleneck):
    """CVB: two bias-free 'same' convolutions C -> K for mu and std (softplus of the output clipped to
    [-5, 5], as in the authors' code), and a bias-free 1x1 convolution K -> C back (Scheliga et al. 2024b).

    ``in_shape`` is ``(C, H, W)`` (Conv2d) or ``(C, L)`` (Conv1d); inputs are viewed as ``(B, *in_shape)`` and
    the output has the input's shape, so ViT tokens ``(B, T, D)`` can pass with ``in_shape = (T, h, w)``,
    ``h * w = D``. ``K = "adaptive"`` is C / 2, or 8 when C < 8.
    """

    def __init__(self, in_shape: tuple[int, ...], K: int | str = "adaptive", beta: float = 0.1,
                 kernel_size: int = 5):
        super().__init__(beta)
        if len(in_shape) not in (2, 3):
            raise ValueError(f"CVB needs in_shape (C, L) or (C, H, W), got {tuple(in_shape)}")
        channels = in_shape[0]
        if K == "adaptive":
            K = channels // 2 if channels >= 8 else 8
        if isinstance(K, bool) or not isinstance(K, int) or K < 1:
            raise ValueError(f"CVB latent channels K must be a positive int or 'adaptive', got {K!r}")
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1:
            raise ValueError(f"CVB kernel_size must be a positive int, got {kernel_size!r}")
        self.in_shape, self.K, self.kernel_size = tuple(in_shape), K, kernel_size
        conv = nn.Conv2d if len(in_shape) == 3 else nn.Conv1d
        self.mu_encoder = conv(channels, K, kernel_size, padding="same", bias=False)
        self.std_encoder = conv(channels, K, kernel_size, padding="same", bias=False)
        self.decoder = conv(K, channels, 1, bias=False)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.reshape(x.shape[0], *self.in_shape)
        return self.mu_encoder(x), F.softplus(self.std_encoder(x).clamp(-5.0, 5.0))

    def decode(self, z: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).reshape(like.shape)

    def extra_repr(self) -> str:
        return f"in_shape={self.in_shape}, K={self.K}, beta={self.beta}, kernel_size={self.kernel_size}"


@dataclass(frozen=True)
class CvbPlacement:
    """Where and how the authors place a CVB in a model (Scheliga et al. 2024b, their model configs)."""

    after: str
    beta: float
    kernel_size: int


# Where a model declares none (``model.defense_points["cvb"]``, see :func:`fedleak.models.build_model`): the authors'
# CNN setting at the traced equivalent of its point.
GENERIC_BETA, GENERIC_KERNEL = 0.1, 5


def cvb_in_shape(features: tuple[int, ...]) -> tuple[int, ...]:
    """The CVB's view of a feature shape: images as they are; tokens ``(T, D)`` as T channels on a
    sqrt(D) x sqrt(D) grid when D is a square (the authors' ViT), else as T channels of length D (Conv1d)."""
    if len(features) == 2:
        tokens, width = features
        side = math.isqrt(width)
        return (tokens, side, side) if side * side == width else features
    return features


def output_layer_point(anatomy: Anatomy) -> str:
    """The module path of the model's output layer, before which PRECODE goes: the last fully connected layer to
    run, when nothing with parameters runs after it; a :class:`NotApplicable` naming what the model ends with
    otherwise."""
    layers = [layer for layer in anatomy.executed if layer.kind in ("conv", "linear", "attention", "embedding")]
    if not layers:
        raise NotApplicable(f"PRECODE goes before the output layer, and {anatomy.model} runs no conv, linear or "
                            "attention layer")
    linears = anatomy.layers("linear")
    last = layers[-1]
    if last.kind != "linear" or not linears:
        raise NotApplicable(f"PRECODE goes before a fully connected output layer; {anatomy.model}'s last layer is "
                            f"the {last.kind} layer {last.name!r} ({last.type})")
    if last.calls > 1:
        raise NotApplicable(f"PRECODE goes before the output layer {last.name!r}, which runs {last.calls} times per "
                            "forward (a shared layer), so a module before it would run on every call")
    return last.name


def cvb_point(anatomy: Anatomy) -> str:
    """Where the CVB goes in a model outside the registry (the traced equivalent of the authors' placements
    that the registry models declare: after the first conv block, after the first transformer block): after the first
    hidden activation whose output is a feature map (C, H, W), (C, L) or a token sequence (T, D) (after the module
    that feeds it when the activation is written in the forward code), else after the first block of a model
    whose attention layers are not its own children; a :class:`NotApplicable` naming why otherwise."""
    skipped = []
    for step in anatomy.activations():
        anchor = step if step.layer is not None else anatomy.producer(step)
        if anchor is None:
            skipped.append(f"{step.name} reads {' and '.join(step.reads)}, not the output of one module")
            continue
        if anchor.layer.output_shape is None or len(anchor.layer.output_shape) not in (2, 3):
            continue
        earlier = anatomy.executed[:[layer.name for layer in anatomy.executed].index(anchor.name)]
        if any(layer.kind == "attention" for layer in earlier):
            break  # inside a transformer block: place after the block below
        if anchor.layer.calls > 1:
            skipped.append(f"{anchor.name} runs {anchor.layer.calls} times per forward")
            continue
        return anchor.name
    for attention in anatomy.layers("attention"):
        block = attention.name.rpartition(".")[0]
        if block and block in anatomy.shapes and anatomy.shapes[block][1] is not None \
                and len(anatomy.shapes[block][1]) == 2:
            return block
    flat = ", ".join(f"{s.name} {_shape_of(anatomy, s)}" for s in anatomy.activations()) or "none"
    why = f"; skipped: {'; '.join(skipped)}" if skipped else ""
    why += f"; {anatomy.functional_note}" if anatomy.functional_note else ""
    raise NotApplicable(f"CVB convolves a feature map (C, H, W), (C, L) or token sequence (T, D) after a hidden "
                        f"activation; {anatomy.model} has none (its activations: {flat}{why}); use PRECODE "
                        "(precode), which needs only a fully connected output layer, or name a point with "
                        "cvb:at=PATH:beta=B:kernel_size=K")


def _shape_of(anatomy: Anatomy, step) -> str:
    anchor = step if step.layer is not None else anatomy.producer(step)
    shape = None if anchor is None else anchor.layer.output_shape
    return "(shape unknown)" if shape is None else str(tuple(shape))


@DEFENSES.register("precode")
def add_precode(target: Defended, K: int = 256, beta: float = 1e-3) -> Defended:
    """Insert :class:`Precode` (named ``precode``) just before the model's output layer (``classifier`` in every
    registry model; :func:`output_layer_point` in any other)."""
    check_number("precode option K", K, low=1, integer=True)
    check_number("precode option beta", beta, low=0)
    anatomy = trace(target.model, input_shape=target.input_shape)
    point = output_layer_point(anatomy)
    shape = anatomy.feature_shape(point, side="input")
    insert_module(target.model, "precode", Precode(shape, K=K, beta=beta).to(_device(target.model)), before=point)
    return target


@DEFENSES.register("cvb")
def add_cvb(target: Defended, K: int | str = "adaptive", beta: float | None = None,
            kernel_size: int | None = None, at: str | None = None) -> Defended:
    """Insert :class:`ConvBottleneck` (named ``cvb``) after ``at``, by default where the authors put it in the model
    (its declared ``defense_points["cvb"]``), with their beta and kernel size unless given; in a model outside
    fedleak's registry (which declares no points), at :func:`cvb_point` with the authors' CNN beta and kernel size."""
    if K != "adaptive":
        check_number("cvb option K", K, low=1, integer=True)
    if beta is not None:
        check_number("cvb option beta", beta, low=0)
    if kernel_size is not None:
        check_number("cvb option kernel_size", kernel_size, low=1, integer=True)
    anatomy = trace(target.model, input_shape=target.input_shape)
    declared = getattr(target.model, "defense_points", None)  # None: a model from outside the registry
    placement = None if declared is None or "cvb" not in declared else CvbPlacement(**declared["cvb"])
    if placement is None and declared is not None and (at is None or beta is None or kernel_size is None):
        raise NotApplicable(f"cvb has no default placement for model {target.model_name!r} (its authors placed "
                            f"none); give at=, beta= and kernel_size=")
    if placement is None:
        placement = CvbPlacement(at if at is not None else cvb_point(anatomy), GENERIC_BETA, GENERIC_KERNEL)
    after = at if at is not None else placement.after
    features = anatomy.feature_shape(after)
    if len(features) not in (2, 3):
        raise NotApplicable(f"CVB convolves a feature map (C, H, W), (C, L) or tokens (T, D); the output of "
                            f"{after!r} has shape {features}")
    module = ConvBottleneck(cvb_in_shape(features), K=K, beta=placement.beta if beta is None else beta,
                            kernel_size=placement.kernel_size if kernel_size is None else kernel_size)
    insert_module(target.model, "cvb", module.to(_device(target.model)), after=after)
    return target


def _device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")

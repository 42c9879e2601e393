"""The one shape of every attack (breaching's ``prepare`` / ``reconstruct`` split; STYLE.md "One attack shape").

An attack is two calls. ``prepare(model, context) -> (sent, secret)`` is the server's move before a round: what it
sends (the model itself for an honest server; a manipulated model; or a mapping client id -> model when each
client gets its own, i.e. model inconsistency) and what it keeps to itself. ``reconstruct(observed, secret,
knowledge) -> Reconstruction`` reads back what the server was allowed to see of the round (:class:`Observed`):
each client's update, or only the secure aggregate. The clients' data never reaches either call; it travels
beside the updates to :mod:`fedleak.cases.scoring`, for scoring only.
"""
from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol

import torch
import torch.nn as nn

from fedleak.checks import check_number

Sent = nn.Module | Mapping[int, nn.Module]


@dataclass
class Reconstruction:
    """What an attack reads out of an update: one row per candidate point.

    ``inputs`` (K, *point shape): images or feature vectors (float), token ids (int64, -1 where unknown) or
    (position, token) pairs; ``labels`` (K,) when the attack recovers them; ``declared`` (K,) bool: the points the
    attacker itself claims are single training points, without ground truth (an analytic row that holds one input,
    a complete token sequence; every point of an inversion); ``meta``: per-point tensors of length K (the neuron row
    a point came from, the attack loss, ``source``: the index of the observed update it was read from, see
    :attr:`Observed.sources`); ``info``: scalars about the whole
    reconstruction (the layer's neuron count, seconds); ``paired``: an optimisation attack's points, one per
    sample of its update, point i the reconstruction of sample i (for a B = 1 update: of its one sample), so a
    scorer compares each point with its own sample instead of the nearest one.
    """

    inputs: torch.Tensor
    labels: torch.Tensor | None = None
    declared: torch.Tensor | None = None
    meta: dict[str, torch.Tensor] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    paired: bool = False

    def __post_init__(self):
        count = len(self.inputs)
        if self.declared is None:
            self.declared = torch.ones(count, dtype=torch.bool, device=self.inputs.device)
        for name, value in [("labels", self.labels), ("declared", self.declared), *self.meta.items()]:
            if value is not None and len(value) != count:
                raise ValueError(f"reconstruction {name} has {len(value)} entries for {count} points")

    def __len__(self) -> int:
        return len(self.inputs)

    def declared_points(self, tolerance: float = 1e-4) -> torch.Tensor:
        """The distinct declared points: real-valued points that agree within ``tolerance`` of the data scale
        (mean l2 norm) are kept once; integer points (tokens, pairs) once per distinct row."""
        points = self.inputs[self.declared]
        if len(points) == 0 or not points.is_floating_point():
            return torch.unique(points, dim=0) if len(points) else points
        flat = points.flatten(1)
        scale = flat.norm(dim=1).mean().clamp_min(torch.finfo(flat.dtype).tiny)
        close = torch.cdist(flat, flat, compute_mode="donot_use_mm_for_euclid_dist") <= tolerance * scale
        first = close.float().argmax(dim=1)  # the first point each point agrees with
        return points[first == torch.arange(len(points), device=points.device)]

    def select(self, mask: torch.Tensor) -> Reconstruction:
        """The points where ``mask`` (K,) is true, with their labels and metadata."""
        return Reconstruction(self.inputs[mask], None if self.labels is None else self.labels[mask],
                              self.declared[mask], {k: v[mask] for k, v in self.meta.items()}, dict(self.info),
                              self.paired)

    @staticmethod
    def concat(parts: list[Reconstruction]) -> Reconstruction:
        """One reconstruction from several, part i read from observed update i (``meta["source"]``)."""
        if not parts:
            raise ValueError("nothing to concatenate")
        device = parts[0].inputs.device
        meta_keys = set.intersection(*(set(p.meta) for p in parts))
        meta = {k: torch.cat([p.meta[k] for p in parts]) for k in sorted(meta_keys)}
        meta["source"] = torch.cat([torch.full((len(p),), i, dtype=torch.long, device=device)
                                    for i, p in enumerate(parts)])
        labels = None if any(p.labels is None for p in parts) else torch.cat([p.labels for p in parts])
        info = {k: v for k, v in parts[0].info.items() if all(_same(p.info.get(k), v) for p in parts[1:])}
        info["seconds"] = sum(p.info.get("seconds", 0.0) for p in parts)
        return Reconstruction(torch.cat([p.inputs for p in parts]), labels,
                              torch.cat([p.declared for p in parts]), meta, info, all(p.paired for p in parts))


def _same(a: Any, b: Any) -> bool:
    """Equal info values: tensors (e.g. fishing's features) of one shape and the same entries, anything else by ==."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    return a == b


@dataclass(frozen=True)
class LocalTraining:
    """The client's local training in FedAvg, which the server set up (Dimitrov et al. 2022 §3): plain SGD with
    learning rate ``lr`` on mini-batches of ``batch_size``, for ``epochs`` epochs over its data, or for ``steps``
    steps when set (one pass over ``steps * batch_size`` samples)."""

    lr: float
    batch_size: int
    epochs: int = 1
    steps: int | None = None

    def __post_init__(self):
        check_number("local lr", self.lr, low=0, low_open=True)
        check_number("local batch_size", self.batch_size, low=1, integer=True)
        check_number("local epochs", self.epochs, low=1, integer=True)
        if self.steps is not None:
            check_number("local steps", self.steps, low=1, integer=True)


@dataclass
class Knowledge:
    """What an honest-but-curious server knows beyond the gradients (paper 001 §3.2 and §4.4).

    ``input_shape`` (C, H, W) of the data and ``input_range`` of its values (the box the dummy images are kept
    in); ``defenses``: names of the defenses the client used (CDIA targets Dropout, pruning and the privacy
    modules among them; the random modules themselves are part of the model); ``dp_clip``/``dp_sigma``: the
    DP-SGD parameters (DPIA, WIIG). The client's true randomness, which only the WIIG baseline is given:
    ``true_draws`` (random-module name -> ``(V, 1, ...)``, the draws of each victim's step) and ``true_dp_noise``
    (parameter name -> ``(V, *shape)``). ``local_training``: the clients' FedAvg recipe (attacks on FedAvg updates).
    """

    input_shape: tuple[int, ...]
    input_range: tuple[float, float] = (0.0, 1.0)
    defenses: tuple[str, ...] = ()
    dp_clip: float | None = None
    dp_sigma: float | None = None
    true_draws: Mapping[str, torch.Tensor] = field(default_factory=dict)
    true_dp_noise: Mapping[str, torch.Tensor] = field(default_factory=dict)
    local_training: LocalTraining | None = None

    def __post_init__(self):
        self.input_shape = tuple(int(s) for s in self.input_shape)
        self.defenses = tuple(self.defenses)
        low, high = self.input_range
        if not low < high:
            raise ValueError(f"input_range must be (low, high) with low < high, got {self.input_range}")
        check_number("input_range low", low)
        check_number("input_range high", high)
        if self.dp_clip is not None:
            check_number("dp_clip", self.dp_clip, low=0, low_open=True)
        if self.dp_sigma is not None:
            check_number("dp_sigma", self.dp_sigma, low=0)
        if self.local_training is not None and not isinstance(self.local_training, LocalTraining):
            raise TypeError(f"local_training must be a LocalTraining, got {type(self.local_training).__name__}")


@dataclass
class AttackContext:
    """What the server knows when it prepares a round: the data's ``input_shape`` (no batch dim) and
    ``num_classes``, the ``round``, the ``clients`` it targets in it, ``public`` data of its own (imprint bins,
    fishing thresholds), a ``seed`` and the ``device``."""

    input_shape: tuple[int, ...]
    num_classes: int | None = None
    round: int = 1
    clients: tuple[int, ...] = ()
    public: torch.Tensor | None = None
    seed: int = 0
    device: str | torch.device = "cpu"

    def __post_init__(self):
        self.input_shape = tuple(int(s) for s in self.input_shape)
        self.clients = tuple(int(c) for c in self.clients)

    @classmethod
    def of(cls, model: nn.Module, **fields) -> AttackContext:
        """The context of a registry model (which records ``input_shape`` and ``num_classes``)."""
        shape = getattr(model, "input_shape", None)
        if shape is None and "input_shape" not in fields:
            raise ValueError("the model does not record its input_shape; pass input_shape=")
        return cls(**{"input_shape": shape, "num_classes": getattr(model, "num_classes", None), **fields})


@dataclass
class Observed:
    """What the server saw of one round: ``updates`` name -> (V, *shape), one row per observed update (a client's
    own update, or the single secure aggregate of the round), of ``kind`` "gradient" or "delta"; ``sources``: the
    client of each row (the aggregate's row lists no single client: -1); ``num_examples`` per row; ``sent``: the
    model each source received (for the aggregate: the model of the round's first client)."""

    updates: Mapping[str, torch.Tensor]
    kind: str
    sources: tuple[int, ...]
    num_examples: tuple[int, ...]
    sent: tuple[nn.Module, ...]

    def __post_init__(self):
        rows = {name: t.shape[0] for name, t in self.updates.items()}
        if not rows or set(rows.values()) != {len(self.sources)}:
            raise ValueError(f"observed updates must hold one row per source ({len(self.sources)}); got {rows}")

    def row(self, index: int) -> dict[str, torch.Tensor]:
        """The update of source ``index`` (name -> tensor of the parameter's shape)."""
        return {name: t[index] for name, t in self.updates.items()}


NOTHING_TO_RECONSTRUCT = "update is all zero: nothing to reconstruct"


def zero_rows(updates: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """``(V,)`` bool: which rows of stacked ``updates`` (name -> (V, *shape)) are zero in every entry. Such an update
    carries no information about any input (a client that sent nothing, or a defense that zeroed everything):
    an attack reports it as such (:func:`nothing_to_reconstruct`) instead of inverting it into invented data."""
    nonzero = [t.flatten(1).ne(0).any(dim=1) for t in updates.values()]
    return ~torch.stack(nonzero).any(dim=0)


def nothing_to_reconstruct(input_shape: tuple[int, ...], device: str | torch.device = "cpu") -> Reconstruction:
    """The reconstruction of an all-zero update: no points, and ``info["note"]`` saying why."""
    return Reconstruction(torch.zeros(0, *input_shape, device=device), info={"note": NOTHING_TO_RECONSTRUCT})


class Attack(Protocol):
    """``prepare`` what the server sends, then ``reconstruct`` from what it observed (module docstring)."""

    name: str

    def prepare(self, model: nn.Module, context: AttackContext) -> tuple[Sent, Any]: ...

    def reconstruct(self, observed: Observed, secret: Any, knowledge: Knowledge, *,
                    device: str | torch.device = "cpu") -> Reconstruction: ...


@dataclass(frozen=True)
class AnalyticAttack:
    """An attack read out in closed form: ``manipulate(model, config) -> (model, secret)`` is what the server sends
    to every targeted client (a malicious server's manipulation, paper 002 §6-8 and paper 000 §3; the model
    unchanged for passive extraction) and ``extract(update, secret, device) -> Reconstruction`` reads each
    observed update (a client's, or the secure aggregate) on its own."""

    name: str
    manipulate: Callable[[nn.Module, Any], tuple[nn.Module, Any]]
    extract: Callable[..., Reconstruction]
    config_type: type
    options: Mapping[str, Any] = field(default_factory=dict)

    def config(self, context: AttackContext) -> Any:
        """The manipulation's config for ``context``: its options, the data's input shape, the run's seed."""
        names = {f.name for f in dataclasses.fields(self.config_type)}
        known = {"input_shape": context.input_shape, "seed": context.seed, "seq_len": context.input_shape[-1]}
        return self.config_type(**{**{k: v for k, v in known.items() if k in names}, **self.options})

    def prepare(self, model: nn.Module, context: AttackContext | None = None) -> tuple[nn.Module, Any]:
        return self.manipulate(model, self.config(context or AttackContext.of(model)))

    def reconstruct(self, observed: Observed, secret: Any, knowledge: Knowledge | None = None, *,
                    device: str | torch.device = "cpu") -> Reconstruction:
        parts, zero = [], zero_rows(observed.updates).tolist()
        for index in range(len(observed.sources)):
            part = self.extract(observed.row(index), secret, device=device)
            if zero[index]:  # Eq. 5 finds no active row in it either; say why
                part.info["note"] = NOTHING_TO_RECONSTRUCT
            parts.append(part)
        return Reconstruction.concat(parts)


CONTEXT_FIELDS = ("input_shape", "seed", "seq_len")  # config fields the round's context fills in unless given


def analytic_factory(name: str, manipulate: Callable, extract: Callable, config_type: type
                     ) -> Callable[..., AnalyticAttack]:
    """A registry entry building :class:`AnalyticAttack` ``name`` from the config's fields as options (the input
    shape comes from the round's context; ``seed`` defaults to the run's)."""

    required = [f.name for f in dataclasses.fields(config_type) if f.name not in CONTEXT_FIELDS
                and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]

    def build(**options) -> AnalyticAttack:
        unset = [k for k in required if k not in options]
        if unset:
            raise ValueError(f"attack {name!r} needs the option(s) {', '.join(unset)}")
        return AnalyticAttack(name, manipulate, extract, config_type, options)

    parameters = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY,
                                    default=inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default)
                  for f in dataclasses.fields(config_type) if f.name != "input_shape"]  # the data's, not an option
    build.__signature__ = inspect.Signature(parameters)
    build.__doc__ = manipulate.__doc__
    build.__name__ = name
    return build


def stack_updates(updates: list[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Updates of the same keys stacked to name -> (V, *shape)."""
    keys = list(updates[0])
    for update in updates[1:]:
        if list(update) != keys:
            raise ValueError("observed updates hold different tensors")
    return {k: torch.stack([u[k] for u in updates]) for k in keys}


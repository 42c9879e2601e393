"""An audit of a Flower federation: a strategy wrapper that plays the malicious server of Boenisch et al.
(paper 002) and Wang & Li (paper 000 §2) against chosen clients, to measure what they would leak.

:class:`AuditStrategy` wraps any Flower ``Strategy``. In the chosen rounds it replaces, for the chosen nodes, the
global model in the train message by a manipulated one (any entry of
:data:`fedleak.attacks.malicious.MANIPULATIONS`, e.g. trap weights), keeps the manipulation's secret, and when
the replies arrive takes each victim's update (reply minus the model it was sent), runs the manipulation's
extraction on it and writes the reconstructions and their metrics to the results folder. The extraction reads
the update only; ``reference`` data, when given, is used for nothing but scoring (which reconstructions are
exact copies of real samples). The replies then go to the wrapped strategy; with ``rebase`` (default) a victim's
update is first moved onto the honest global model, so the manipulated weights never enter the global model.

Flower sends weights, not gradients, as float32. The update a server recovers from two float32 weight tensors
carries their rounding error, about 1e-7 of the weights' magnitude; trap weights of ``std`` 1e-4 (instead of the
paper's 0.5) keep that error far below the update, and since the bias is zero the ReLU pattern, and so the
extraction, does not depend on that scale.
"""
from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any, Collection, Iterable

import torch
import torch.nn as nn
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy
from safetensors.torch import save_file

from fedleak.attacks.malicious import MANIPULATIONS
from fedleak.seeds import derived_seed
from fedleak.flower.records import (apply_delta, load_state, record_to_state, single_array_record, state_delta,
                                    state_to_record)
from fedleak.metrics.extraction import DEFAULT_TOLERANCE, match_extractions
from fedleak.report import ResultsDir
from fedleak.report.plots import image_grid

CELLS = "audit.jsonl"


def manipulation_config(name: str, input_shape: tuple[int, ...], **options) -> Any:
    """The config dataclass of manipulation ``name`` for inputs of ``input_shape`` with ``options``."""
    config_type = MANIPULATIONS.get(name).config
    names = {f.name for f in dataclasses.fields(config_type)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise ValueError(f"manipulation {name!r} has no option(s) {', '.join(unknown)}; "
                         f"its options: {', '.join(sorted(names - {'input_shape'}))}")
    if "input_shape" in names:
        options["input_shape"] = tuple(input_shape)
    return config_type(**options)


def declared_points(reconstruction: Any) -> torch.Tensor | None:
    """What the attacker itself declares extracted, without ground truth: distinct individual inputs (images or
    feature vectors), distinct complete token sequences, or distinct (position, token) pairs."""
    if hasattr(reconstruction, "unique"):
        return reconstruction.unique()
    if hasattr(reconstruction, "sequences"):
        return reconstruction.sequences()
    if hasattr(reconstruction, "pairs"):
        return reconstruction.pairs()
    inner = getattr(reconstruction, "inputs", None)
    return declared_points(inner) if inner is not None else None


def leaked_samples(declared: torch.Tensor, reference: torch.Tensor, *, tolerance: float = DEFAULT_TOLERANCE
                   ) -> torch.Tensor | None:
    """Indices of the ``reference`` samples that some declared point reproduces: within ``tolerance`` of the data
    scale for real-valued inputs (:func:`fedleak.metrics.extraction.match_extractions`), exactly for token
    sequences. ``None`` when the two cannot be compared (other shapes)."""
    if len(declared) == 0:
        return torch.zeros(0, dtype=torch.long)
    if declared.shape[1:] != reference.shape[1:]:
        return None
    if declared.is_floating_point():
        match = match_extractions(declared, reference, tolerance=tolerance)
        return torch.unique(match.sample[match.exact]).cpu()
    equal = (declared.unsqueeze(1) == reference.to(declared.device).unsqueeze(0)).flatten(2).all(dim=2)
    return torch.unique(equal.nonzero()[:, 1]).cpu()


def _tensors(value: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return {prefix.rstrip("."): value.detach().contiguous().cpu()}
    if dataclasses.is_dataclass(value):
        found = {}
        for field in dataclasses.fields(value):
            found.update(_tensors(getattr(value, field.name), f"{prefix}{field.name}."))
        return found
    return {}


class AuditStrategy(Strategy):
    """Wraps ``strategy``; in ``rounds`` sends the ``manipulation`` of the global model to ``victims`` of the
    nodes the wrapped strategy sampled (chosen with ``seed``), or to the nodes in ``victim_nodes``, and audits
    their updates (module docstring). ``model`` is the global architecture (the arrays are loaded into a copy).

    ``config`` is the manipulation's config (default: built by :func:`manipulation_config` for the model's input
    shape with ``options``). Results in ``out``: ``config.json``, one line per victim and round in
    ``audit.jsonl`` (plus one per client that refused the honest model), and
    ``reconstructions/round-R-node-N.safetensors`` (+ ``.png`` for images).
    """

    def __init__(self, strategy: Strategy, model: nn.Module, out: str | Path, *, manipulation: str = "trap_weights",
                 config: Any = None, rounds: Iterable[int] = (1,), victims: int = 1,
                 victim_nodes: Collection[int] | None = None, reference: torch.Tensor | None = None,
                 rebase: bool = True, seed: int = 0, device: str | torch.device = "cpu", **options):
        self.attack = MANIPULATIONS.get(manipulation)
        if config is None:
            shape = getattr(model, "input_shape", None)
            if shape is None:
                raise ValueError("pass the manipulation's config= (the model does not record its input_shape)")
            config = manipulation_config(manipulation, shape, **options)
        elif options:
            raise ValueError(f"give either config= or manipulation options, not both ({', '.join(options)})")
        self.rounds = sorted({int(r) for r in rounds})
        if not self.rounds or self.rounds[0] < 1:
            raise ValueError(f"audit rounds must be numbers >= 1, got {self.rounds}")
        if victim_nodes is None and victims < 1:
            raise ValueError(f"victims must be >= 1, got {victims}")
        self.strategy, self.model, self.config, self.manipulation = strategy, model, config, manipulation
        self.victims, self.victim_nodes = victims, None if victim_nodes is None else set(victim_nodes)
        self.reference = reference
        self.rebase, self.seed, self.device = rebase, seed, device
        self.out = Path(out)
        (self.out / CELLS).unlink(missing_ok=True)  # a federation is one run: a rerun starts the audit again
        self.results = ResultsDir(self.out, {
            "manipulation": manipulation, "config": dataclasses.asdict(config), "rounds": self.rounds,
            "victims": victims if victim_nodes is None else sorted(self.victim_nodes), "rebase": rebase,
            "seed": seed, "wrapped_strategy": type(strategy).__name__}, cells=CELLS)
        self._pending: dict[int, dict[int, tuple[dict, dict, Any]]] = {}

    def choose_victims(self, server_round: int, nodes: list[int]) -> list[int]:
        """The nodes to attack among ``nodes`` (those the wrapped strategy sampled) in ``server_round``."""
        if self.victim_nodes is not None:
            return [n for n in nodes if n in self.victim_nodes]
        return sorted(random.Random(derived_seed(self.seed, round=server_round)).sample(sorted(nodes),
                                                                                 min(self.victims, len(nodes))))

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        messages = list(self.strategy.configure_train(server_round, arrays, config, grid))
        if server_round not in self.rounds or not messages:
            return messages
        victims = set(self.choose_victims(server_round, [m.metadata.dst_node_id for m in messages]))
        if not victims:
            return messages
        honest = record_to_state(arrays, device=self.device)
        manipulated, secret = self.attack.manipulate(load_state(honest, self.model, device=self.device),
                                                     self.config)
        sent = {key: value.detach().clone() for key, value in manipulated.state_dict().items()}
        record = state_to_record(sent)
        for message in messages:
            if message.metadata.dst_node_id in victims:
                key, _ = single_array_record(message.content)
                content = RecordDict()
                for name, item in message.content.items():
                    content[name] = record if name == key else item
                message.content = content
        self._pending[server_round] = {node: (honest, sent, secret) for node in victims}
        return messages

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        pending = self._pending.pop(server_round, {})
        for reply in replies:
            node = reply.metadata.src_node_id
            if node in pending:
                self._audit(server_round, node, reply, *pending.pop(node))
            elif reply.has_error():  # a client that was sent the honest model and refused it: a false alarm
                self.results.add(f"round-{server_round}-node-{node}", {
                    "round": server_round, "node": node, "status": "refused honest model",
                    "reason": reply.error.reason})
        for node in sorted(pending):
            self.results.add(f"round-{server_round}-node-{node}",
                             {"round": server_round, "node": node, "status": "no reply"})
        return self.strategy.aggregate_train(server_round, replies)

    def _audit(self, server_round: int, node: int, reply: Message, honest: dict, sent: dict, secret: Any) -> None:
        key = f"round-{server_round}-node-{node}"
        cell: dict[str, Any] = {"round": server_round, "node": node, "manipulation": self.manipulation}
        if reply.has_error():
            self.results.add(key, {**cell, "status": "refused", "reason": reply.error.reason})
            return
        try:
            record_key, record = single_array_record(reply.content, what="reply")
            update = state_delta(sent, record_to_state(record, device=self.device))
        except ValueError as error:
            self.results.add(key, {**cell, "status": "unusable reply", "reason": str(error)})
            return
        reconstruction = self.attack.extract(update, secret, device=self.device)
        declared = declared_points(reconstruction)
        folder = self.out / "reconstructions"
        folder.mkdir(exist_ok=True)
        save_file(_tensors(reconstruction), str(folder / f"{key}.safetensors"))
        cell.update(status="attacked", file=f"reconstructions/{key}.safetensors",
                    declared=None if declared is None else len(declared))
        if declared is not None and declared.is_floating_point() and declared.dim() == 4 and len(declared):
            image_grid([declared[:40]], folder / f"{key}.png", row_labels=[f"node {node}"])
        if self.reference is not None and declared is not None:
            leaked = leaked_samples(declared, self.reference.to(declared.device))
            if leaked is not None:
                cell.update(leaked=len(leaked), leaked_indices=leaked.tolist())
        self.results.add(key, cell)
        if self.rebase:
            common = {k: v for k, v in update.items() if k in honest and honest[k].shape == v.shape}
            reply.content[record_key] = state_to_record(apply_delta(honest, common))

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return self.strategy.aggregate_evaluate(server_round, replies)

    def summary(self) -> None:
        self.strategy.summary()

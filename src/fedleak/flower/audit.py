"""An audit of a Flower federation: a strategy wrapper that runs a :class:`fedleak.cases.Audit` (a malicious
server of Boenisch et al., paper 002, and Wang & Li, paper 000 §2) against chosen clients, to measure what they
would leak.

:class:`AuditStrategy` only translates Flower messages to and from the audit. In the chosen rounds it asks the
audit which model each chosen node receives and swaps it into that node's train message; when the replies arrive
it turns each into an update (reply minus the model that node was sent: a FedAvg "delta") and hands the round's
updates to the audit, which reconstructs, scores against ``reference`` data when given (Flower hands the server
no client data) and writes ``audit.jsonl`` with the reconstructions. The replies then go to the wrapped strategy;
with ``rebase`` (default) a victim's update is first moved onto the honest global model, so the manipulated
weights never enter the global model.

Flower sends weights, not gradients, as float32. The update a server recovers from two float32 weight tensors
carries their rounding error, about 1e-7 of the weights' magnitude; trap weights of ``std`` 1e-4 (instead of the
paper's 0.5) keep that error far below the update, and since the bias is zero the ReLU pattern, and so the
extraction, does not depend on that scale.
"""
from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Callable, Collection, Iterable

import torch
import torch.nn as nn
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result, Strategy

from fedleak.cases import Audit, ThreatModel
from fedleak.fl import ClientUpdate
from fedleak.flower.records import (apply_delta, load_state, record_to_state, single_array_record, state_delta,
                                    state_to_record)
from fedleak.seeds import derived_seed


def reply_examples(reply: Message) -> int:
    """The ``num-examples`` a reply's metrics declare (1 when absent), checked to be a positive whole number."""
    for record in reply.content.metric_records.values():
        if "num-examples" in record:
            value = record["num-examples"]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 1:
                raise ValueError(f"num-examples must be a positive whole number, got {value!r}")
            return int(value)
    return 1


class AuditStrategy(Strategy):
    """Wraps ``strategy``; in ``rounds`` sends the ``manipulation`` (any name of :data:`fedleak.attacks.ATTACKS`
    with its ``options``) of the global model to ``victims`` of the nodes the wrapped strategy sampled (chosen
    with ``seed``), or to the nodes in ``victim_nodes``, and audits their updates (module docstring). ``model`` is
    the global architecture (the arrays are loaded into a copy). Results in ``out``: ``config.json``, one line per
    victim and round in ``audit.jsonl`` (plus one per client that refused the honest model), and
    ``reconstructions/round-R-client-N.safetensors`` (+ ``.png`` for images); when :meth:`start` returns, the
    report ``fedleak audit`` writes (``report.html``, ``report.json``, :meth:`write_report`)."""

    def __init__(self, strategy: Strategy, model: nn.Module, out: str | Path, *, manipulation: str = "trap_weights",
                 rounds: Iterable[int] = (1,), victims: int = 1, victim_nodes: Collection[int] | None = None,
                 reference: torch.Tensor | None = None, rebase: bool = True, seed: int = 0,
                 device: str | torch.device = "cpu", **options):
        if victim_nodes is None and victims < 1:
            raise ValueError(f"victims must be >= 1, got {victims}")
        threat = ThreatModel(server="malicious", protocol="fedavg", rounds=tuple(rounds))
        self.strategy, self.model, self.victims = strategy, model, victims
        self.victim_nodes = None if victim_nodes is None else set(victim_nodes)
        self.rebase, self.seed, self.device = rebase, seed, device
        self.audit = Audit(manipulation, threat, reference=reference, out=out, seed=seed, device=device, config={
            "victims": victims if victim_nodes is None else sorted(self.victim_nodes), "rebase": rebase,
            "wrapped_strategy": type(strategy).__name__}, resume=False, **options)  # a federation is one run
        self._sent: dict[int, tuple[dict, dict[int, dict]]] = {}

    def choose_victims(self, server_round: int, nodes: list[int]) -> list[int]:
        """The nodes to attack among ``nodes`` (those the wrapped strategy sampled) in ``server_round``."""
        if self.victim_nodes is not None:
            return [n for n in nodes if n in self.victim_nodes]
        return sorted(random.Random(derived_seed(self.seed, round=server_round)).sample(
            sorted(nodes), min(self.victims, len(nodes))))

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        messages = list(self.strategy.configure_train(server_round, arrays, config, grid))
        if server_round not in self.audit.threat_model.rounds or not messages:
            return messages
        victims = self.choose_victims(server_round, [m.metadata.dst_node_id for m in messages])
        honest = record_to_state(arrays, device=self.device)
        sent = self.audit.dispatch(server_round, victims, load_state(honest, self.model, device=self.device))
        records, states = {}, {}
        for node, model in sent.items():
            if id(model) not in records:
                state = {key: value.detach().clone() for key, value in model.state_dict().items()}
                records[id(model)] = (state_to_record(state), state)
            states[node] = records[id(model)][1]
        for message in messages:
            node = message.metadata.dst_node_id
            if node in sent:
                key, _ = single_array_record(message.content)
                content = RecordDict()
                for name, item in message.content.items():
                    content[name] = records[id(sent[node])][0] if name == key else item
                message.content = content
        self._sent[server_round] = (honest, states)
        return messages

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        honest, sent = self._sent.pop(server_round, (None, {}))
        updates, refused = [], {}
        for reply in replies:
            node = reply.metadata.src_node_id
            if reply.has_error():
                refused[node] = reply.error.reason
                continue
            if node not in sent:
                continue
            try:
                record_key, record = single_array_record(reply.content, what="reply")
                update = state_delta(sent[node], record_to_state(record, device=self.device))
                updates.append(ClientUpdate(node, server_round, "delta", update, reply_examples(reply)))
            except (ValueError, TypeError) as error:
                self.audit.note(server_round, node, "unusable reply", str(error))
                continue
            if self.rebase:
                common = {k: v for k, v in update.items() if k in honest and honest[k].shape == v.shape}
                reply.content[record_key] = state_to_record(apply_delta(honest, common))
        answered = {reply.metadata.src_node_id for reply in replies}
        for node in sorted(set(sent) - answered):
            self.audit.note(server_round, node, "no reply", "the node sent no reply")
        self.audit.observe(server_round, updates, refused=refused)
        return self.strategy.aggregate_train(server_round, replies)

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return self.strategy.aggregate_evaluate(server_round, replies)

    def summary(self) -> None:
        self.strategy.summary()

    def start(self, grid: Grid, initial_arrays: ArrayRecord, num_rounds: int = 3, timeout: float = 3600,
              train_config: ConfigRecord | None = None, evaluate_config: ConfigRecord | None = None,
              evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None = None) -> Result:
        """Flower's run of the strategy, then the audit's report (:meth:`write_report`)."""
        start = time.perf_counter()
        result = super().start(grid, initial_arrays, num_rounds, timeout, train_config, evaluate_config, evaluate_fn)
        self.write_report(result, seconds=time.perf_counter() - start)
        return result

    def write_report(self, result: Result | None = None, *, seconds: float = 0.0) -> dict:
        """``report.html`` and ``report.json`` in the audit's folder, as ``fedleak audit`` writes them: what each
        attacked update leaked (against ``reference``), the clients' refusals, and the final accuracy of the
        server-side evaluation (``evaluate_fn``'s metric named like "accuracy") when ``result`` holds one."""
        from fedleak.audit.records import write_records_report

        accuracy = None
        if result is not None and result.evaluate_metrics_serverapp:
            last = result.evaluate_metrics_serverapp[max(result.evaluate_metrics_serverapp)]
            accuracy = next((float(v) for k, v in last.items() if "accuracy" in k), None)
        reference = "no reference data (unscored)" if self.audit.reference is None else \
            f"{len(self.audit.reference)} reference samples"
        victims = (f"nodes {sorted(self.victim_nodes)}" if self.victim_nodes is not None
                   else f"{self.victims} sampled clients")
        description = (f"A Flower federation run with {type(self.strategy).__name__} wrapped in fedleak's "
                       f"AuditStrategy: the server sent {self.audit.name} to {victims} in rounds "
                       f"{list(self.audit.threat_model.rounds)}; each attacked update is scored against {reference}. "
                       f"Seed {self.seed}.")
        return write_records_report(self.audit, self.model, accuracy=accuracy, description=description,
                                    seconds=seconds)

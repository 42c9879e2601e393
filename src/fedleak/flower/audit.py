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

Before any of this, every reply of every round (victim or not) is checked against the model its node was sent
(:mod:`fedleak.flower.reply_check`: keys, shapes, dtypes, finite values, the update's norm, ``num-examples``
within ``limits``); a failing reply is recorded in ``audit.jsonl`` as a "dropped reply" with its reason and handed
to the wrapped strategy as an error reply, which Flower counts as a failure: the round aggregates the rest.

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
from fedleak.fl.reply_check import ReplyLimits
from fedleak.flower.records import load_state, record_to_state, single_array_record, state_delta, state_to_record
from fedleak.flower.reply_check import WrappingStrategy, clip_reply, screen_replies
from fedleak.seeds import derived_seed


class AuditStrategy(WrappingStrategy):
    """Wraps ``strategy``; in ``rounds`` sends the ``manipulation`` (any name of :data:`fedleak.attacks.ATTACKS`
    with its ``options``) of the global model to ``victims`` of the nodes the wrapped strategy sampled (chosen
    with ``seed``), or to the nodes in ``victim_nodes``, and audits their updates (module docstring). ``model`` is
    the global architecture (the arrays are loaded into a copy). Results in ``out``: ``config.json``, one line per
    victim and round in ``audit.jsonl`` (plus one per client that refused the honest model), and
    ``reconstructions/round-R-client-N.safetensors`` (+ ``.png`` for images); when :meth:`start` returns, the
    report ``fedleak audit`` writes (``report.html``, ``report.json``, :meth:`write_report`). ``limits``: what the
    server accepts of a reply (:class:`fedleak.fl.ReplyLimits`); ``clip_norm`` (opt-in) clips each accepted reply's
    change of the global model to that L2 norm before the wrapped strategy aggregates (the audit reads the
    unclipped update)."""

    def __init__(self, strategy: Strategy, model: nn.Module, out: str | Path, *, manipulation: str = "trap_weights",
                 rounds: Iterable[int] = (1,), victims: int = 1, victim_nodes: Collection[int] | None = None,
                 reference: torch.Tensor | None = None, rebase: bool = True, seed: int = 0,
                 device: str | torch.device = "cpu", limits: ReplyLimits = ReplyLimits(),
                 clip_norm: float | None = None, **options):
        if clip_norm is not None and not clip_norm > 0:
            raise ValueError(f"clip_norm must be > 0 or None, got {clip_norm!r}")
        if victim_nodes is None and victims < 1:
            raise ValueError(f"victims must be >= 1, got {victims}")
        threat = ThreatModel(server="malicious", protocol="fedavg", rounds=tuple(rounds))
        self.strategy, self.model, self.victims = strategy, model, victims
        self.victim_nodes = None if victim_nodes is None else set(victim_nodes)
        self.rebase, self.seed, self.device, self.limits, self.clip_norm = rebase, seed, device, limits, clip_norm
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
        honest = record_to_state(arrays, device=self.device)
        self._sent[server_round] = (honest, {})
        if server_round not in self.audit.threat_model.rounds or not messages:
            return messages
        victims = self.choose_victims(server_round, [m.metadata.dst_node_id for m in messages])
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
        honest, sent = self._sent.pop(server_round, (None, {}))
        weight_key = getattr(self.strategy, "weighted_by_key", "num-examples")
        replies, dropped, accepted = screen_replies(replies, lambda node: sent.get(node, honest), self.limits,
                                                    weight_key=weight_key)
        for node, reason in sorted(dropped.items()):
            self.audit.note(server_round, node, "dropped reply", reason)
        updates, refused = [], {}
        for reply in replies:
            node = reply.metadata.src_node_id
            if reply.has_error():
                if node not in dropped:
                    refused[node] = reply.error.reason
                continue
            record_key, state, examples = accepted[node]
            base = sent.get(node, honest)
            update = {k: v.to(self.device) for k, v in state_delta(base, state).items()}
            rest = state
            if node in sent:
                updates.append(ClientUpdate(node, server_round, "delta", update, examples))
                if self.rebase:  # the victim's change moved onto the honest global model
                    update = {k: v for k, v in update.items() if k in honest and honest[k].shape == v.shape}
                    base = rest = honest
            if (node in sent and self.rebase) or self.clip_norm is not None:
                clip_reply(reply, record_key, base, update, self.clip_norm, rest)
        answered = {reply.metadata.src_node_id for reply in replies}
        for node in sorted(set(sent) - answered):
            self.audit.note(server_round, node, "no reply", "the node sent no reply")
        self.audit.observe(server_round, updates, refused=refused)
        return self.strategy.aggregate_train(server_round, replies)

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

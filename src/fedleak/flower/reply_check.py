"""The server's check of every Flower train reply before any aggregation: :mod:`fedleak.fl.reply_check` on Flower
messages.

A reply must hold exactly one ``ArrayRecord`` of numeric arrays with the keys (in order), shapes and dtypes of the
model the node was sent, finite values, a change from that model within the norm bound, and exactly one
``MetricRecord`` of finite numbers whose weight (``num-examples``, what ``FedAvg`` weights by) is a whole number
from 1 to ``ReplyLimits.max_examples``; the metric keys must be those most replies of the round carry (``FedAvg``
refuses a round whose replies differ). A reply that fails becomes an error reply naming the reason (code
:data:`REPLY_DROPPED`), so the wrapped strategy counts it among the round's failures and aggregates the rest.

:class:`CheckedStrategy` wraps any strategy with this check; :class:`fedleak.flower.AuditStrategy` runs the same
check itself (and records each dropped reply in its ``audit.jsonl``).
"""
from __future__ import annotations

import math
import numbers
from typing import Callable, Iterable, Mapping

from flwr.app import ArrayRecord, ConfigRecord, Error, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedleak.fl.reply_check import ReplyLimits, ReplyRefused, check_entries, check_examples, check_values
from fedleak.fl.robust import clip_tensors
from fedleak.flower.records import (State, apply_delta, record_to_state, single_array_record, state_delta,
                                    state_to_record)

REPLY_DROPPED = 100  # Flower's own error codes are 0-8 (flwr.common.constant.ErrorCode)

OnDrop = Callable[[int, int, str], None]  # (server round, node id, reason)


def check_reply(reply: Message, expected: Mapping, limits: ReplyLimits = ReplyLimits(), *,
                weight_key: str = "num-examples") -> tuple[str, State, int]:
    """``(record key, received state, num-examples)`` of a train reply from a node that was sent the state
    ``expected``; :class:`ReplyRefused` saying what is wrong otherwise (module docstring)."""
    try:
        key, record = single_array_record(reply.content, what="reply")
        state = record_to_state(record)
    except ValueError as error:
        raise ReplyRefused(str(error)) from None
    metrics = list(reply.content.metric_records.values())
    if len(metrics) != 1:
        raise ReplyRefused(f"expected exactly one MetricRecord in the reply, found {len(metrics)}")
    for name, value in metrics[0].items():
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            raise ReplyRefused(f"metric {name!r} is not a finite number: {value!r}")
    if weight_key not in metrics[0]:
        raise ReplyRefused(f"the reply's metrics lack {weight_key!r}, the weight of its update")
    examples = check_examples(metrics[0][weight_key], limits.max_examples)
    check_entries(state, expected, "the reply's model")
    if list(state) != list(expected):
        raise ReplyRefused("the reply's model holds the expected arrays in another order")
    check_values(state_delta(expected, state), limits, "the reply's change of the model it was sent")
    return key, state, examples


def dropped_reply(reply: Message, reason: str) -> Message:
    """The error reply that stands for ``reply`` once the server dropped it (same metadata, no content)."""
    return Message(error=Error(code=REPLY_DROPPED, reason=reason), metadata=reply.metadata)


def screen_replies(replies: Iterable[Message], expected: Callable[[int], Mapping | None],
                   limits: ReplyLimits = ReplyLimits(), *, weight_key: str = "num-examples"
                   ) -> tuple[list[Message], dict[int, str], dict[int, tuple[str, State, int]]]:
    """Check every reply (``expected(node)``: the state that node was sent; ``None`` drops its reply as
    unrequested): ``(replies with each failing one replaced by an error reply, node -> reason of each dropped
    reply, node -> (record key, state, num-examples) of each accepted one)``."""
    replies, dropped, accepted, seen = list(replies), {}, {}, set()
    for reply in replies:
        node = reply.metadata.src_node_id
        if reply.has_error():
            continue
        sent = expected(node)
        try:
            if sent is None:
                raise ReplyRefused("the server sent this node no model in this round")
            if node in seen:
                accepted.pop(node, None)
                raise ReplyRefused("more than one reply from this node in one round")
            seen.add(node)
            accepted[node] = check_reply(reply, sent, limits, weight_key=weight_key)
        except ReplyRefused as error:
            dropped[node] = f"node {node}: {error}"
    # FedAvg aggregates metrics only when every reply has the same keys: keep the keys most replies have
    keysets = {node: tuple(sorted(next(iter(r.content.metric_records.values())).keys()))
               for r in replies for node in [r.metadata.src_node_id] if node in accepted}
    if keysets:
        holders = {keys: [n for n, k in keysets.items() if k == keys] for keys in set(keysets.values())}
        common = max(holders, key=lambda keys: (len(holders[keys]), -min(holders[keys])))  # ties: lowest node
        for node, keys in keysets.items():
            if keys != common:
                del accepted[node]
                dropped[node] = f"node {node}: metric keys {list(keys)} differ from the round's {list(common)}"
    out = [dropped_reply(r, dropped[r.metadata.src_node_id]) if not r.has_error() and r.metadata.src_node_id in
           dropped else r for r in replies]
    return out, dropped, accepted


def clip_reply(reply: Message, key: str, base: Mapping, change: Mapping, clip_norm: float | None,
               rest: Mapping | None = None) -> None:
    """Rewrite ``reply``'s model (record ``key``) as ``base`` plus ``change`` clipped to L2 norm ``clip_norm``
    (norm clipping of Sun et al. 2019, :mod:`fedleak.fl.robust`; ``None``: unclipped), in ``base``'s key order;
    entries without a change (integer buffers) come from ``rest`` (default ``base``)."""
    change = change if clip_norm is None else clip_tensors(change, clip_norm)
    reply.content[key] = state_to_record(apply_delta(base, change, rest))


class WrappingStrategy(Strategy):
    """A strategy decorating ``self.strategy`` (Flower's strategy-wrapper shape): evaluation and the summary are
    the wrapped strategy's own; a subclass changes training."""

    strategy: Strategy

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return self.strategy.aggregate_evaluate(server_round, replies)

    def summary(self) -> None:
        self.strategy.summary()


class CheckedStrategy(WrappingStrategy):
    """Wraps ``strategy`` so that every train reply is checked (:func:`check_reply`, with ``limits``) against
    the global model of its round before the wrapped strategy aggregates; ``on_drop(round, node, reason)`` is
    told of each dropped reply, which the wrapped strategy sees as a failure. ``clip_norm`` (opt-in) clips each
    accepted reply's change of the global model to that L2 norm before the wrapped strategy sees it."""

    def __init__(self, strategy: Strategy, limits: ReplyLimits = ReplyLimits(), *, clip_norm: float | None = None,
                 on_drop: OnDrop | None = None):
        if clip_norm is not None and not clip_norm > 0:
            raise ValueError(f"clip_norm must be > 0 or None, got {clip_norm!r}")
        self.strategy, self.limits, self.on_drop, self.clip_norm = strategy, limits, on_drop, clip_norm
        self.dropped: dict[int, dict[int, str]] = {}  # round -> node -> reason
        self._sent: dict[int, State] = {}

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        self._sent[server_round] = record_to_state(arrays)
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        sent = self._sent.pop(server_round, None)
        replies, dropped, accepted = screen_replies(
            replies, lambda node: sent, self.limits, weight_key=getattr(self.strategy, "weighted_by_key",
                                                                        "num-examples"))
        self.dropped[server_round] = dropped
        for node, reason in dropped.items():
            if self.on_drop is not None:
                self.on_drop(server_round, node, reason)
        if self.clip_norm is not None:
            for reply in replies:
                node = reply.metadata.src_node_id
                if node in accepted:
                    key, state, _ = accepted[node]
                    clip_reply(reply, key, sent, state_delta(sent, state), self.clip_norm, state)
        return self.strategy.aggregate_train(server_round, replies)

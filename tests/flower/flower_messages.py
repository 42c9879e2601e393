"""Flower messages and contexts for calling ClientApps and mods directly, as the engines do."""
import time

import pytest

pytest.importorskip("flwr")
from flwr.app import ConfigRecord, Context, Message, MessageType, Metadata, RecordDict  # noqa: E402

from fedleak.flower.records import state_to_record  # noqa: E402


def train_message(state, *, round=1, node_id=7, message_type=MessageType.TRAIN) -> Message:
    """A train instruction as a SuperNode hands it to the ClientApp: the model and the server round."""
    content = RecordDict({"arrays": state_to_record(state), "config": ConfigRecord({"server-round": round})})
    metadata = Metadata(run_id=1, message_id=f"m{round}-{node_id}", src_node_id=0, dst_node_id=node_id,
                        reply_to_message_id="", group_id=str(round), created_at=time.time(), ttl=3600.0,
                        message_type=message_type)
    return Message(content=content, metadata=metadata)


def node_context(partition_id=0, num_partitions=4, node_id=7) -> Context:
    return Context(run_id=1, node_id=node_id, state=RecordDict(), run_config={},
                   node_config={"partition-id": partition_id, "num-partitions": num_partitions})

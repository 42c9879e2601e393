"""The Flower detector mod: the same chain as fedleak's mod, its memory kept in context.state as records (no
pickle), and every field of a train message checked before use."""
import numpy as np
import pytest

pytest.importorskip("flwr")
from flwr.app import Array, ArrayRecord  # noqa: E402

from flower_messages import node_context, train_message  # noqa: E402
from fedleak.attacks.malicious.trap_weights import TrapWeightsConfig, trap_weights  # noqa: E402
from fedleak.detection import DetectorChain  # noqa: E402
from fedleak.flower import client_app, detection_history, detector_mod, named_detectors  # noqa: E402
from fedleak.flower.app import AppConfig, local_loader  # noqa: E402
from fedleak.flower.detector_mod import STATE_KEY, TENSORS_KEY, stored_state  # noqa: E402

pytestmark = pytest.mark.flower

LOAD = local_loader(AppConfig(model_options={"widths": [300, 32]}))
SPEC = {"warmup_zscore": {"remember_rounds": 3}}


def _passed(message, context):
    return message


def test_the_flower_mod_runs_the_same_chain_and_keeps_its_memory_as_records():
    context = node_context(partition_id=2)
    local = LOAD(context)
    honest = local.model.state_dict()
    trapped = trap_weights(local.model, TrapWeightsConfig((1, 28, 28), seed=1))[0].state_dict()
    mod = detector_mod(LOAD, named_detectors(SPEC))
    replies = [mod(train_message(state, round=r), context, _passed) for r, state in
               ((1, honest), (2, honest), (3, trapped))]
    assert [reply.has_error() for reply in replies] == [False, False, True]

    config = context.state.config_records[STATE_KEY]
    assert list(config) == ["state"] and isinstance(config["state"], str)  # JSON text, not a pickled blob
    assert list(context.state.array_records[TENSORS_KEY]) == ["state.detectors.0.rounds"]
    assert stored_state(context)["detectors"]["0"]["rounds"].shape[0] == 2  # the refused round not remembered

    chain = DetectorChain(named_detectors(SPEC)(), local.model)  # fedleak's chain in-process, same client
    for r, state in ((1, honest), (2, honest), (3, trapped)):
        chain.check(state, chain.batch(local.client, r), round=r)
    assert detection_history(context) == chain.history
    assert chain.history[-1]["refused"] and chain.history[-1]["verdicts"][-1]["score"] > 100


def _string_array(message):
    key = next(iter(message.content.array_records["arrays"]))
    message.content.array_records["arrays"][key] = Array.from_numpy_ndarray(np.array(["abc", "de"]))
    return message, f"array '{key}' of the record is not a numeric tensor (dtype '<U3'"


def _truncated_bytes(message):
    key = next(iter(message.content.array_records["arrays"]))
    message.content.array_records["arrays"][key] = Array(dtype="float32", shape=(3,), stype="numpy.ndarray",
                                                         data=b"abc")
    return message, f"array '{key}' of the record is not a numeric tensor"


def _two_models(message):
    message.content["other"] = ArrayRecord(dict(message.content.array_records["arrays"]))
    return message, "expected exactly one ArrayRecord (the model) in the message, found 'arrays', 'other'"


@pytest.mark.parametrize("broken", [
    lambda m: (train_message(m, round="abc"), "server-round must be a non-negative integer, got 'abc'"),
    lambda m: (train_message(m, round=-1), "server-round must be a non-negative integer, got -1"),
    lambda m: (train_message(m, round=2.5), "server-round must be a non-negative integer, got 2.5"),
    lambda m: _string_array(train_message(m)),
    lambda m: _truncated_bytes(train_message(m)),
    lambda m: _two_models(train_message(m)),
], ids=["round-abc", "round-negative", "round-float", "string-array", "truncated-bytes", "two-records"])
def test_an_invalid_train_message_gets_an_error_reply_from_the_mod_and_the_handler(broken):
    context = node_context(partition_id=1)
    state = LOAD(context).model.state_dict()
    message, reason = broken(state)
    called = []
    reply = detector_mod(LOAD, named_detectors(SPEC))(message, context, lambda m, c: called.append(m))
    assert reply.has_error() and reason in reply.error.reason and called == [], reply.error.reason
    reply = client_app(LOAD)(message, context)  # the train handler itself, without the mod
    assert reply.has_error() and reason in reply.error.reason, reply.error.reason
    valid = client_app(LOAD, mods=[detector_mod(LOAD, named_detectors(SPEC))])(train_message(state), context)
    assert not valid.has_error()  # the same client still trains on a valid message


def test_the_mod_checks_its_sample_count():
    with pytest.raises(ValueError, match="detector_mod option samples must be an integer >= 2, got nan"):
        detector_mod(LOAD, named_detectors(SPEC), samples=float("nan"))

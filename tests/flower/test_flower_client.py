"""The fedleak client as a Flower ClientApp, the detector mod and the DP accounting, called as a SuperNode calls
them (message in, message out, the node's context kept between rounds)."""
import copy
import re

import pytest
import torch

pytest.importorskip("flwr")
from flwr.app import MessageType  # noqa: E402
from flwr.clientapp import ClientApp  # noqa: E402

from flower_messages import node_context, train_message  # noqa: E402
from fedleak.attacks.malicious.trap_weights import TrapWeightsConfig, trap_weights  # noqa: E402
from fedleak.defenses import dp_epsilon  # noqa: E402
from fedleak.detection import CalibratedDetector, WarmupZScore  # noqa: E402
from fedleak.fl.client import Client  # noqa: E402
from fedleak.flower import (client_app, detection_history, detector_mod, named_detectors,  # noqa: E402
                            record_to_state, single_array_record)
from fedleak.flower.app import AppConfig, global_model, local_loader  # noqa: E402
from fedleak.registry import UnknownNameError  # noqa: E402

pytestmark = pytest.mark.flower

CONFIG = AppConfig(model_options={"widths": [300, 32]})
LOAD = local_loader(CONFIG)


def reply_state(reply):
    assert not reply.has_error(), reply.error.reason
    return record_to_state(single_array_record(reply.content)[1])


def test_the_reply_is_the_received_model_plus_the_fedleak_clients_update():
    context = node_context(partition_id=1)
    local = LOAD(context)
    received = {k: v + 0.01 for k, v in local.model.state_dict().items()}
    reply = client_app(LOAD)(train_message(received, round=3), context)
    assert dict(reply.content.metric_records["metrics"]) == {"num-examples": 64}

    model = copy.deepcopy(local.model)
    model.load_state_dict(received)
    twin = Client(1, local.client.data, local.client.config)  # the same client, outside Flower
    update = twin.handle(model, 3)
    sent = reply_state(reply)
    assert list(sent) == list(received)
    for key, value in sent.items():
        assert torch.allclose(value, received[key] + update.tensors[key], atol=1e-7)
        assert not torch.equal(value, received[key])  # one SGD step changed every tensor


def test_a_model_of_another_architecture_is_refused_with_the_offending_keys():
    context = node_context()
    state = LOAD(context).model.state_dict()
    extra = {"imprint.weight": torch.zeros(5, 784), **state}
    reply = client_app(LOAD)(train_message(extra), context)
    assert reply.has_error() and "imprint.weight" in reply.error.reason
    reshaped = {**state, "fc1.linear.bias": torch.zeros(7)}
    reply = client_app(LOAD)(train_message(reshaped), context)
    assert reply.has_error() and "fc1.linear.bias" in reply.error.reason and "(7,)" in reply.error.reason


def test_dp_sgd_training_reports_the_epsilon_spent_across_rounds():
    config = AppConfig(model_options={"widths": [64]}, defenses="dp:sigma=1.0:clip=5")
    load = local_loader(config)
    context = node_context(partition_id=0, num_partitions=4)
    app = client_app(load)
    state = load(context).model.state_dict()
    spent = []
    for round in (1, 2, 3):
        reply = app(train_message(state, round=round), context)
        state = reply_state(reply)
        spent.append(reply.content.metric_records["metrics"]["dp-epsilon"])
    rate = config.batch_size / len(load(context).client.data.train)
    for steps, epsilon in enumerate(spent, start=1):  # one DP-SGD step per round, accounted over all rounds
        assert epsilon == pytest.approx(dp_epsilon(1.0, rate, steps, delta=1e-5), rel=1e-9)
    assert spent[0] < spent[1] < spent[2]


def test_a_client_with_dropout_precode_and_dp_trains_the_federations_defended_architecture():
    config = AppConfig(model_options={"widths": [64, 32]}, defenses="dropout,dp:sigma=0.5,precode")
    model = global_model(config, (1, 28, 28), 10)  # what the server builds
    assert any(key.startswith("precode.") for key in model.state_dict())
    reply = client_app(local_loader(config))(train_message(model.state_dict()), node_context())
    sent = reply_state(reply)
    assert list(sent) == list(model.state_dict())
    assert not torch.equal(sent["precode.encoder.weight"], model.state_dict()["precode.encoder.weight"])
    assert reply.content.metric_records["metrics"]["dp-epsilon"] > 0


def test_a_calibrated_detectors_benign_scores_are_kept_in_the_context_across_rounds():
    torch.manual_seed(0)  # the warm-up samples with torch's global generator: same draws whatever ran before

    def calibrated():
        return [CalibratedDetector(WarmupZScore(), false_alarm_rate=0.2, min_samples=2)]

    app = client_app(LOAD, mods=[detector_mod(LOAD, calibrated)])
    context = node_context(partition_id=3)
    state = LOAD(context).model.state_dict()
    for round in (1, 2):
        state = reply_state(app(train_message(state, round=round), context))
    # round 3 is judged against a threshold fitted on two benign scores (a 20% false-alarm target), so it may
    # be refused; what is checked is the threshold it was judged with
    app(train_message(state, round=3), context)
    first, second, third = (h["verdicts"][-1] for h in detection_history(context))
    assert first["threshold"] == second["threshold"] == 100  # the detector's own until two benign scores
    assert third["threshold"] == max(first["score"], second["score"])  # fitted from the two remembered scores


def test_detector_mod_passes_the_honest_model_untouched_and_refuses_trap_weights_naming_the_layer():
    seen = []

    def record_and_train(message, context):
        seen.append(message)
        return client_app(LOAD)(message, context)

    app = ClientApp()
    app.train(mods=[detector_mod(LOAD, named_detectors({"warmup_zscore": {"remember_rounds": 3}}))])(
        record_and_train)
    context = node_context(partition_id=2)
    honest = LOAD(context).model.state_dict()
    for round in (1, 2):  # two benign rounds: the warm-up detector remembers their statistics
        message = train_message(honest, round=round)
        reply = app(message, context)
        assert not reply.has_error() and seen[-1] is message  # the handler got the very message the server sent
        honest = reply_state(reply)

    # the paper's trap weights (std 0.5) barely move a fresh warm-up, but stand out against the remembered rounds
    trapped, _ = trap_weights(LOAD(context).model, TrapWeightsConfig((1, 28, 28), seed=1))
    reply = app(train_message(trapped.state_dict(), round=3), context)
    assert reply.has_error() and len(seen) == 2
    assert re.fullmatch(r"client 2 refused the model of round 3: warmup_zscore: \w+ of linear\[0\]_\w+: "
                        r"[\d.e+]+ > threshold 100", reply.error.reason), reply.error.reason
    history = detection_history(context)
    assert [h["refused"] for h in history] == [False, False, True]
    trap_score = history[-1]["verdicts"][-1]["score"]

    fresh = node_context(partition_id=2)  # the same client without the state of rounds 1 and 2
    reply = app(train_message(trapped.state_dict(), round=3), fresh)
    fresh_score = detection_history(fresh)[0]["verdicts"][-1]["score"]
    assert not reply.has_error() and fresh_score < 100 < trap_score


def test_detector_mod_ignores_evaluate_messages_and_checks_its_detectors():
    calls = []
    mod = detector_mod(LOAD, named_detectors(["warmup_zscore"]))
    message = train_message(LOAD(node_context()).model.state_dict(), message_type=MessageType.EVALUATE)
    mod(message, node_context(), lambda m, c: calls.append(m) or m)
    assert calls == [message]
    with pytest.raises(UnknownNameError, match="unknown detector .psychic."):
        named_detectors(["psychic"])
    with pytest.raises(ValueError, match="no option"):
        named_detectors({"warmup_zscore": {"thresh": 3}})

"""Update-level defense mods on Flower messages, alone and composed with Flower's own LocalDpMod."""
import math

import pytest
import torch

pytest.importorskip("flwr")
from flwr.app import Context, Message, MetricRecord, RecordDict  # noqa: E402
from flwr.clientapp import ClientApp  # noqa: E402
from flwr.clientapp.mod import LocalDpMod  # noqa: E402

from flower_messages import node_context, train_message  # noqa: E402
from fedleak.defenses import prune_gradients  # noqa: E402
from fedleak.flower import noise_mod, pruning_mod, record_to_state, single_array_record, state_to_record  # noqa: E402

pytestmark = pytest.mark.flower

RECEIVED = {"fc.weight": torch.randn(300, 100, generator=torch.Generator().manual_seed(0)),
            "fc.bias": torch.randn(300, generator=torch.Generator().manual_seed(1))}
DELTA = {k: 0.1 * torch.randn(v.shape, generator=torch.Generator().manual_seed(2 + i))
         for i, (k, v) in enumerate(RECEIVED.items())}


def fixed_training(message: Message, context: Context) -> Message:
    """A client whose training adds DELTA and reports 37 examples."""
    key, record = single_array_record(message.content)
    state = {k: v + DELTA[k] if k in DELTA else v for k, v in record_to_state(record).items()}
    metrics = MetricRecord({"num-examples": 37, "train-loss": 0.5})
    return Message(RecordDict({key: state_to_record(state), "metrics": metrics}), reply_to=message)


def run(mods, state=RECEIVED):
    app = ClientApp()
    app.train(mods=mods)(fixed_training)
    reply = app(train_message(state), node_context())
    assert not reply.has_error(), reply.error.reason
    key, record = single_array_record(reply.content)
    assert key == "arrays"
    assert dict(reply.content.metric_records["metrics"]) == {"num-examples": 37, "train-loss": 0.5}
    sent = record_to_state(record)
    assert list(sent) == list(state)  # same keys, same order
    return {k: sent[k] - state[k] for k in state if sent[k].is_floating_point()}


def zero_share(update):
    return float(sum((v == 0).sum() for v in update.values())) / sum(v.numel() for v in update.values())


def norm(update):
    return math.sqrt(sum(float(v.pow(2).sum()) for v in update.values()))


def test_pruning_keeps_the_largest_entries_per_tensor_and_passes_other_entries():
    state = {**RECEIVED, "steps": torch.tensor(3)}
    update = run([pruning_mod(0.9)], state)
    for key, value in update.items():
        kept = value != 0
        assert abs(kept.float().mean() - 0.1) < 0.01
        assert torch.allclose(value[kept], DELTA[key][kept], atol=1e-6)
        assert DELTA[key].abs()[kept].min() >= DELTA[key].abs()[~kept].max()


def test_pruning_composes_with_local_dp_in_either_order():
    clip_only = LocalDpMod(clipping_norm=1.0, sensitivity=0.0, epsilon=1.0, delta=1e-5)
    pruned = prune_gradients(DELTA, 0.9)[0]
    assert norm(DELTA) > 5.0
    expected = {  # the first mod in the list is the outermost
        "prune, then LocalDpMod clips": ([clip_only, pruning_mod(0.9)], norm(pruned)),
        "LocalDpMod clips, then prune": ([pruning_mod(0.9), clip_only], norm(DELTA)),
    }
    for order, (mods, divisor) in expected.items():
        update = run(mods)
        assert abs(zero_share(update) - 0.9) < 0.01, order
        for key in update:
            assert torch.allclose(update[key], pruned[key] / divisor, atol=1e-6), order
    assert norm(run([clip_only, pruning_mod(0.9)])) == pytest.approx(1.0, rel=1e-4)


def test_local_dp_noise_on_top_of_pruning_has_the_calibrated_spread():
    sensitivity, epsilon, delta = 1.0, 10.0, 1e-5
    expected = sensitivity * math.sqrt(2 * math.log(1.25 / delta)) / epsilon
    update = run([LocalDpMod(clipping_norm=1.0, sensitivity=sensitivity, epsilon=epsilon, delta=delta),
                  pruning_mod(0.99)])
    # where pruning zeroed the update, what remains is LocalDpMod's Gaussian noise
    pruned = torch.cat([(v * (DELTA[k].abs() < DELTA[k].abs().quantile(0.9))).flatten() for k, v in update.items()])
    pruned = pruned[pruned != 0]
    assert len(pruned) > 20_000
    assert float(pruned.std()) == pytest.approx(expected, rel=0.05)


def test_noise_mod_adds_gaussian_noise_of_the_given_std():
    update = run([noise_mod(0.05, seed=3)])
    noise = torch.cat([(update[k] - DELTA[k]).flatten() for k in update])
    assert float(noise.std()) == pytest.approx(0.05, rel=0.03)
    assert abs(float(noise.mean())) < 0.002
    again = run([noise_mod(0.05, seed=3)])
    assert all(torch.equal(again[k], update[k]) for k in update)  # seeded per node and round


def test_a_reply_with_other_keys_is_refused_with_the_keys_named():
    def renaming(message, context):
        key, record = single_array_record(message.content)
        state = {("renamed." + k if k == "fc.bias" else k): v for k, v in record_to_state(record).items()}
        return Message(RecordDict({key: state_to_record(state), "metrics": MetricRecord({"num-examples": 1})}),
                       reply_to=message)

    app = ClientApp()
    app.train(mods=[pruning_mod(0.5)])(renaming)
    reply = app(train_message(RECEIVED), node_context())
    assert reply.has_error()
    assert "pruning_mod(p=0.5)" in reply.error.reason and "renamed.fc.bias" in reply.error.reason


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="pruning rate p"):
        pruning_mod(1.5)
    with pytest.raises(ValueError, match="noise std"):
        noise_mod(-1.0)

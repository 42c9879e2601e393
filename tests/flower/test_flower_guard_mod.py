"""The leakage guard as a Flower mod: the reply carries the sanitised update, from which no sample reads out at
>= 30 dB (the reply is a float32 state, so the exact readout is lost to round-off either way)."""
import pytest
import torch

pytest.importorskip("flwr")
from flwr.clientapp import ClientApp  # noqa: E402

from flower_messages import node_context, train_message  # noqa: E402
from fedleak.attacks.analytic import extract_at_layer, identity_map, LayerSecret  # noqa: E402
from fedleak.cases import score  # noqa: E402
from fedleak.data import load_dataset, split_clients  # noqa: E402
from fedleak.fl import Client, FLConfig  # noqa: E402
from fedleak.flower import LocalClient, record_to_state, single_array_record, train_handler  # noqa: E402
from fedleak.flower.guard_mod import leakage_guard_mod  # noqa: E402
from fedleak.models import build_model  # noqa: E402

pytestmark = pytest.mark.flower


def test_flower_guard_mod_replies_with_the_sanitised_update():
    data = load_dataset("bundled", split="train", size=(16, 16))
    part = split_clients(data, 8, seed=0)[0]
    torch.manual_seed(0)
    model = build_model("fcnn", data.info.input_shape, data.info.num_classes, widths=(256, 128))
    config = FLConfig(algorithm="fedsgd", num_clients=8, batch_size=64, lr=1.0, seed=0)

    def load_local(context):
        return LocalClient(model, Client(0, part, config))

    secret = LayerSecret("fc1.linear", identity_map(data.info.input_shape))
    recalls = []
    for mods in ([], [leakage_guard_mod(load_local)]):
        app = ClientApp()
        app.train(mods=mods)(train_handler(load_local))
        received = model.state_dict()
        reply = app(train_message(received), node_context())
        assert not reply.has_error(), reply.error.reason
        sent = record_to_state(single_array_record(reply.content)[1])
        delta = {k: sent[k] - received[k] for k in received}
        x, y = load_local(None).client.trained_samples(1)
        recalls.append(score(extract_at_layer(delta, secret), x, y)["near_recall_psnr30"])
    assert recalls[0] > 0.05 and recalls[1] == 0.0

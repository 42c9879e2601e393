"""The settings a detector evaluation tries (attacks/settings.py): which attacks for which data, each preparing a
real manipulation of the model (checked against the honest model), per-client attacks with the server's data."""
import torch

from fedleak.attacks.settings import attack_settings, extra_settings
from fedleak.cases.probe import prepare_attack
from fedleak.data import load_dataset
from fedleak.data.tokens import image_tokens
from fedleak.models import build_model


def test_image_settings_prepare_manipulations_and_per_client_ones_get_the_clients_and_public_data():
    data = load_dataset("bundled", size=(16, 16))
    public = data.inputs(slice(0, 64))
    torch.manual_seed(0)
    model = build_model("fcnn", data.info.input_shape, 10, widths=(64, 32))
    settings = attack_settings(model, data.info, public, 32)
    assert {s.attack for s in settings} == {"trap_weights", "input_forwarding", "curious_kernels", "robbing_the_fed",
                                            "class_fishing", "feature_fishing"}
    fishing = [s for s in settings if s.attack == "feature_fishing"]
    assert fishing[0].options["threshold"] < fishing[1].options["threshold"]  # quantiles 0.5 and 0.9
    for setting in settings:
        prepared = prepare_attack(setting.attack, model, setting.context(data.info, public), **setting.options)
        if prepared.sent is not None:  # what applies changes the model (the rest says why not)
            sent = prepared.sent.state_dict()
            assert any(k not in sent or not torch.equal(v, sent[k]) for k, v in model.state_dict().items()) or \
                sent.keys() != model.state_dict().keys()
        else:
            assert prepared.reason
    loki = next(s for s in extra_settings(data.info, 3) if s.attack == "loki")
    context = loki.context(data.info, public)
    assert context.clients == (0, 1, 2) and context.public is public
    assert next(s for s in settings if s.attack == "trap_weights").context(data.info, public).public is None


def test_text_settings_hold_decepticons_and_text_embedding_not_the_image_attacks():
    tokens = image_tokens(load_dataset("bundled", size=(16, 16)))
    model = build_model("text_transformer", tokens.info.input_shape, 10, vocab_size=16, width=32, heads=2)
    names = {s.attack for s in attack_settings(model, tokens.info, tokens.x[:64], 32)}
    assert "decepticons" in names and not names & {"trap_weights", "robbing_the_fed"}
    assert {s.attack for s in extra_settings(tokens.info, 2)} == {"text_embedding", "model_inconsistency"}

"""``fedleak detect-eval --first-contact`` on a tiny setting: the output format, the rates measured on real
manipulated and benign models, resumption."""
from __future__ import annotations

import json

import torch

from fedleak.attacks.settings import extra_settings
from fedleak.cases.probe import prepare_attack
from fedleak.experiments.first_contact import FirstContactConfig, Variant, model_data, run_first_contact
from fedleak.models import build_model

FCNN = {"fcnn": {"widths": (32, 16)}}


def test_first_contact_json_holds_rates_false_alarms_and_cost_and_a_rerun_resumes(tmp_path):
    config = FirstContactConfig(models=("fcnn",), model_options=FCNN, variants=(Variant("iid"),), rounds=1,
                                attack_rounds=(1,), num_clients=2, attack_clients=1)
    summary = run_first_contact(config, tmp_path)
    written = json.loads((tmp_path / "first_contact.json").read_text())
    assert written["benign_client_rounds"] == summary["benign_client_rounds"] == 2
    assert {"trap_weights", "class_fishing", "robbing_the_fed", "loki"} <= set(written["detection"])
    assert written["detection_before_demotion"]["trap_weights"]["fcnn"] == 1.0  # mirrored rows, at round 1
    assert written["detection"]["trap_weights"]["fcnn"] == 0.0  # mirrored_rows is demoted from the default chain
    assert written["detection"]["robbing_the_fed"]["fcnn"] > 0  # an inserted imprint layer: the architecture check
    assert written["paper_detection"]["trap_weights"]["fcnn"] == 0.0  # the paper's detectors miss it there
    assert 0.0 <= written["false_alarm_rate"] <= 1.0 and written["cost"]["relative_to_local_epoch"] > 0
    lines = (tmp_path / "first_contact_cells.jsonl").read_text().count("\n")
    run_first_contact(config, tmp_path)
    assert (tmp_path / "first_contact_cells.jsonl").read_text().count("\n") == lines


def test_the_language_model_reads_next_tokens_and_seer_applies_only_to_its_checkpoints_model():
    config = FirstContactConfig(models=("embedding_lm", "cnn-bn"))
    train, _ = model_data(config, "embedding_lm")
    tokens, _ = model_data(FirstContactConfig(models=("text_transformer",)), "text_transformer")
    assert train.info.input_shape == (tokens.info.input_shape[0] - 1,) and train.info.num_classes == 16
    assert torch.equal(train.x[:, 1:], train.y[:, :-1]) and torch.equal(train.y, tokens.x[:, 1:])
    for name, options, applies in (("cnn-bn", {"norm": "batch", "padding": 2}, True), ("cnn", {"padding": 2}, False)):
        data, _ = model_data(config, name)
        model = build_model("cnn", data.info.input_shape, 10, **options)
        seer = [s for s in extra_settings(data.info, 2) if s.attack == "seer"][0]
        prepared = prepare_attack(seer.attack, model, seer.context(data.info, None), **seer.options)
        assert (prepared.sent is not None) == applies


def test_first_contact_and_tradeoff_refuse_ray_instead_of_ignoring_it(tmp_path, capsys):
    from fedleak.cli import main

    for mode in ("--first-contact", "--tradeoff"):
        assert main(["detect-eval", "--quick", mode, "--ray", "local", "--out", str(tmp_path)]) == 2
        assert "leave out --ray" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # refused before any work

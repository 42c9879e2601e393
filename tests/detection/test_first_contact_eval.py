"""``fedleak detect-eval --first-contact`` and ``--tradeoff`` on a tiny setting: the output format, the rates
measured on real manipulated and benign models, resumption, and the trade-off's leakage against the truth."""
from __future__ import annotations

import json
from dataclasses import asdict

import pytest
import torch

from fedleak.attacks import ATTACKS, AttackContext, Reconstruction
from fedleak.attacks.camouflage import initialiser_noise as camouflage
from fedleak.attacks.camouflage import interpolate
from fedleak.attacks.settings import extra_settings
from fedleak.cases.probe import prepare_attack
from fedleak.experiments.first_contact import FirstContactConfig, Variant, model_data, run_first_contact
from fedleak.experiments.tradeoff import TradeoffConfig, run_point, run_seer
from fedleak.metrics.text import token_recall
from fedleak.models import build_model
from fedleak.report import ResultsDir

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


def test_camouflage_moves_only_what_the_manipulation_changed():
    torch.manual_seed(0)
    model = build_model("fcnn", (1, 16, 16), 10, widths=(32, 16))
    sent, _ = ATTACKS.build("class_fishing", target_class=0).prepare(model, AttackContext((1, 16, 16), 10))
    before = {k: v.clone() for k, v in sent.state_dict().items()}
    camouflage(sent, model, 0.1, torch.Generator().manual_seed(0))
    changed = {k for k, v in sent.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"classifier.weight", "classifier.bias"}


def test_tradeoff_point_scores_the_attack_against_the_true_batch():
    train, _ = model_data(FirstContactConfig(models=("fcnn",)), "fcnn")
    torch.manual_seed(0)
    model = build_model("fcnn", train.info.input_shape, 10, widths=(256, 64))
    batch = (train.inputs(slice(0, 32)), train.y[:32])
    plain = run_point("trap_weights", model, {}, batch, train.info, 0.0, seed=0)
    benign = run_point("trap_weights", model, {}, batch, train.info, None, seed=0)
    assert plain["refused"] and plain["detectors"]["mirrored_rows"]["flagged"]
    assert plain["recall"] > 0.1 and plain["ssim"] > 0.5  # exact copies of true images are among the readouts
    assert benign["epsilon"] is None and 0 <= benign["recall"] <= 1
    tokens = torch.tensor([[1, 2, 3], [4, 5, 6]])
    pairs = Reconstruction(torch.tensor([[0, 1], [1, 2], [2, 9]]), declared=torch.tensor([True, True, True]))
    assert token_recall(pairs, tokens) == 2 / 6


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


def test_seer_tradeoff_full_weights_are_refused_and_decode_better_than_the_honest_model(tmp_path):
    config = TradeoffConfig(epsilons=(0.0,), seer_mix=(0.0, 1.0), seer_batches=8)
    results = ResultsDir(tmp_path, asdict(config), cells="tradeoff_cells.jsonl")
    row = run_seer(config, results, tmp_path)
    honest, seer = row["knobs"]["a"]
    assert seer["refused"] and seer["scores"]["batch_dominance"] > 5  # SEER's weights: the batch picks a sample
    assert not honest["refused"]  # the honest model of the same architecture passes the chain
    # leakage is measured against each batch's true brightest image
    assert seer["ssim"] > honest["ssim"] + 0.05 and seer["psnr"] > honest["psnr"] + 1
    assert row["points"][0]["ssim"] == seer["ssim"] and row["benign_readout"]["ssim"] == honest["ssim"]
    assert 0 < row["prior"]["ssim"] < 1 and (tmp_path / "tradeoff_seer_a.png").is_file()


def test_seer_interpolation_runs_from_the_honest_model_to_seers():
    torch.manual_seed(0)
    honest = build_model("cnn", (1, 32, 32), 10, norm="batch", padding=2)
    seer, _ = ATTACKS.build("seer").prepare(honest, AttackContext((1, 32, 32), 10))
    for share, model in ((0.0, honest), (1.0, seer)):
        mixed = interpolate(honest, seer, share).state_dict()
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in mixed.items() if v.is_floating_point())
    half = interpolate(honest, seer, 0.5).state_dict()["classifier.weight"]
    assert torch.allclose(half, (honest.state_dict()["classifier.weight"] + seer.state_dict()["classifier.weight"]) / 2)
    with pytest.raises(ValueError, match="seer_mix"):
        TradeoffConfig(seer_mix=(1.5,))


def test_first_contact_and_tradeoff_refuse_ray_instead_of_ignoring_it(tmp_path, capsys):
    from fedleak.cli import main

    for mode in ("--first-contact", "--tradeoff"):
        assert main(["detect-eval", "--quick", mode, "--ray", "local", "--out", str(tmp_path)]) == 2
        assert "leave out --ray" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # refused before any work

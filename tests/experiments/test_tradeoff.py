"""``fedleak detect-eval --tradeoff``: the trade-off's leakage against the truth, the camouflage and SEER's weight
share."""
from __future__ import annotations

from dataclasses import asdict

import pytest
import torch

from fedleak.attacks import ATTACKS, AttackContext, Reconstruction
from fedleak.attacks.camouflage import initialiser_noise as camouflage
from fedleak.attacks.camouflage import interpolate
from fedleak.experiments.tradeoff import TradeoffConfig, run_point, run_seer
from fedleak.metrics.text import token_recall
from fedleak.models import build_model
from fedleak.report import ResultsDir
from fedleak.study.manipulated import load_data


def test_camouflage_moves_only_what_the_manipulation_changed():
    torch.manual_seed(0)
    model = build_model("fcnn", (1, 16, 16), 10, widths=(32, 16))
    sent, _ = ATTACKS.build("class_fishing", target_class=0).prepare(model, AttackContext((1, 16, 16), 10))
    before = {k: v.clone() for k, v in sent.state_dict().items()}
    camouflage(sent, model, 0.1, torch.Generator().manual_seed(0))
    changed = {k for k, v in sent.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"classifier.weight", "classifier.bias"}


def test_tradeoff_point_scores_the_attack_against_the_true_batch():
    train, _ = load_data("bundled", (16, 16), "fcnn")
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

"""``fedleak reproduce architectures`` (paper 001 Table 5) on tiny models: files, paper column, and the recorded
SSIM measured against the true victims."""
import json

import torch
from safetensors.torch import load_file

from fedleak.experiments.architectures import ArchitecturesConfig, reproduce_architectures
from fedleak.metrics import ssim


def test_tiny_architectures_run_scores_against_the_victims_and_writes_the_comparison(tmp_path):
    config = ArchitecturesConfig(models={"resnet18": {"norm": "group", "width": 4},
                                         "vit_small": {"width": 16, "heads": 2, "depth": 1}},
                                 rows=("none", "DP+C"), victims=2, attack_iterations=10, rounds=1, patience=None,
                                 seeds=(0,), profile="test")
    out = tmp_path / "out"
    result = reproduce_architectures(config, out, progress=False)
    assert [(r["model"], r["row"]) for r in result["rows"]] == [("resnet18", "none"), ("resnet18", "DP+C"),
                                                                 ("vit_small", "none"), ("vit_small", "DP+C")]
    for name in ("table.txt", "table.csv", "comparison.md", "config.json"):
        assert (out / name).exists(), name
    comparison = (out / "comparison.md").read_text()
    assert "| DP+C |" in comparison and "0.99 (± 0.00)" in comparison  # the paper's MNIST ViT baseline
    assert json.loads((out / "config.json").read_text())["config"]["seed"] == 0
    for model in ("resnet18", "vit_small"):
        cells = [json.loads(line) for line in (out / model / "cells.jsonl").read_text().splitlines()]
        privacy = {c["row"]: c for c in cells if "ssim" in c}
        for label in ("none", "DP+C"):
            saved = load_file(out / model / "reconstructions" / f"{label}_cdia.safetensors")
            recomputed = ssim(saved["images"], saved["truth"])
            assert torch.allclose(recomputed, torch.tensor(privacy[label]["ssim"]), atol=1e-4)
            assert -1 <= float(recomputed.mean()) <= 1
        utility = [c for c in cells if "accuracy" in c]
        assert len(utility) == 2 and all(0 <= c["accuracy"] <= 1 for c in utility)
    lines = (out / "resnet18" / "cells.jsonl").read_text()
    assert reproduce_architectures(config, out, progress=False)["rows"] == result["rows"]  # resumed
    assert (out / "resnet18" / "cells.jsonl").read_text() == lines

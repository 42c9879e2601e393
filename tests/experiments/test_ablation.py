"""The Table 4 ablation: cells written as they finish, resume, the printed table."""
from __future__ import annotations

import json

from fedleak.experiments.ablation import run_ablation
from fedleak.study.ablation import AblationConfig, select_rows


def test_tiny_ablation_writes_cells_resumes_and_prints_the_table(tmp_path):
    config = AblationConfig.quick(rows=("none", "DP+C"), victims=2, attack_iterations=10, rounds=1)
    table = run_ablation(config, tmp_path, progress=False)
    cells = [json.loads(line) for line in (tmp_path / "cells.jsonl").read_text().splitlines()]
    keys = {c["key"] for c in cells}
    assert keys == {"privacy:none:cdia", "privacy:none:ig", "privacy:DP+C:cdia", "privacy:DP+C:ig",
                    "utility:none:seed0", "utility:DP+C:seed0"}
    assert all(c["labels_correct"] == 1.0 for c in cells if c["key"].startswith("privacy"))
    utility = {c["key"]: c for c in cells if c["key"].startswith("utility")}
    assert utility["utility:none:seed0"]["epsilon"] is None
    assert utility["utility:DP+C:seed0"]["epsilon"] > 1e3  # sigma = 1e-4 gives no meaningful guarantee
    assert [(r["DO"], r["DP"], r["GP"], r["PM"]) for r in table] == [("✗", "✗", "✗", "✗"), ("✗", "✓", "✗", "C")]
    assert (tmp_path / "reconstructions.png").exists() and (tmp_path / "table.txt").exists()
    again = run_ablation(config, tmp_path, progress=False)  # resume: nothing is recomputed
    assert len((tmp_path / "cells.jsonl").read_text().splitlines()) == len(cells)
    assert again == table


def test_privacy_only_on_a_trained_model(tmp_path):
    import torch
    from safetensors.torch import load_file

    from fedleak.data import load_dataset
    from fedleak.study.ablation import trained_state
    from fedleak.fl.training import task_loss
    from fedleak.metrics import ssim
    from fedleak.models import build_model

    config = AblationConfig.quick(rows=("DP+C",), victims=2, attack_iterations=10, utility=False, trained_epochs=1,
                                  attacks=("cdia",))
    run_ablation(config, tmp_path, progress=False)
    cells = [json.loads(line) for line in (tmp_path / "cells.jsonl").read_text().splitlines()]
    assert [c["key"] for c in cells] == ["privacy:DP+C:cdia"]  # no FedAvg runs
    saved = load_file(tmp_path / "reconstructions" / "DP+C_cdia.safetensors")
    assert torch.allclose(ssim(saved["images"], saved["truth"]), torch.tensor(cells[0]["ssim"]), atol=1e-4)
    assert json.loads((tmp_path / "config.json").read_text())["config"]["trained_epochs"] == 1

    # the trained state (CVB included) fits the training data better than the initialisation
    train = load_dataset("bundled", size=(32, 32))
    x, y = train[torch.arange(256)]
    torch.manual_seed(0)
    model = build_model("cnn", train.info.input_shape, train.info.num_classes)
    from fedleak.defenses import apply_defenses
    row = select_rows("DP+C")[0]
    fresh, _, _ = apply_defenses(model, row.defenses(config, 0), model_name="cnn", input_shape=train.info.input_shape)
    trained, _, _ = apply_defenses(model, row.defenses(config, 0), model_name="cnn", input_shape=train.info.input_shape)
    trained.load_state_dict(trained_state(config, row, model, train.info))
    with torch.no_grad():
        fresh.eval(), trained.eval()
        assert float(task_loss(trained, trained(x), y)) < float(task_loss(fresh, fresh(x), y))

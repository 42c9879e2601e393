"""The seeded cells of paper 002's extraction studies: one batch, one attack, read back and scored."""
import pytest
import torch

from fedleak.data import load_dataset
from fedleak.defenses.pruning import prune_gradients
from fedleak.study.extraction_cells import TrapStudyConfig, extraction_cell, seeded_batch, trap_cell, vanishing_point


def test_vanishing_point_is_where_leakage_stays_zero():
    assert vanishing_point([1, 2, 3, 4], [0.5, 0.0, 0.2, 0.0]) == 4
    assert vanishing_point([1, 2, 3], [0.5, 0.0, 0.0]) == 2
    assert vanishing_point([1, 2], [0.5, 0.1]) is None


def test_seeded_batch_is_drawn_from_its_seed_and_refuses_too_few_samples():
    data = load_dataset("digits")
    first, again = seeded_batch(data, 20, 3), seeded_batch(data, 20, 3)
    assert torch.equal(first[0], again[0]) and not torch.equal(first[0], seeded_batch(data, 20, 4)[0])
    with pytest.raises(ValueError, match="fewer than a batch of 5000"):
        seeded_batch(data, 5000, 0)


def test_a_trap_cell_extracts_true_inputs_and_pruning_hides_them():
    config = TrapStudyConfig(dataset="bundled", model_options={"widths": (300, 8)}, batch_size=30, scale_factor=0.8)
    cell = trap_cell(load_dataset("bundled"), config, run=0)
    assert cell.reads() == ("fc1.linear.weight", "fc1.linear.bias")
    clean = cell.run()
    assert set(clean.update) == set(cell.reads())  # only what the attack reads is computed
    assert clean.scores["R"] >= 0.2
    assert clean.scores["R"] == pytest.approx(float(clean.points().recovered.float().mean()))
    assert 0 < clean.scores["P"] <= clean.scores["A"] <= 1
    pruned = cell.run(update_defense=lambda update: prune_gradients(update, 0.99)[0])
    assert pruned.scores["R"] < clean.scores["R"]


def test_passive_and_trap_cells_read_the_same_batch_and_trap_weights_extract_more():
    data = load_dataset("bundled")
    x, y = seeded_batch(data, 100, 0)
    from fedleak.models import build_model

    torch.manual_seed(0)
    model = build_model("fcnn", (1, 28, 28), 10, widths=(1000, 64))
    passive = extraction_cell(model, x, y, "passive").run()
    trapped = extraction_cell(model, x, y, "trap_weights", scale_factor=0.8, seed=1).run()
    assert trapped.scores["R"] >= 2 * passive.scores["R"] and trapped.scores["R"] >= 0.25

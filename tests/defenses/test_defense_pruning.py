"""Gradient pruning: the smallest-magnitude share p of every tensor is zeroed; as a mod it rewrites updates."""
import math

import pytest
import torch

from fedleak.defenses import prune_gradients, pruning_mod
from fedleak.fl.client import ClientUpdate


@pytest.mark.parametrize("p", [0.0, 0.5, 0.9, 0.99, 1.0])
def test_prunes_the_right_share_per_layer(p):
    generator = torch.Generator().manual_seed(0)
    tensors = {"w": torch.randn(16, 5, 5, generator=generator), "b": torch.randn(10, generator=generator),
               "big": torch.randn(64, 33, generator=generator), "steps": torch.tensor(3)}
    pruned, masks = prune_gradients(tensors, p)
    assert set(pruned) == set(tensors) and set(masks) == {"w", "b", "big"}
    assert torch.equal(pruned["steps"], tensors["steps"])
    for name, mask in masks.items():
        n = tensors[name].numel()
        assert int((~mask).sum()) == math.floor(p * n)
        torch.testing.assert_close(pruned[name], tensors[name] * mask)
        kept, dropped = tensors[name].abs()[mask], tensors[name].abs()[~mask]
        if kept.numel() and dropped.numel():
            assert kept.min() >= dropped.max()


def test_mod_rewrites_the_update_and_reports_masks():
    update = ClientUpdate(client_id=3, round=2, kind="gradient",
                          tensors={"a": torch.arange(1.0, 11.0), "b": -torch.arange(1.0, 5.0)},
                          num_examples=7, metrics={"loss": 1.0})
    out = pruning_mod(0.5)(None, None, lambda model: update)
    assert (out.client_id, out.round, out.kind, out.num_examples) == (3, 2, "gradient", 7)
    assert torch.equal(out.tensors["a"], torch.tensor([0.0] * 5 + [6.0, 7.0, 8.0, 9.0, 10.0]))
    assert torch.equal(out.tensors["b"], torch.tensor([0.0, 0.0, -3.0, -4.0]))
    assert out.metrics["loss"] == 1.0 and torch.equal(out.metrics["prune_masks"]["b"],
                                                      torch.tensor([False, False, True, True]))
    assert torch.equal(update.tensors["a"], torch.arange(1.0, 11.0))  # the original update is untouched


@pytest.mark.parametrize("p", [-0.1, 1.5, True])
def test_bad_rate(p):
    with pytest.raises(ValueError, match="pruning rate"):
        pruning_mod(p)

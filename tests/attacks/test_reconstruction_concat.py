"""Reconstructions of several observed updates concatenated: info shared by all is kept, tensors included."""
import torch

from fedleak.attacks.base import Reconstruction


def test_concat_keeps_only_the_info_every_part_shares_tensors_included():
    same, other = torch.tensor([1.0, 2.0]), torch.tensor([1.0, 3.0])
    parts = [Reconstruction(torch.zeros(2, 3), info={"num_rows": 4, "features": same, "seconds": 1.0}),
             Reconstruction(torch.ones(1, 3), info={"num_rows": 4, "features": other, "seconds": 2.0})]
    joined = Reconstruction.concat(parts)
    assert joined.info == {"num_rows": 4, "seconds": 3.0}  # the fishing features differ between the updates
    assert joined.meta["source"].tolist() == [0, 0, 1]  # the index of the observed update
    parts[1].info["features"] = same.clone()
    assert torch.equal(Reconstruction.concat(parts).info["features"], same)

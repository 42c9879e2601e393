import torch

from fedleak.data import load_dataset
from fedleak.data.skimage_photos import PHOTOS


def test_tiles_are_distinct_textured_colour_images():
    train = load_dataset("skimage_photos")
    test = load_dataset("skimage_photos", split="test")
    assert train.info.input_shape == (3, 32, 32) and train.info.num_classes == len(PHOTOS) == 8
    assert len(train) == 8 * 9 and len(test) == 8 * 4
    assert torch.bincount(train.y).tolist() == [9] * 8
    x = train.inputs(slice(None))
    assert (x.flatten(1).std(dim=1) > 0.03).all()  # no blank tiles
    colour = (x[:, 0] - x[:, 1]).abs().mean(dim=(1, 2)) + (x[:, 1] - x[:, 2]).abs().mean(dim=(1, 2))
    assert (colour > 0.01).float().mean() > 0.9  # colour, not grey
    distances = torch.cdist(x.flatten(1), x.flatten(1)).fill_diagonal_(float("inf"))
    assert distances.min() > 1.0  # all tiles differ
    # test tiles are shifted by half a tile: not equal to any training tile
    assert torch.cdist(test.inputs(slice(None)).flatten(1), x.flatten(1)).min() > 1.0
    assert load_dataset("skimage_photos", size=16, grid=2).x.shape == (32, 3, 16, 16)

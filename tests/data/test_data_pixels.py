import numpy as np
import pytest
import torch

from fedleak.data import DataFormatError
from fedleak.data.pixels import as_size, channel_stats, image_dataset, resize_images


def test_channel_stats_match_numpy():
    x = torch.randint(0, 256, (50, 3, 6, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mean, std = channel_stats(x)
    ref = x.numpy().astype(np.float64) / 255
    assert mean == pytest.approx(ref.mean(axis=(0, 2, 3)), abs=1e-4)
    assert std == pytest.approx(ref.std(axis=(0, 2, 3)), abs=1e-4)


def test_resize_keeps_uint8_and_content():
    x = torch.zeros(2, 1, 28, 28, dtype=torch.uint8)
    x[1, :, :, 14:] = 200  # right half bright
    out = resize_images(x, 32)
    assert out.dtype == torch.uint8 and out.shape == (2, 1, 32, 32)
    assert out[0].max() == 0 and out[1, 0, :, -4:].min() == 200 and out[1, 0, :, :4].max() == 0
    assert resize_images(x, (28, 28)) is x


def test_bad_inputs():
    with pytest.raises(ValueError, match="size must be"):
        as_size((3, 0))
    with pytest.raises(DataFormatError, match="must be uint8"):
        image_dataset("t", np.zeros((2, 4, 4), np.float32), [0, 1], 2)
    with pytest.raises(DataFormatError, match=r"labels outside \[0, 2\)"):
        image_dataset("t", np.zeros((2, 4, 4), np.uint8), [0, 2], 2)

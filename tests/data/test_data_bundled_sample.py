import numpy as np
import pytest
import torch

from fedleak.data import DataFormatError, load_dataset
from fedleak.data.bundled_sample import SAMPLE_PATH, build_bundled_sample
from fedleak.data.idx import FASHION_MNIST_SYSTEM_DIR, load_idx_pair


def test_bundled_sample_is_real_balanced_fashion_mnist():
    train = load_dataset("bundled")
    test = load_dataset("bundled", split="test")
    assert len(train) == 2000 and len(test) == 500
    assert train.info.input_shape == (1, 28, 28) and train.info.num_classes == 10
    assert torch.bincount(train.y).tolist() == [200] * 10 and torch.bincount(test.y).tolist() == [50] * 10
    x = train.inputs(slice(None))
    assert x.min() == 0.0 and x.max() == 1.0
    # Fashion-MNIST statistics (mean 0.286, std 0.353), not noise or blank images
    assert train.info.mean[0] == pytest.approx(0.286, abs=0.02) and train.info.std[0] == pytest.approx(0.353, abs=0.02)
    assert (x.flatten(1).std(dim=1) > 0.05).all()
    assert len(torch.unique(train.x.flatten(1), dim=0)) == 2000  # no duplicates
    # classes look different: mean image per class differs (e.g. trousers vs bags)
    means = torch.stack([x[train.y == c].mean(0).flatten() for c in range(10)])
    assert torch.cdist(means, means).fill_diagonal_(1.0).min() > 0.5
    assert SAMPLE_PATH.stat().st_size < 3 * 2**20


def test_sample_matches_its_source_and_rebuilds_identically(tmp_path):
    if not FASHION_MNIST_SYSTEM_DIR.is_dir():
        pytest.skip("Debian package dataset-fashion-mnist not installed")
    rebuilt = build_bundled_sample(FASHION_MNIST_SYSTEM_DIR, tmp_path / "sample.npz", seed=0)
    with np.load(SAMPLE_PATH, allow_pickle=False) as shipped, np.load(rebuilt, allow_pickle=False) as fresh:
        for key in shipped.files:
            assert np.array_equal(shipped[key], fresh[key]), key
        images, labels = load_idx_pair([FASHION_MNIST_SYSTEM_DIR], "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
        assert np.array_equal(shipped["x_test"], images[shipped["index_test"]])
        assert np.array_equal(shipped["y_test"], labels[shipped["index_test"]])


def test_bad_sample_file(tmp_path):
    with pytest.raises(DataFormatError, match="sample file not found"):
        load_dataset("bundled", root=tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(DataFormatError, match="x_train/y_train"):
        load_dataset("bundled", root=tmp_path / "other.npz")

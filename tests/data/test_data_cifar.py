import os
import pickle

import numpy as np
import pytest
import torch

from fedleak.data import DataFormatError, load_dataset
from fedleak.data.cifar import read_batch


def write_batch(path, n, label_key, seed, classes=10):
    """A CIFAR python batch as the real files hold it: bytes keys, uint8 data (N, 3072), a list of labels."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, classes, size=n)]
    batch = {b"batch_label": b"batch", label_key.encode(): labels, b"data": data,
             b"filenames": [f"img{i}.png".encode() for i in range(n)]}
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=2)
    return data, labels


def make_cifar10(root, n=4):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    parts = [write_batch(folder / f"data_batch_{i}", n, "labels", seed=i) for i in range(1, 6)]
    test = write_batch(folder / "test_batch", n, "labels", seed=9)
    return parts, test


def test_cifar10_batches(tmp_path):
    parts, test = make_cifar10(tmp_path)
    train = load_dataset("cifar10", root=tmp_path)
    assert len(train) == 20 and train.info.input_shape == (3, 32, 32) and train.info.num_classes == 10
    data, labels = parts[2]  # rows 8..11 come from data_batch_3; channels are R, G, B planes of 1024 values
    assert torch.equal(train.x[8:12], torch.from_numpy(data.reshape(-1, 3, 32, 32)))
    assert train.y[8:12].tolist() == labels
    assert len(train.info.mean) == 3 and all(0.45 < m < 0.55 for m in train.info.mean)
    test_set = load_dataset("cifar10", root=tmp_path / "cifar-10-batches-py", split="test")  # the folder itself
    assert test_set.y.tolist() == test[1]


def test_cifar100_fine_labels_and_resize(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    data, labels = write_batch(folder / "train", 6, "fine_labels", seed=1, classes=100)
    write_batch(folder / "test", 3, "fine_labels", seed=2, classes=100)
    train = load_dataset("cifar100", root=tmp_path, size=(16, 24))
    assert train.info.num_classes == 100 and train.x.shape == (6, 3, 16, 24)
    assert train.y.tolist() == labels


def test_missing_batch_names_the_file(tmp_path):
    make_cifar10(tmp_path)
    os.remove(tmp_path / "cifar-10-batches-py" / "data_batch_4")
    with pytest.raises(DataFormatError, match="data_batch_4: file not found"):
        load_dataset("cifar10", root=tmp_path)


def test_wrong_contents_are_rejected(tmp_path):
    path = tmp_path / "batch"
    with open(path, "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f, protocol=2)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    os.replace(path, folder / "train")
    with pytest.raises(DataFormatError, match="expected keys 'data' and 'fine_labels'"):
        load_dataset("cifar100", root=tmp_path)
    (folder / "train").write_bytes(b"garbage")
    with pytest.raises(DataFormatError, match="train: not a CIFAR python batch"):
        load_dataset("cifar100", root=tmp_path)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo owned > /dev/null",))


def test_pickle_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "evil"
    with open(path, "wb") as f:
        pickle.dump({b"data": _RunsCode(), b"labels": []}, f, protocol=2)
    with pytest.raises(DataFormatError, match="global (posix|os|nt).system is not allowed"):
        read_batch(path)

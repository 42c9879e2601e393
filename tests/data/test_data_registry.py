import pytest
import torch

from fedleak.data import DATASETS, UnknownNameError, dataset_options, iid_partition, load_dataset, split_clients

EXPECTED = {"mnist", "fashion_mnist", "emnist", "cifar10", "cifar100", "imagefolder", "imdb", "bundled", "digits",
            "skimage_photos", "fortunes", "fortunes_lm"}
TEXT = {"imdb", "fortunes"}


def test_all_datasets_registered():
    assert set(DATASETS.names()) == EXPECTED


def test_unknown_name_lists_valid_ones():
    with pytest.raises(UnknownNameError, match="unknown dataset 'mnits'; valid datasets: bundled, cifar10"):
        load_dataset("mnits")


def test_options_are_checked():
    assert all(dataset_options(name) == ["vocab_size", "seq_len"] for name in TEXT)
    assert all("size" in dataset_options(name) for name in EXPECTED - TEXT - {"fortunes_lm"})
    assert dataset_options("fortunes_lm") == ["vocab_size", "seq_len", "cache_dir"]  # BPE tokens (fedleak[llm])
    with pytest.raises(ValueError, match="dataset 'bundled' has no option seq_len; its options: size"):
        load_dataset("bundled", seq_len=3)
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        load_dataset("bundled", split="val")


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


@pytest.mark.parametrize("device", DEVICES)
def test_device_option_moves_tensors(device):
    data = load_dataset("bundled", split="test", device=device)
    assert data.x.device.type == device and data.y.device.type == device
    x, y = data[torch.arange(3, device=device)]
    assert x.device.type == device and x.dtype == torch.float32 and x.max() <= 1.0
    clients = split_clients(data, 5, scheme="dirichlet", alpha=1.0, seed=0)
    assert all(c.train.x.device.type == device for c in clients)
    assert sum(len(c.train) + len(c.val) for c in clients) == 500
    parts = iid_partition(data.y, 5, seed=0)
    assert parts[0].device.type == device and torch.equal(parts[0].cpu(), iid_partition(data.y.cpu(), 5, seed=0)[0])

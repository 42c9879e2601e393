import io
import tarfile

import pytest
import torch

from fedleak.data import DataFormatError, load_dataset
from fedleak.data import download as dl
from fedleak.data.download import RESOURCES, Resource, download, md5sum
from test_data_cifar import make_cifar10
from test_data_idx import make_mnist_folder


def serve(monkeypatch, name, folder, *, md5=None, mirrors=None):
    """Point ``name``'s resources at file:// URLs of ``folder`` (with their true MD5 unless ``md5`` is given)."""
    resources = tuple(Resource(r.filename, md5 or md5sum(folder / r.filename),
                               mirrors or (folder.as_uri() + "/",), r.unpack) for r in RESOURCES[name])
    monkeypatch.setitem(RESOURCES, name, resources)


def test_table_matches_what_the_loaders_read():
    assert set(RESOURCES) == {"mnist", "fashion_mnist", "cifar10", "cifar100"}
    for resources in RESOURCES.values():
        for r in resources:
            assert len(r.md5) == 32 and int(r.md5, 16) >= 0 and r.mirrors
    assert [r.filename for r in RESOURCES["mnist"]] == [r.filename for r in RESOURCES["fashion_mnist"]] == [
        f"{p}-{k}-idx{d}-ubyte.gz" for p in ("train", "t10k") for k, d in (("images", 3), ("labels", 1))]


def test_mnist_download_verifies_and_parses(tmp_path, monkeypatch):
    server = tmp_path / "server"
    arrays = make_mnist_folder(server)
    serve(monkeypatch, "mnist", server)
    root = download("mnist", tmp_path / "data", progress=False)
    data = load_dataset("mnist", root=root)
    assert torch.equal(data.x[:, 0], torch.from_numpy(arrays["train"][0]))
    assert not list(root.glob("*.part"))
    # files already there and correct are not fetched again
    monkeypatch.setattr(dl, "fetch", lambda *a, **k: pytest.fail("fetched again"))
    download("mnist", root, progress=False)


def test_checksum_mismatch_raises_and_leaves_nothing(tmp_path, monkeypatch):
    server = tmp_path / "server"
    make_mnist_folder(server)
    serve(monkeypatch, "mnist", server, md5="0" * 32)
    mismatch = "(?s)train-images-idx3-ubyte.gz: no mirror .*MD5 [0-9a-f]{32}, expected 0{32}"
    with pytest.raises(DataFormatError, match=mismatch):
        download("mnist", tmp_path / "data", progress=False)
    assert not any((tmp_path / "data").iterdir())


def test_next_mirror_is_tried(tmp_path, monkeypatch):
    good, bad = tmp_path / "good", tmp_path / "bad"
    make_mnist_folder(good)
    make_mnist_folder(bad, seed=1)  # same names, other bytes
    resources = [Resource(r.filename, md5sum(good / r.filename), ((tmp_path / "absent").as_uri() + "/",
                                                                   bad.as_uri() + "/", good.as_uri() + "/"))
                 for r in RESOURCES["mnist"]]
    monkeypatch.setitem(RESOURCES, "mnist", tuple(resources))
    root = download("mnist", tmp_path / "data", progress=False)
    assert md5sum(root / "train-images-idx3-ubyte.gz") == md5sum(good / "train-images-idx3-ubyte.gz")


def test_cifar_archive_is_unpacked(tmp_path, monkeypatch):
    staging, server = tmp_path / "staging", tmp_path / "server"
    parts, _ = make_cifar10(staging)
    server.mkdir()
    with tarfile.open(server / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(staging / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    serve(monkeypatch, "cifar10", server)
    root = download("cifar10", tmp_path / "data", progress=False)
    data = load_dataset("cifar10", root=root)
    assert len(data) == 20 and data.y[:4].tolist() == parts[0][1]


def test_archive_escaping_root_is_refused(tmp_path, monkeypatch):
    server = tmp_path / "server"
    server.mkdir()
    with tarfile.open(server / "cifar-100-python.tar.gz", "w:gz") as tar:
        payload = b"x"
        member = tarfile.TarInfo("../escaped.txt")
        member.size = len(payload)
        tar.addfile(member, io.BytesIO(payload))
    serve(monkeypatch, "cifar100", server)
    with pytest.raises(DataFormatError, match="refusing member '../escaped.txt'"):
        download("cifar100", tmp_path / "data", progress=False)
    assert not (tmp_path / "escaped.txt").exists()


def test_unknown_name():
    with pytest.raises(ValueError, match="cannot download 'imdb'; downloadable: mnist"):
        download("imdb", "/nonexistent")

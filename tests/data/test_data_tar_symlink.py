"""An archive is never extracted through a symbolic link already in the data folder (issue 22): a link to
elsewhere, a link loop (a raw RuntimeError before) and a link to a file are each refused in one line."""
import io
import os
import tarfile

import pytest

from fedleak.data.base import DataFormatError
from fedleak.data.download import unpack_tar


def _archive(path):
    with tarfile.open(path, "w:gz") as tar:
        folder = tarfile.TarInfo("cifar-10-batches-py")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        data = b"batch"
        member = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    return path


@pytest.mark.parametrize("link, points_to", [
    ("cifar-10-batches-py", "{outside}"),
    ("cifar-10-batches-py", "cifar-10-batches-py"),  # a loop
    ("cifar-10-batches-py/data_batch_1", "{outside}/victim"),
])
def test_a_pre_existing_symlink_on_the_way_is_refused_in_one_line(tmp_path, link, points_to):
    archive, root, outside = _archive(tmp_path / "a.tar.gz"), tmp_path / "root", tmp_path / "outside"
    root.mkdir(), outside.mkdir()
    (outside / "victim").write_text("keep me")
    (root / link).parent.mkdir(parents=True, exist_ok=True)
    os.symlink(points_to.format(outside=outside), root / link)
    with pytest.raises(DataFormatError) as refused:
        unpack_tar(archive, root)
    message = str(refused.value)
    assert f"{root / link} is a symbolic link already in the folder" in message and "\n" not in message
    assert (outside / "victim").read_text() == "keep me" and sorted(os.listdir(outside)) == ["victim"]


def test_an_archive_unpacks_into_a_clean_folder(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    unpack_tar(_archive(tmp_path / "a.tar.gz"), root)
    assert (root / "cifar-10-batches-py" / "data_batch_1").read_bytes() == b"batch"

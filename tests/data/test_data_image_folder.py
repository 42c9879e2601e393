import numpy as np
import pytest
from PIL import Image

from fedleak.data import DataFormatError, load_dataset


def save_png(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)


def solid(colour, size=(40, 50)):
    return np.broadcast_to(np.array(colour, np.uint8), (*size, 3)).copy()


def test_class_folders_become_sorted_labels_and_images_are_resized(tmp_path):
    save_png(tmp_path / "zebra" / "a.png", solid((255, 0, 0)))
    save_png(tmp_path / "apple" / "b.png", solid((0, 0, 255)))
    save_png(tmp_path / "apple" / "c.png", solid((0, 255, 0), size=(20, 30)))
    Image.fromarray(solid((9, 9, 9))[..., 0]).save(tmp_path / "apple" / "d.png")  # greyscale -> 3 channels
    (tmp_path / "apple" / "notes.txt").write_text("not an image")
    data = load_dataset("imagefolder", root=tmp_path)
    assert data.info.input_shape == (3, 32, 32) and data.info.num_classes == 2
    assert data.y.tolist() == [0, 0, 0, 1]  # apple = 0 (b, c, d), zebra = 1
    assert data.x[0, :, 5, 5].tolist() == [0, 0, 255]
    assert data.x[1, :, 5, 5].tolist() == [0, 255, 0]
    assert data.x[2, :, 5, 5].tolist() == [9, 9, 9]
    assert data.x[3, :, 5, 5].tolist() == [255, 0, 0]
    small = load_dataset("imagefolder", root=tmp_path, size=8)
    assert small.x.shape == (4, 3, 8, 8)


def test_train_test_layout_shares_class_indices(tmp_path):
    save_png(tmp_path / "train" / "cat" / "1.png", solid((1, 2, 3)))
    save_png(tmp_path / "train" / "dog" / "1.png", solid((4, 5, 6)))
    save_png(tmp_path / "test" / "dog" / "1.png", solid((7, 8, 9)))  # no test cats
    test = load_dataset("imagefolder", root=tmp_path, split="test")
    assert test.y.tolist() == [1] and test.info.num_classes == 2
    save_png(tmp_path / "test" / "emu" / "1.png", solid((7, 8, 9)))
    with pytest.raises(DataFormatError, match=r"classes \['emu'\] have no folder"):
        load_dataset("imagefolder", root=tmp_path, split="test")


def test_bad_folders_and_files(tmp_path):
    with pytest.raises(DataFormatError, match="no class sub-folders"):
        load_dataset("imagefolder", root=tmp_path)
    with pytest.raises(DataFormatError, match="no test split"):
        load_dataset("imagefolder", root=tmp_path, split="test")
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataFormatError, match="broken.png: not a readable image"):
        load_dataset("imagefolder", root=tmp_path)

"""The reproductions' training images: a named folder must exist; photos come as enough tiles for a batch of 200."""
import pytest

from fedleak.data import DataFormatError
from fedleak.data.training_images import load_training_images


def test_a_named_folder_that_is_absent_is_an_error_not_a_fallback(tmp_path):
    with pytest.raises(DataFormatError):
        load_training_images("fashion_mnist", str(tmp_path / "absent"))


def test_photo_tiles_hold_a_batch_of_200_and_keep_their_name():
    data, name = load_training_images("skimage_photos", None, 32)
    assert name == "skimage_photos" and len(data) >= 200 and data.info.input_shape == (3, 32, 32)


def test_the_default_loads_or_falls_back_to_the_bundled_sample():
    data, name = load_training_images("fashion_mnist")
    assert name in ("fashion_mnist", "bundled") and data.info.input_shape == (1, 28, 28)

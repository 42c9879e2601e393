"""What `fedleak audit --model/--data` accept: registry names with options, the user's own model and Dataset by
import path or file, and a clear error naming the problem otherwise (issue 15)."""
import textwrap

import pytest
import torch
import torch.nn as nn

from fedleak.audit.inputs import resolve_data, resolve_model

USER_CODE = textwrap.dedent("""
    import torch
    import torch.nn as nn


    class Net(nn.Module):
        def __init__(self, input_shape, num_classes, width=8):
            super().__init__()
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(input_shape).prod()), width),
                                      nn.ReLU(), nn.Linear(width, num_classes))

        def forward(self, x):
            return self.body(x)


    class Points(torch.utils.data.Dataset):
        classes = ["a", "b", "c"]

        def __len__(self):
            return 50

        def __getitem__(self, i):
            return torch.full((1, 6, 6), i / 50.0), i % 3
""")


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "audit_user_code.py").write_text(USER_CODE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path / "audit_user_code.py"


def test_registry_model_with_options_and_dataset_resized():
    train, test = resolve_data("bundled", size=(32, 32))
    assert train.info.input_shape == (1, 32, 32) and len(train) == 2000 and len(test) == 500
    resolved = resolve_model("resnet18:norm=group", (1, 32, 32), 10)
    assert resolved.registered and resolved.name == "resnet18"
    assert not any(isinstance(m, nn.BatchNorm2d) for m in resolved.model.modules())


def test_user_model_and_dataset_by_import_path_and_by_file(user_module):
    train, test = resolve_data("audit_user_code:Points", seed=0)
    assert (len(train), len(test)) == (40, 10) and train.info.num_classes == 3
    assert train.info.input_shape == (1, 6, 6)
    assert sorted(torch.cat([train.y, test.y]).tolist()) == sorted(i % 3 for i in range(50))  # every item once
    for spec in ("audit_user_code:Net:width=5", f"{user_module}:Net:width=5"):
        resolved = resolve_model(spec, train.info.input_shape, train.info.num_classes)
        assert not resolved.registered
        assert resolved.model.body[1].out_features == 5  # the option reached the user's class
        assert resolved.model(train.inputs(slice(0, 4))).shape == (4, 3)
        assert resolved.model.input_shape == (1, 6, 6)


@pytest.mark.parametrize("spec, message", [
    ("no_such_module_xyz:make", "cannot import 'no_such_module_xyz'"),
    ("audit_user_code:Missing", "has no attribute 'Missing'"),
    ("audit_user_code:torch", "is not a function or nn.Module class"),
    ("cnn:padding", "option 'padding' is not key=value"),
    ("not a model", "neither a registered name nor an import path"),
])
def test_bad_model_specs_name_the_problem(user_module, spec, message):
    with pytest.raises(ValueError, match=message):
        resolve_model(spec, (1, 6, 6), 3)


def test_an_import_path_that_is_not_a_dataset(user_module):
    with pytest.raises(ValueError, match="gave a Net, not a torch Dataset"):
        resolve_data("audit_user_code:Net:input_shape=2:num_classes=2")


def test_an_image_folder_is_split_into_training_and_test(tmp_path):
    from PIL import Image

    for label, value in (("cat", 30), ("dog", 220)):
        (tmp_path / label).mkdir()
        for i in range(5):
            Image.new("RGB", (12, 10), (value + i, value, value)).save(tmp_path / label / f"{i}.png")
    train, test = resolve_data(str(tmp_path), size=(8, 8), seed=0)
    assert (len(train), len(test)) == (8, 2) and train.info.input_shape == (3, 8, 8) and train.info.num_classes == 2
    bright = torch.cat([train.inputs(slice(None)), test.inputs(slice(None))]).mean(dim=(1, 2, 3)) > 0.5
    assert torch.equal(bright, torch.cat([train.y, test.y]) == 1)  # dog images are the bright ones

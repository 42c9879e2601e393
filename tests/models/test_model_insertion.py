import pytest
import torch
import torch.nn as nn

from fedleak.models import build_model, insert_module


class Recorder(nn.Module):
    """Identity that remembers the shape of what passed through it."""

    def forward(self, x):
        self.seen = tuple(x.shape)
        return x


def test_dropout_after_first_conv_block_and_bottleneck_point_before_classifier():
    torch.manual_seed(0)
    model = build_model("cnn", (3, 32, 32), 10)
    x = torch.rand(2, 3, 32, 32)
    clean = model(x)
    recorder = Recorder()
    insert_module(model, "dropout", nn.Dropout(0.5), after="block1")
    insert_module(model, "bottleneck", recorder, before="classifier")
    assert [n for n, _ in model.named_children()] == [
        "block1", "dropout", "block2", "block3", "flatten", "bottleneck", "classifier"]
    model.eval()
    torch.testing.assert_close(model(x), clean)  # dropout is the identity in eval mode
    assert recorder.seen == (2, 64)
    model.train()
    assert not torch.allclose(model(x), clean)


def test_insertion_after_resnet_layer1_and_first_vit_block():
    resnet = build_model("resnet18", (3, 16, 16), 10, norm="group", width=4)
    recorder = Recorder()
    insert_module(resnet, "probe", recorder, after="layer1")
    resnet(torch.rand(1, 3, 16, 16))
    assert recorder.seen == (1, 4, 16, 16)

    vit = build_model("vit_small", (3, 16, 16), 10, depth=3, width=16, heads=2)
    insert_module(vit, "probe", recorder, after="blocks.0")
    assert [n for n, _ in vit.blocks.named_children()] == ["0", "probe", "1", "2"]
    vit(torch.rand(1, 3, 16, 16))
    assert recorder.seen == (1, 17, 16)


def test_bad_insertion_points_are_explained():
    model = build_model("cnn", (3, 32, 32), 10)
    with pytest.raises(ValueError, match="no child 'block9' at the top level; children there: block1, block2"):
        insert_module(model, "d", nn.Identity(), after="block9")
    with pytest.raises(ValueError, match="cannot add a child named 'block2'"):
        insert_module(model, "block2", nn.Identity(), after="block1")
    with pytest.raises(ValueError, match="exactly one of after= or before="):
        insert_module(model, "d", nn.Identity())
    with pytest.raises(ValueError, match="model has no submodule 'nothing'"):
        insert_module(model, "d", nn.Identity(), after="nothing.fc")


def test_a_module_under_any_parent_is_spliced_in_place_and_keeps_its_name():
    vit = build_model("vit_small", (3, 16, 16), 10, depth=1, width=16, heads=2)
    recorder = Recorder()
    insert_module(vit, "probe", recorder, after="blocks.0.attn")  # parent: a TransformerBlock attribute
    assert [n for n, _ in vit.blocks[0].attn.named_children()] == ["attn", "probe"]
    assert "blocks.0.attn.attn.qkv.weight" in vit.state_dict()
    vit(torch.rand(1, 3, 16, 16))
    assert recorder.seen == (1, 17, 16)
    insert_module(vit, "first", nn.Identity(), before="blocks.0.attn")  # a second insertion joins the splice
    assert [n for n, _ in vit.blocks[0].attn.named_children()] == ["first", "attn", "probe"]


class Double(nn.Module):
    def forward(self, x):
        return 2 * x


class DictHead(nn.Module):
    """A plain attribute and a ModuleDict, as ordinary models write them."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 6)
        self.heads = nn.ModuleDict({"a": nn.Linear(6, 3)})

    def forward(self, x):
        return self.heads["a"](torch.relu(self.body(x)))


def test_insertion_into_a_module_dict_and_a_plain_attribute():
    model = DictHead()
    recorder, before = Recorder(), Recorder()
    insert_module(model, "probe", recorder, before="heads.a")
    insert_module(model, "first", before, after="body")
    assert isinstance(model.heads["a"], nn.Sequential) and list(model.heads["a"]._modules) == ["probe", "a"]
    assert list(model.body._modules) == ["body", "first"]
    assert model(torch.rand(2, 4)).shape == (2, 3)
    assert recorder.seen == (2, 6) and before.seen == (2, 6)


def test_a_module_before_the_input_of_any_model_survives_copies_and_saving(tmp_path):
    import copy

    from fedleak.models.insertion import insert_before_input

    model = DictHead()
    x = torch.rand(2, 4)
    expected = model(2 * x)
    insert_before_input(model, "twice", Double())
    torch.testing.assert_close(model(x), expected)
    torch.testing.assert_close(copy.deepcopy(model)(x), expected)
    torch.save(model, tmp_path / "model.pt")
    torch.testing.assert_close(torch.load(tmp_path / "model.pt", weights_only=False)(x), expected)
    with pytest.raises(ValueError, match="cannot add a module named 'twice' to DictHead: the name is taken"):
        insert_before_input(model, "twice", Double())

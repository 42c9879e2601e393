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

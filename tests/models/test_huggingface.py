"""``hf`` models: the ``--model hf:...`` spec, random-init and local-checkpoint builds, LoRA, one-line refusals."""
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("peft")
pytestmark = pytest.mark.llm

from fedleak.commands.common import parse_model  # noqa: E402
from fedleak.models import build_model  # noqa: E402
from fedleak.models.huggingface import hf_options  # noqa: E402

TINY_GPT2 = "n_layer=2,n_embd=32,n_head=2"


def test_the_issue_spec_and_its_canonical_form_agree():
    options = hf_options("hf:gpt2:n_layer=2,n_embd=256:lora=r8")
    assert options == {"arch": "gpt2", "config": "n_layer=2,n_embd=256", "lora": "r8"}
    choice = parse_model("hf:gpt2:n_layer=2,n_embd=256:lora=r8")
    assert parse_model(str(choice)) == choice


def test_random_decoder_encoder_and_llama_build_and_run():
    x = torch.randint(0, 50, (3, 8))
    gpt2 = build_model("hf", (8,), 50, arch="gpt2", config=TINY_GPT2)
    assert gpt2(x).shape == (3, 8, 50) and gpt2.causal and gpt2.net.config.vocab_size == 50
    bert = build_model("hf", (8,), 3, arch="bert", config="num_hidden_layers=1,hidden_size=32,num_attention_heads=2,"
                                                             "intermediate_size=64,vocab_size=50")
    assert bert(x).shape == (3, 3) and not bert.causal
    llama = build_model("hf", (8,), 50, arch="llama", config="num_hidden_layers=1,hidden_size=32,"
                                                               "num_attention_heads=2,intermediate_size=64")
    assert llama(x).shape == (3, 8, 50)


def test_double_backward_works_on_cpu():
    model = build_model("hf", (6,), 40, arch="gpt2", config=TINY_GPT2)
    x = torch.randint(0, 40, (2, 6))
    loss = torch.nn.functional.cross_entropy(model(x).transpose(1, 2), x)
    grads = torch.autograd.grad(loss, list(model.parameters()), create_graph=True)
    second = torch.autograd.grad(sum(g.pow(2).sum() for g in grads), model.net.transformer.wte.weight)[0]
    assert second.abs().sum() > 0


def test_lora_trains_only_the_adapters_with_b_zero():
    model = build_model("hf", (6,), 40, arch="gpt2", config=TINY_GPT2, lora="r4")
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert all(p.abs().sum() == 0 for n, p in model.named_parameters() if "lora_B" in n)


def test_local_checkpoint_folder(tmp_path):
    torch.manual_seed(0)
    model = build_model("hf", (6,), 40, arch="gpt2", config=TINY_GPT2)
    model.net.save_pretrained(tmp_path)
    again = build_model("hf", (6,), 40, path=str(tmp_path))
    x = torch.randint(0, 40, (2, 6))
    assert torch.allclose(model.eval()(x), again.eval()(x))


@pytest.mark.parametrize("options, message", [
    ({"arch": "no_such_model"}, "unknown architecture"),
    ({"config": "n_layer"}, "not key=value"),
    ({"lora": "rx"}, "lora must be a rank"),
    ({"head": "pooler"}, "head must be one of"),
    ({"config": "n_positions=4"}, "exceed the model's 4 positions"),
    ({"path": "/no/such/folder"}, "not a folder"),
])
def test_bad_options_name_the_problem(options, message):
    with pytest.raises(ValueError, match=message):
        build_model("hf", (6,), 40, **{"arch": "gpt2", "config": TINY_GPT2, **options})

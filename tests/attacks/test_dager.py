"""DAGER (Petrov et al. 2024) against the true token ids: a small GPT-2-style decoder's gradient of 4 fortunes gives
them back exactly; the same gradient through DP noise gives nothing back, and the attack says so."""
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
pytestmark = pytest.mark.llm

from fedleak.attacks import ATTACKS, HONEST, MALICIOUS, Observed  # noqa: E402
from fedleak.data import load_dataset  # noqa: E402
from fedleak.fl.training import batch_gradients  # noqa: E402
from fedleak.metrics.text import text_scores  # noqa: E402
from fedleak.models import build_model  # noqa: E402

SEQ_LEN, BATCH = 12, 4
DP_SIGMA = 1e-3  # Gaussian noise std added to every gradient entry (local DP, no clipping)


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    data = load_dataset("fortunes_lm", seq_len=SEQ_LEN, cache_dir=str(tmp_path_factory.mktemp("cache")))
    index = torch.randperm(len(data), generator=torch.Generator().manual_seed(3))[:BATCH]
    return data.x[index], data.y[index]


def gradient(model, x, y, sigma: float = 0.0) -> Observed:
    grads = batch_gradients(model, x, y)
    noise = torch.Generator().manual_seed(11)
    if sigma:
        grads = {k: g + sigma * torch.randn(g.shape, generator=noise) for k, g in grads.items()}
    return Observed({k: g.unsqueeze(0) for k, g in grads.items()}, "gradient", (0,), (len(x),), (model,))


@pytest.fixture(scope="module")
def decoder():
    torch.manual_seed(0)
    return build_model("hf", (SEQ_LEN,), 2000, arch="gpt2", config="n_layer=2,n_embd=128,n_head=4")


def test_dager_is_honest():
    assert "dager" in HONEST and "dager" not in MALICIOUS


def test_decoder_batch_of_4_recovered_exactly(decoder, batch):
    x, y = batch
    reconstruction = ATTACKS.build("dager").reconstruct(gradient(decoder, x, y), None)
    declared = reconstruction.inputs[reconstruction.declared]
    assert len(declared) == BATCH
    assert sorted(map(tuple, declared.tolist())) == sorted(map(tuple, x.tolist()))
    assert text_scores(declared, x)["exact"] == 1.0


def test_dp_noise_defeats_the_check(decoder, batch):
    x, y = batch
    reconstruction = ATTACKS.build("dager").reconstruct(gradient(decoder, x, y, sigma=DP_SIGMA), None)
    declared = reconstruction.inputs[reconstruction.declared]
    scores = text_scores(declared, x)
    assert scores["exact"] == 0.0 and scores["rouge1"] < 0.2
    assert "refused" in reconstruction.info  # says why, instead of declaring noise as text


def test_lora_decoder_recovered(batch):
    x, y = batch
    torch.manual_seed(0)
    model = build_model("hf", (SEQ_LEN,), 2000, arch="gpt2", config="n_layer=2,n_embd=128,n_head=4", lora="r64")
    reconstruction = ATTACKS.build("dager").reconstruct(gradient(model, x, y), None)
    assert text_scores(reconstruction.inputs[reconstruction.declared], x)["exact"] == 1.0


def test_fedavg_delta_refused(decoder, batch):
    observed = gradient(decoder, *batch)
    delta = Observed(observed.updates, "delta", (0,), (BATCH,), (decoder,))
    with pytest.raises(ValueError, match="FedSGD"):
        ATTACKS.build("dager").reconstruct(delta, None)


def test_an_update_of_the_wrong_shape_is_refused_in_one_line(decoder, batch):
    observed = gradient(decoder, *batch)
    key = next(k for k in observed.updates if k.endswith("h.0.attn.c_attn.weight"))
    bad = Observed({**observed.updates, key: observed.updates[key][:, :5]}, "gradient", (0,), (BATCH,), (decoder,))
    with pytest.raises(ValueError, match="c_attn.weight is"):
        ATTACKS.build("dager").reconstruct(bad, None)

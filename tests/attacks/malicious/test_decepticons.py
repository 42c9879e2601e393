"""Decepticons (paper 000 App. A.1.4): attention disabled, then single tokens leak from the first MLP layer."""
import torch

from fedleak.attacks.malicious.decepticons import DecepticonsConfig, decepticons, extract_decepticons
from fedleak.fl.training import batch_gradients
from fedleak.models import build_model

SEQ_LEN, VOCAB, BATCH = 12, 300, 4


def final_tokens(model, x):
    seen = {}

    def keep(module, args, output):
        seen["out"] = output

    hook = model.norm.register_forward_hook(keep)
    with torch.no_grad():
        model(x)
    hook.remove()
    return seen["out"]


def test_disabled_attention_makes_each_token_independent_of_the_others():
    torch.manual_seed(0)
    model = build_model("text_transformer", (SEQ_LEN,), 2, vocab_size=VOCAB)
    x = torch.randint(0, VOCAB, (BATCH, SEQ_LEN))
    changed = x.clone()
    changed[:, 6:] = (changed[:, 6:] + 1) % VOCAB
    corrupted, _ = decepticons(model, DecepticonsConfig(BATCH * SEQ_LEN))
    before, after = final_tokens(corrupted, x), final_tokens(corrupted, changed)
    assert torch.equal(before[:, :6], after[:, :6])  # untouched tokens see nothing of the changed ones
    honest_before, honest_after = final_tokens(model, x), final_tokens(model, changed)
    assert (honest_before[:, :6] - honest_after[:, :6]).abs().max() > 1e-3  # the benign model mixes tokens


def test_single_tokens_leak_only_when_attention_is_disabled():
    torch.manual_seed(0)
    model = build_model("text_transformer", (SEQ_LEN,), 2, vocab_size=VOCAB)
    x = torch.randint(0, VOCAB, (BATCH, SEQ_LEN))
    y = torch.arange(BATCH) % 2
    truth = {(p, int(x[b, p])) for b in range(BATCH) for p in range(SEQ_LEN)}
    recovered = {}
    for disable in (True, False):
        corrupted, secret = decepticons(model, DecepticonsConfig(BATCH * SEQ_LEN, disable_attention=disable))
        pairs = extract_decepticons(batch_gradients(corrupted, x, y), secret).declared_points()
        recovered[disable] = {(int(p), int(t)) for p, t in pairs}
    assert recovered[True] <= truth  # every recovered (position, token) is in the batch
    assert len(recovered[True]) >= len(truth) // 2
    assert not recovered[False]  # with attention mixing tokens nothing matches the table

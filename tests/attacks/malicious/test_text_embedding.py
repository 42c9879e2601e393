"""Text extraction through uniform embeddings and trap weights (paper 002 §8) on a small IMDB model."""
import torch

from fedleak.attacks.malicious.text_embedding import TextEmbeddingConfig, extract_text, lookup_tokens, text_embedding
from fedleak.fl.training import batch_gradients
from fedleak.models import build_model

SEQ_LEN, VOCAB = 20, 1000


def sentences(batch: int) -> torch.Tensor:
    """Zipf-distributed word ids with end padding (id 0), like encoded reviews of different lengths."""
    generator = torch.Generator().manual_seed(0)
    ranks = torch.arange(2, VOCAB, dtype=torch.float)
    words = torch.multinomial(1.0 / ranks, batch * SEQ_LEN, replacement=True, generator=generator) + 2
    tokens = words.reshape(batch, SEQ_LEN)
    lengths = torch.randint(8, SEQ_LEN + 1, (batch,), generator=generator)
    return torch.where(torch.arange(SEQ_LEN) < lengths.unsqueeze(1), tokens, torch.zeros_like(tokens))


def test_extracted_token_sequences_are_the_batch_sentences():
    torch.manual_seed(0)
    model = build_model("imdb_fc", (SEQ_LEN,), 2, vocab_size=VOCAB, embed_dim=16, hidden=1000)
    x = sentences(20)
    y = torch.arange(20) % 2
    manipulated, secret = text_embedding(model, TextEmbeddingConfig(SEQ_LEN, scale_factor=0.9))
    reconstruction = extract_text(batch_gradients(manipulated, x, y), secret)
    found = reconstruction.declared_points()
    in_batch = (found.unsqueeze(1) == x.unsqueeze(0)).all(dim=2).any(dim=1)
    assert in_batch.all()  # every complete sequence is a real sentence of the batch
    assert len(found) >= 10  # and at least half of the 20 sentences come back
    # rows that mix several sentences do not map to a complete token sequence
    assert (~reconstruction.declared).any()


def test_lookup_rejects_vectors_not_in_the_table():
    table = torch.rand(500, 8)
    probe = torch.cat([table[[3, 77]] * (1 + 1e-7), 0.5 * (table[[1]] + table[[2]])])
    assert lookup_tokens(probe, table).tolist() == [3, 77, -1]

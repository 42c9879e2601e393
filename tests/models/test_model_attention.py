import torch
import torch.nn.functional as F

from fedleak.models.attention import Attention


def test_explicit_attention_matches_torch_sdpa():
    torch.manual_seed(0)
    attention = Attention(width=24, heads=3)
    x = torch.randn(2, 5, 24)
    q, k, v = attention.qkv(x).split(24, dim=-1)
    heads = lambda t: t.reshape(2, 5, 3, 8).transpose(1, 2)  # noqa: E731
    expected = F.scaled_dot_product_attention(heads(q), heads(k), heads(v)).transpose(1, 2).reshape(2, 5, 24)
    torch.testing.assert_close(attention(x), attention.proj(expected))

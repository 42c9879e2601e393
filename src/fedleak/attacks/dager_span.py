"""The span check of DAGER (Petrov et al., NeurIPS 2024, §4-5.1): the gradient of an attention projection spans
the layer's B·n input vectors while B·n is below the width (Theorem 4.1), so a candidate input is checked by its
distance to that span (Eq. 4); layer 1's check filters each position's tokens, layer 2's the sequences (the search
itself is in :mod:`fedleak.attacks.dager`). LoRA: the adapter B's gradient spans the inputs projected by A.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn as nn

PROJECTION = re.compile(r"(^|\.)(c_attn|q_proj|k_proj|v_proj|query|key|value|qkv|Wqkv)$")  # read a layer's input
CHUNK = 256  # sequences per forward pass


class _Captured(Exception):
    """Stops a forward pass once the hooked layer's input is read."""


@dataclass
class LayerSpan:
    """One attention layer's check: the module whose input is checked and, per span, its orthonormal basis and the
    projection of a candidate before the check (LoRA's A; ``None``: identity). ``rank`` is the largest span's rank
    out of its ``dimension``; ``full``: some span fills its space (then every vector is in it)."""

    module: nn.Module
    spans: list[tuple[torch.Tensor, torch.Tensor | None]]
    rank: int
    dimension: int
    full: bool

    def distance(self, z: torch.Tensor) -> torch.Tensor:
        """Relative distance of each vector of ``z`` (..., d) to the nearest span (paper Eq. 4): a true input lies
        in the span of every projection whose output gradient at its position is not zero, so in at least one."""
        best = None
        for basis, projection in self.spans:
            v = z.to(basis.dtype)
            if projection is not None:
                v = v @ projection.T
            v = v / v.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(v.dtype).tiny)
            d = (v - (v @ basis) @ basis.T).norm(dim=-1)
            best = d if best is None else torch.minimum(best, d)
        return best


def attention_layers(model: nn.Module) -> list[list[tuple[str, nn.Module]]]:
    """Per attention layer, in order, the projections that read its input (query/key/value, or a fused QKV),
    grouped by their parent module (PEFT's inner layers excluded)."""
    groups: dict[str, list[tuple[str, nn.Module]]] = {}
    for name, module in model.named_modules():
        if PROJECTION.search(name) and "lora_" not in name and "base_layer" not in name:
            groups.setdefault(name.rpartition(".")[0], []).append((name, module))
    layers = list(groups.values())
    if len(layers) < 2:
        raise ValueError("dager needs a transformer with at least two attention layers (query/key/value, q_proj or "
                         f"c_attn modules); found {len(layers)}")
    return layers


def input_basis(grad: torch.Tensor, tolerance: float, most: int) -> tuple[torch.Tensor, int]:
    """Orthonormal basis (d, rank) of the span of the inputs whose outer products make ``grad`` (d, out): the
    singular vectors above ``tolerance`` times the largest, at most ``most`` (the batch's B·n input vectors, which
    the server knows from the reported example count; noise cannot raise the rank past them)."""
    u, s, _ = torch.linalg.svd(grad.double(), full_matrices=False)
    rank = min(int((s > tolerance * s[0]).sum()), most) if s.numel() and s[0] > 0 else 0
    return u[:, :rank], rank


def layer_check(projections: list[tuple[str, nn.Module]], update: dict[str, torch.Tensor], tolerance: float,
                most: int, device) -> LayerSpan:
    """The span check of one attention layer: the stacked weight gradients of its projections (all read the same
    input), or each LoRA adapter's B gradient with its A."""
    full, spans = [], []
    for name, module in projections:
        lora = hasattr(module, "lora_B")
        adapter = next(iter(module.lora_B)) if lora else None
        key = f"{name}.lora_B.{adapter}.weight" if lora else f"{name}.weight"
        if key not in update:
            raise ValueError(f"dager: the update holds no {key}")
        expected = (module.lora_B[adapter] if lora else module).weight.shape
        if tuple(update[key].shape) != tuple(expected) or not update[key].is_floating_point():
            raise ValueError(f"dager: {key} is {tuple(update[key].shape)} {update[key].dtype}, the model's is "
                             f"{tuple(expected)}")
        grad = update[key].to(device)
        if lora:  # (out, r): B's gradient rows live in the span of A x
            spans.append((grad.T, module.lora_A[adapter].weight.detach().to(device, torch.float64)))
        else:  # Conv1D keeps (in, out), Linear (out, in)
            full.append(grad if type(module).__name__ == "Conv1D" else grad.T)
    if full:
        spans.append((torch.cat(full, dim=1), None))
    checks, rank, dimension, filled = [], 0, 0, False
    for grad, projection in spans:
        basis, r = input_basis(grad, tolerance, most)
        if r == 0:
            continue
        checks.append((basis, projection))
        rank, dimension = max(rank, r), max(dimension, grad.shape[0])
        filled |= r >= grad.shape[0]
    return LayerSpan(projections[0][1], checks, rank, dimension, filled or not checks)


def layer_inputs(model: nn.Module, module: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """The input of ``module`` (B, n, d) when ``model`` reads ``tokens`` (B, n); the forward stops there."""
    seen = input_until(module, lambda: model(tokens))
    if seen is None:
        raise ValueError("dager: the attention layer was not reached by the forward pass")
    return seen


def chunked_distance(model: nn.Module, layer: LayerSpan, tokens: torch.Tensor, *, last: bool) -> torch.Tensor:
    """Layer distances of ``tokens`` (K, n): at the last position (K,) or at every position (K, n)."""
    parts = []
    for start in range(0, len(tokens), CHUNK):
        z = layer_inputs(model, layer.module, tokens[start:start + CHUNK])
        parts.append(layer.distance(z[:, -1] if last else z))
    return torch.cat(parts) if parts else torch.zeros(0, device=tokens.device)


def token_sets(model: nn.Module, layer: LayerSpan, vocab: int, seq_len: int, threshold: float, device
               ) -> list[torch.Tensor]:
    """The tokens whose layer-1 vector at position p is in the span, for every p (paper §5.1)."""
    every = torch.arange(vocab, device=device).unsqueeze(1).expand(vocab, seq_len)
    distances = chunked_distance(model, layer, every, last=False)  # (V, n): token v at every position
    return [torch.nonzero(distances[:, p] < threshold).flatten() for p in range(seq_len)]


def extension_distance(model: nn.Module, layer: LayerSpan, prefixes: torch.Tensor, tokens: torch.Tensor
                       ) -> torch.Tensor:
    """Layer distances at the last position of every prefix (K, p) extended by every token (T,), prefix-major
    (K * T,). A causal model's layer-1 keys and values of a prefix do not depend on what follows, so each prefix is
    read once into a key/value cache and every extension reads one token against it."""
    from transformers import DynamicCache

    net, p = model.net, prefixes.shape[1]
    per_chunk = max(1, CHUNK * 16 // len(tokens))  # prefixes per pass: at most ~4096 extensions
    parts = []
    for start in range(0, len(prefixes), per_chunk):
        chunk = prefixes[start:start + per_chunk]
        cache = DynamicCache(config=net.config)
        input_until(layer.module, lambda: net(input_ids=chunk, cache=cache, use_cache=True))
        cache.batch_repeat_interleave(len(tokens))
        last = tokens.repeat(len(chunk)).unsqueeze(1)
        positions = torch.full_like(last, p)
        z = input_until(layer.module, lambda: net(input_ids=last, cache=cache, position_ids=positions,
                                             use_cache=True))
        parts.append(layer.distance(z[:, -1]))
    return torch.cat(parts)


def input_until(module: nn.Module, forward) -> torch.Tensor | None:
    """``module``'s input in ``forward()``, which stops there."""
    seen = []

    def hook(_, args):
        seen.append(args[0].detach())
        raise _Captured

    handle = module.register_forward_pre_hook(hook)
    try:
        forward()
    except _Captured:
        pass
    finally:
        handle.remove()
    return seen[0] if seen else None

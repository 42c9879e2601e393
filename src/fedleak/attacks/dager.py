"""DAGER (Petrov et al., NeurIPS 2024, "DAGER: Exact Gradient Inversion for Large Language Models"): exact text from
a transformer's gradient, by checking which token sequences lie in the span the gradient of an attention projection
spans.

The gradient of a linear map ``Y = X W^T`` is ``dL/dW = (dL/dY)^T X``, so its rows lie in the span of the rows of
``X``, the layer's B·n input vectors; while B·n is below the width d the gradient is low rank and this span is all
it can be (paper §4, Theorem 4.1). Layer 1: ``X`` is the normalised token + position embedding, one vector per
(token, position) pair that the server computes for every vocabulary token, so the tokens at each position are those
whose vector is within ``span_threshold_1`` of the span (§5.1, the token filter). Layer 2: its input at position p is
a function of the whole prefix in a causal (decoder) model, so sequences grow position by position, each prefix
extended by the position's tokens and kept when its layer-2 vector is in the layer-2 span (§5.2, the greedy decoder
search). In an encoder every position sees the whole sequence: fedleak searches each sequence by coordinate descent
over the positions' token sets on the mean layer-2 distance and keeps those in the span (a simpler search than the
paper's exhaustive heuristic, §5.3). The distance is ``||z - Q Q^T z|| / ||z||`` with ``Q`` an orthonormal basis of
the gradient's input-side singular vectors above ``rank_tolerance`` times the largest, at most B·n of them (B
from the example count the client reports; as the paper's known batch size, it keeps small noise from filling the
span: measured on a 128-wide decoder, B = 4, exact up to Gaussian noise sigma = 1e-6 on every entry, nothing at
1e-5, with entries of mean size 2e-3).

LoRA (§6 / App. on LoRA): with ``W + B A`` the gradient of ``B`` is ``(dL/dY)^T (X A^T)``: its rows span the
projected inputs ``A x``, so candidates are projected by ``A`` (which the server sent) before the check; it holds
while B·n is below the rank r (the paper fine-tunes with r = 256). A gradient whose span fills the whole space
(DP noise, too many tokens) makes every check pass: the attack then declares nothing and says why in ``info``.

Known limit (measured on a 2-layer LLaMA, B = 4): with rotary positions the layer-1 token sets do not depend on the
position, and a sequence that repeats a true first token ("t t t ...") has the same layer-2 vector at every position
as "t" alone, so it passes the check: those extra sequences are declared beside the true ones (GPT-2's learned
positions and BERT do not show this).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from fedleak.attacks.base import AttackContext, Observed, Reconstruction
from fedleak.attacks.dager_span import (LayerSpan, attention_layers, chunked_distance, extension_distance,
                                        layer_check, token_sets)
from fedleak.checks import CheckedConfig, count_field, share_field


@dataclass(frozen=True)
class DagerConfig(CheckedConfig, what="DAGER"):
    """The span thresholds of the layer-1 token filter and the layer-2 sequence check (paper §5, tau_1 and tau_2),
    the relative singular value below which the gradient's rank stops, the most prefixes kept per position, and the
    coordinate-descent restarts per sequence of an encoder batch."""

    span_threshold_1: float = share_field(0.01)
    span_threshold_2: float = share_field(0.01)
    rank_tolerance: float = share_field(1e-6)
    max_prefixes: int = count_field(2048)
    restarts: int = count_field(3)
    sweeps: int = count_field(4)


def decode_causal(model: nn.Module, layer: LayerSpan, sets: list[torch.Tensor], config: DagerConfig
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences grown position by position, each prefix kept while its layer-2 vector is in the span (§5.2);
    returns (sequences (K, n) with -1 past where a prefix stopped, complete (K,))."""
    n = len(sets)
    prefixes = sets[0].unsqueeze(1)
    finished = []
    for p in range(n):
        if p > 0:
            grow = torch.cat([prefixes.repeat_interleave(len(sets[p]), 0), sets[p].repeat(len(prefixes)).unsqueeze(1)],
                             dim=1)
            distance = extension_distance(model, layer, prefixes, sets[p])
        else:
            grow = prefixes
            distance = chunked_distance(model, layer, grow, last=True)
        keep = distance < config.span_threshold_2
        if len(grow) and not keep.any():
            finished.append(prefixes)  # nothing extends these: they stop here, undeclared
            prefixes = grow[:0]
            break
        kept, distance = grow[keep], distance[keep]
        if len(kept) > config.max_prefixes:
            kept = kept[distance.argsort()[:config.max_prefixes]]
        prefixes = kept
    complete = prefixes if prefixes.shape[1] == n else prefixes[:0].new_zeros(0, n)
    partial = [torch.cat([f, f.new_full((len(f), n - f.shape[1]), -1)], dim=1) for f in finished if f.shape[1] < n]
    sequences = torch.cat([complete, *partial]) if partial else complete
    flags = torch.zeros(len(sequences), dtype=torch.bool, device=sequences.device)
    flags[:len(complete)] = True
    return sequences, flags


def decode_encoder(model: nn.Module, layer: LayerSpan, sets: list[torch.Tensor], count: int, config: DagerConfig,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to ``count`` x ``restarts`` coordinate-descent searches over the positions' token sets on the mean
    layer-2 distance of the whole sequence, restart k starting from the k-th first token, until ``count`` distinct
    sequences lie in the span; returns (distinct sequences found, in the span (K,))."""
    n, device = len(sets), sets[0].device
    found: dict[tuple, bool] = {}
    for restart in range(count * config.restarts):
        picks = [s[torch.randint(len(s), (1,), generator=generator)] for s in sets]
        picks[0] = sets[0][restart % len(sets[0])].view(1)
        sequence = torch.cat(picks)
        for _sweep in range(config.sweeps):
            changed = False
            for p in range(n):
                if len(sets[p]) < 2:
                    continue
                trial = sequence.repeat(len(sets[p]), 1)
                trial[:, p] = sets[p]
                cost = chunked_distance(model, layer, trial, last=False)
                best = int(cost.mean(dim=1).argmin())
                changed |= not torch.equal(trial[best], sequence)
                sequence, worst = trial[best], cost[best].max()
            if not changed or worst < config.span_threshold_2:
                break
        worst = chunked_distance(model, layer, sequence.unsqueeze(0), last=False).max()
        key = tuple(sequence.tolist())
        found[key] = found.get(key, False) or bool(worst < config.span_threshold_2)
        if sum(found.values()) >= count:
            break
    if not found:
        return torch.zeros(0, n, dtype=torch.long, device=device), torch.zeros(0, dtype=torch.bool, device=device)
    return (torch.tensor(list(found), dtype=torch.long, device=device),
            torch.tensor(list(found.values()), dtype=torch.bool, device=device))


class Dager:
    """The DAGER attack (module docstring) with the one attack shape: an honest server, so ``prepare`` sends the
    model unchanged; ``reconstruct`` reads each observed gradient on its own."""

    name = "dager"

    def __init__(self, **options):
        self.config = DagerConfig(**options)

    def prepare(self, model: nn.Module, context: AttackContext) -> tuple[nn.Module, Any]:
        """The model unchanged; a ``ValueError`` (not applicable) unless it is a transformer whose attention the
        attack can read (an fedleak ``hf`` model: it says whether its attention is causal)."""
        if getattr(model, "causal", None) is None:
            raise ValueError("dager reads a Hugging Face transformer's attention projections (an hf:... model, "
                             "which says whether its attention is causal); this model is not one")
        attention_layers(model)
        return model, {"seq_len": context.input_shape[-1], "seed": context.seed}

    @torch.no_grad()
    def reconstruct(self, observed: Observed, secret: Any, knowledge=None, *,
                    device: str | torch.device = "cpu") -> Reconstruction:
        if observed.kind != "gradient":
            raise ValueError("dager reads one batch's gradient (FedSGD); got a FedAvg delta")
        secret = secret or {}
        parts = []
        for index in range(len(observed.sources)):
            model = observed.sent[index]
            seq_len = secret.get("seq_len") or (getattr(model, "input_shape", None) or (None,))[-1]
            if seq_len is None:
                raise ValueError("dager needs the sequence length (the model's input_shape or the round's context)")
            generator = torch.Generator().manual_seed(int(secret.get("seed", 0)) + index)
            parts.append(self.read(model, observed.row(index), int(seq_len), observed.num_examples[index],
                                   generator, device))
        return Reconstruction.concat(parts)

    def read(self, model: nn.Module, update: dict[str, torch.Tensor], seq_len: int, count: int,
             generator: torch.Generator, device) -> Reconstruction:
        """One gradient's sequences (module docstring)."""
        start, config = time.perf_counter(), self.config
        causal = getattr(model, "causal", None)
        if causal is None:
            raise ValueError("dager needs to know whether the model's attention is causal (an fedleak hf model)")
        was_training = model.training
        model.eval()
        try:
            layers = attention_layers(model)
            first, second = (layer_check(layers[i], update, config.rank_tolerance, count * seq_len, device)
                             for i in (0, 1))
            info = {"rank_1": first.rank, "rank_2": second.rank, "dimension": first.dimension}
            if first.full or second.full:
                info["refused"] = "the gradient's span fills the space: no token can be told apart"
                sequences = torch.zeros(0, seq_len, dtype=torch.long, device=device)
                flags = torch.zeros(0, dtype=torch.bool, device=device)
            else:
                vocab = getattr(model, "net", model).get_input_embeddings().num_embeddings
                sets = token_sets(model, first, vocab, seq_len, config.span_threshold_1, device)
                info["tokens_per_position"] = [len(s) for s in sets]
                if any(len(s) == 0 for s in sets):
                    info["refused"] = "a position has no token in the span"
                    sequences = torch.zeros(0, seq_len, dtype=torch.long, device=device)
                    flags = torch.zeros(0, dtype=torch.bool, device=device)
                elif causal:
                    sequences, flags = decode_causal(model, second, sets, config)
                else:
                    sequences, flags = decode_encoder(model, second, sets, count, config, generator)
        finally:
            model.train(was_training)
        info["seconds"] = time.perf_counter() - start
        return Reconstruction(sequences, None, flags, {}, info)


def dager(span_threshold_1: float = 0.01, span_threshold_2: float = 0.01, rank_tolerance: float = 1e-6,
          max_prefixes: int = 2048, restarts: int = 3, sweeps: int = 4) -> Dager:
    """DAGER (Petrov et al. 2024): exact token sequences from the span of the first two attention layers'
    gradients, decoder, encoder and LoRA (module docstring)."""
    return Dager(span_threshold_1=span_threshold_1, span_threshold_2=span_threshold_2, rank_tolerance=rank_tolerance,
                 max_prefixes=max_prefixes, restarts=restarts, sweeps=sweeps)

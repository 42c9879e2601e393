"""How much text a reconstruction gives back (issue 25; the measures of DAGER, Petrov et al. 2024, §7): exact
sequence recovery, ROUGE-1/2 (Lin 2004: unigram/bigram overlap F-measure) and token recall.

Recovered and true sequences are paired one to one by the assignment that maximises the summed ROUGE-1 F-measure
(Hungarian algorithm), so one recovered sentence cannot stand for several true ones; a true sequence left without
a partner scores 0. Token ids below 0 are unknown positions and never match.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def ngrams(tokens: list[int], n: int) -> Counter:
    """The multiset of ``n``-grams of ``tokens`` (unknown tokens, < 0, break them)."""
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1) if min(tokens[i:i + n]) >= 0)


def rouge_n(candidate: list[int], reference: list[int], n: int) -> float:
    """ROUGE-n F-measure of ``candidate`` against ``reference`` (Lin 2004, Eq. 1 with the F-measure of §3)."""
    ours, theirs = ngrams(candidate, n), ngrams(reference, n)
    overlap = sum((ours & theirs).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / sum(ours.values()), overlap / sum(theirs.values())
    return 2 * precision * recall / (precision + recall)


def _rows(tokens: torch.Tensor) -> list[list[int]]:
    return [row for row in tokens.detach().cpu().tolist()]


def pairing(recovered: torch.Tensor, truth: torch.Tensor) -> list[int | None]:
    """For each true sequence, the index of its recovered partner in the one-to-one pairing that maximises the
    summed ROUGE-1 (module docstring), ``None`` where it has none: the rows of a text grid (original | recovered)."""
    true_rows, ours = _rows(truth), _rows(recovered)
    partner: list[int | None] = [None] * len(true_rows)
    if ours and true_rows:
        rows, cols = linear_sum_assignment(-np.array([[rouge_n(c, t, 1) for c in ours] for t in true_rows]))
        for row, col in zip(rows, cols):
            partner[row] = int(col)
    return partner


def text_scores(recovered: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    """``exact`` (share of true sequences recovered token for token), ``rouge1``, ``rouge2`` (mean F-measure of the
    one-to-one pairing, module docstring) and ``token_recall`` (share of the true tokens, counted with
    multiplicity, found among the recovered tokens) of ``recovered`` (K, n) against ``truth`` (B, n)."""
    true_rows, ours = _rows(truth), _rows(recovered)
    if not true_rows:
        raise ValueError("text_scores needs at least one true sequence")
    exact_set = {tuple(r) for r in ours}
    exact = sum(tuple(r) in exact_set for r in true_rows) / len(true_rows)
    true_tokens = Counter(t for row in true_rows for t in row)
    found_tokens = Counter(t for row in ours for t in row if t >= 0)
    token_recall = sum((true_tokens & found_tokens).values()) / sum(true_tokens.values())
    if not ours:
        return {"exact": exact, "rouge1": 0.0, "rouge2": 0.0, "token_recall": token_recall}
    r1 = np.array([[rouge_n(c, t, 1) for c in ours] for t in true_rows])
    r2 = np.array([[rouge_n(c, t, 2) for c in ours] for t in true_rows])
    rows, cols = linear_sum_assignment(-r1)
    return {"exact": exact, "rouge1": float(r1[rows, cols].sum() / len(true_rows)),
            "rouge2": float(r2[rows, cols].sum() / len(true_rows)), "token_recall": token_recall}


def token_recall(reconstruction, tokens: torch.Tensor) -> float:
    """For token data, the share of the batch's true tokens the attack declares: (position, token) pairs for
    Decepticons (it reads single tokens), else the best declared sequence's share of each sequence's positions."""
    declared = reconstruction.declared_points()
    if len(declared) == 0:
        return 0.0
    if declared.shape[1:] == (2,) and tokens.shape[1] != 2:
        found = {tuple(p) for p in declared.tolist()}
        truth = {(position, int(t)) for row in tokens for position, t in enumerate(row.tolist())}
        return len(truth & found) / len(truth)
    same = (declared[:, None, :] == tokens[None, :, :].to(declared.device)).float().mean(dim=2)
    return float(same.max(dim=0).values.mean())

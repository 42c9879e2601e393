"""Paper 002 (Boenisch et al.) Table 3: text extraction from the IMDB model of Table 8 (token embeddings, one dense
layer of N = 1000 ReLU neurons, then the output), passive and active, per batch size B = 20, 50, 100, 200.

Each run: a seeded model, a random batch of the training split, the client's FedSGD gradient of the dense layer,
Eq. 5 on every row, each extracted embedding sequence mapped back to tokens through the embedding table the server
sent (the ``passive_text`` and ``text_embedding`` attacks, read through :mod:`fedleak.study.extraction_cells`).
A, P, R as §8.1 (:func:`fedleak.cases.scoring.score`), with a sentence extracted when a row gives all its tokens,
padding included; beside them the near-exact figure: for every sentence of the
batch the largest share of its words that one row gives back (``word_recall``, mean over the batch).

- passive: the model with Keras' default initialisation (the paper's framework): embeddings uniform in
  (-0.05, 0.05), dense layers Glorot-uniform with zero biases;
- active: uniform (0, 1) embeddings and trap weights at s = 0.99 on the dense layer (§8.3: the best s on IMDB).

Deviations: when IMDB is absent (``--dataset imdb --root DIR`` when you have it) the default is Debian's fortunes
corpus (:mod:`fedleak.data.fortunes`), whose texts are shorter than reviews (about 29 words), so most of each
250-token sequence is padding; its labels are 43 categories, not 2 (cross-entropy instead of one sigmoid output).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from fedleak.checks import count_field
from fedleak.data import dataset_options, load_dataset
from fedleak.models import build_model
from fedleak.models.initialisers import initialise_linear_layers
from fedleak.report import ResultsDir
from fedleak.report.comparison import Comparison, comparison_markdown
from fedleak.seeds import run_seed
from fedleak.study.config import RunConfig
from fedleak.study.extraction_cells import extraction_cell, seeded_batch
from fedleak.study.paper_tables import P002_TABLE3

LAYER = "fc1.linear"
ATTACKS = ("passive", "active")


@dataclass
class TrapTextConfig(RunConfig):
    """What ``fedleak reproduce text`` runs: ``runs`` per (B, attack) cell on the model of Table 8 (``imdb_fc``;
    ``model_options`` default to the table's 250-dimensional embedding and N = 1000 hidden neurons)."""

    dataset: str = "fortunes"
    root: str | None = None
    batch_sizes: tuple[int, ...] = tuple(P002_TABLE3)
    runs: int = count_field(10)
    vocab_size: int = 10_000
    seq_len: int = 250
    model_options: dict = field(default_factory=dict)
    scale_factor: float = 0.99
    profile: str = "full"

    def __post_init__(self):
        super().__post_init__()
        self.model_options = {"embed_dim": 250, "hidden": 1000, **self.model_options}
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ValueError(f"need batch sizes >= 1; got {self.batch_sizes}")
        self.batch_sizes = tuple(self.batch_sizes)

    @classmethod
    def quick(cls, **overrides) -> "TrapTextConfig":
        """The paper's model and batch sizes, 3 runs per cell."""
        return cls(**{**dict(runs=3, profile="quick"), **overrides})


def word_recall(tokens: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """For each true sentence (B, L): the largest share of its words (non-padding positions) that one extracted
    row (K, L; -1 where no token matched) has at the same positions, (B,)."""
    if len(tokens) == 0:
        return torch.zeros(len(truth), device=truth.device)
    words = truth != 0
    same = (tokens.to(truth.device).unsqueeze(0) == truth.unsqueeze(1)) & words.unsqueeze(1)  # (B, K, L)
    return (same.sum(dim=2).amax(dim=1).float() / words.sum(dim=1).clamp_min(1)).float()


def keras_default(model: nn.Module, seed: int) -> None:
    """Keras' default initialisation (the paper's framework): embeddings uniform in (-0.05, 0.05), every dense
    layer Glorot-uniform with zero bias."""
    initialise_linear_layers(model, "xavier_uniform", seed)
    with torch.no_grad():
        for embedding in (m for m in model.modules() if isinstance(m, nn.Embedding)):
            embedding.weight.uniform_(-0.05, 0.05)


def measure(data, config: TrapTextConfig, *, batch: int, attack: str, run: int) -> dict:
    """One cell: A, P, R (:func:`fedleak.cases.scoring.score`) and the word recall of ``attack`` on a random batch
    of ``batch`` sentences."""
    seed = run_seed(config.seed, run)
    x, y = seeded_batch(data, batch, seed, config.device)
    torch.manual_seed(seed)
    model = build_model("imdb_fc", data.info.input_shape, data.info.num_classes, vocab_size=config.vocab_size,
                        **config.model_options)
    if attack == "passive":
        keras_default(model, seed)
        cell = extraction_cell(model, x, y, "passive_text", layer=LAYER, device=config.device)
    else:
        cell = extraction_cell(model, x, y, "text_embedding", scale_factor=config.scale_factor, layer=LAYER, seed=seed,
                               device=config.device)
    outcome = cell.run(device=config.device)
    return {**{k: outcome.scores[k] for k in ("A", "P", "R")},
            "word_recall": float(word_recall(outcome.reconstruction.inputs, x).mean())}


def _mean(cells: list[dict]) -> dict[str, float]:
    return {k: sum(c[k] for c in cells) / len(cells) for k in ("A", "P", "R", "word_recall")}


def reproduce_trap_text(config: TrapTextConfig, out: str | Path, *, progress: bool = True) -> dict:
    """Run (or resume) every (B, attack) cell; write ``table.txt``, ``table.csv`` and ``comparison.md``."""
    if "seq_len" not in dataset_options(config.dataset):
        raise ValueError(f"reproduce text needs a text dataset (fortunes, imdb); {config.dataset} holds images")
    data = load_dataset(config.dataset, root=config.root, vocab_size=config.vocab_size, seq_len=config.seq_len)
    largest = max(config.batch_sizes)
    if len(data) < largest:
        raise ValueError(f"a batch of B = {largest} needs {largest} sentences but {config.dataset} has {len(data)}")
    results = ResultsDir(out, asdict(config))
    done = results.finished()
    todo = [(b, a, r) for b in config.batch_sizes for a in ATTACKS for r in range(config.runs)
            if f"B={b}/{a}/run={r}" not in done]
    for batch, attack, run in tqdm(todo, desc="text cells", disable=not progress):
        key = f"B={batch}/{attack}/run={run}"
        done[key] = results.add(key, measure(data, config, batch=batch, attack=attack, run=run))
    rows, comparison = [], []
    for batch in config.batch_sizes:
        row = {"B": batch}
        paper = P002_TABLE3.get(batch, {})
        for attack in ATTACKS:
            mean = _mean([done[f"B={batch}/{attack}/run={r}"] for r in range(config.runs)])
            row.update({f"{attack} {k}": f"{v:.3f}" for k, v in mean.items()})
            theirs = paper.get(attack)
            row[f"{attack} paper A P R"] = "-" if theirs is None else " ".join(f"{v:.3f}" for v in theirs)
            comparison.append([batch, attack, f"{mean['A']:.3f} {mean['P']:.3f} {mean['R']:.3f}",
                               row[f"{attack} paper A P R"], f"{mean['word_recall']:.3f}"])
        rows.append(row)
    headers = list(rows[0])
    widths = {h: max(len(h), *(len(str(r[h])) for r in rows)) for h in headers}
    lines = [f"Boenisch et al. (paper 002) Table 3: text extraction on {config.dataset} with the model of Table 8 "
             f"(N = {config.model_options['hidden']}, {config.seq_len} tokens, vocabulary {config.vocab_size}); mean of "
             f"{config.runs} runs; active: trap weights s = {config.scale_factor}; word_recall: best row's share of a sentence's "
             "words (near-exact, not in the paper)", ""]
    lines += ["  ".join(h.ljust(widths[h]) for h in headers)]
    lines += ["  ".join(str(r[h]).ljust(widths[h]) for h in headers) for r in rows]
    text = "\n".join(lines) + "\n"
    notes = [f"ours: {config.dataset}, {config.runs} runs; paper: IMDB, 10 runs",
             "word_recall: for each sentence the largest share of its words one row gives back (fedleak's "
             "near-exact figure; not in the paper)"]
    if config.dataset != "imdb":
        notes.append(f"{config.dataset} texts are far shorter than IMDB reviews: most of each sequence is padding")
    results.write_text("table.txt", text)
    results.write_csv("table.csv", rows)
    results.write_text("comparison.md", comparison_markdown(
        "Paper 002 (Boenisch et al.) Table 3: ours beside the paper",
        [Comparison("Table 3: A P R per batch size B (N = 1000)", ["B", "attack", "A P R (ours)", "A P R (paper)",
                                                                 "word_recall (ours)"], comparison, notes)]))
    return {"text": text, "rows": rows}

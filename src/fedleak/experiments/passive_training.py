"""Paper 002 Table 4: passive extraction (Eq. 5 at the first fully connected layer, no manipulation) as training of
the FC-NN of Table 7 progresses. Each run initialises every linear layer Xavier-uniform (seeded), trains on the
training split and, at each epoch of ``epochs``, extracts a random batch of B = 100 from the model's gradient:
A, P, R (§8.1), the near-exact share (best candidate >= 30 dB PSNR) and the training loss.

Deviations: the paper does not state its optimiser, learning rate or training batch size; we use Adam at 1e-3 on
batches of 64. The loss shown at an epoch is the mean training loss of the epoch before it (none at epoch 0). The quick
profile trains a one-hidden-layer FC-NN (1000 + 64 neurons) instead of Table 7's, 3 runs.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from fedleak.checks import count_field
from fedleak.data.training_images import load_training_images
from fedleak.fl.training import task_loss
from fedleak.metrics.extraction import near_key
from fedleak.models import build_model
from fedleak.models.fcnn import WIDTHS
from fedleak.study.cells import run_cells
from fedleak.study.config import RunConfig
from fedleak.study.extraction_cells import extraction_cell, seeded_batch
from fedleak.study.paper_tables import P002_COLUMN, P002_TABLE4
from fedleak.report import ResultsDir
from fedleak.report.comparison import Comparison, comparison_markdown
from fedleak.seeds import run_seed

LAYER = "fc1.linear"


@dataclass
class PassiveTrainingConfig(RunConfig):
    """What ``fedleak reproduce passive-training`` runs (``runs`` trainings, each scored at every epoch of
    ``epochs``)."""

    dataset: str = "fashion_mnist"
    root: str | None = None
    model_options: dict = field(default_factory=lambda: {"widths": WIDTHS})
    epochs: tuple[int, ...] = (0, 5, 10, 15, 20, 25, 30)
    batch_size: int = 100
    train_batch_size: int = 64
    lr: float = 1e-3
    runs: int = count_field(10)
    profile: str = "full"

    def __post_init__(self):
        super().__post_init__()
        if not self.epochs or min(self.epochs) < 0:
            raise ValueError(f"need epochs >= 0; got {self.epochs}")
        self.epochs = tuple(sorted(set(self.epochs)))

    @classmethod
    def quick(cls, **overrides) -> "PassiveTrainingConfig":
        """A one-hidden-layer FC-NN of 1000 + 64 neurons, 3 runs."""
        base = dict(model_options={"widths": (1000, 64)}, runs=3, profile="quick")
        return cls(**{**base, **overrides})


def _score(model: nn.Module, data, config: PassiveTrainingConfig, seed: int) -> dict:
    """The passive attack (paper 002 §5.1) on the model as trained so far, on a random batch drawn from ``seed``."""
    x, y = seeded_batch(data, config.batch_size, seed, config.device)
    outcome = extraction_cell(model, x, y, "passive", layer=LAYER, device=config.device).run(device=config.device)
    return {k: outcome.scores[k] for k in ("A", "P", "R", near_key(), "best_psnr")}


def train_run(data, config: PassiveTrainingConfig, run: int) -> dict[int, dict]:
    """One run: a seeded Xavier-uniform FC-NN trained with Adam; its cell at each scored epoch."""
    seed = run_seed(config.seed, run)
    torch.manual_seed(seed)
    model = build_model("fcnn", data.info.input_shape, data.info.num_classes, **config.model_options)
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
    model = model.to(config.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(seed)
    loss_sum, seen, scored = float("nan"), 0, {}
    for epoch in range(max(config.epochs) + 1):
        if epoch in config.epochs:
            scored[epoch] = {**_score(model, data, config, seed + epoch), "loss": loss_sum / seen if seen else None}
        if epoch == max(config.epochs):
            return scored
        loss_sum, seen = 0.0, 0
        order = torch.randperm(len(data), generator=generator)
        for start in range(0, len(order), config.train_batch_size):
            x, y = (t.to(config.device) for t in data[order[start:start + config.train_batch_size]])
            loss = task_loss(model, model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum, seen = loss_sum + float(loss.detach()) * len(y), seen + len(y)


def reproduce_passive_training(config: PassiveTrainingConfig, out: str | Path, *, progress: bool = True,
                               ray: str | None = None) -> dict:
    """Run (or resume, run by run) every training, here or on the Ray cluster at ``ray``
    (:func:`fedleak.study.cells.run_cells`); write ``table.txt``/``table.csv`` and ``comparison.md``."""
    results = ResultsDir(out, asdict(config))
    data, data_name = load_training_images(config.dataset, config.root, None)
    near = near_key()
    todo = {f"run={run}": (run,) for run in range(config.runs)
            if not all(f"run={run}/epoch={e}" in results for e in config.epochs)}

    def write(key: str, scored: dict[int, dict]) -> None:
        for epoch, cell in scored.items():
            results.add(f"{key}/epoch={epoch}", cell)

    run_cells(train_run, todo, write, shared=(data, config), ray=ray, device=config.device, progress=progress,
              desc="passive-training runs")
    done = results.finished()
    rows = []
    for epoch in config.epochs:
        cells = [done[f"run={run}/epoch={epoch}"] for run in range(config.runs)]
        losses = [c["loss"] for c in cells if c["loss"] is not None]
        rows.append({"epoch": epoch, "loss": sum(losses) / len(losses) if losses else None,
                     **{m: sum(c[m] for c in cells) / len(cells) for m in ("A", "P", "R", near)}})
    column = P002_COLUMN.get(data_name, "MNIST")
    paper = {epoch: values[column] for epoch, values in P002_TABLE4.items()}
    lines = [f"Boenisch et al. (paper 002) Table 4: passive extraction during training, FC-NN {config.model_options} "
             f"on {data_name}, B = {config.batch_size}, mean of {config.runs} runs ({config.profile} profile); "
             f"paper ({column}) in brackets", "",
             f"{'epoch':>5s} {'loss':>6s}   {'A':>5s} {'P':>5s} {'R':>5s} {near:>18s}   [paper loss A P R]"]
    table_rows = []
    for r in rows:
        theirs = paper.get(r["epoch"])
        loss = "-" if r["loss"] is None else f"{r['loss']:.3f}"
        bracket = "-" if theirs is None else "  ".join(f"{v:.3f}" for v in theirs)
        paper_apr = "-" if theirs is None else "  ".join(f"{v:.3f}" for v in theirs[1:])
        lines.append(f"{r['epoch']:5d} {loss:>6s}   {r['A']:5.3f} {r['P']:5.3f} {r['R']:5.3f} {r[near]:18.3f}   "
                     f"[{bracket}]")
        table_rows.append([r["epoch"], loss, f"{r['A']:.3f}  {r['P']:.3f}  {r['R']:.3f}", r[near], paper_apr,
                           "-" if theirs is None else f"{theirs[0]:.3f}"])
    text = "\n".join(lines) + "\n"
    comparison = Comparison("Table 4: passive extraction per training epoch (FC-NN, B = 100)",
                            ["epoch", "loss (ours)", "A P R (ours)", f"{near} (ours)", f"A P R (paper, {column})",
                             "loss (paper)"], table_rows,
                            [f"ours: {data_name}, FC-NN {config.model_options}, Adam lr {config.lr}, batches of "
                             f"{config.train_batch_size}; the paper does not state its optimiser"])
    results.write_text("table.txt", text)
    results.write_csv("table.csv", rows)
    results.write_text("comparison.md", comparison_markdown("Paper 002 Table 4: ours beside the paper",
                                                            [comparison]))
    return {"text": text, "rows": rows}

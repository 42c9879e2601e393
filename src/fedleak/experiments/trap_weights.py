"""Reproduction of Boenisch et al. (paper 002) Tables 2, 5, 6 and 9 and Figures 9-10: passive extraction per
weight initialiser, trap weights per scaling factor s, per (neurons N, batch size B) and per number of averaged
batches, on a grey-scale dataset with the FC-NN and a colour dataset with the VGG-style CNN (Table 7).

Every cell is one run (:mod:`fedleak.study.extraction_cells`): a fresh model (seeded), a random batch of the
training split, the server's ``passive`` or ``trap_weights`` attack, the client's FedSGD gradient of the extraction
layer (the weight and bias entries of ``batch_gradients``, computed alone since the attack reads nothing else), Eq. 5
at that layer, then A, P and R against the batch (§8.1, :func:`fedleak.cases.scoring.score`). Deviations from the
paper: the CNN is narrower (``cnn_channels``; the extraction only needs the forwarded input, and 512 x 32 x 32 x 1000
weights do not fit a laptop), Fashion-MNIST and scikit-image photo tiles stand in for MNIST and CIFAR-10 when those
folders are absent, and Table 9's average of ``num`` batch gradients is computed as the mean gradient over their
union (the same number without BatchNorm).
Tables 6 and 9 and the figures use, per architecture, the s with the best recall in our Table 5.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn

from fedleak.data.training_images import load_training_images
from fedleak.metrics.extraction import near_key
from fedleak.models import build_model
from fedleak.models.initialisers import PYTORCH_DEFAULT, initialise_linear_layers
from fedleak.report import ResultsDir
from fedleak.report.comparison import Comparison, comparison_markdown
from fedleak.report.extraction_figures import extraction_figure
from fedleak.seeds import run_seed
from fedleak.study.cells import mean_of_runs
from fedleak.study.extraction_cells import extraction_cell, seeded_batch
from fedleak.study.paper_tables import P002_COLUMN, P002_TABLE2, P002_TABLE5, P002_TABLE6, P002_TABLE9
from fedleak.study.config import RunConfig

INITIALISERS = (*P002_TABLE2, PYTORCH_DEFAULT)  # the last: nn.Linear's own init (non-zero bias), not in the paper
SCALE_FACTORS = tuple(P002_TABLE5)
NEURONS_BATCHES = tuple(P002_TABLE6)
AVERAGED = tuple(P002_TABLE9)


@dataclass
class TrapReproductionConfig(RunConfig):
    """What ``fedleak reproduce trap-weights`` runs; ``runs`` per cell (the paper averages 10), ``sweep_runs`` per
    cell of the large sweeps, Tables 6 and 9 (default: ``runs``)."""

    dataset: str = "fashion_mnist"
    root: str | None = None
    colour_dataset: str = "skimage_photos"
    colour_root: str | None = None
    colour_size: int = 32
    runs: int = 10
    batch_size: int = 100
    neurons: int = 1000
    fcnn_widths: tuple[int, ...] = (3000, 3000, 2000, 1000)  # after the first layer of ``neurons`` (Table 7)
    cnn_channels: tuple[int, ...] = (16, 32, 32)  # Table 7 has (128, 256, 512)
    tables: tuple[str, ...] = ("2", "5", "6", "9")
    sweep_runs: int | None = None

    @classmethod
    def quick(cls, **overrides) -> "TrapReproductionConfig":
        """Every table and model of the full profile; Tables 2 and 5 at the paper's 10 runs per cell (3 runs moved
        R at s = 0.7 from 0.23 to 0.18 on Fashion-MNIST), Tables 6 and 9 at 3 (about 7 min on 2 cores)."""
        return cls(**{"sweep_runs": 3, **overrides})

    def runs_of(self, table: str) -> int:
        """Runs per cell of ``table``."""
        return self.sweep_runs if table in ("6", "9") and self.sweep_runs is not None else self.runs


def _build(arch: str, info, neurons: int, config: TrapReproductionConfig) -> nn.Module:
    if arch == "fcnn":
        return build_model("fcnn", info.input_shape, info.num_classes, widths=(neurons, *config.fcnn_widths))
    return build_model("vgg_cnn", info.input_shape, info.num_classes, channels=config.cnn_channels, hidden=neurons)


def measure(data, arch: str, *, run: int, batch: int, neurons: int, config: TrapReproductionConfig,
            scale_factor: float | None = None, initialiser: str | None = None, keep: bool = False) -> dict:
    """One cell: A, P, R of the passive attack (``initialiser``) or of trap weights (``scale_factor``)."""
    seed = run_seed(config.seed, run)
    torch.manual_seed(seed)
    x, y = seeded_batch(data, batch, seed, config.device)
    model = _build(arch, data.info, neurons, config).to(config.device)
    if scale_factor is None:
        # each run and initialiser its own draws (the paper: "10 runs with different random initializations")
        initialise_linear_layers(model, initialiser, seed * len(INITIALISERS) + INITIALISERS.index(initialiser))
        cell = extraction_cell(model, x, y, "passive", device=config.device)
    else:
        cell = extraction_cell(model, x, y, "trap_weights", scale_factor=scale_factor, seed=seed,
                               device=config.device)
    outcome = cell.run(device=config.device)
    scores = {k: outcome.scores[k] for k in ("A", "P", "R", near_key(), "best_psnr")}
    if keep:
        points = outcome.points()
        scores["images"] = (x, points.shown(outcome.reconstruction.inputs, x), points.recovered)
    return scores


def _fmt(values, keys=("A", "P", "R")) -> str:
    if values is None:
        return "  ".join(" -  " for _ in keys)
    if isinstance(values, dict):
        values = [values[k] for k in keys]
    return "  ".join(f"{v:.3f}" for v in values)


def largest_batches(config: TrapReproductionConfig) -> dict[str, tuple[int, str]]:
    """The largest batch each dataset (``"grey"``, ``"colour"``) must hold for the tables of ``config``, with the
    cell that needs it: ``{"grey": (2000, "Table 9 (B, num) = (100, 20)"), ...}``."""
    needs = {"grey": [(config.batch_size, "the figures")], "colour": [(config.batch_size, "the figures")]}
    for table in ("2", "5"):
        if table in config.tables:
            for kind in needs:
                needs[kind].append((config.batch_size, f"Table {table} (B = {config.batch_size})"))
    if "6" in config.tables:
        for kind in needs:
            needs[kind] += [(batch, f"Table 6 (N, B) = ({neurons}, {batch})") for neurons, batch in NEURONS_BATCHES]
    if "9" in config.tables:
        needs["grey"] += [(batch * num, f"Table 9 (B, num) = ({batch}, {num})") for batch, num in AVERAGED]
    return {kind: max(cells, key=lambda cell: cell[0]) for kind, cells in needs.items()}


def check_sizes(config: TrapReproductionConfig, grey, colour) -> None:
    """Refuse, before any cell runs, a dataset smaller than the largest batch one of the chosen tables draws."""
    for kind, data in (("grey", grey), ("colour", colour)):
        batch, cell = largest_batches(config)[kind]
        if len(data) < batch:
            raise ValueError(f"{cell} draws a batch of {batch} images but {data.info.name} (the {kind} dataset) has "
                             f"{len(data)}; choose a larger dataset or leave out that table (--tables)")


def measure_cell(datasets: dict, config: TrapReproductionConfig, data: str, arch: str, options: dict,
                 run: int) -> dict:
    """:func:`measure` on ``datasets[data]`` ("fcnn": the grey-scale data set, "cnn": the colour one)."""
    return measure(datasets[data], arch, run=run, config=config, **options)


def reproduce_trap_weights(config: TrapReproductionConfig, out: str | Path, *, progress: bool = True,
                           ray: str | None = None) -> dict:
    """Run the tables (resuming finished cells in ``out``; each table's cells here or on the Ray cluster at
    ``ray``, :func:`fedleak.study.cells.run_cells`), write ``tables.txt``, ``summary.json`` and the figures,
    and return the mean A/P/R per table row. Dataset sizes are checked before any cell runs."""
    grey, grey_name = load_training_images(config.dataset, config.root, None)
    colour, colour_name = load_training_images(config.colour_dataset, config.colour_root, config.colour_size)
    check_sizes(config, grey, colour)
    results = ResultsDir(out, asdict(config))
    archs = {"fcnn": (grey, P002_COLUMN.get(grey_name, "MNIST")),
             "cnn": (colour, P002_COLUMN.get(colour_name, "CIFAR10"))}

    def means(table: str, requests: dict[str, tuple[str, str, dict]]) -> dict[str, dict[str, float]]:
        """The mean A/P/R over the table's runs of each ``key: (data, arch, options)``, missing runs run first."""
        return mean_of_runs(measure_cell, requests, config.runs_of(table), results, ("A", "P", "R"),
                            shared=({"fcnn": grey, "cnn": colour}, config), ray=ray, device=config.device,
                            progress=progress, desc=f"trap-weights table {table} cells")

    summary: dict = {}
    comparisons: list[Comparison] = []
    columns = [f"ours FC-NN ({grey_name})", f"paper ({archs['fcnn'][1]})", f"ours CNN ({colour_name})",
               f"paper ({archs['cnn'][1]})"]
    runs = (f"{config.runs}" if config.sweep_runs in (None, config.runs)
            else f"{config.runs} (Tables 6 and 9: {config.sweep_runs})")
    lines = [f"Boenisch et al. (paper 002) reproduction: FC-NN on {grey_name}, CNN on {colour_name}; "
             f"{runs} runs per cell; paper numbers in brackets ({archs['fcnn'][1]} / {archs['cnn'][1]})."]
    if "2" in config.tables:
        lines += ["", "Table 2: passive attack per initialiser of every layer, zero biases (B=100, N=1000, FC-NN on "
                      "both datasets); pytorch_default: nn.Linear's own init with its non-zero biases (not in the "
                      "paper)",
                  f"{'initialiser':16s} {'P  R (grey)':14s} [paper]      {'P  R (colour)':14s} [paper]"]
        table2 = []
        options = {init: dict(batch=config.batch_size, neurons=config.neurons, initialiser=init)
                   for init in INITIALISERS}
        got = means("2", {f"t2/{arch}/{init}/every-layer": (arch, "fcnn", options[init])
                          for init in INITIALISERS for arch in archs})
        for init in INITIALISERS:
            row = {arch: got[f"t2/{arch}/{init}/every-layer"] for arch in archs}
            summary[f"table2/{init}"] = row
            paper = P002_TABLE2.get(init, {})  # none for pytorch_default
            grey_paper, colour_paper = (_fmt(paper.get(archs[arch][1]), "PR") for arch in ("fcnn", "cnn"))
            table2.append([init, _fmt(row["fcnn"], "PR"), grey_paper, _fmt(row["cnn"], "PR"), colour_paper])
            lines.append(f"{init:16s} {_fmt(row['fcnn'], 'PR'):14s} [{grey_paper}]"
                         f"  {_fmt(row['cnn'], 'PR'):14s} [{colour_paper}]")
        comparisons.append(Comparison("Table 2: passive attack, P R per initialiser (B=100, N=1000, FC-NN)",
                                      ["initialiser", f"ours FC-NN ({grey_name})", f"paper ({archs['fcnn'][1]})",
                                       f"ours FC-NN ({colour_name})", f"paper ({archs['cnn'][1]})"], table2))
    best = {"fcnn": 0.7, "cnn": 0.95}  # the paper's best s for MNIST and CIFAR-10, unless Table 5 runs
    if "5" in config.tables:
        lines += ["", "Table 5: trap weights per scaling factor s (B=100, N=1000)",
                  f"{'s':6s} {'A  P  R (fcnn)':20s} [paper]             {'A  P  R (cnn)':20s} [paper]"]
        recall = {"fcnn": {}, "cnn": {}}
        table5 = []
        got = means("5", {f"t5/{arch}/s={s}": (arch, arch, dict(batch=config.batch_size, neurons=config.neurons,
                                                                 scale_factor=s))
                          for s in SCALE_FACTORS for arch in archs})
        for s in SCALE_FACTORS:
            row = {arch: got[f"t5/{arch}/s={s}"] for arch in archs}
            summary[f"table5/{s}"] = row
            for arch in row:
                recall[arch][s] = row[arch]["R"]
            table5.append([s, _fmt(row["fcnn"]), _fmt(P002_TABLE5[s][archs["fcnn"][1]]), _fmt(row["cnn"]),
                           _fmt(P002_TABLE5[s][archs["cnn"][1]])])
            lines.append(f"{s:<6.3f} {_fmt(row['fcnn']):20s} [{_fmt(P002_TABLE5[s][archs['fcnn'][1]])}]"
                         f"  {_fmt(row['cnn']):20s} [{_fmt(P002_TABLE5[s][archs['cnn'][1]])}]")
        best = {arch: max(values, key=values.get) for arch, values in recall.items()}
        lines.append(f"best s: fcnn {best['fcnn']}, cnn {best['cnn']}")
        comparisons.append(Comparison("Table 5: trap weights, A P R per scaling factor s (B=100, N=1000)",
                                      ["s", *columns], table5, [f"best s: fcnn {best['fcnn']}, cnn {best['cnn']}"]))
    summary["best_s"] = best
    if "6" in config.tables:
        lines += ["", f"Table 6: trap weights per (N, B) (s = {best['fcnn']} fcnn, {best['cnn']} cnn)",
                  f"{'(N, B)':12s} {'A  P  R (fcnn)':20s} [paper]             {'A  P  R (cnn)':20s} [paper]"]
        table6 = []
        got = means("6", {f"t6/{arch}/N={neurons}/B={batch}/s={best[arch]}": (
            arch, arch, dict(batch=batch, neurons=neurons, scale_factor=best[arch]))
            for neurons, batch in NEURONS_BATCHES for arch in archs})
        for neurons, batch in NEURONS_BATCHES:
            row = {arch: got[f"t6/{arch}/N={neurons}/B={batch}/s={best[arch]}"] for arch in archs}
            summary[f"table6/{neurons},{batch}"] = row
            paper = P002_TABLE6[(neurons, batch)]
            table6.append([f"({neurons}, {batch})", _fmt(row["fcnn"]), _fmt(paper[archs["fcnn"][1]]),
                           _fmt(row["cnn"]), _fmt(paper[archs["cnn"][1]])])
            lines.append(f"{str((neurons, batch)):12s} {_fmt(row['fcnn']):20s} [{_fmt(paper[archs['fcnn'][1]])}]"
                         f"  {_fmt(row['cnn']):20s} [{_fmt(paper[archs['cnn'][1]])}]")
        comparisons.append(Comparison(f"Table 6: trap weights, A P R per (N, B) (s = {best['fcnn']} fcnn, "
                                      f"{best['cnn']} cnn)", ["(N, B)", *columns], table6))
    if "9" in config.tables:
        lines += ["", f"Table 9: trap weights under averaging of num batches of B (FC-NN, N=1000, s={best['fcnn']}); "
                      "R over all num x B inputs; the average of num equal-size batch gradients is the gradient "
                      "of their union, so (20, 5) equals (100, 1)", f"{'(B, num)':10s} {'A  P  R':20s} [paper, MNIST]"]
        table9 = []
        got = means("9", {f"t9/B={batch}/num={num}/s={best['fcnn']}": (
            "fcnn", "fcnn", dict(batch=batch * num, neurons=config.neurons, scale_factor=best["fcnn"]))
            for batch, num in AVERAGED})
        for batch, num in AVERAGED:
            row = got[f"t9/B={batch}/num={num}/s={best['fcnn']}"]
            summary[f"table9/{batch},{num}"] = row
            lines.append(f"{str((batch, num)):10s} {_fmt(row):20s} [{_fmt(P002_TABLE9[(batch, num)])}]")
            table9.append([f"({batch}, {num})", _fmt(row), _fmt(P002_TABLE9[(batch, num)])])
        comparisons.append(Comparison(f"Table 9: trap weights under averaging, A P R per (B, num) (FC-NN, s = "
                                      f"{best['fcnn']})", ["(B, num)", f"ours FC-NN ({grey_name})", "paper (MNIST)"],
                                      table9))
    for arch, (data, _) in archs.items():
        cell = measure(data, arch, run=0, batch=config.batch_size, neurons=config.neurons, config=config,
                       scale_factor=best[arch], keep=True)
        figure = extraction_figure(*cell["images"], results.path / f"figure_{arch}.png")
        lines.append(f"figure ({'Fig. 9' if arch == 'fcnn' else 'Fig. 10'}): {figure} "
                     f"(first 30 of a batch of {config.batch_size}, s={best[arch]}, R={cell['R']:.2f})")
    text = "\n".join(lines) + "\n"
    results.write_text("tables.txt", text)
    results.write_json("summary.json", summary)
    results.write_text("comparison.md", comparison_markdown(
        f"Paper 002 (Boenisch et al.): ours beside the paper, {runs} runs per cell", comparisons))
    return {"text": text, "summary": summary}

"""Reproduction of Boenisch et al. (paper 002) Tables 2, 5, 6 and 9 and Figures 9-10: passive extraction per
weight initialiser, trap weights per scaling factor s, per (neurons N, batch size B) and per number of averaged
batches, on a grey-scale dataset with the FC-NN and a colour dataset with the VGG-style CNN (Table 7).

Every cell is one run: a fresh model (seeded), a random batch of the training split, the client's FedSGD
gradient of the extraction layer (the weight and bias entries of ``batch_gradients``, computed alone since the
attack reads nothing else), Eq. 5 at that layer, then A, P and R against the batch (§8.1,
:mod:`fedleak.metrics.extraction`). Deviations from the paper: the CNN is narrower (``cnn_channels``; the
extraction only needs the forwarded input, and 512 x 32 x 32 x 1000 weights do not fit a laptop), Fashion-MNIST and
scikit-image photo tiles stand in for MNIST and CIFAR-10 when those folders are absent, and Table 9's average of
``num`` batch gradients is computed as the mean gradient over their union (the same number without BatchNorm).
Tables 6 and 9 and the figures use, per architecture, the s with the best recall in our Table 5.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from fedleak.attacks.analytic import LayerSecret, extract_at_layer, identity_map
from fedleak.attacks.malicious.trap_weights import TrapWeightsConfig, trap_weights
from fedleak.data import DataFormatError, load_dataset
from fedleak.study.cells import mean_of_runs
from fedleak.study.paper_tables import P002_COLUMN, P002_TABLE2, P002_TABLE5, P002_TABLE6, P002_TABLE9
from fedleak.study.config import RunConfig
from fedleak.fl.training import task_loss
from fedleak.metrics.extraction import best_candidates, extraction_scores
from fedleak.models import build_model
from fedleak.models.fcnn import WIDTHS
from fedleak.report import ResultsDir
from fedleak.report.comparison import Comparison, comparison_markdown
from fedleak.report.plots import image_grid
from fedleak.seeds import run_seed

INITIALISERS = (*P002_TABLE2, "pytorch_default")  # the last: nn.Linear's own init (non-zero bias), not in the paper
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


def load_images(name: str, root: str | None, size: int | None) -> tuple[object, str]:
    """The training split of ``name``. Only the default, Fashion-MNIST from the Debian package, falls back to the
    bundled sample when it is not installed; a data set the user names with a root must be there."""
    options = {"size": size} if size is not None else {}
    if name == "skimage_photos":
        options["grid"] = 6  # 288 tiles: enough for batches of 200
    try:
        return load_dataset(name, root=root, **options), name
    except DataFormatError as error:
        if name != "fashion_mnist" or root is not None:
            raise
        print(f"{name} not found ({error}); using the bundled Fashion-MNIST sample")
        return load_dataset("bundled"), "bundled"


def layer_update(model: nn.Module, x: torch.Tensor, y: torch.Tensor, layer: str) -> dict[str, torch.Tensor]:
    """The FedSGD gradient entries of ``layer`` (mean over the batch), as ``batch_gradients`` would give them."""
    linear = model.get_submodule(layer)
    loss = task_loss(model, model(x), y)
    weight, bias = torch.autograd.grad(loss, [linear.weight, linear.bias])
    return {f"{layer}.weight": weight, f"{layer}.bias": bias}


FIGURE_INPUTS = 10  # inputs shown per setting in the defense studies' extractions.png


@dataclass
class TrapStudyConfig:
    """What every trap-weights defense study (§8.4, §9) shares, i.e. what :func:`trapped_batch` reads: ``runs``
    seeded cells per setting, each a batch of ``batch_size`` through ``model`` with trap weights of
    ``scale_factor`` (Algorithm 1; 0.7 is the paper's best s for MNIST, Table 5)."""

    dataset: str = "fashion_mnist"
    root: str | None = None
    model: str = "fcnn"
    model_options: dict = field(default_factory=lambda: {"widths": WIDTHS})  # Table 7's FC-NN
    batch_size: int = 100
    scale_factor: float = 0.7
    runs: int = 10
    seed: int = 0
    device: str = "cpu"
    profile: str = "full"

    def __post_init__(self):
        if self.runs < 1 or self.batch_size < 1:
            raise ValueError(f"runs and batch_size must be >= 1, got {self.runs} and {self.batch_size}")


def trapped_batch(data, config: TrapStudyConfig, run: int) -> tuple[torch.Tensor, torch.Tensor, nn.Module, LayerSecret]:
    """One seeded cell of the trap-weights defense studies (§9): a random batch of ``config.batch_size`` and a
    fresh ``config.model`` with trap weights of ``config.scale_factor`` (Algorithm 1), both from the seed of run
    ``run``; returns ``(x, y, model, secret)`` on ``config.device``."""
    seed = run_seed(config.seed, run)
    torch.manual_seed(seed)
    index = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[: config.batch_size]
    if len(index) < config.batch_size:
        raise ValueError(f"{data.info.name} has {len(data)} images, fewer than a batch of {config.batch_size}")
    x, y = (t.to(config.device) for t in data[index])
    model = build_model(config.model, data.info.input_shape, data.info.num_classes, **config.model_options)
    model, secret = trap_weights(model.to(config.device),
                                 TrapWeightsConfig(data.info.input_shape, scale_factor=config.scale_factor, seed=seed))
    return x, y, model, secret


def shown_candidates(candidates: torch.Tensor, x: torch.Tensor, best_psnr: torch.Tensor) -> tuple:
    """``(x, best candidate of each input, its PSNR)``: what a study's ``measure(..., keep=True)`` keeps for
    :func:`best_candidate_grid` (zeros where the attack declared no candidate at all)."""
    index, _ = best_candidates(candidates, x)
    shown = candidates[index.clamp_min(0)] if len(candidates) else torch.zeros_like(x)
    return x, shown.nan_to_num().clamp(0, 1), best_psnr


def best_candidate_grid(images, undefended, settings, labels: list[str], path: Path, *, near_psnr: float) -> Path:
    """Up to :data:`FIGURE_INPUTS` inputs whose best candidate under the ``undefended`` setting reaches ``near_psnr``
    dB (the first ones when none does), above their best candidate under each of ``settings`` (rows labelled
    ``labels``); ``images(setting)`` is run 0's :func:`shown_candidates` under that setting."""
    originals, _, quality = images(undefended)
    candidates = [images(setting)[1] for setting in settings]
    chosen = (quality >= near_psnr).nonzero().squeeze(1)[:FIGURE_INPUTS]
    chosen = chosen if len(chosen) else torch.arange(min(FIGURE_INPUTS, len(originals)), device=originals.device)
    return image_grid([originals[chosen], *(c[chosen] for c in candidates)], path,
                      row_labels=["original", *labels])


def study_figures(curve: Path, images, undefended, settings, labels: list[str], *, setting: str, clean: str,
                  near_psnr: float, curve_note: str = "") -> str:
    """A defense study's ``extractions.png`` (:func:`best_candidate_grid` under each of ``settings``) beside its
    recall figure ``curve``, and the table's line naming both (``clean``: the gradient without the defense)."""
    grid = best_candidate_grid(images, undefended, settings, labels, curve.parent / "extractions.png",
                               near_psnr=near_psnr)
    return (f"figures: {curve}{curve_note}, {grid} (best candidate per {setting} of up to {FIGURE_INPUTS} inputs that "
            f"the {clean} gradient leaks, run 0)")


def _build(arch: str, info, neurons: int, config: TrapReproductionConfig) -> nn.Module:
    if arch == "fcnn":
        return build_model("fcnn", info.input_shape, info.num_classes, widths=(neurons, *config.fcnn_widths))
    return build_model("vgg_cnn", info.input_shape, info.num_classes, channels=config.cnn_channels, hidden=neurons)


def initialise(model: nn.Module, name: str, seed: int) -> None:
    """Table 2's initialiser ``name`` on every linear layer of ``model``, drawn from ``seed``: the weights from it,
    the biases zero (Keras' default, the paper's framework; Table 4 likewise initialises the whole FC-NN). With zero
    biases the layer's ReLU pattern does not depend on a Gaussian's sigma; a larger sigma makes the logits larger,
    so the softmax saturates and confidently classified inputs give an exactly zero ``dL/dy`` and leave the
    overlays (the paper's "larger span within the weight values"). ``pytorch_default`` redraws nn.Linear's own
    initialisation (Kaiming-uniform weights, non-zero uniform biases), what a PyTorch user gets."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for linear in (m for m in model.modules() if isinstance(m, nn.Linear)):
            if name == "pytorch_default":
                linear.reset_parameters()
                continue
            if name == "xavier_normal":
                nn.init.xavier_normal_(linear.weight)
            elif name == "xavier_uniform":
                nn.init.xavier_uniform_(linear.weight)
            elif name.startswith("gaussian_"):
                nn.init.normal_(linear.weight, std=float(name.split("_")[1]))
            else:
                raise ValueError(f"unknown initialiser {name!r}; choose from {', '.join(INITIALISERS)}")
            linear.bias.zero_()


def measure(data, arch: str, *, run: int, batch: int, neurons: int, config: TrapReproductionConfig,
            scale_factor: float | None = None, initialiser: str | None = None, keep: bool = False) -> dict:
    """One cell: A, P, R of the passive attack (``initialiser``) or of trap weights (``scale_factor``)."""
    seed = run_seed(config.seed, run)
    torch.manual_seed(seed)
    index = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:batch]
    if len(index) < batch:
        raise ValueError(f"{data.info.name} has {len(data)} images, fewer than a batch of {batch}")
    x, y = (t.to(config.device) for t in data[index])
    model = _build(arch, data.info, neurons, config).to(config.device)
    if scale_factor is None:
        secret = LayerSecret("fc1.linear", identity_map(data.info.input_shape, device=config.device))
        # each run and initialiser its own draws (the paper: "10 runs with different random initializations")
        initialise(model, initialiser, seed * len(INITIALISERS) + INITIALISERS.index(initialiser))
    else:
        trap = TrapWeightsConfig(data.info.input_shape, scale_factor=scale_factor, seed=seed)
        model, secret = trap_weights(model, trap)
    update = layer_update(model, x, y, secret.layer)
    reconstruction = extract_at_layer(update, secret, device=config.device)
    scores = extraction_scores(reconstruction.inputs, update[f"{secret.layer}.bias"], x, device=config.device)
    cell = scores.as_dict()
    if keep:
        extracted = reconstruction.inputs[scores.best] if len(reconstruction.inputs) else torch.zeros_like(x)
        cell["images"] = (x, extracted, scores.recovered)
    return cell


def _fmt(values, keys=("A", "P", "R")) -> str:
    if values is None:
        return "  ".join(" -  " for _ in keys)
    if isinstance(values, dict):
        values = [values[k] for k in keys]
    return "  ".join(f"{v:.3f}" for v in values)


def extraction_figure(originals: torch.Tensor, extracted: torch.Tensor, recovered: torch.Tensor, path: Path,
                      *, count: int = 30, per_row: int = 10) -> Path:
    """Figures 9-10: the first ``count`` inputs of a batch below their extractions, grey where not extracted
    (``per_row`` images per row)."""
    count = min(count, len(originals))
    rows, missing = [], []
    for start in range(0, count, per_row):
        stop = min(start + per_row, count)
        rows += [extracted[start:stop], originals[start:stop]]
        missing += [~recovered[start:stop], None]
    return image_grid(rows, path, row_labels=["extracted", "original"] * (len(rows) // 2), missing=missing)


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
    grey, grey_name = load_images(config.dataset, config.root, None)
    colour, colour_name = load_images(config.colour_dataset, config.colour_root, config.colour_size)
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

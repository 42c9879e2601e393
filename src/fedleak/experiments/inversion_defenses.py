"""Paper 001 (Scheliga et al.) Tables 1-3: each stochastic defense on its own against IG and the attack that
targets it, under the privacy protocol of §5.2 (V victim images of one client, each one B = 1 training step of the
defended model; mean SSIM ± std and ASR = share with SSIM > 0.5), plus fedleak's near-exact share (PSNR >= 30 dB).

- ``dp`` (Table 1, §4.1): DP-SGD (tau_clip = 20) at each sigma against IG, WIIG (the client's true noise) and DPIA;
- ``pruning`` (Table 2, §4.2): gradient pruning at each rate p against IG and GPIA;
- ``modules`` (Table 3, §4.3): PRECODE and CVB against PIG, WIIG (the true bottleneck noise) and VBIA;

each with the undefended IG baseline. The full profile is the paper's (128 victims, the full §5.2 schedule, for
``--device cuda``); :meth:`DefenseTableConfig.quick` shrinks victims and iterations (:func:`short_run`). Each row is a case of
:mod:`fedleak.cases.victims`. Every
finished cell is appended to ``cells.jsonl`` at once and skipped on a rerun.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from fedleak.cases.scoring import score
from fedleak.cases.victims import attack_victims, client_images, victim_case
from fedleak.checks import CheckedConfig, choice_field, count_field
from fedleak.study.cells import run_cells
from fedleak.study.paper_tables import P001_COLUMN, P001_MODEL, P001_TABLE1, P001_TABLE2, P001_TABLE3
from fedleak.metrics.extraction import near_key
from fedleak.metrics.image import ssim
from fedleak.models import build_model
from fedleak.report import ResultsDir
from fedleak.report.comparison import Comparison, comparison_markdown
from fedleak.report.plots import image_grid

GRID_IMAGES = 8
TABLES = {"dp": ("Table 1", P001_TABLE1), "pruning": ("Table 2", P001_TABLE2), "modules": ("Table 3", P001_TABLE3)}


@dataclass
class DefenseTableConfig(CheckedConfig):
    """What ``fedleak reproduce defenses-{dp,pruning,modules}`` runs (``table``: dp, pruning or modules)."""

    table: str = choice_field(TABLES, label="defense table")
    dataset: str = "bundled"
    root: str | None = None
    size: tuple[int, int] | None = (32, 32)
    model: str = "cnn"
    model_options: dict = field(default_factory=dict)
    victims: int = count_field(128)
    attack_iterations: int | None = None  # None: the full §5.2 schedule (up to 20,000 iterations)
    dp_clip: float = 20.0
    dp_sigmas: tuple[float, ...] = (1e-4, 1e-3)
    prune_rates: tuple[float, ...] = (0.9, 0.95, 0.99)
    modules: tuple[str, ...] = ("precode", "cvb")
    num_clients: int = 10  # the victims are client 0's of an IID split, as in the ablation
    seed: int = 0
    device: str = "cpu"
    profile: str = "full"

    @classmethod
    def quick(cls, table: str, **overrides) -> "DefenseTableConfig":
        """8 victims and 300 attack iterations (:func:`short_run`)."""
        return cls(table, **{**dict(victims=8, attack_iterations=300, profile="quick"), **overrides})

    def rows(self) -> list[tuple[str, str, tuple[str, ...]]]:
        """``(key, defenses for victim_case, attacks)``: the undefended IG baseline, then the table's rows."""
        rows = [("none", "", ("ig",))]
        if self.table == "dp":
            rows += [(f"dp:sigma={s:g}", f"dp:sigma={s}:clip={self.dp_clip}:seed={self.seed}", ("ig", "wiig", "dpia"))
                     for s in self.dp_sigmas]
        elif self.table == "pruning":
            rows += [(f"prune:p={p:g}", f"prune:p={p}", ("ig", "gpia")) for p in self.prune_rates]
        else:
            rows += [(module, module, ("pig", "wiig", "vbia")) for module in self.modules]
        return rows


def attack_cell(config: DefenseTableConfig, case, attack: str) -> tuple[dict, torch.Tensor]:
    """One attack on one defended case: SSIM mean ± std, ASR, PSNR, the near-exact share, label accuracy."""
    result = attack_victims(case, attack, iterations=config.attack_iterations, seed=config.seed,
                            device=config.device)
    scores = score(result, case.images, case.labels, paired=True)
    quality = ssim(result.inputs.clamp(0, 1), case.images)
    near = near_key()
    return {"ssim_mean": scores["ssim"], "ssim_std": float(quality.std()) if len(quality) > 1 else 0.0,
            "asr": scores["asr"], "psnr": scores["psnr"], near: scores[near],
            "label_accuracy": scores.get("label_accuracy"), "seconds": result.info["seconds"],
            "ssim": quality.tolist()}, result.inputs


def _paper(config: DefenseTableConfig, data_name: str):
    _, table = TABLES[config.table]
    column = (P001_COLUMN.get(data_name), P001_MODEL.get(config.model))
    return column, table.get(column, {})


def _fmt(value, digits=2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def row_cells(victims, config: DefenseTableConfig, defenses: str, attacks: list[str]) -> dict[str, tuple]:
    """One row of the table: the defended victims' case (one model initialisation for every row), then each of
    ``attacks`` against it; ``{attack: (cell, first reconstructions)}``."""
    images, labels, info = victims
    torch.manual_seed(config.seed)
    model = build_model(config.model, info.input_shape, info.num_classes, **config.model_options)
    case = victim_case(model, config.model, defenses, images, labels, device=config.device)
    cells = {}
    for attack in attacks:
        cell, reconstructions = attack_cell(config, case, attack)
        cells[attack] = cell, reconstructions[:GRID_IMAGES].detach().cpu().contiguous()
    return cells


def run_defense_table(config: DefenseTableConfig, out: str | Path, *, progress: bool = True,
                      ray: str | None = None) -> dict:
    """Run (or resume) the table's rows, here or on the Ray cluster at ``ray`` (:func:`fedleak.study.cells.
    run_cells`); write ``table.txt``, ``table.csv``, ``comparison.md`` and ``reconstructions.png`` in ``out``;
    return the rows and the text."""
    results = ResultsDir(out, asdict(config))
    recon_dir = results.path / "reconstructions"
    recon_dir.mkdir(exist_ok=True)
    victims = client_images(config.dataset, root=config.root, size=config.size, clients=config.num_clients,
                            count=config.victims, seed=config.seed)
    images = victims[0]
    rows = config.rows()
    todo = {key: (defenses, [a for a in attacks if f"{key}/{a}" not in results]) for key, defenses, attacks in rows}

    def write(key: str, cells: dict[str, tuple]) -> None:
        for attack, (cell, reconstructions) in cells.items():
            save_file({"images": reconstructions}, recon_dir / f"{key.replace(':', '_')}_{attack}.safetensors")
            results.add(f"{key}/{attack}", {"defense": key, "attack": attack, **cell})

    run_cells(row_cells, {key: args for key, args in todo.items() if args[1]}, write, shared=(victims, config),
              ray=ray, device=config.device, progress=progress, desc=f"defenses-{config.table} rows")
    done = results.finished()
    (dataset_column, model_column), paper = _paper(config, config.dataset)
    near = near_key()
    table, comparison_rows, grid, grid_labels = [], [], [images[:GRID_IMAGES]], ["original"]
    for key, _, attacks in rows:
        for attack in attacks:
            cell = done[f"{key}/{attack}"]
            ours = (cell["ssim_mean"], cell["ssim_std"], 100 * cell["asr"])
            theirs = paper.get((key, attack), (None, None, None))
            paper_ssim = "-" if theirs[0] is None else f"{theirs[0]:.2f} (± {theirs[1]:.2f})"
            table.append({"defense": key, "attack": attack, "SSIM": f"{ours[0]:.2f} (± {ours[1]:.2f})",
                          "ASR [%]": f"{ours[2]:.2f}", near: f"{cell[near]:.2f}", "PSNR": f"{cell['psnr']:.1f}",
                          "paper SSIM": paper_ssim, "paper ASR [%]": _fmt(theirs[2])})
            comparison_rows.append([key, attack.upper(), table[-1]["SSIM"], paper_ssim, table[-1]["ASR [%]"],
                                    _fmt(theirs[2]), table[-1][near]])
            path = recon_dir / f"{key.replace(':', '_')}_{attack}.safetensors"
            if path.exists():
                grid.append(load_file(path)["images"])
                grid_labels.append(f"{key} {attack}")
    title, _ = TABLES[config.table]
    headers = list(table[0])
    widths = {h: max(len(h), *(len(str(r[h])) for r in table)) for h in headers}
    model = config.model + "".join(f":{k}={v}" for k, v in config.model_options.items())
    lines = [f"Scheliga et al. (paper 001) {title}: {model} on {config.dataset}, "
             f"{config.victims} victims, {config.profile} profile"
             + (f" ({config.attack_iterations} attack iterations)" if config.attack_iterations else "")
             + f"; paper column: {dataset_column} / {model_column}", ""]
    lines += ["  ".join(h.ljust(widths[h]) for h in headers)]
    lines += ["  ".join(str(r[h]).ljust(widths[h]) for h in headers) for r in table]
    figure = image_grid(grid, results.path / "reconstructions.png", row_labels=grid_labels)
    lines.append(f"\nfigure: {figure} (first {GRID_IMAGES} victims, then each attack's reconstructions)")
    text = "\n".join(lines) + "\n"
    notes = [f"ours: {config.dataset}, {model}, {config.victims} victims, {config.profile} profile; paper: "
             f"{dataset_column} / {model_column}, 128 victims, the full §5.2 schedule",
             f"{near}: share of victims whose reconstruction reaches 30 dB PSNR (fedleak's near-exact leakage; not "
             "in the paper)"]
    if config.table == "dp":
        notes.append("the paper's Table 1 has sigma = 1e-3 only; sigma = 1e-4 is its ablation's setting")
    comparison = Comparison(f"Paper 001 {title}", ["defense", "attack", "SSIM (ours)", "SSIM (paper)", "ASR % (ours)",
                                                   "ASR % (paper)", f"{near} (ours)"], comparison_rows, notes)
    results.write_text("table.txt", text)
    results.write_csv("table.csv", table)
    results.write_text("comparison.md", comparison_markdown(f"Paper 001 {title}: ours beside the paper", [comparison]))
    return {"text": text, "rows": table, "cells": {k: v for k, v in done.items()}}


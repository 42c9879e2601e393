"""The defense ablation of paper 001 (Scheliga et al. §5.3, §6.1; its Table 4): every combination of Dropout (DO), DP-SGD (DP), gradient
pruning (GP) and one privacy module (PM: PRECODE "P" or CVB "C"), 24 rows, each scored for

- privacy (§5.2): V victim images of one client, each the batch (B = 1) of one local step of the defended, freshly
  initialised model; CDIA (Algorithm 2) against whichever defenses are on, and IG for reference; mean SSIM
  (± std) and ASR (share with SSIM > 0.5);
- utility (§5.1): FedAvg with 10 IID clients, one local epoch of Adam (lr 1e-3, batch 64), early stopping after
  40 rounds without improvement of the mean client validation loss; test accuracy of the global model at the best
  validation round, mean ± std over seeds; and the (epsilon, delta) one client spends under DP-SGD (Opacus's RDP
  accountant).

Every finished cell is appended to ``cells.jsonl`` at once and skipped on a rerun (resume). Each privacy cell is a
case of :mod:`fedleak.cases.victims` (B = 1 victims through the defended ``fl.Client``, the attack through
``ATTACKS``, scored by :func:`fedleak.cases.score`). Table 4 (``fedleak ablation``) and Table 5
(``fedleak reproduce architectures``) both run it.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from fedleak.attacks.inversion.presets import PRESETS
from fedleak.cases.scoring import score
from fedleak.cases.victims import attack_victims, client_images, victim_case
from fedleak.checks import CheckedConfig, index_field
from fedleak.data import load_dataset
from fedleak.defenses import apply_defenses
from fedleak.defenses.dp import dp_epsilon
from fedleak.study.cells import run_cells
from fedleak.fl import FederationSpec, FLConfig, build_federation
from fedleak.fl.training import task_loss
from fedleak.metrics import ssim
from fedleak.models import build_model
from fedleak.report import ResultsDir
from fedleak.report.plots import image_grid

MODULE_LETTERS = {None: "", "precode": "P", "cvb": "C"}
GRID_IMAGES = 8


@dataclass(frozen=True)
class AblationRow:
    """One defense combination of Table 4."""

    dropout: bool
    dp: bool
    prune: bool
    module: str | None  # "precode", "cvb" or None

    @property
    def label(self) -> str:
        parts = [name for name, on in (("DO", self.dropout), ("DP", self.dp), ("GP", self.prune)) if on]
        if self.module:
            parts.append(MODULE_LETTERS[self.module])
        return "+".join(parts) or "none"

    def defenses(self, config: "AblationConfig", seed: int) -> str:
        """The defense list for :func:`fedleak.defenses.apply_defenses` (paper §5.3 settings by default)."""
        items = ((self.dropout, f"dropout:p={config.dropout_rate}"),
                 (self.dp, f"dp:sigma={config.dp_sigma}:clip={config.dp_clip}:seed={seed}"),
                 (self.prune, f"prune:p={config.prune_rate}"), (self.module, self.module))
        return ",".join(item for on, item in items if on)

    @property
    def cdia_is_ig(self) -> bool:
        """Without Dropout, pruning and a privacy module CDIA is IG (it does not target DP, §4.4)."""
        return not (self.dropout or self.prune or self.module)


ROWS: tuple[AblationRow, ...] = tuple(
    AblationRow(do, dp, gp, pm) for do in (False, True) for dp in (False, True) for gp in (False, True)
    for pm in (None, "precode", "cvb")
)  # Table 4's order: DO, then DP, then GP, then PM (none, P, C)


def select_rows(spec: str | Sequence[str] | None) -> tuple[AblationRow, ...]:
    """Rows by label (``"none,DP+C,DO+DP+GP+P"``, case-insensitive) or 1-based Table 4 position; all if empty."""
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return ROWS
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    by_label = {row.label.lower(): row for row in ROWS}
    chosen = []
    for item in items:
        if item.isdigit() and 1 <= int(item) <= len(ROWS):
            chosen.append(ROWS[int(item) - 1])
        elif item.lower() in by_label:
            chosen.append(by_label[item.lower()])
        else:
            valid = ", ".join(row.label for row in ROWS)
            raise ValueError(f"unknown ablation row {item!r}; use 1-{len(ROWS)} or one of: {valid}")
    return tuple(dict.fromkeys(chosen))


@dataclass
class AblationConfig(CheckedConfig):
    """The full profile is paper 001's protocol; :meth:`quick` shrinks victims, attack and FL rounds."""

    dataset: str = "bundled"
    model: str = "cnn"
    model_options: dict = field(default_factory=dict)  # e.g. {"norm": "group"} for resnet18 (Table 5)
    root: str | None = None
    size: tuple[int, int] | None = (32, 32)
    rows: tuple[str, ...] = tuple(row.label for row in ROWS)
    victims: int = 128
    attack_iterations: int | None = None  # None: the full §5.2 schedule (up to 20,000 iterations)
    attacks: tuple[str, ...] = ("cdia", "ig")
    num_clients: int = 10
    rounds: int = 300
    patience: int | None = 40
    batch_size: int = 64
    lr: float = 1e-3
    seeds: tuple[int, ...] = (0, 1, 2)
    seed: int = 0  # victims, model initialisation and randomness of the privacy part
    dropout_rate: float = 0.25
    dp_clip: float = 20.0
    dp_sigma: float = 1e-4
    prune_rate: float = 0.5
    delta: float = 1e-5
    utility: bool = True  # False: privacy cells only (no FedAvg runs)
    trained_epochs: int = index_field(0)  # the attacked model: as initialised (0), or trained this many epochs first
    device: str = "cpu"
    profile: str = "full"

    def __post_init__(self):
        super().__post_init__()
        unknown = [a for a in self.attacks if a not in PRESETS]
        if unknown or not self.attacks:
            raise ValueError(f"unknown attack(s) {', '.join(unknown) or '(none given)'}; valid: {', '.join(PRESETS)}")

    @classmethod
    def quick(cls, **overrides) -> "AblationConfig":
        """8 victims, 300 attack iterations (:func:`short_run`), 8 FL rounds without early stopping, one seed."""
        seed = overrides.get("seed", 0)
        base = dict(victims=8, attack_iterations=300, rounds=8, patience=None, seeds=(seed,), profile="quick")
        return cls(**{**base, **overrides})

    def to_dict(self) -> dict:
        return asdict(self)


def victim_images(config: AblationConfig):
    """V images of one client's training data (client 0 of the IID split), §5.2."""
    return client_images(config.dataset, root=config.root, size=config.size, clients=config.num_clients,
                         count=config.victims, seed=config.seed)


def trained_state(config: AblationConfig, row: AblationRow, model: torch.nn.Module, info) -> dict | None:
    """The state dict of ``model`` with the row's defenses, trained ``config.trained_epochs`` epochs on the whole
    training split (Adam at ``config.lr``, batches of ``config.batch_size``; its modules, PRECODE/CVB, and Dropout
    train too; no DP noise: at sigma 1e-4 it does not change training). ``None`` for an untrained model. Paper 001
    does not state the model state of its privacy protocol (§5.2); this is the trained alternative."""
    if not config.trained_epochs:
        return None
    train = load_dataset(config.dataset, root=config.root, split="train", size=config.size)
    defended, _, _ = apply_defenses(model.to(config.device), row.defenses(config, config.seed),
                                    model_name=config.model, input_shape=info.input_shape)
    optimiser = torch.optim.Adam(defended.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    defended.train()
    for _ in tqdm(range(config.trained_epochs), desc=f"training for {row.label}", leave=False):
        order = torch.randperm(len(train), generator=generator)
        for start in range(0, len(train), config.batch_size):
            x, y = (t.to(config.device) for t in train[order[start:start + config.batch_size]])
            optimiser.zero_grad()
            task_loss(defended, defended(x), y).backward()
            optimiser.step()
    return {name: value.detach() for name, value in defended.state_dict().items()}


def privacy_row(data, config: AblationConfig, row: AblationRow, attacks: list[str],
                cdia: dict | None = None) -> dict[str, tuple[dict, dict | None]]:
    """The privacy part of one row (§5.2): each of ``attacks`` against the row's defended victims; ``{attack:
    (cell, reconstructions to save or None)}``. IG repeats CDIA's cell (``cdia``, or the one computed here) where
    the row makes the two the same attack."""
    images, labels, info = data
    torch.manual_seed(config.seed)
    model = build_model(config.model, info.input_shape, info.num_classes, **config.model_options)
    state = trained_state(config, row, model, info)
    case = victim_case(model, config.model, row.defenses(config, config.seed), images, labels, state=state,
                       device=config.device)
    cells = {}
    for attack in attacks:
        if attack == "ig" and row.cdia_is_ig and cdia is not None:
            cells[attack] = {**cdia, "attack": "ig", "same_as": "cdia"}, None
            continue
        result = attack_victims(case, attack, iterations=config.attack_iterations, seed=config.seed,
                                device=config.device)
        scores, quality = score(result, case.images, case.labels, paired=True), ssim(result.inputs, case.images)
        cell = {
            "row": row.label, "attack": attack, "ssim_mean": scores["ssim"],
            "ssim_std": float(quality.std()) if len(quality) > 1 else 0.0, "asr": scores["asr"],
            "psnr_mean": scores["psnr"], "labels_correct": scores["label_accuracy"],
            "iterations_mean": float(result.meta["iterations"].float().mean()), "seconds": result.info["seconds"],
            "ssim": quality.tolist(),
        }
        cells[attack] = cell, {"truth": case.images[:GRID_IMAGES].cpu().contiguous(),
                               "images": result.inputs[:GRID_IMAGES].cpu().contiguous()}
        cdia = cell if attack == "cdia" else cdia
    return cells


def utility_cell(config: AblationConfig, row: AblationRow, seed: int) -> dict:
    """One FedAvg run of §5.1 with the row's defenses; accuracy at the best validation round (or the last)."""
    spec = FederationSpec(dataset=config.dataset, model=config.model, root=config.root, size=config.size,
                          model_options=dict(config.model_options))
    fl = FLConfig(num_clients=config.num_clients, rounds=config.rounds, batch_size=config.batch_size, lr=config.lr,
                  patience=config.patience, seed=seed, device=config.device)
    torch.manual_seed(seed)
    info = load_dataset(config.dataset, root=config.root, split="test", size=config.size).info
    model = build_model(config.model, info.input_shape, info.num_classes, **config.model_options).to(config.device)
    defended, gradient_fn, mods = apply_defenses(model, row.defenses(config, seed), model_name=config.model,
                                                 input_shape=info.input_shape)
    server = build_federation(spec, fl, gradient_fn=gradient_fn, mods=mods, model=defended, progress=False)
    history = server.run()
    best = history.best_round or len(history.rounds)
    accuracy = history.rounds[best - 1].test_accuracy
    epsilon = None
    if row.dp:
        samples = len(server.clients[0].data.train)
        steps = len(history.rounds) * math.ceil(samples / config.batch_size)  # one local epoch per round
        epsilon = dp_epsilon(config.dp_sigma, min(1.0, config.batch_size / samples), steps, config.delta)
    return {"row": row.label, "seed": seed, "accuracy": accuracy, "best_round": best,
            "rounds_run": len(history.rounds), "epsilon": epsilon}


def _fmt_mean_std(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    if not values:
        return "-"
    mean = statistics.fmean(values) * scale
    std = (statistics.stdev(values) * scale) if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} (± {std:.{digits}f})"


def table_rows(config: AblationConfig, rows: Sequence[AblationRow], done: dict) -> list[dict]:
    """The printed table: Table 4's columns plus IG's SSIM for reference and epsilon."""
    table = []
    for row in rows:
        cdia, ig = done.get(f"privacy:{row.label}:cdia"), done.get(f"privacy:{row.label}:ig")
        utility = [done[k] for k in (f"utility:{row.label}:seed{s}" for s in config.seeds) if k in done]
        eps = [u["epsilon"] for u in utility if u.get("epsilon") is not None]
        table.append({
            "DO": "✓" if row.dropout else "✗", "DP": "✓" if row.dp else "✗", "GP": "✓" if row.prune else "✗",
            "PM": MODULE_LETTERS[row.module] or "✗",
            "SSIM": f"{cdia['ssim_mean']:.2f} (± {cdia['ssim_std']:.2f})" if cdia else "-",
            "ASR [%]": f"{100 * cdia['asr']:.2f}" if cdia else "-",
            "IG SSIM": f"{ig['ssim_mean']:.2f}" if ig else "-",
            "Accuracy [%]": _fmt_mean_std([u["accuracy"] for u in utility], 100.0),
            "eps": f"{statistics.fmean(eps):.3g}" if eps else "-",
        })
    return table


def _grid(rows: Sequence[AblationRow], recon_dir: Path, out_png: Path) -> Path | None:
    """Figure 2-like: the victims, then CDIA's reconstructions for every row."""
    images, labels = [], []
    for row in rows:
        path = recon_dir / f"{row.label}_cdia.safetensors"
        if path.exists():
            saved = load_file(path)
            if not images:
                images.append(saved["truth"])
                labels.append("original")
            images.append(saved["images"])
            labels.append(row.label)
    return image_grid(images, out_png, row_labels=labels) if images else None


def ablation_cell(data, config: AblationConfig, row: AblationRow, part: str, *args):
    """One independent cell of the ablation: a row's privacy part (:func:`privacy_row`) or one utility seed
    (:func:`utility_cell`)."""
    return privacy_row(data, config, row, *args) if part == "privacy" else utility_cell(config, row, *args)


def ablation_table(config: AblationConfig, out: str | Path, *, progress: bool = True,
                   ray: str | None = None) -> tuple[ResultsDir, list[dict]]:
    """Run (or resume) the selected rows, here or on the Ray cluster at ``ray`` (:func:`fedleak.study.cells.
    run_cells`); write ``cells.jsonl`` and ``reconstructions.png`` in ``out``; return the results folder and the
    table rows (:func:`table_rows`)."""
    rows = select_rows(config.rows)
    identity = {k: v for k, v in config.to_dict().items() if k not in ("rows", "device")}  # a rerun may add rows
    for name, default in (("model_options", {}), ("utility", True), ("trained_epochs", 0)):
        if identity[name] == default:  # folders written before these options existed stay resumable
            del identity[name]
    results = ResultsDir(out, identity)
    done = results.finished()
    recon_dir = results.path / "reconstructions"
    recon_dir.mkdir(exist_ok=True)
    cells = {}
    for row in rows:
        todo = [a for a in config.attacks if f"privacy:{row.label}:{a}" not in done]
        cdia = done.get(f"privacy:{row.label}:cdia")
        if todo:
            cells[f"privacy:{row.label}"] = row, "privacy", todo, cdia and {k: v for k, v in cdia.items() if k != "key"}
    if config.utility:
        cells.update({key: (row, "utility", seed) for row in rows for seed in config.seeds
                      if (key := f"utility:{row.label}:seed{seed}") not in done})

    def write(key: str, output) -> None:
        if not key.startswith("privacy:"):
            results.add(key, output)
            return
        for attack, (cell, reconstructions) in output.items():
            if reconstructions is not None:
                save_file(reconstructions, recon_dir / f"{key.removeprefix('privacy:')}_{attack}.safetensors")
            results.add(f"{key}:{attack}", cell)

    run_cells(ablation_cell, cells, write, shared=(victim_images(config) if cells else None, config), ray=ray,
              device=config.device, progress=progress, desc="ablation cells")
    _grid(rows, recon_dir, results.path / "reconstructions.png")
    return results, table_rows(config, rows, results.finished())

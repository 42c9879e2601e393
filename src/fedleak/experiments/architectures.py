"""Paper 001 (Scheliga et al.) Table 5: the ablation of Table 4 on a ResNet-18 with group norm and on a ViT, for the
rows Table 4 found promising (none, P, C, DP, DP+P, DP+C, DO, DO+DP+P, DO+DP+C; no pruning, §6.2), each scored
for privacy (CDIA's SSIM and ASR, §5.2) and utility (FedAvg accuracy, §5.1).

Each model is one :func:`fedleak.study.ablation.ablation_table` in a folder of its own (``out/<model>``, with
its config, cells and reconstructions: resumable); this module runs both and writes the joint table and the
comparison with the paper. The full profile is the paper's (full-width models, 128 victims, the full attack
schedule, FedAvg to early stopping, 3 seeds; ``--device cuda``). The quick profile narrows both models (ResNet-18
width 16 instead of 64; ViT width 64 with 4 heads instead of 256 and 16) and runs 4 victims, a 200-iteration attack
(:func:`fedleak.attacks.inversion.presets.short_run`) and 2 FedAvg rounds, one seed: minutes on a CPU, a smoke test
of the pipeline rather than the paper's numbers.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from fedleak.study.ablation import AblationConfig, ablation_table
from fedleak.study.paper_tables import P001_COLUMN, P001_MODEL, P001_TABLE5
from fedleak.report import ResultsDir
from fedleak.report.comparison import Comparison, comparison_markdown

ROWS = ("none", "P", "C", "DP", "DP+P", "DP+C", "DO", "DO+DP+P", "DO+DP+C")  # Table 5's order
FULL_MODELS = {"resnet18": {"norm": "group"}, "vit_small": {}}
QUICK_MODELS = {"resnet18": {"norm": "group", "width": 16}, "vit_small": {"width": 64, "heads": 4}}


@dataclass
class ArchitecturesConfig:
    """What ``fedleak reproduce architectures`` runs: each of ``models`` (name -> options) through the ablation
    of the Table 5 ``rows``; the other fields are :class:`AblationConfig`'s."""

    dataset: str = "bundled"
    root: str | None = None
    size: tuple[int, int] | None = (32, 32)
    models: dict = field(default_factory=lambda: {k: dict(v) for k, v in FULL_MODELS.items()})
    rows: tuple[str, ...] = ROWS
    victims: int = 128
    attack_iterations: int | None = None  # None: the full §5.2 schedule
    rounds: int = 300
    patience: int | None = 40
    seeds: tuple[int, ...] = (0, 1, 2)
    seed: int = 0
    device: str = "cpu"
    profile: str = "full"

    def __post_init__(self):
        if not self.models:
            raise ValueError("architectures: no model to run")
        unknown = set(self.models) - set(P001_MODEL)
        if unknown:
            raise ValueError(f"architectures: no paper column for {', '.join(sorted(unknown))}; "
                             f"models: {', '.join(FULL_MODELS)}")

    @classmethod
    def quick(cls, **overrides) -> "ArchitecturesConfig":
        """Narrow models, 4 victims, 200 attack iterations, 2 FedAvg rounds without early stopping, one seed."""
        seed = overrides.get("seed", 0)
        base = dict(models={k: dict(v) for k, v in QUICK_MODELS.items()}, victims=4, attack_iterations=200,
                    rounds=2, patience=None, seeds=(seed,), profile="quick")
        return cls(**{**base, **overrides})

    def ablation(self, model: str) -> AblationConfig:
        """The ablation of one model: CDIA only (IG is Table 4's reference, not Table 5's)."""
        return AblationConfig(dataset=self.dataset, model=model, model_options=dict(self.models[model]),
                              root=self.root, size=self.size, rows=self.rows, victims=self.victims,
                              attack_iterations=self.attack_iterations, attacks=("cdia",), rounds=self.rounds,
                              patience=self.patience, seeds=self.seeds, seed=self.seed, device=self.device,
                              profile=self.profile)


def _fmt_paper(values) -> tuple[str, str, str]:
    if values is None:
        return "-", "-", "-"
    ssim, ssim_std, asr, accuracy, accuracy_std = values
    return f"{ssim:.2f} (± {ssim_std:.2f})", f"{asr:.2f}", f"{accuracy:.2f} (± {accuracy_std:.2f})"


def reproduce_architectures(config: ArchitecturesConfig, out: str | Path, *, progress: bool = True) -> dict:
    """Run (or resume) each model's ablation in ``out/<model>``; write ``table.txt``, ``table.csv`` and
    ``comparison.md`` in ``out``; return the joint rows and the text."""
    results = ResultsDir(out, asdict(config))
    column = P001_COLUMN.get(config.dataset)
    rows, comparisons, lines = [], [], []
    for model in config.models:
        ablation = config.ablation(model)
        _, table = ablation_table(ablation, results.path / model, progress=progress)
        paper = P001_TABLE5.get((column, P001_MODEL[model]), {})
        comparison_rows = []
        for label, row in zip(ablation.rows, table):
            ssim, asr, accuracy = _fmt_paper(paper.get(label))
            rows.append({"model": model, "row": label, "SSIM": row["SSIM"], "ASR [%]": row["ASR [%]"],
                         "Accuracy [%]": row["Accuracy [%]"], "eps": row["eps"], "paper SSIM": ssim,
                         "paper ASR [%]": asr, "paper Accuracy [%]": accuracy})
            comparison_rows.append([label, row["SSIM"], ssim, row["ASR [%]"], asr, row["Accuracy [%]"], accuracy])
        options = ":".join(f"{k}={v}" for k, v in config.models[model].items())
        name = model + (f":{options}" if options else "")
        comparisons.append(Comparison(
            f"Table 5: {name} on {config.dataset} (paper: {P001_MODEL[model]}, {column or '-'})",
            ["row", "SSIM (ours)", "SSIM (paper)", "ASR % (ours)", "ASR % (paper)", "accuracy % (ours)",
             "accuracy % (paper)"], comparison_rows,
            [f"ours: {config.victims} victims, CDIA with "
             + (f"{config.attack_iterations} iterations" if config.attack_iterations else "the full §5.2 schedule")
             + f", FedAvg {config.rounds} rounds, seeds {list(config.seeds)}, {config.profile} profile; paper: "
               "full-width models, 128 victims, the full schedule, early stopping, 3 seeds"]))
    headers = list(rows[0])
    widths = {h: max(len(h), *(len(str(r[h])) for r in rows)) for h in headers}
    lines = [f"Scheliga et al. (paper 001) Table 5: {', '.join(config.models)} on {config.dataset}, "
             f"{config.victims} victims, {config.profile} profile; CDIA SSIM/ASR, FedAvg accuracy", ""]
    lines += ["  ".join(h.ljust(widths[h]) for h in headers)]
    lines += ["  ".join(str(r[h]).ljust(widths[h]) for h in headers) for r in rows]
    lines.append(f"\nper model: {', '.join(f'{results.path / m}' for m in config.models)} (cells, reconstructions.png)")
    text = "\n".join(lines) + "\n"
    results.write_text("table.txt", text)
    results.write_csv("table.csv", rows)
    results.write_text("comparison.md", comparison_markdown("Paper 001 (Scheliga et al.) Table 5: ours beside the "
                                                            "paper", comparisons))
    return {"text": text, "rows": rows}

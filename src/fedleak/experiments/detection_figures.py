"""Table 1, Fig. 2 and Fig. 3 of Wang & Li (paper 000) on the data available here, with a ResNet-18.

- Fig. 3: a benign ResNet-18 trained centrally; after every round (epoch) the warm-up detector runs on the
  current model — its largest Z-score next to the test accuracy.
- Table 1: the trained model under Fishing (class and feature fishing, Wen et al.): Z-mean, Z-std and Z-max of
  every targeted layer after one warm-up step, beside the benign model's.
- Fig. 2: Robbing the Fed's imprint layer (weights and bias) and the D-SNR of every layer before and after the
  attack — D-SNR stays near 0 although the imprint is conspicuous (§3.2).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from fedleak.attacks import AttackContext, prepare  # noqa: E402
from fedleak.attacks.malicious.robbing_the_fed import brightness_prior  # noqa: E402
from fedleak.data import load_dataset  # noqa: E402
from fedleak.detection import WarmupZScore, dsnr_check  # noqa: E402
from fedleak.detection.warmup_zscore import DEFAULT_THRESHOLD  # noqa: E402
from fedleak.models.features import classifier_features  # noqa: E402
from fedleak.study.config import RunConfig  # noqa: E402
from fedleak.fl.training import evaluate, task_loss  # noqa: E402
from fedleak.models import build_model  # noqa: E402
from fedleak.report import ResultsDir  # noqa: E402


@dataclass
class FiguresConfig(RunConfig):
    """The ResNet-18 (``width``, ``norm``) on ``dataset`` at ``size``, trained ``rounds`` epochs with Adam."""

    dataset: str = "bundled"
    size: tuple[int, int] = (32, 32)
    width: int = 16
    norm: str = "batch"
    rounds: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    samples: int = 128


def _warmup_scores(model, x, y, config: FiguresConfig):
    verdict = WarmupZScore(samples=config.samples, seed=config.seed)(model, model, [(x, y)], device=config.device)
    return verdict, torch.tensor(verdict.details["zscores"])


def train_and_monitor(config: FiguresConfig, results: ResultsDir) -> torch.nn.Module:
    """Fig. 3: centralised training with the warm-up detector run after every epoch; returns the trained model."""
    torch.manual_seed(config.seed)
    train = load_dataset(config.dataset, split="train", size=config.size)
    test = load_dataset(config.dataset, split="test", size=config.size)
    model = build_model("resnet18", train.info.input_shape, train.info.num_classes, width=config.width,
                        norm=config.norm).to(config.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    done = results.finished()
    rows = []
    for r in tqdm(range(0, config.rounds + 1), desc="fig3 rounds"):
        if r > 0:
            order = torch.randperm(len(train), generator=generator)
            for start in range(0, len(order), config.batch_size):
                idx = order[start:start + config.batch_size]
                optimizer.zero_grad()
                x, y = train.inputs(idx).to(config.device), train.y[idx].to(config.device)
                task_loss(model, model(x), y).backward()
                optimizer.step()
        key = f"fig3/round{r}"
        if key not in done:
            idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(config.seed + r))[:config.samples]
            verdict, _ = _warmup_scores(model, train.inputs(idx), train.y[idx], config)
            accuracy = evaluate(model, test, device=config.device)[1]
            done[key] = results.add(key, {"round": r, "max_z": verdict.score, "layer": verdict.layer,
                                          "statistic": verdict.statistic, "step": verdict.details["step"],
                                          "accuracy": accuracy})
        rows.append(done[key])
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.plot([c["round"] for c in rows], [c["max_z"] for c in rows], marker="o", color="tab:red", label="max Z")
    ax.set_xlabel("round (epoch of centralised training)")
    ax.axhline(DEFAULT_THRESHOLD, color="tab:red", linestyle="--", linewidth=1, label="fixed threshold")
    ax.set_ylabel("max Z-score in warm-up", color="tab:red")
    ax.set_ylim(0, 1.1 * max(DEFAULT_THRESHOLD, *(c["max_z"] for c in rows)))
    ax.legend(loc="lower right")
    twin = ax.twinx()
    twin.plot([c["round"] for c in rows], [c["accuracy"] for c in rows], marker="s", color="tab:blue")
    twin.set_ylabel("test accuracy", color="tab:blue")
    twin.set_ylim(0, 1)
    ax.set_title(f"benign ResNet-18 (width {config.width}, {config.norm} norm) on {config.dataset}")
    fig.tight_layout()
    fig.savefig(results.path / "fig3_benign_max_z.png", dpi=120)
    plt.close(fig)
    return model


def table1(model: torch.nn.Module, config: FiguresConfig, results: ResultsDir) -> dict:
    """Z-mean/Z-std/Z-max per targeted series after one warm-up step: benign, class and feature fishing."""
    train = load_dataset(config.dataset, split="train", size=config.size)
    test = load_dataset(config.dataset, split="test", size=config.size)
    idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(config.seed))[:config.samples]
    x, y = train.inputs(idx), train.y[idx]
    features = classifier_features(model, test.inputs(slice(0, 256)).to(config.device))
    feature = int(features.var(dim=0).argmax())
    cases = {"benign": model}
    context = AttackContext(train.info.input_shape)
    cases["class fishing"] = prepare("class_fishing", model, context, target_class=int(y[0]))[0]
    threshold = float(features[:, feature].median())
    cases["feature fishing"] = prepare("feature_fishing", model, context, feature=feature, threshold=threshold)[0]
    table = {}
    for case, candidate in cases.items():
        verdict, scores = _warmup_scores(candidate, x, y, config)
        table[case] = {name: dict(zip(("Z-mean", "Z-std", "Z-max"), scores[0, k].tolist()))
                       for k, name in enumerate(verdict.details["series"])}
    lines = ["| target layer | " + " | ".join(f"{case}: Z-mean | Z-std | Z-max" for case in table) + " |",
             "|---|" + "---|---|---|" * len(table)]
    for name in table["benign"]:
        cells = [f"{table[c][name]['Z-mean']:.3g} | {table[c][name]['Z-std']:.3g} | {table[c][name]['Z-max']:.3g}"
                 for c in table]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    results.write_text("table1.md", "Z-scores after one warm-up step (Table 1 of paper 000)\n\n" +
                       "\n".join(lines) + "\n")
    results.write_json("table1.json", table)
    return table


def figure2(model: torch.nn.Module, config: FiguresConfig, results: ResultsDir) -> dict:
    """Imprint weights and bias of Robbing the Fed, and per-layer D-SNR before and after inserting it."""
    train = load_dataset(config.dataset, split="train", size=config.size)
    public = load_dataset(config.dataset, split="test", size=config.size).inputs(slice(0, 256))
    mean, std = brightness_prior(public)
    attacked, secret = prepare("robbing_the_fed", model, AttackContext(train.info.input_shape), num_bins=128,
                               feature_mean=mean, feature_std=std)
    idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(config.seed + 1))[:64]
    batch = [(train.inputs(idx), train.y[idx])]
    before = dsnr_check(model, None, batch, device=config.device, batch_size=64).details["per_layer"]
    after = dsnr_check(attacked, None, batch, device=config.device, batch_size=64).details["per_layer"]
    imprint = attacked.get_submodule(secret.layer)
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.4))
    image = axes[0].imshow(imprint.weight.detach().cpu().T, aspect="auto", cmap="viridis")
    fig.colorbar(image, ax=axes[0])
    axes[0].set(title="(a) imprint weight", xlabel="bin", ylabel="input feature")
    axes[1].plot(imprint.bias.detach().cpu(), marker=".")
    axes[1].set(title="(b) imprint bias", xlabel="bin")
    for ax, values, title in ((axes[2], before, "(c) D-SNR before"), (axes[3], after, "(d) D-SNR after")):
        ax.bar(range(len(values)), list(values.values()))
        ax.axhline(1.0, color="red", linestyle="--", label="threshold 1")
        ax.set(title=title, xlabel="layer", ylim=(0, 1.2))
        ax.legend()
    fig.tight_layout()
    fig.savefig(results.path / "fig2_robbing_dsnr.png", dpi=120)
    plt.close(fig)
    summary = {"dsnr_before_max": max(before.values()), "dsnr_after_max": max(after.values()),
               "dsnr_after_imprint": after.get(f"{secret.layer}.weight")}
    results.write_json("fig2.json", {"before": before, "after": after, **summary})
    return summary


def run_figures(config: FiguresConfig, out: str | Path) -> dict:
    """Fig. 3 (training), then Table 1 and Fig. 2 on the trained model; returns the headline numbers."""
    results = ResultsDir(out, asdict(config))
    model = train_and_monitor(config, results)
    table = table1(model, config, results)
    fig2 = figure2(model, config, results)
    fig3 = [c for k, c in sorted(results.finished().items()) if k.startswith("fig3/")]
    summary = {"fig3_max_benign_z": max(c["max_z"] for c in fig3),
               "table1_max_z": {case: max(max(v.values()) for v in rows.values()) for case, rows in table.items()},
               **fig2}
    results.write_json("figures_summary.json", summary)
    print(json.dumps(summary, indent=2))
    return summary

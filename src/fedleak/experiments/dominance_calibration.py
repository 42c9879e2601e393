"""Where benign models lie on :func:`fedleak.detection.batch_dominance`, measured on models that are *not* those of
``fedleak detect-eval --first-contact``: other initialisation seeds (``seeds``), trained centrally (Adam, ``epochs``
epochs) on the bundled *test* split and checked on ``samples``-sample sets of that split (the evaluation's clients
hold the train split), at 32x32 and 16x16, with batch norm (where the batch can move a sample's features) and one
model without it (whose swing must be 0). The largest benign score sets
:data:`fedleak.detection.batch_dominance.BENIGN_MAX`; the SEER BN checkpoint's scores are reported beside it.
``python -m fedleak.experiments.dominance_calibration OUT`` writes ``OUT/dominance_calibration.json`` (config
included).
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from fedleak.attacks.learned.seer import load_checkpoint
from fedleak.data import load_dataset
from fedleak.detection.batch_dominance import batch_dominance
from fedleak.fl.training import task_loss
from fedleak.models import build_model


@dataclass
class DominanceCalibration:
    """Benign ``models`` (registry name, options, image size) at each of ``seeds`` and ``epochs``; ``checks`` local
    sample sets of ``samples`` each per model, checked with the detector's defaults."""

    models: tuple = (("cnn", {"norm": "batch", "padding": 2}, 32), ("cnn", {"norm": "batch", "padding": 2}, 16),
                     ("resnet18", {"norm": "batch", "width": 8}, 16), ("fcnn", {}, 16))
    seeds: tuple[int, ...] = (101, 102)
    epochs: tuple[int, ...] = (0, 1, 3)
    checks: int = 8
    samples: int = 32
    device: str = "cpu"


def scores(model, x, y, config: DominanceCalibration, seed: int) -> list[float]:
    """The detector's score on ``checks`` random sets of ``samples`` samples of ``x``."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for check in range(config.checks):
        pick = torch.randperm(len(x), generator=generator)[:config.samples]
        out.append(round(batch_dominance(model, None, [(x[pick], y[pick])], device=config.device, seed=check).score, 4))
    return out


def calibrate(config: DominanceCalibration) -> dict:
    """Every benign model's scores (one per check), the largest, and the SEER BN checkpoint's scores."""
    rows = []
    for (name, options, size), seed in tqdm([(m, s) for m in config.models for s in config.seeds],
                                            desc="dominance calibration"):
        data = load_dataset("bundled", split="test", size=(size, size))
        x, y = data.inputs(slice(None)).to(config.device), data.y.to(config.device)
        torch.manual_seed(seed)
        model = build_model(name, data.info.input_shape, data.info.num_classes, device=config.device, **options)
        optimizer = torch.optim.Adam(model.parameters(), 2e-3)
        trained = 0
        for epochs in config.epochs:
            for _ in range(epochs - trained):
                order = torch.randperm(len(x))
                for start in range(0, len(x), 32):
                    index = order[start:start + 32]
                    optimizer.zero_grad()
                    task_loss(model, model.train()(x[index]), y[index]).backward()
                    optimizer.step()
            trained = epochs
            rows.append({"model": name, "options": options, "size": size, "seed": seed, "epochs": epochs,
                         "scores": scores(model, x, y, config, seed)})
    data = load_dataset("bundled", split="test", size=(32, 32))
    _, seer, *_ = load_checkpoint("bn", config.device)
    seer_scores = scores(seer, data.inputs(slice(None)).to(config.device), data.y.to(config.device), config, 0)
    return {"benign": rows, "benign_max": max(max(r["scores"]) for r in rows), "seer_bn": seer_scores,
            "config": asdict(config)}


if __name__ == "__main__":
    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    result = calibrate(DominanceCalibration())
    (out / "dominance_calibration.json").write_text(json.dumps(result, indent=1) + "\n")
    print("benign max", result["benign_max"], "SEER BN", result["seer_bn"])
    for row in result["benign"]:
        print(row["model"], row["options"], row["size"], row["seed"], row["epochs"], max(row["scores"]))

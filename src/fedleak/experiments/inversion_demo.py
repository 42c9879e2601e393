"""Demo step: an honest-but-curious server inverts the B = 1 FedSGD updates of its clients (paper 001 §3.2), once
from undefended clients and once from clients that train with DP-SGD and a CVB, and saves both grids."""
from __future__ import annotations

from pathlib import Path

import torch

from fedleak.attacks.inversion import ServerKnowledge
from fedleak.attacks import ATTACKS
from fedleak.cases import Audit, ThreatModel
from fedleak.defenses import apply_defenses, parse_defenses
from fedleak.defenses.dp import DPSGD
from fedleak.fl import FederationSpec, FLConfig, build_federation
from fedleak.models import build_model
from fedleak.report.plots import image_grid

CLIENTS = 4
ITERATIONS = 300
# Paper 001 §4.1's DP level (tau = 20, sigma = 1e-3), with the CVB where its authors put it (after block1).
DEFENDED = "dp:sigma=1e-3,cvb"


def _attack_round(defenses: str, out_png: Path, *, device, seed: int) -> dict:
    """One FedSGD round of CLIENTS clients with batch size 1; the honest-but-curious server's audit runs CDIA
    (a short run) on all their updates in one batched optimisation."""
    spec = FederationSpec(dataset="bundled", model="cnn", size=(32, 32))
    config = FLConfig(algorithm="fedsgd", num_clients=CLIENTS, rounds=1, batch_size=1, seed=seed, device=str(device))
    torch.manual_seed(seed)
    model = build_model("cnn", (1, 32, 32), 10).to(device)
    defended, gradient_fn, mods = apply_defenses(model, defenses, model_name="cnn", input_shape=(1, 32, 32))
    dp = gradient_fn if isinstance(gradient_fn, DPSGD) else None
    knowledge = ServerKnowledge(input_shape=(1, 32, 32), defenses=tuple(d.name for d in parse_defenses(defenses)),
                                dp_clip=dp.clip if dp else None, dp_sigma=dp.sigma if dp else None)
    cdia = ATTACKS.build("cdia", iterations=ITERATIONS, seed=seed)
    audit = Audit(cdia, ThreatModel(), knowledge=knowledge, seed=seed, device=device)
    server = build_federation(spec, config, gradient_fn=gradient_fn, mods=mods, model=defended, audit=audit,
                              progress=False)
    server.run()
    records = audit.records
    images = torch.cat([r.truth[0] for r in records])
    reconstructed = torch.cat([r.reconstruction.inputs for r in records]).to(images.device)
    image_grid([images, reconstructed], out_png, row_labels=["client data", "server's\nreconstruction"])
    summary = audit.summary()
    return {"ssim": round(summary["ssim"], 3), "asr": summary["asr"],
            "labels_recovered": round(summary["label_accuracy"] * len(records)), "grid": str(out_png)}


def demo_step(out_dir: Path, *, device="cpu", seed: int = 0) -> dict:
    """CDIA (300 iterations) on four clients' B = 1 updates, undefended and with DP-SGD + CVB."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plain = _attack_round("", out_dir / "undefended.png", device=device, seed=seed)
    defended = _attack_round(DEFENDED, out_dir / "dp_cvb.png", device=device, seed=seed)
    return {
        "victims": CLIENTS,
        "undefended SSIM / ASR": f"{plain['ssim']} / {plain['asr']:.0%}",
        f"{DEFENDED} SSIM / ASR": f"{defended['ssim']} / {defended['asr']:.0%}",
        "labels recovered": f"{plain['labels_recovered']}/{CLIENTS} and {defended['labels_recovered']}/{CLIENTS}",
        "grids": f"{plain['grid']}, {defended['grid']}",
    }

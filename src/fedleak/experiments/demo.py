"""``fedleak demo``: the end-to-end tour on the bundled data, one step per function — an FL run, a malicious
server's trap weights, gradient inversion with and without defenses (paper 001 §3.2: an honest-but-curious server
inverts B = 1 FedSGD updates, undefended and behind DP-SGD + CVB), and the client's detectors refusing the trap.
Every attack runs as a :class:`fedleak.cases.Audit` in a federation built by ``build_federation``."""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import torch

from fedleak.attacks import ATTACKS, AttackContext
from fedleak.attacks.base import Knowledge
from fedleak.cases import Audit, ThreatModel
from fedleak.cases.scoring import point_scores
from fedleak.defenses import apply_defenses, parse_defenses
from fedleak.defenses.dp import DPSGD
from fedleak.detection import DetectorChain, build_detector, detector_mod
from fedleak.fl import FederationSpec, FLConfig, build_federation
from fedleak.models import build_model
from fedleak.report.extraction_figures import extraction_figure
from fedleak.report.plots import image_grid
from fedleak.study.extraction_cells import extraction_cell
from fedleak.study.fl_run import run_fl

def fl_step(out_dir: Path, *, device: str = "cpu", seed: int = 0) -> dict:
    """Ten clients train the Scheliga et al. CNN with FedAvg on the bundled Fashion-MNIST sample."""
    spec = FederationSpec(dataset="bundled", model="cnn", size=(32, 32))
    config = FLConfig(num_clients=10, rounds=8, batch_size=32, lr=2e-3, seed=seed, device=device)
    history = run_fl(spec, config, out_dir)
    return {
        "rounds": len(history.rounds),
        "first-round accuracy": round(history.rounds[0].test_accuracy, 4),
        "final accuracy": round(history.final_accuracy, 4),
        "chance": 0.1,
    }


def trap_weights_step(out_dir: Path, *, device: str = "cpu", seed: int = 0) -> dict:
    """A malicious server sends trap weights to one FedSGD client (an :class:`fedleak.cases.Audit`), extracts the
    batch from its gradient with Eq. 5 and saves the extracted images above the originals (``extracted.png``).
    The client's batch reaches the scorer beside its update."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = FederationSpec(dataset="bundled", model="fcnn", model_options={"widths": (1000, 64)})
    config = FLConfig(algorithm="fedsgd", num_clients=10, rounds=1, fraction=0.1, batch_size=100, seed=seed,
                      device=device)
    trap = ATTACKS.build("trap_weights", scale_factor=0.8, seed=seed)
    audit = Audit(trap, ThreatModel(server="malicious"), seed=seed, device=device)
    server = build_federation(spec, config, audit=audit, progress=False)
    honest = copy.deepcopy(server.model)
    server.run()
    (record,) = audit.records
    (x, y), reconstruction, scores = record.truth, record.reconstruction, record.scores
    passive = extraction_cell(honest, x, y, "passive", device=device).run(device=device)  # the same batch, unchanged
    points = point_scores(reconstruction, x)
    figure = extraction_figure(x, points.shown(reconstruction.inputs, x), points.recovered, out_dir / "extracted.png")
    return {
        "batch size": len(x),
        "neurons": reconstruction.info["num_rows"],
        "extracted exactly (recall R)": round(scores["R"], 3),
        "extraction-precision P": round(scores["P"], 3),
        "active neurons A": round(scores["A"], 3),
        "declared by the attacker (no ground truth)": scores["declared"],
        "passive attack recall on the same batch": round(passive.scores["R"], 3),
        "extraction ms": round(1000 * record.seconds, 2),
        "figure": str(figure),
    }


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
    knowledge = Knowledge(input_shape=(1, 32, 32), defenses=tuple(d.name for d in parse_defenses(defenses)),
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


def inversion_step(out_dir: Path, *, device="cpu", seed: int = 0) -> dict:
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


def detection_step(out_dir: Path, *, device: str = "cpu", seed: int = 0) -> dict:
    """The trap-weights client of the previous demo step, now running the detectors before training: two
    benign FedSGD rounds, then the malicious server sends it trap weights (s = 0.8) and it refuses them, so the
    server's extraction gets nothing. Also reports what the paper's detectors alone say at first contact."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = FederationSpec(dataset="bundled", model="fcnn", model_options={"widths": (1000, 64)})
    config = FLConfig(algorithm="fedsgd", num_clients=3, rounds=3, batch_size=100, seed=seed, device=device)
    local = build_model("fcnn", (1, 28, 28), 10, widths=(1000, 64))
    detectors = [build_detector("architecture"), build_detector("filter_ratio"),
                 build_detector("dsnr", seed=seed), build_detector("warmup_zscore", remember_rounds=5, seed=seed)]
    attack_round, victim = config.rounds, 0
    trap = ATTACKS.build("trap_weights", scale_factor=0.8, seed=seed)
    audit = Audit(trap, ThreatModel(server="malicious", victims=(victim,), rounds=(attack_round,)), seed=seed,
                  device=device)
    seen = {}

    def record(client, verdicts):
        seen[(client.round, client.client_id)] = verdicts

    mod = detector_mod(DetectorChain(detectors, local, samples=128), on_verdicts=record)
    server = build_federation(spec, config, mods=[mod], audit=audit, progress=False)
    attacked = copy.deepcopy(server.model)  # the global model of the attacked round, for the first-contact check
    history = server.run(before_round=lambda r, s: attacked.load_state_dict(s.model.state_dict()))
    refused = history.rounds[-1].refused
    flagged = next((v for v in seen[(attack_round, victim)] if v.flagged), None)
    trapped, _ = trap.prepare(attacked, AttackContext((1, 28, 28)))
    first_contact = [build_detector("filter_ratio"), build_detector("dsnr", seed=seed),
                     build_detector("warmup_zscore", seed=seed)]
    batch = [next(server.clients[victim].batches(128, torch.Generator().manual_seed(seed)))]
    paper = {v.detector: round(v.score, 3) for v in (d(trapped, local, batch, device=device) for d in first_contact)}
    summary = {
        "victim refused the trap weights": victim in refused,
        "refusal": refused.get(victim, "none"),
        "detector": flagged.detector if flagged else None,
        "layer / statistic": f"{flagged.layer} / {flagged.statistic}" if flagged else None,
        "score / threshold": f"{flagged.score:.1f} / {flagged.threshold:g}" if flagged else None,
        "check seconds": round(sum(v.seconds for v in seen[(attack_round, victim)]), 2),
        "benign client-rounds refused": sum(len(r.refused) for r in history.rounds[:-1]),
        "images extracted by the server": sum(len(r.reconstruction) for r in audit.records if r.reconstruction),
        "paper detectors alone at first contact (score)": paper,
    }
    (out_dir / "detection.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


# (folder, title, step); each step is ``step(out_dir, *, device, seed) -> dict`` of figures to print.
STEPS = (
    ("fl", "federated training (FedAvg, 10 clients)", fl_step),
    ("trap-weights", "a malicious server sends trap weights to one client", trap_weights_step),
    ("inversion", "an honest-but-curious server inverts B = 1 updates, with and without DP + CVB", inversion_step),
    ("detection", "the client runs the detectors first and refuses the trap weights", detection_step),
)


def run_demo(out: str | Path, *, device: str = "cpu", seed: int = 0) -> dict[str, dict]:
    out = Path(out)
    figures = {}
    for index, (folder, title, step) in enumerate(STEPS, start=1):
        print(f"\n[{index}/{len(STEPS)}] {title}")
        start = time.perf_counter()
        figures[title] = step(out / f"{index}-{folder}", device=device, seed=seed)
        figures[title]["seconds"] = round(time.perf_counter() - start, 1)
        for key, value in figures[title].items():
            print(f"    {key}: {value}")
    return figures

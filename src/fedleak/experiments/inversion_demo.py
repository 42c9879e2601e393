"""Demo step: an honest-but-curious server inverts the B = 1 FedSGD updates of its clients (paper 001 §3.2), once
from undefended clients and once from clients that train with DP-SGD and a CVB, and saves both grids."""
from __future__ import annotations

from pathlib import Path

import torch

from fedleak.attacks.inversion import ReceivedGradients, ServerKnowledge, reconstruct
from fedleak.attacks.inversion.presets import PRESETS, short_run
from fedleak.defenses import apply_defenses, parse_defenses
from fedleak.defenses.dp import DPSGD
from fedleak.fl import FederationSpec, FLConfig, build_federation
from fedleak.metrics import attack_success_rate, ssim
from fedleak.models import build_model
from fedleak.report.plots import image_grid

CLIENTS = 4
ITERATIONS = 300
# Paper 001 §4.1's DP level (tau = 20, sigma = 1e-3), with the CVB where its authors put it (after block1).
DEFENDED = "dp:sigma=1e-3,cvb"


def _attack_round(defenses: str, out_png: Path, *, device, seed: int) -> dict:
    """One FedSGD round of CLIENTS clients with batch size 1; the server's observer keeps every update and
    afterwards runs CDIA (a short run) on all of them in one batched optimisation."""
    spec = FederationSpec(dataset="bundled", model="cnn", size=(32, 32))
    config = FLConfig(algorithm="fedsgd", num_clients=CLIENTS, rounds=1, batch_size=1, seed=seed, device=str(device))
    torch.manual_seed(seed)
    model = build_model("cnn", (1, 32, 32), 10).to(device)
    defended, gradient_fn, mods = apply_defenses(model, defenses, model_name="cnn", input_shape=(1, 32, 32))
    truth: list[tuple[torch.Tensor, torch.Tensor]] = []
    seen: list[tuple[torch.nn.Module, dict[str, torch.Tensor]]] = []

    def client_step(m, x, y):  # the client's own computation; the true batch is kept aside for scoring only
        truth.append((x.detach(), y.detach()))
        return gradient_fn(m, x, y)

    def observe(round, client_id, sent, update):  # what the server sees: the model it sent and the update
        seen.append((sent, update.tensors))

    server = build_federation(spec, config, gradient_fn=client_step, mods=mods, model=defended, progress=False,
                              observers=[observe])
    server.run()
    sent_model = seen[0][0]
    received = ReceivedGradients({n: torch.stack([tensors[n] for _, tensors in seen]) for n in seen[0][1]})
    dp = gradient_fn if isinstance(gradient_fn, DPSGD) else None
    knowledge = ServerKnowledge(input_shape=(1, 32, 32), defenses=tuple(d.name for d in parse_defenses(defenses)),
                                dp_clip=dp.clip if dp else None, dp_sigma=dp.sigma if dp else None)
    result = reconstruct(short_run(PRESETS["cdia"], ITERATIONS), sent_model, received, knowledge, device=device,
                         seed=seed)
    images = torch.cat([x for x, _ in truth]).to(result.images.device)
    labels = torch.cat([y for _, y in truth]).to(result.labels.device)
    scores = ssim(result.images, images)
    image_grid([images, result.images], out_png, row_labels=["client data", "server's\nreconstruction"])
    return {"ssim": round(float(scores.mean()), 3), "asr": attack_success_rate(scores),
            "labels_recovered": int((result.labels == labels).sum()), "grid": str(out_png)}


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

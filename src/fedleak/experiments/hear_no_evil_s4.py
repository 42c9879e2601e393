"""Paper 000 §4, reproduced (Wang & Li, "Hear No Evil"): do learning-based attacks need batch norm, does federated
training neutralise them, and do the client-side detectors flag them?

Three parts, each a table (text + CSV) and the first two a figure:

1. SEER (:mod:`fedleak.experiments.seer`) with batch, group and layer norm at the same training budget, for each
   batch size of ``batch_sizes`` (§4.1.1): mean SSIM of the decoded brightest image on held-out batches, beside the
   no-gradient prior. Batch 16 uses the checkpoints of ``fedleak reproduce seer`` (shipped ones when the config
   matches); the other batch sizes are trained here with ``steps`` steps per norm.
2. SEER BN after 0, 1, 5, 20 honest FedSGD rounds of ``clients`` clients (the server attacks the global model of
   that round with its original decoder), and against clients running FedAvg for 1..``max_epochs`` local epochs
   (§4.1.3): the leakage curve.
3. The detectors of ``fedleak detect-eval`` (architecture, filter ratio, D-SNR, warm-up Z-score in paper mode
   and with the memory of earlier rounds) on the SEER, LOKI and model-inconsistency models, each sent in round
   ``attack_round`` of an honest FedAvg federation of its architecture whose clients checked every earlier round;
   the honest global model of that round is the control row (§5: "flags ... even learning-based attacks").

Deviations: the scale of :mod:`fedleak.experiments.seer` (a small CNN, 32x32 Fashion-MNIST, a few thousand
training steps on CPU); batch 64 and 256 only in the full profile (hours on 2 CPU cores: use ``--device cuda``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from fedleak.attacks.base import AttackContext  # noqa: E402
from fedleak.attacks.learned.seer import load_checkpoint  # noqa: E402
from fedleak.cases.probe import prepare_attack, sent_to  # noqa: E402
from fedleak.data import load_dataset  # noqa: E402
from fedleak.detection.chain import (PAPER, PAPER_COLUMNS, ChainSettings, build_chain, detector_mod,  # noqa: E402
                                    verdict_rows)
from fedleak.study.paper_tables import P000_SEER  # noqa: E402
from fedleak.study.config import RunConfig  # noqa: E402
from fedleak.study.seer_case import (CLEAR, NORM_TAGS, SeerReproductionConfig, attack_batches,  # noqa: E402
                                     checkpoint, client_batches, prior_ssim)
from fedleak.fl import FederationSpec, FLConfig, build_federation  # noqa: E402
from fedleak.models import build_model  # noqa: E402
from fedleak.report import ResultsDir  # noqa: E402
from fedleak.report.plots import save_figure  # noqa: E402

SEER_BATCH = 16  # the batch size of ``fedleak reproduce seer`` (its checkpoints are reused)


@dataclass
class S4Config(RunConfig):
    """Paper 000 §4 (module docstring): ``batch_sizes`` and ``steps`` per norm for the batch sizes other than 16;
    ``eval_batches`` held-out batches per cell; ``rounds`` of honest FedSGD (``clients`` clients, server rate
    ``server_lr``); FedAvg ``max_epochs`` (mini-batches and rate of the ``seer`` config's FedAvg); detection
    federations of ``detect_clients`` clients attacked in ``attack_round``."""

    dataset: str = "bundled"
    root: str | None = None
    batch_sizes: tuple[int, ...] = (4, 16, 64, 256)
    steps: int = 4000
    eval_batches: int = 30
    rounds: tuple[int, ...] = (1, 5, 20)
    clients: int = 4
    server_lr: float = 0.1
    max_epochs: int = 5
    detect_clients: int = 4
    attack_round: int = 4
    seer: SeerReproductionConfig = field(default_factory=lambda: SeerReproductionConfig(shipped=True))

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.seer, dict):
            self.seer = SeerReproductionConfig(**self.seer)
        self.seer = replace(self.seer, dataset=self.dataset, root=self.root, seed=self.seed, device=self.device,
                            eval_batches=self.eval_batches)
        self.batch_sizes, self.rounds = tuple(self.batch_sizes), tuple(self.rounds)
        if self.attack_round < 3:
            raise ValueError("attack_round must be >= 3: the warm-up detector's memory needs two earlier rounds")
        if any(b < 2 for b in self.batch_sizes):
            raise ValueError(f"batch sizes must be >= 2 (SEER picks the brightest of a batch), got {self.batch_sizes}")

    @classmethod
    def quick(cls, **overrides) -> S4Config:
        """Batch sizes 4 (1,500 steps per norm, trained here) and 16 (the shipped checkpoints), 20 held-out
        batches, FedAvg up to 3 epochs."""
        return cls(**{"batch_sizes": (4, 16), "steps": 1500, "eval_batches": 20, "max_epochs": 3, **overrides})

    def seer_at(self, batch_size: int) -> SeerReproductionConfig:
        """The SEER experiment of ``batch_size`` (batch 16: the one of ``fedleak reproduce seer``)."""
        if batch_size == SEER_BATCH:
            return self.seer
        training = replace(self.seer.training, batch_size=batch_size, steps=self.steps)
        return replace(self.seer, training=training, shipped=False)


def norm_cells(config: S4Config, results: ResultsDir, test, progress: bool) -> None:
    """Part 1: SSIM per batch size and norm, with the prior."""
    for size in config.batch_sizes:
        seer = config.seer_at(size)
        batches = client_batches(test, config.eval_batches, size, config.seed)
        if f"prior/{size}" not in results:
            results.add(f"prior/{size}", {"part": "prior", "batch_size": size,
                                          "ssim": prior_ssim(seer, test, batches)})
        fl = FLConfig(algorithm="fedsgd", num_clients=1, rounds=1, batch_size=size, seed=config.seed,
                      device=config.device)
        for tag in NORM_TAGS:
            key = f"norm/{size}/{tag}"
            if key in results:
                continue
            path, source = checkpoint(seer, tag, results.path / f"batch-{size}", progress=progress)
            measured = attack_batches(path, test, batches, fl, device=config.device, progress=False)
            results.add(key, {"part": "norm", "batch_size": size, "norm": NORM_TAGS[tag], "checkpoint": source,
                              "steps": seer.training.steps, "ssim": float(measured["ssim"].mean()),
                              "psnr": float(measured["psnr"].mean())})


def round_cells(config: S4Config, results: ResultsDir, train, test) -> None:
    """Part 2: SEER BN after honest FedSGD rounds, and against FedAvg clients of 1..max_epochs epochs."""
    path, _ = checkpoint(config.seer, "bn", results.path / f"batch-{SEER_BATCH}", progress=False)
    batches = client_batches(test, config.eval_batches, SEER_BATCH, config.seed)
    fedsgd = FLConfig(algorithm="fedsgd", num_clients=1, rounds=1, batch_size=SEER_BATCH, seed=config.seed,
                      device=config.device)
    keys = [f"fedsgd/{r}" for r in (0, *config.rounds)]
    if not all(k in results for k in keys):
        _, model, *_ = load_checkpoint(path, config.device)
        federation = FLConfig(algorithm="fedsgd", num_clients=config.clients, rounds=max(config.rounds),
                              batch_size=SEER_BATCH, server_lr=config.server_lr, seed=config.seed,
                              device=config.device)
        server = build_federation(FederationSpec(dataset=config.dataset, model="cnn"), federation, model=model,
                                  datasets=(train, test), progress=False)

        def measure(round: int) -> None:
            if f"fedsgd/{round}" in results:
                return
            measured = attack_batches(path, test, batches, fedsgd, device=config.device, progress=False,
                                      model=server.model)
            results.add(f"fedsgd/{round}", {"part": "fedsgd", "round": round, "ssim": float(measured["ssim"].mean()),
                                            "psnr": float(measured["psnr"].mean())})

        measure(0)
        server.run(lambda record: measure(record.round) if record.round in config.rounds else None)
    for epochs in range(1, config.max_epochs + 1):
        if f"fedavg/{epochs}" in results:
            continue
        fl = FLConfig(algorithm="fedavg", num_clients=1, rounds=1, local_epochs=epochs,
                      batch_size=config.seer.fedavg_batch, optimizer="sgd", lr=config.seer.fedavg_lr, seed=config.seed,
                      device=config.device)
        measured = attack_batches(path, test, batches, fl, device=config.device, progress=False)
        results.add(f"fedavg/{epochs}", {"part": "fedavg", "epochs": epochs, "ssim": float(measured["ssim"].mean()),
                                         "psnr": float(measured["psnr"].mean())})


def attack_models(kind: str, model, config: S4Config, public: torch.Tensor, seer_path: Path) -> dict:
    """The models the server sends client 0 in the attacked round, by row name (the model inconsistency's silenced
    client's model is the one client 1 would receive), each prepared by :func:`fedleak.cases.probe.prepare_attack`
    (SEER: its checkpoint's weights in the round's model)."""
    shape, clients = tuple(public.shape[1:]), tuple(range(config.detect_clients))
    context = AttackContext(shape, 10, clients=clients, public=public, seed=config.seed, device=config.device)
    if kind == "bn":
        return {"honest (BN)": model, "SEER (BN)": sent_to(prepare_attack(
            "seer", model, replace(context, clients=()), checkpoint=str(seer_path)).sent, 0)}
    loki = prepare_attack("loki", model, context, num_bins=64).sent
    inconsistent = prepare_attack("model_inconsistency", model, context, target=0, inner="class_fishing",
                                  inner_options={"target_class": 0}).sent
    return {"honest": model, "LOKI": sent_to(loki, 0),
            "model inconsistency, target (class fishing)": sent_to(inconsistent, 0),
            "model inconsistency, silenced client": sent_to(inconsistent, 1)}


def detection_cells(config: S4Config, results: ResultsDir, train, test) -> None:
    """Part 3: every detector on every attack model, sent in ``attack_round`` to clients that checked the honest
    rounds before (their memory) with the chain of ``fedleak detect-eval``."""
    seer_path, _ = checkpoint(config.seer, "bn", results.path / f"batch-{SEER_BATCH}", progress=False)
    public = test.inputs(slice(0, 256)).to(config.device)
    for kind, norm in (("bn", "batch"), ("plain", "none")):
        if f"detect/{kind}/done" in results:
            continue
        options = {"norm": norm, "padding": 2}
        local = build_model("cnn", train.info.input_shape, train.info.num_classes, **options)
        # the chain of ``fedleak detect-eval``: the paper's detectors, warm-up memory of 5 rounds, D-SNR batch 64
        settings = ChainSettings(samples=128, seed=config.seed, remember_rounds=5, dsnr_batch=64)
        chain = build_chain(PAPER, local, settings, refuse=False)
        fl = FLConfig(num_clients=config.detect_clients, rounds=config.attack_round, batch_size=32, lr=2e-3,
                      seed=config.seed, device=config.device)
        server = build_federation(FederationSpec(model="cnn", model_options=options), fl, mods=(detector_mod(chain),),
                                  datasets=(train, test), progress=False)

        def check(round: int, server) -> None:
            if round != config.attack_round:
                return
            client = server.clients[0]
            for name, sent in attack_models(kind, server.model, config, public, seer_path).items():
                verdicts = verdict_rows(chain.check_client(client, sent, round=round, remember=False))
                results.add(f"detect/{kind}/{name}", {"part": "detect", "model": name, "network": f"cnn {norm}",
                                                      "round": round, **{c: verdicts.get(c) for c in PAPER_COLUMNS}})

        server.run(before_round=check)
        results.add(f"detect/{kind}/done", {"part": "done"})


def reproduce_s4(config: S4Config, out: str | Path, *, progress: bool = True) -> dict:
    """Run (or resume) the three parts; write ``norms.csv``, ``rounds.csv``, ``detection.csv``, ``table.txt``,
    ``leakage.png`` and ``results.json``."""
    results = ResultsDir(out, asdict(config))
    torch.set_num_threads(1)
    size = config.seer.training.image_size
    train = load_dataset(config.dataset, root=config.root, split="train", size=size)
    test = load_dataset(config.dataset, root=config.root, split="test", size=size)
    parts = [("batch size x norm", lambda: norm_cells(config, results, test, progress)),
             ("FedSGD rounds, FedAvg epochs", lambda: round_cells(config, results, train, test)),
             ("detectors", lambda: detection_cells(config, results, train, test))]
    for _, part in tqdm(parts, desc="paper 000 §4", disable=not progress):
        part()
    cells = list(results.finished().values())
    summary = summarize_s4(cells, config)
    results.write_csv("norms.csv", summary["norms"])
    results.write_csv("rounds.csv", summary["rounds"])
    results.write_csv("detection.csv", summary["detection"])
    leakage_figure(summary, results.path / "leakage.png")
    summary["text"] = report(summary)
    results.write_text("table.txt", summary["text"])
    results.write_json("results.json", summary)
    results.close()
    return summary


def summarize_s4(cells: list[dict], config: S4Config) -> dict:
    priors = {c["batch_size"]: c["ssim"] for c in cells if c.get("part") == "prior"}
    norms = sorted(({"batch_size": c["batch_size"], "norm": c["norm"], "steps": c["steps"], "ssim": c["ssim"],
                     "psnr": c["psnr"], "prior_ssim": priors.get(c["batch_size"]), "checkpoint": c["checkpoint"]}
                    for c in cells if c.get("part") == "norm"), key=lambda r: (r["batch_size"], r["norm"]))
    rounds = [{"protocol": "FedSGD rounds", "x": c["round"], "ssim": c["ssim"], "psnr": c["psnr"]}
              for c in sorted((c for c in cells if c.get("part") == "fedsgd"), key=lambda c: c["round"])]
    rounds += [{"protocol": "FedAvg local epochs", "x": c["epochs"], "ssim": c["ssim"], "psnr": c["psnr"]}
               for c in sorted((c for c in cells if c.get("part") == "fedavg"), key=lambda c: c["epochs"])]
    detection = []
    for c in (c for c in cells if c.get("part") == "detect"):
        row = {"model": c["model"], "network": c["network"], "round": c["round"]}
        for column in PAPER_COLUMNS:
            verdict = c.get(column)
            row[f"{column} flagged"] = None if verdict is None else verdict["flagged"]
            row[f"{column} score"] = None if verdict is None else verdict["score"]
        detection.append(row)
    return {"norms": norms, "rounds": rounds, "detection": detection, "prior_ssim": priors, "paper": P000_SEER,
            "config": asdict(config)}


def leakage_figure(summary: dict, path: Path) -> Path:
    """SSIM vs batch size per norm, and SSIM vs FedSGD rounds / FedAvg epochs, with the prior."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    for norm in ("batch", "group", "layer"):
        rows = [r for r in summary["norms"] if r["norm"] == norm]
        left.plot([r["batch_size"] for r in rows], [r["ssim"] for r in rows], marker="o", label=f"{norm} norm")
    sizes = sorted(summary["prior_ssim"])
    left.plot(sizes, [summary["prior_ssim"][s] for s in sizes], color="grey", linestyle=":", label="no-gradient prior")
    left.set(xscale="log", xlabel="batch size", ylabel="SSIM of decoded brightest image", ylim=(0, 1))
    left.set_xticks(sizes, [str(s) for s in sizes])
    left.minorticks_off()
    left.legend(fontsize=7)
    for protocol, marker in (("FedSGD rounds", "o"), ("FedAvg local epochs", "s")):
        rows = [r for r in summary["rounds"] if r["protocol"] == protocol]
        right.plot([r["x"] for r in rows], [r["ssim"] for r in rows], marker=marker, label=protocol)
    if SEER_BATCH in summary["prior_ssim"]:
        right.axhline(summary["prior_ssim"][SEER_BATCH], color="grey", linestyle=":", label="no-gradient prior")
    right.set(xlabel="honest rounds / local epochs", ylabel="SSIM (SEER, batch norm)", ylim=(0, 1))
    right.legend(fontsize=7)
    return save_figure(fig, path)


def report(summary: dict) -> str:
    lines = ["Paper 000 §4: SEER vs norm and batch size (mean SSIM of the decoded brightest image, held-out)"]
    for row in summary["norms"]:
        lines.append(f"  B={row['batch_size']:>3}  {row['norm']:<5} norm  SSIM {row['ssim']:.3f}  "
                     f"PSNR {row['psnr']:.1f} dB"
                     f"  (prior {row['prior_ssim']:.3f}, {row['steps']} steps, {row['checkpoint']})")
    lines.append("SEER (batch norm, B=16) after honest training")
    for row in summary["rounds"]:
        lines.append(f"  {row['protocol']:<20} {row['x']:>3}  SSIM {row['ssim']:.3f}")
    lines.append("Detectors on the model sent in the attacked round (flagged / score)")
    for row in summary["detection"]:
        cells = "  ".join(f"{c}: {'FLAG' if row[f'{c} flagged'] else 'pass'} {row[f'{c} score']:.3g}"
                          if row[f"{c} flagged"] is not None else f"{c}: -" for c in PAPER_COLUMNS)
        lines.append(f"  {row['model']:<45} {cells}")
    lines += verdicts(summary)
    lines.append("paper: " + "; ".join(P000_SEER.values()))
    return "\n".join(lines) + "\n"


def verdicts(summary: dict) -> list[str]:
    """Whether paper 000's §4 claims hold here, each with the measured gap (SSIM gaps of at least ``CLEAR``)."""
    lines = []
    for size in sorted(summary["prior_ssim"]):
        rows = {r["norm"]: r["ssim"] for r in summary["norms"] if r["batch_size"] == size}
        if len(rows) == 3:
            gap = rows["batch"] - max(rows["group"], rows["layer"])
            over_prior = rows["batch"] - summary["prior_ssim"][size]
            lines.append(f"§4.1.1 needs batch norm, B={size}: {'holds' if gap >= CLEAR else 'not shown'} (BN minus "
                         f"the better per-sample norm {gap:+.3f}; BN vs prior {over_prior:+.3f})")
    fedsgd = {r["x"]: r["ssim"] for r in summary["rounds"] if r["protocol"] == "FedSGD rounds"}
    fedavg = [r["ssim"] for r in summary["rounds"] if r["protocol"] == "FedAvg local epochs"]
    if 0 in fedsgd and len(fedsgd) > 1:
        last = max(fedsgd)
        overwritten = fedsgd[0] - fedsgd[last] >= CLEAR
        lines.append(f"§4.1.3 honest rounds overwrite SEER: {'holds' if overwritten else 'not shown'} (SSIM "
                     f"{fedsgd[0]:.3f} at round 0, {fedsgd[last]:.3f} after {last} FedSGD rounds)")
        if fedavg:
            neutral = fedsgd[0] - max(fedavg) >= CLEAR
            lines.append(f"§4.1.3 FedAvg neutralises SEER: {'holds' if neutral else 'not shown'} (FedSGD "
                         f"{fedsgd[0]:.3f}, FedAvg at most {max(fedavg):.3f})")
    seer = [r for r in summary["detection"] if r["model"].startswith("SEER")]
    for row in seer:
        flagged = [c for c in ("warmup_zscore", "warmup_zscore+rounds") if row[f"{c} flagged"]]
        verdict = f"holds ({', '.join(flagged)})" if flagged else "does NOT hold"
        lines.append(f"§5 warm-up detector flags SEER: {verdict} (score {row['warmup_zscore score']:.3g} paper mode, "
                     f"{row['warmup_zscore+rounds score']:.3g} with memory)")
    return lines

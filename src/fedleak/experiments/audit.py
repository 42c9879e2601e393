"""``fedleak audit``: fedleak's three questions about one model and one data set, in one resumable run.

1. How much does an update leak? Every attack that applies to the model (decided by trying its ``prepare``: a
   ``ValueError`` means it does not apply, and why is recorded), each in one short federation round with a
   :class:`fedleak.cases.Audit` that scores it against the clients' true data: SSIM/PSNR/ASR of gradient inversion
   (paper 001 §5.2, with the iDLG label accuracy), exact recall of analytic extraction (paper 002 §8.1).
2. What stops it, at what cost? Each attack again behind each chosen defense combination, and a short FedAvg run
   per defense for the accuracy it costs (paper 001 §5.1 utility protocol, shortened).
3. Is the model a trap? With ``threat="malicious"``, every manipulation that applies, and the verdicts of the
   client-side detectors (paper 000 §3, §5) on each manipulated model and on the honest one.

Cells go to ``cells.jsonl`` as they finish (a rerun skips them); :mod:`fedleak.experiments.audit_report` turns
them into ``report.json`` and ``report.html``.
"""
from __future__ import annotations

import copy
import math
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from fedleak.attacks import ATTACKS, MALICIOUS, PRESETS, AttackContext
from fedleak.attacks.inversion import ServerKnowledge
from fedleak.attacks.inversion.knowledge import LocalTraining
from fedleak.cases import Audit, ThreatModel
from fedleak.data import TensorDataset
from fedleak.defenses import apply_defenses, parse_defenses
from fedleak.defenses.dp import DPSGD, dp_epsilon
from fedleak.detection import DetectorChain, build_detector, load_received_model
from fedleak.experiments.audit_inputs import ResolvedModel, parse_options, resolve_data, resolve_model
from fedleak.experiments.detection import attack_settings, manipulate, summarize
from fedleak.experiments.run_config import RunConfig
from fedleak.fl import FederationSpec, FLConfig, build_federation
from fedleak.report import ResultsDir
from fedleak.report.plots import image_grid

HONEST_ANALYTIC = ("passive",)
FEDAVG_INVERSION = "fedavg_inversion"  # Dimitrov et al. 2022: added to the inversions under --protocol fedavg
QUICK_INVERSIONS = ("ig", "cdia")  # the Adam presets; DLG/iDLG's L-BFGS costs ~5x more per iteration on CPU
DEFAULT_DEFENSES = ("dp:sigma=1e-3", "cvb")  # paper 001 §4.1's DP level; CVB needs a registry model's placement
NONE = "none"
GRID_IMAGES = 8
UTILITY_BATCH, UTILITY_LR = 32, 2e-3  # the demo's FedAvg recipe
DETECTION_SAMPLES = 128
DELTA = 1e-5


@dataclass
class AuditConfig(RunConfig):
    """One audit. ``model``/``data``: see :mod:`fedleak.experiments.audit_inputs`; ``weights``: a safetensors state
    dict loaded key by key into the model; ``threat``: "honest" or "malicious"; ``protocol``: "fedsgd" or
    "fedavg[:steps=S][:lr=L]"; ``secure_aggregation``: N clients per round whose updates the server sees only as
    their weighted mean (0: each update); ``defenses``: each a combination of :func:`fedleak.defenses.
    apply_defenses`; ``attacks``: names (``None``: every attack that applies); ``victims`` clients of
    ``batch_size`` per attacked round; ``iterations``: inversion budget (``None``: the preset's full schedule);
    ``utility_rounds``/``utility_clients``: the FedAvg run that prices each defense."""

    model: str
    data: str
    weights: str | None = None
    root: str | None = None
    size: tuple[int, int] | None = (32, 32)
    threat: str = "honest"
    protocol: str = "fedsgd"
    batch_size: int = 1
    secure_aggregation: int = 0
    defenses: tuple[str, ...] = DEFAULT_DEFENSES
    attacks: tuple[str, ...] | None = None
    victims: int = 8
    iterations: int | None = None
    utility_rounds: int = 10
    utility_clients: int = 10
    quick: bool = False

    def __post_init__(self):
        super().__post_init__()
        self.size = tuple(self.size) if self.size else None
        self.defenses = tuple(d for d in self.defenses if d.strip().lower() != NONE)
        self.attacks = None if self.attacks is None else tuple(self.attacks)
        ThreatModel(server=self.threat)  # a clear error for an unknown threat
        protocol_options(self.protocol)
        for defense in self.defenses:
            parse_defenses(defense)
        for name in self.attacks or ():
            ATTACKS.get(name)
            if self.threat == "honest" and name in MALICIOUS:
                raise ValueError(f"attack {name!r} manipulates the model; an honest server cannot run it "
                                 f"(use --threat malicious)")
        for name in ("batch_size", "victims", "utility_rounds", "utility_clients"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.secure_aggregation < 0 or self.secure_aggregation == 1:
            raise ValueError(f"secure aggregation needs N >= 2 clients (0: off), got {self.secure_aggregation}")

    @classmethod
    def quick_profile(cls, **overrides) -> AuditConfig:
        """A few minutes on 2 CPU cores: 4 victims, 200 inversion iterations, the Adam inversion presets only,
        3 FedAvg rounds of 5 clients per defense."""
        return cls(**{"victims": 4, "iterations": 200, "utility_rounds": 3, "utility_clients": 5, "quick": True,
                      **overrides})

    def to_dict(self) -> dict:
        return asdict(self)


def protocol_options(protocol: str) -> dict:
    """``"fedavg:steps=5:lr=0.01"`` -> FLConfig fields (algorithm, local_steps, lr, optimizer)."""
    name, *parts = protocol.split(":")
    if name not in ("fedsgd", "fedavg"):
        raise ValueError(f"protocol {protocol!r}: must be fedsgd or fedavg[:steps=S][:lr=L]")
    options = parse_options(parts, "protocol")
    unknown = sorted(set(options) - ({"steps", "lr"} if name == "fedavg" else set()))
    if unknown:
        raise ValueError(f"protocol {protocol!r}: unknown option(s) {', '.join(unknown)} (fedavg takes steps, lr)")
    fields = {"algorithm": name}
    if name == "fedavg":
        fields.update(local_steps=int(options.get("steps", 5)), lr=float(options.get("lr", 0.01)), optimizer="sgd")
    return fields


def local_training(config: AuditConfig) -> LocalTraining | None:
    """The clients' FedAvg recipe the server set up (what FedAvg inversion simulates); ``None`` under FedSGD."""
    fields = protocol_options(config.protocol)
    if fields["algorithm"] != "fedavg":
        return None
    return LocalTraining(fields["lr"], config.batch_size, steps=fields["local_steps"])


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_") or NONE


@dataclass
class Setup:
    """What every cell of an audit shares: the data, the model as the server holds it, and its input range."""

    config: AuditConfig
    train: TensorDataset
    test: TensorDataset
    resolved: ResolvedModel
    input_range: tuple[float, float]
    public: torch.Tensor = field(repr=False, default=None)

    @property
    def info(self):
        return self.train.info

    def fresh_model(self) -> nn.Module:
        return copy.deepcopy(self.resolved.model)

    def defended(self, defense: str) -> tuple[nn.Module, object, tuple, ServerKnowledge]:
        """The model, gradient function and mods of ``defense`` ("none": undefended), and what the server knows
        (paper 001 §4.4: the defenses and the DP parameters). A ``ValueError`` when the defense cannot be placed."""
        model, gradient_fn, mods = apply_defenses(self.fresh_model(), "" if defense == NONE else defense,
                                                  model_name=self.resolved.name, input_shape=self.info.input_shape)
        dp = gradient_fn if isinstance(gradient_fn, DPSGD) else None
        names = () if defense == NONE else tuple(d.name for d in parse_defenses(defense))
        knowledge = ServerKnowledge(self.info.input_shape, self.input_range, names, dp.clip if dp else None,
                                    dp.sigma if dp else None, local_training=local_training(self.config))
        return model.to(self.config.device), gradient_fn, mods, knowledge


def build_setup(config: AuditConfig) -> Setup:
    """Load the data and the model (and the ``weights``, checked key by key) of ``config``."""
    train, test = resolve_data(config.data, root=config.root, size=config.size, seed=config.seed)
    torch.manual_seed(config.seed)
    resolved = resolve_model(config.model, train.info.input_shape, train.info.num_classes)
    if config.weights:
        loaded = load_received_model(config.weights, resolved.model)
        loaded.input_shape, loaded.num_classes = resolved.model.input_shape, resolved.model.num_classes
        resolved = replace(resolved, model=loaded)
    resolved.model.to(config.device)
    sample = train.inputs(slice(0, 1000))
    low, high = (0.0, 1.0) if train.x.dtype == torch.uint8 else (float(sample.min()), float(sample.max()))
    public = test.inputs(slice(0, 256)).to(config.device)
    return Setup(config, train, test, resolved, (low, high) if low < high else (0.0, 1.0), public)


def candidate_attacks(setup: Setup) -> list[tuple[str, dict]]:
    """(attack name, options) of every attack the audit tries: the chosen ones, or honest analytic extraction,
    the inversion presets (the Adam ones in the quick profile) and, against a malicious server, every
    manipulation with its first setting of ``fedleak detect-eval``."""
    config = setup.config
    inversions = [p for p in PRESETS if not config.quick or p in QUICK_INVERSIONS]
    fedavg = (FEDAVG_INVERSION,) if protocol_options(config.protocol)["algorithm"] == "fedavg" else ()
    names = list(config.attacks) if config.attacks is not None else [
        *HONEST_ANALYTIC, *inversions, *fedavg, *(MALICIOUS if config.threat == "malicious" else ())]
    settings = {}
    if any(n in MALICIOUS for n in names):
        for attack, _, name, options in attack_settings(setup.resolved.model, setup.info, setup.public,
                                                        config.batch_size):
            settings.setdefault(name, options)
    chosen = []
    for name in names:
        options = dict(settings.get(name, {}))
        if (name in PRESETS or name == FEDAVG_INVERSION) and config.iterations is not None:
            options["iterations"] = config.iterations
        if name in PRESETS or name == FEDAVG_INVERSION:
            options["seed"] = config.seed
        chosen.append((name, options))
    return chosen


def applies(setup: Setup, name: str, options: dict) -> str:
    """Why attack ``name`` does not apply to the model ("" when it does): its ``prepare`` raised, or a
    manipulation changed nothing."""
    if name in MALICIOUS:
        return manipulate(setup.resolved.model, setup.info, name, options)[1]
    try:
        ATTACKS.build(name, **options).prepare(setup.fresh_model(),
                                               AttackContext(setup.info.input_shape, setup.info.num_classes))
    except ValueError as error:
        return str(error)
    return ""


def federation_config(config: AuditConfig, clients: int, rounds: int = 1, **changes) -> FLConfig:
    return FLConfig(**{"num_clients": clients, "rounds": rounds, "batch_size": config.batch_size,
                       "seed": config.seed, "device": config.device, **protocol_options(config.protocol),
                       **changes})


def leak_cell(setup: Setup, name: str, options: dict, defense: str, grid: Path) -> dict:
    """One federation round in which the server runs attack ``name`` on clients that use ``defense``; the
    audit's scores, the reconstructions beside the originals in ``grid`` (images)."""
    config = setup.config
    model, gradient_fn, mods, knowledge = setup.defended(defense)
    clients = config.secure_aggregation or config.victims
    fl = federation_config(config, clients)
    threat = ThreatModel(server=config.threat, observes="secure_aggregate" if config.secure_aggregation else "updates",
                         protocol=fl.algorithm)
    audit = Audit(ATTACKS.build(name, **options), threat, knowledge=knowledge, public=setup.public, seed=config.seed,
                  device=config.device)
    test = setup.test.subset(torch.arange(min(64, len(setup.test))))  # the round's accuracy is not the point here
    server = build_federation(FederationSpec(), fl, gradient_fn=gradient_fn, mods=mods, audit=audit, model=model,
                              datasets=(setup.train, test), progress=False)
    start = time.perf_counter()
    try:
        server.run()
    except KeyError:  # a model with an inserted layer (an imprint): the updates, already audited, do not aggregate
        if not audit.records:
            raise
    attacked = [r for r in audit.records if r.status == "attacked"]
    summary = {k: v for k, v in audit.summary().items() if k not in ("attack", "threat_model")}
    cell = {"status": "attacked" if attacked else "nothing observed", **summary,
            "seconds": time.perf_counter() - start}
    if attacked and all("leaked" in r.scores for r in attacked):
        leaked, true = sum(r.scores["leaked"] for r in attacked), sum(r.scores["true_points"] for r in attacked)
        cell.update(leaked=leaked, true_points=true, recall=leaked / max(1, true))
    pairs = [(r.truth[0], r.reconstruction.inputs) for r in attacked]
    if attacked and save_grid(pairs, grid, paired=name in PRESETS):
        cell["grid"] = grid.name
    return cell


def save_grid(pairs: list[tuple[torch.Tensor, torch.Tensor]], path: Path, *, paired: bool,
              labels: tuple[str, str] = ("client data", "reconstruction")) -> bool:
    """Each pair's true images (top) above the reconstructed point closest to each, or the point of the same
    index when ``paired`` (bottom); ``False`` (nothing drawn) unless both are images of one shape."""
    truths, shown = [], []
    for truth, inputs in pairs:
        inputs = inputs.detach().to(truth.device)
        if truth.dim() != 4 or not inputs.is_floating_point() or inputs.shape[1:] != truth.shape[1:] or not len(inputs):
            return False
        if not (paired and len(inputs) == len(truth)):
            finite = torch.isfinite(inputs.flatten(1)).all(dim=1)
            inputs = torch.where(finite.view(-1, 1, 1, 1), inputs, torch.zeros_like(inputs))
            inputs = inputs[torch.cdist(truth.flatten(1).float(), inputs.flatten(1).float()).argmin(dim=1)]
        truths.append(truth)
        shown.append(inputs)
    truth, shown = torch.cat(truths)[:GRID_IMAGES], torch.cat(shown)[:GRID_IMAGES]
    low, high = float(truth.min()), float(truth.max())
    scale = (high - low) or 1.0
    path.parent.mkdir(parents=True, exist_ok=True)
    image_grid([(truth - low) / scale, (shown - low) / scale], path, row_labels=list(labels))
    return True


def utility_cell(setup: Setup, defense: str) -> dict:
    """A short FedAvg run (the demo's recipe) of clients that train with ``defense``: its final test accuracy,
    and the DP epsilon spent (Opacus RDP accountant) when the defense includes DP-SGD."""
    config = setup.config
    model, gradient_fn, mods, knowledge = setup.defended(defense)
    fl = FLConfig(algorithm="fedavg", num_clients=config.utility_clients, rounds=config.utility_rounds,
                  batch_size=UTILITY_BATCH, lr=UTILITY_LR, seed=config.seed, device=config.device)
    start = time.perf_counter()
    server = build_federation(FederationSpec(), fl, gradient_fn=gradient_fn, mods=mods, model=model,
                              datasets=(setup.train, setup.test), progress=False)
    history = server.run()
    cell = {"status": "trained", "accuracy": history.final_accuracy, "rounds": len(history.rounds),
            "seconds": time.perf_counter() - start}
    if knowledge.dp_sigma is not None:
        samples = min(len(c.data.train) for c in server.clients)
        steps = len(history.rounds) * math.ceil(samples / UTILITY_BATCH)
        cell["epsilon"] = dp_epsilon(knowledge.dp_sigma, min(1.0, UTILITY_BATCH / samples), steps, DELTA)
    return cell


def detection_cell(setup: Setup, name: str | None, options: dict) -> dict:
    """The client-side detectors' verdicts (architecture check, filter ratio, D-SNR, warm-up Z-score; paper 000
    §3, §5) on manipulation ``name`` of the model, or on the honest model itself (``name`` None), at first
    contact, with a batch of the client's own data."""
    config = setup.config
    honest = setup.resolved.model
    received = honest if name is None else manipulate(honest, setup.info, name, options)[0]
    detectors = [build_detector("architecture"), build_detector("filter_ratio"),
                 build_detector("dsnr", seed=config.seed), build_detector("warmup_zscore", seed=config.seed)]
    chain = DetectorChain(detectors, copy.deepcopy(honest), samples=DETECTION_SAMPLES, refuse=False)
    order = torch.randperm(len(setup.train), generator=torch.Generator().manual_seed(config.seed))
    index = order[:DETECTION_SAMPLES]
    batch = (setup.train.inputs(index).to(config.device), setup.train.y[index].to(config.device))
    verdicts = chain.check(received, batch, round=1, device=config.device, remember=False)
    columns = summarize(verdicts)
    return {"status": "checked", "model": name or "honest", "detectors": columns,
            "flagged_by": sorted(d for d, v in columns.items() if v["flagged"])}


def plan(setup: Setup) -> list[tuple[str, str, tuple]]:
    """Every cell of the audit, in order: (key, kind, arguments)."""
    config = setup.config
    defenses = (NONE, *config.defenses)
    cells = []
    for name, options in candidate_attacks(setup):
        for defense in defenses:
            cells.append((f"leak/{name}/{defense}", "leak", (name, options, defense)))
    for defense in defenses:
        cells.append((f"utility/{defense}", "utility", (defense,)))
    if config.threat == "malicious":
        cells.append(("detect/honest", "detect", (None, {})))
        for name, options in candidate_attacks(setup):
            if name in MALICIOUS:
                cells.append((f"detect/{name}", "detect", (name, options)))
    return cells


def run_cell(setup: Setup, kind: str, args: tuple, out: Path, reasons: dict) -> dict:
    """One cell; an attack that does not apply or a defense that cannot be placed gives a "not applicable" cell
    naming why."""
    if kind == "leak":
        name, options, defense = args
        if name not in reasons:
            reasons[name] = applies(setup, name, options)
        if reasons[name]:
            return {"status": "not applicable", "reason": reasons[name]}
    defense = args[-1] if kind in ("leak", "utility") else NONE
    if defense != NONE:
        if defense not in reasons:
            try:
                setup.defended(defense)
                reasons[defense] = ""
            except ValueError as error:
                reasons[defense] = str(error)
        if reasons[defense]:
            return {"status": "defense not applicable", "reason": reasons[defense]}
    try:
        if kind == "leak":
            name, options, defense = args
            return leak_cell(setup, name, options, defense, out / "grids" / f"{slug(name)}__{slug(defense)}.png")
        if kind == "utility":
            return utility_cell(setup, defense)
        reason = "" if args[0] is None else applies(setup, *args)
        if reason:
            return {"status": "not applicable", "model": args[0], "reason": reason}
        return detection_cell(setup, *args)
    except ValueError as error:  # e.g. an inversion attack observing FedAvg deltas
        return {"status": "not applicable", "reason": str(error)}


def run_audit(config: AuditConfig, out: str | Path, *, progress: bool = True) -> dict:
    """Run (or resume) the audit of ``config`` into ``out``; write ``report.json``, ``report.html`` and the PNGs;
    return the report."""
    from fedleak.experiments.audit_report import write_report

    out = Path(out)
    results = ResultsDir(out, {"kind": "audit", **config.to_dict()})
    start = time.perf_counter()
    setup = build_setup(config)
    cells = plan(setup)
    reasons: dict[str, str] = {}
    with tqdm(total=len(cells), desc="audit", disable=not progress) as bar:
        for key, kind, args in cells:
            bar.set_postfix_str(key)
            if key not in results:
                results.add(key, {"kind": kind, **run_cell(setup, kind, args, out, reasons)})
            bar.update(1)
    report = write_report(results, setup, [key for key, _, _ in cells], seconds=time.perf_counter() - start)
    results.close()
    return report

"""The audit's plan: every cell it runs, in order, each keyed by the digest of the inputs
(:func:`fedleak.audit.checks.inputs_digest`), and the cells that do not apply with the reason why.

Whether an attack applies is asked of the attack itself, with the context the audit's round will give it (the
targeted clients, the server's public data = the test split): its ``prepare`` raising ``ValueError`` is the
library's not-applicable signal, and its message is the reason. Two reasons are the audit's own: an attack for
another kind of data (a text attack on an image model), and an inversion preset under FedAvg (the presets invert
FedSGD gradients). A manipulation that changes nothing in the model does not apply either.

Order: the leak cells defense by defense (no defense first, weaker settings before stronger), behind each the
attacks strongest first (:mod:`fedleak.audit.strongest`), so that :mod:`fedleak.audit.early_stop` can leave out what
an earlier cell settled; then the utility cells, then (malicious server) the detection cells.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from fedleak.attacks import ATTACKS, MALICIOUS, PRESETS, AttackContext
from fedleak.attacks.malicious.robbing_the_fed import brightness_prior
from fedleak.audit.config import NONE, AuditConfig, protocol_options
from fedleak.audit.early_stop import run_order
from fedleak.audit.strongest import ranked, strongest_inversion
from fedleak.data.base import DatasetInfo
from fedleak.models.features import classifier_features

# spear: exact batch from a linear+ReLU layer (Dimitrov et al. 2024); dager: exact text from a transformer's
# attention gradients (issue 25)
HONEST_ANALYTIC = ("passive", "spear", "dager")
FEDAVG_INVERSION = "fedavg_inversion"  # Dimitrov et al. 2022: beside the inversions under --protocol fedavg
QUICK_SKIP = "not run in --quick"  # the status of an inversion the quick profile leaves out
MIMICS_DEFENSE = ("cdia",)  # differs from ig only by mimicking a random defense module (paper 001 Algorithm 2)
DATA_KIND = {"decepticons": "text", "text_embedding": "text", "loki": "image", "seer": "image",
             "robbing_the_fed": "image", "curious_kernels": "image", "input_forwarding": "image", "dager": "text"}
GRADIENT_ONLY = ("dager",)  # read one batch's gradient: FedSGD only
NEEDS_SECURE_AGGREGATION = ("model_inconsistency",)


@dataclass
class Cell:
    """One cell: ``kind`` "leak" (attack behind defense), "utility" (a defense's accuracy) or "detect" (the
    client's detectors on a manipulated model, or on the honest one: ``attack`` None); ``reason`` says why it does
    not apply (then it is not run), ``status`` whether the attack or the defense does not."""

    kind: str
    attack: str | None
    defense: str = NONE
    options: dict = field(default_factory=dict)
    digest: str = ""
    reason: str = ""
    status: str = "not applicable"  # or "defense not applicable", or QUICK_SKIP: what ``reason`` is about
    rank: int = -1  # place among the leak questions' attacks behind its defense (0 strongest; -1 unranked)
    why: str = ""  # why it ranks there (fedleak.audit.strongest)

    @property
    def label(self) -> str:
        if self.kind == "leak":
            return f"leak/{self.attack}/{self.defense}"
        if self.kind == "utility":
            return f"utility/{self.defense}"
        return f"detect/{self.attack or 'honest'}"

    @property
    def key(self) -> str:
        return f"{self.label}@{self.digest}"


def manipulation_options(model: nn.Module, info: DatasetInfo, public: torch.Tensor, config: AuditConfig
                         ) -> dict[str, dict]:
    """One setting per manipulation (the first of ``fedleak detect-eval``'s), with what the server holds: the
    public data's brightness prior for the imprint bins and LOKI, a fishing threshold from its features."""
    options: dict[str, dict] = {"trap_weights": {"scale_factor": 0.95}, "curious_kernels": {"scale": 0.5},
                                "class_fishing": {"target_class": 0},
                                "model_inconsistency": {"target": 0, "inner": "trap_weights"}}
    if info.kind == "image":
        mean, std = brightness_prior(public)
        options["robbing_the_fed"] = {"num_bins": 64, "feature_mean": mean, "feature_std": std}
        options["loki"] = {"feature_mean": mean, "feature_std": std}
    if info.kind == "text":
        options["decepticons"] = {"tokens_per_update": config.batch_size * info.input_shape[0]}
        options["text_embedding"] = {"seq_len": info.input_shape[0]}
    try:
        features = classifier_features(model, public)
    except ValueError:  # no output layer the anatomy can name: feature fishing's prepare says why
        return options
    feature = int(features.var(dim=0).argmax())
    options["feature_fishing"] = {"feature": feature, "threshold": float(features[:, feature].quantile(0.5))}
    return options


def attack_names(config: AuditConfig) -> list[str]:
    """The attacks tried: the chosen ones, or honest analytic extraction, the inversion presets and, against a
    malicious server, every manipulation (the quick profile then keeps the strongest preset per defense)."""
    if config.attacks is not None:
        return list(config.attacks)
    inversions = list(PRESETS)
    fedavg = (FEDAVG_INVERSION,) if protocol_options(config.protocol)["algorithm"] == "fedavg" else ()
    return [*HONEST_ANALYTIC, *inversions, *fedavg, *(MALICIOUS if config.threat == "malicious" else ())]


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def attack_reason(name: str, options: dict, model: nn.Module, info: DatasetInfo, public: torch.Tensor,
                  config: AuditConfig) -> str:
    """Why attack ``name`` does not apply to the audited model, data and protocol ("" when it does)."""
    if name in PRESETS and info.kind == "text":
        return f"{name} optimises continuous inputs (images); this text model reads token ids"
    kind = DATA_KIND.get(name)
    if kind is not None and kind != info.kind:
        return f"{_article(kind)} {kind} attack; this is {_article(info.kind)} {info.kind} model"
    if name in GRADIENT_ONLY and protocol_options(config.protocol)["algorithm"] != "fedsgd":
        return (f"{name} reads the span of one batch's gradient (FedSGD); a FedAvg update of several local steps "
                "is not one")
    if name in NEEDS_SECURE_AGGREGATION and not config.secure_aggregation:
        return ("it defeats secure aggregation, which this audit does not assume (--secure-aggregation N); "
                "without it trap_weights alone reads each update")
    context = AttackContext(info.input_shape, info.num_classes, 1, tuple(range(config.clients_per_round)), public,
                            config.seed, config.device)
    try:
        sent, _ = ATTACKS.build(name, **options).prepare(copy.deepcopy(model), context)
    except ValueError as error:  # the library's not-applicable signal, with its reason
        return str(error)
    if name in MALICIOUS:
        models = sent.values() if isinstance(sent, dict) else [sent]
        before = model.state_dict()
        if all(m.state_dict().keys() == before.keys() and all(torch.equal(before[k], v)
                                                               for k, v in m.state_dict().items()) for m in models):
            return "changes nothing in this model"
    return ""


def plan(config: AuditConfig, model: nn.Module, info: DatasetInfo, public: torch.Tensor, digest: str,
         defense_reasons: dict[str, str], random_defenses: set[str],
         mechanisms: dict[str, set[str]] | None = None) -> list[Cell]:
    """Every cell of the audit, in the order it runs; ``defense_reasons``: why each chosen defense cannot be placed
    ("" when it can); ``random_defenses``: those that insert a random module (the only ones CDIA differs from IG
    behind); ``mechanisms``: what each defended model does that an inversion can mimic
    (:func:`fedleak.audit.strongest.mechanisms`). Leak cells go defense by defense (:func:`fedleak.audit.early_stop.
    run_order`), behind each the attacks strongest first (:mod:`fedleak.audit.strongest`; ``rank``); the quick
    profile keeps the strongest inversion preset behind each defense only."""
    defenses = (NONE, *run_order(config.defenses))
    names = attack_names(config)
    settings = manipulation_options(model, info, public, config) if any(n in MALICIOUS for n in names) else {}
    attacks = []
    for name in names:
        options = dict(settings.get(name, {}))
        if name in PRESETS or name == FEDAVG_INVERSION:  # an inversion's seed is the round's (its context)
            options.update({} if config.iterations is None else {"iterations": config.iterations})
        if name == FEDAVG_INVERSION:  # FedAvgInversion takes no seed from its context
            options["seed"] = config.seed
        attacks.append((name, options, attack_reason(name, options, model, info, public, config)))
    cells = []
    if any(n in MIMICS_DEFENSE for n in names) and not any(d in random_defenses for d in defenses):
        for name, options, reason in attacks:
            if name in MIMICS_DEFENSE:
                cells.append(Cell("leak", name, NONE, options, digest, reason or (
                    f"{name} mimics a random defense (dropout, PRECODE, CVB); none is applied, so it would repeat "
                    "ig's numbers")))
    for defense in defenses:
        behind = [(n, o, r) for n, o, r in attacks if n not in MIMICS_DEFENSE or defense in random_defenses]
        ranking = ranked([n for n, _, r in behind if not r], (mechanisms or {}).get(defense, set()))
        place = {r.attack: i for i, r in enumerate(ranking)}
        keep = strongest_inversion(ranking) if config.quick and config.attacks is None else None
        for name, options, reason in sorted(behind, key=lambda a: place.get(a[0], len(place))):
            status = "not applicable" if reason else "defense not applicable"
            reason = reason or defense_reasons.get(defense, "")
            if not reason and keep is not None and name in PRESETS and name != keep.attack:
                reason, status = (f"--quick runs only the strongest inversion behind each defense, {keep.attack} "
                                  f"({keep.why}); run without --quick for every preset"), QUICK_SKIP
            why = ranking[place[name]].why if name in place else ""
            cells.append(Cell("leak", name, defense, options, digest, reason, status, rank=place.get(name, -1),
                              why=why))
    for defense in defenses:
        cells.append(Cell("utility", None, defense, {}, digest, defense_reasons.get(defense, ""),
                          "defense not applicable"))
    if config.threat == "malicious":
        cells.append(Cell("detect", None, NONE, {}, digest))
        cells += [Cell("detect", name, NONE, options, digest, reason) for name, options, reason in attacks
                  if name in MALICIOUS]
    return cells

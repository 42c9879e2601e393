"""Model inconsistency (Pasquini et al., CCS 2022; paper 000 §2, ref. [31]) with trap weights (paper 002,
Algorithm 1) as the inner attack, through Flower's real SecAgg+ (:mod:`fedleak.flower.secagg`).

The target client receives trap weights, every other client a silenced model, so the unmasked aggregate holds only
the target's update, scaled by its share of the examples. SecAgg+ clips and stochastically quantises every
parameter of every client, so the aggregate also carries each client's rounding noise (the silenced clients' bias
of -1 included). The attacker's adaptation keeps the function the target computes and amplifies what it reads: the
trap layer's weights and bias divided by ``k``, the next linear layer's weights multiplied by ``k`` (ReLU is
positively homogeneous, so every output is unchanged), which multiplies the trap layer's update by ``k`` while the
quantisation step stays fixed; ``k`` is the largest for which the attacker's own simulation on public data keeps
the trap layer inside half the clipping range. Exact recall (paper 002 §8.1) of the target's batch, per round.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from fedleak.attacks import ATTACKS
from fedleak.attacks.base import AttackContext
from fedleak.cases import Audit, ThreatModel
from fedleak.cases.scoring import score
from fedleak.data import ClientData, load_dataset
from fedleak.study.config import RunConfig
from fedleak.fl import FederationSpec, FLConfig
from fedleak.fl.client import Client
from fedleak.models import build_model
from fedleak.models.anatomy import trace
from fedleak.report import ResultsDir

CLIPPING_RANGES = (8.0, 1.0)
QUANTIZATION_RANGES = (2**22, 2**16)


@dataclass
class InconsistencySecAggConfig(RunConfig):
    """``num_clients`` clients of ``batch_size`` images each, one local SGD step of ``lr`` (SecAgg+ sums weights,
    so the update is a FedAvg one); client ``target`` gets trap weights (``inner_options``), the rest silenced
    models."""

    federation: FederationSpec = field(default_factory=lambda: FederationSpec(
        model="fcnn", model_options={"widths": (1000, 64)}))
    num_clients: int = 10
    batch_size: int = 64
    lr: float = 0.1
    target: int = 0
    inner_options: dict = field(default_factory=lambda: {"scale_factor": 0.8, "std": 1e-4})

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.federation, dict):
            self.federation = FederationSpec(**self.federation)
        if self.num_clients < 2 or not 0 <= self.target < self.num_clients:
            raise ValueError(f"need >= 2 clients and a target among them, got {self.num_clients} clients, target "
                             f"{self.target}")
        ATTACKS.check_options("trap_weights", self.inner_options)


def secagg_plan() -> list[tuple]:
    """The rounds of the run (:func:`fedleak.flower.secagg.settings_plan` over this module's ranges)."""
    from fedleak.flower.secagg import settings_plan

    return settings_plan(CLIPPING_RANGES, QUANTIZATION_RANGES)


def trap_and_next(model) -> tuple[str, str]:
    """The names of the first two linear layers the model runs: the trap layer and the one reading it."""
    linear = [layer.name for layer in trace(model).executed if layer.kind == "linear"]
    if len(linear) < 2:
        raise ValueError("the amplification needs a linear layer after the trap layer")
    return linear[0], linear[1]


@torch.no_grad()
def amplified(model, factor: float):
    """A copy of ``model`` computing the same function with the trap layer divided by ``factor`` and the next
    linear layer's weights multiplied by it (module docstring)."""
    model = copy.deepcopy(model)
    trap, after = trap_and_next(model)
    layer = model.get_submodule(trap)
    layer.weight.div_(factor)
    if layer.bias is not None:
        layer.bias.div_(factor)
    model.get_submodule(after).weight.mul_(factor)
    return model


class AmplifiedInconsistency:
    """Model inconsistency around trap weights whose target model is :func:`amplified` by ``factors[round - 1]``."""

    name = "model_inconsistency"

    def __init__(self, factors, target: int, inner_options: dict):
        self.factors = list(factors)
        self.attack = ATTACKS.build("model_inconsistency", target=target, inner="trap_weights",
                                    inner_options=inner_options)

    def prepare(self, model, context):
        sent, (secret, own) = self.attack.prepare(model, context)
        factor = self.factors[context.round - 1]
        if factor == 1.0:
            return sent, (secret, own)
        loud = amplified(own, factor)
        return {c: loud if m is own else m for c, m in sent.items()}, (secret, loud)

    def reconstruct(self, observed, secret, knowledge=None, *, device="cpu"):
        return self.attack.reconstruct(observed, secret, knowledge, device=device)


def adapted_factor(model, public, config: InconsistencySecAggConfig, fl: FLConfig, clipping_range: float) -> float:
    """The largest ``k`` (powers of 2) for which the trap layer after the target's local step, simulated by the
    attacker on ``public`` data, stays inside half the clipping range: its weights become ``W / k + k dW``."""
    context = AttackContext(tuple(public.info.input_shape), public.info.num_classes, 1, (0,), None, config.seed,
                            config.device)
    sent, _ = ATTACKS.build("trap_weights", **config.inner_options).prepare(model, context)
    trap, _ = trap_and_next(sent)
    data = public.subset(torch.arange(min(len(public), config.batch_size)))
    before = {k: v.clone() for k, v in sent.state_dict().items()}
    update = Client(0, ClientData(train=data, val=data.subset(torch.arange(0))), fl).handle(sent, 1).tensors
    factor = 1.0
    for _ in range(40):
        k = factor * 2
        reach = max(float((before[f"{trap}.{p}"] / k + k * update[f"{trap}.{p}"]).abs().max())
                    for p in ("weight", "bias"))
        if reach > clipping_range / 2:
            break
        factor = k
    return factor


def reproduce_inconsistency_secagg(config: InconsistencySecAggConfig, out: str | Path, *, plan=None,
                                   cpus: int | None = None) -> dict:
    """Each round of ``plan`` (default :func:`secagg_plan`) through Flower's SecAgg+ with the same clients and
    seed; writes ``results.json`` with the target's exact recall per round (``recall_mean``, ``recall_secagg``,
    ``sweep``)."""
    from fedleak.flower.secagg import client_partitions, run_secagg

    plan = secagg_plan() if plan is None else list(plan)
    results = ResultsDir(out, {"config": asdict(config), "plan": [(label, None if s is None else s.to_dict(), a)
                                                                  for label, s, a in plan]},
                         cells="rounds.jsonl", resume=False)
    spec = config.federation
    train, test = (load_dataset(spec.dataset, root=spec.root, split=split) for split in ("train", "test"))
    parts = client_partitions(len(train), config.num_clients, config.batch_size, config.seed)
    torch.manual_seed(config.seed)
    model = build_model(spec.model, train.info.input_shape, train.info.num_classes, **spec.model_options)
    fl = FLConfig(algorithm="fedavg", num_clients=config.num_clients, rounds=1, seed=config.seed,
                  batch_size=config.batch_size, local_steps=1, optimizer="sgd", lr=config.lr, device=config.device)
    factors = [adapted_factor(model, test, config, fl, s.clipping_range) if adapted else 1.0
               for _, s, adapted in plan]
    threat = ThreatModel(server="malicious", observes="secure_aggregate", protocol="fedavg",
                         rounds=tuple(range(1, len(plan) + 1)))
    audit = Audit(AmplifiedInconsistency(factors, config.target, config.inner_options), threat, seed=config.seed,
                  device=config.device)
    rounds = run_secagg(audit, model, train, parts, fl, [s for _, s, _ in plan], cpus=cpus)
    cells = {}
    for round, ((label, settings, _), factor, seen) in enumerate(zip(plan, factors, rounds), start=1):
        cell = {"round": round, "label": label, "settings": None if settings is None else settings.to_dict(),
                "amplification": factor, "answered": seen.answered, "dropped": seen.dropped}
        if seen.record is None or config.target not in seen.partitions:
            cell.update(recall=0.0, status="no aggregate, or the target did not answer")
        else:  # scored against the target's own batch: the only one the silenced clients let through
            own = parts[seen.partitions[config.target]]
            scores = score(seen.record.reconstruction, train.inputs(own), train.y[own])
            cell.update({k: scores.get(k) for k in ("recall", "leaked", "declared", "near_recall_psnr30", "R")})
        cells[label] = results.add(label, cell)
    recall = {label: cells[label]["recall"] if label in cells else None for label in ("mean", "secagg")}
    summary = {"recall_mean": recall["mean"], "recall_secagg": recall["secagg"],
               "sweep": [c for label, c in cells.items() if label not in ("mean", "secagg")],
               "rounds": list(cells.values()), "config": asdict(config)}
    results.write_json("results.json", summary)
    return summary


def report(summary: dict) -> str:
    """The target's exact recall per aggregation, beside the plain float mean."""
    config = summary["config"]
    lines = [f"Model inconsistency + trap weights through Flower's SecAgg+, {config['num_clients']} clients, target "
             f"{config['target']} (batch {config['batch_size']}, one SGD step); exact recall of the target's batch"]
    for cell in summary["rounds"]:
        lines.append(f"{cell['label']:>22}: recall {cell['recall'] or 0:.3f}  near-exact "
                     f"{cell.get('near_recall_psnr30') or 0:.3f}  amplification x{cell['amplification']:g}  "
                     f"answered {cell['answered']}, dropped {cell['dropped']}")
    return "\n".join(lines) + "\n"

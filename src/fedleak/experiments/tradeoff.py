"""``fedleak detect-eval --tradeoff``: the adaptive attacker's trade-off between leakage and stealth against the
first-contact signatures (paper 000 §6 claims no manipulation is both effective and stealthy; this measures where
that holds for fedleak's own detectors). "The chain" here is :data:`fedleak.detection.SIGNATURES`, every signature
including those demoted from the default chain for their open-world false alarms (``detect-eval --open-world``).

The attacker knows the detectors (:mod:`fedleak.detection.weight_forensics`): they look for rows that are zero,
constant, parallel or mirrored within a margin above round-off. Its stealth knob is *camouflage*: every entry of
every parameter the manipulation changed gets Gaussian noise of ``epsilon`` times the initialiser's scale
``1/sqrt(fan_in)`` of its layer, so the exact structures blur as epsilon grows, and so may the leak. For each
manipulation, on the model it applies to, and each epsilon, one client batch of ``batch_size`` true samples is
sent through the camouflaged model (FedSGD: one gradient), the attack reconstructs from it as before, and the
reconstruction is scored against the true batch (:func:`fedleak.cases.scoring.score`: exact-extraction recall,
and SSIM for images); the chain (and, beside it, the self-audit) checks the same model on the same batch. Class
and feature fishing get a batch with one sample of the fished class or above the fished feature's median (the
attack's favourable case), and their leakage is also whether that one sample is among the exact extractions.
The baseline is the same readout of the benign model's gradient: a benign FC-NN
gives part of its batch away by itself (passive leakage, paper 002 §5.1), so what the manipulation adds is the
leakage above it. Beside the camouflage, the attacks' own knobs of :data:`OPTION_KNOBS` are turned without it. Writes
``tradeoff.json`` and one figure per manipulation and knob: leakage against the knob (filled: refused, hollow:
accepted) and against the chain's evidence.

SEER (:mod:`fedleak.attacks.learned.seer`, its shipped BN checkpoint) runs on the one model it was trained for, the
CNN with batch norm at 1x32x32 (``cnn-bn`` of ``--first-contact``), on ``seer_batches`` held-out client batches of
16 test images (the batch it was trained for): its leakage is the SSIM and PSNR of the decoded image against each
batch's true brightest image (:func:`fedleak.attacks.learned.seer.decoded_quality`), averaged; the chain reads the
client's first 32 of those samples (batch_dominance draws its batches from them). No honest model has SEER's
weights, so the camouflage noise goes on every parameter; SEER's own knob is its share ``a`` of the sent weights,
``theta = (1 - a) theta_honest + a theta_seer`` (:func:`interpolate`, the honest model being the untrained CNN of
the same seed), read with SEER's decoder throughout. Its benign readout is that decoder on the honest model's
gradient (a = 0), drawn beside the no-gradient prior (dashed: the mean brightest image of the server's auxiliary
batches, :func:`fedleak.experiments.seer.prior_ssim`).

Measured (``--quick``, 32-sample batch, seed 0). The chain refuses every uncamouflaged setting and every value of
the attacks' own knobs (they keep exact zeros or mirrored rows). Camouflage at epsilon 0.01 (0.1 for Robbing the
Fed) is accepted everywhere but LOKI (inserted block: always refused) and text embedding (its uniform(0, 1) table:
always refused). What is left when first accepted: Robbing the Fed SSIM 0.70 = the benign readout's 0.69 (recall
0.88 -> 0.03); Decepticons 0 tokens (0.38 uncamouflaged); class fishing no longer isolates its sample (the fished
sample leaks at multipliers >= 30 with no noise, not at epsilon >= 1e-4). Where paper 000's claim fails: input
forwarding and curious kernels on the VGG-CNN keep SSIM 0.66 / 0.69 (as uncamouflaged; exact recall 0.16 -> 0) when
accepted. Trap weights and feature fishing on this FC-NN leak no more than its benign readout (recall 0.28 vs 0.34;
0.25 vs 0.22), camouflaged or not: a 256-input FC-NN gives that much away by itself. Text embedding on the small
IMDB model recovers no token at any epsilon, so its trade-off is not measured.

SEER (8 batches of 16, seed 0; batch_dominance threshold 5): the no-gradient prior is SSIM 0.403; SEER's decoder
reads 0.305 / 12.0 dB out of the honest model (a = 0, below the prior) and 0.426 / 14.5 dB out of SEER's model
(a = 1, batch_dominance 14.8, refused). Camouflage never buys acceptance: refused at every epsilon up to 1.0
(score 7.2 there, where the leak has fallen to 0.288, below the prior). The weight share does: a = 0.1 and 0.2
score 4.08 and 4.76 and are accepted, with SSIM 0.416 and 0.425 (13.8 and 14.3 dB); a = 0.25 scores 5.12
(refused) and every larger share more. So paper 000's claim fails here: at a = 0.2 the chain misses a model that
decodes as well as SEER itself (0.425 vs 0.426). What it leaks is little at this checkpoint's budget either way:
0.02 SSIM above the no-gradient prior. Over seeds 1-8 (``--seed``: other held-out batches, checked samples and
honest model; SEER rows only) a = 1 is refused every time (score 7.9-11.2), a = 0.25 is accepted 6 times in 8 and
a = 0.2 7 times in 8; mean SSIM a = 0 0.235, a = 0.2 0.367, a = 0.25 0.381, a = 1 0.396, prior 0.341 (the prior
and SEER both move by +-0.05 between seeds: 8 batches are few).
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from fedleak.attacks import ATTACKS, AttackContext, Observed
from fedleak.attacks.learned.seer import brightest, decoded_quality
from fedleak.attacks.malicious.robbing_the_fed import brightness_prior
from fedleak.cases.scoring import score
from fedleak.detection import SIGNATURES, build_detector, first_contact_detectors
from fedleak.experiments.detection import classifier_features
from fedleak.experiments.first_contact import FirstContactConfig, model_data
from fedleak.experiments.seer import SeerReproductionConfig, client_batches, prior_ssim
from fedleak.fl.training import batch_gradients
from fedleak.models import build_model
from fedleak.report import ResultsDir
from fedleak.report.plots import save_figure

EPSILONS = (0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
# exact-extraction recall; SSIM for images; tokens for text; for fishing, whether the one fished sample leaked
LEAKAGE = ("recall", "ssim", "token_recall", "fished_sample_leaked")
FISHING = ("class_fishing", "feature_fishing")
# the attacks' own stealth knobs, each turned with no camouflage: the fishing multipliers (Wen et al.'s 1000 down
# to 1) and trap weights drawn at the spread of a benign layer (std 0.5 of paper 002 down to 1/sqrt(3 * 256))
OPTION_KNOBS = {
    "class_fishing": ("bias_multiplier", (1000.0, 300.0, 30.0, 3.0, 1.0)),
    "feature_fishing": ("multiplier", (1000.0, 100.0, 10.0, 1.0)),
    "trap_weights": ("std", (0.5, 0.1, 0.036)),
}
# SEER's own knob: the share a of its trained weights in the sent model (0: the honest model, 1: SEER's)
SEER_MIX = (0.0, 0.1, 0.2, 0.25, 0.5, 0.75, 0.9, 1.0)
SEER_BATCH = 16  # the batch the shipped BN checkpoint was trained for
SEER_CHECKED = 32  # the client's samples the chain reads (as ``--first-contact``: FirstContactConfig.samples)


@dataclass
class TradeoffConfig:
    """The knob's values ``epsilons``, the client's ``batch_size`` and the models' options (as in
    ``--first-contact``)."""

    epsilons: tuple[float, ...] = EPSILONS
    batch_size: int = 32
    model_options: dict | None = None
    seed: int = 0
    seer_mix: tuple[float, ...] = SEER_MIX
    seer_batches: int = 8

    def __post_init__(self):
        self.epsilons = tuple(float(e) for e in self.epsilons)
        if any(not math.isfinite(e) or e < 0 for e in self.epsilons):
            raise ValueError(f"camouflage epsilons must be finite and >= 0, got {self.epsilons}")
        self.seer_mix = tuple(float(a) for a in self.seer_mix)
        if any(not 0 <= a <= 1 for a in self.seer_mix):
            raise ValueError(f"SEER's weight shares seer_mix must lie in [0, 1], got {self.seer_mix}")
        if isinstance(self.seer_batches, bool) or not isinstance(self.seer_batches, int) or self.seer_batches < 1:
            raise ValueError(f"seer_batches must be a positive int, got {self.seer_batches!r}")


def manipulations(public: dict) -> list[tuple[str, str, dict]]:
    """(attack, model, options) per manipulation; ``public`` maps a model to the server's data for the bins."""
    mean, std = brightness_prior(public["fcnn"])
    return [
        ("trap_weights", "fcnn", {}),
        ("robbing_the_fed", "fcnn", {"variant": "reuse", "feature_mean": mean, "feature_std": std}),
        ("class_fishing", "fcnn", {"target_class": 0}),
        ("feature_fishing", "fcnn", {}),
        ("loki", "cnn", {"num_bins": 64}),
        ("model_inconsistency", "fcnn", {"target": 0, "inner": "trap_weights"}),
        ("input_forwarding", "vgg_cnn", {}),
        ("curious_kernels", "vgg_cnn", {}),
        ("decepticons", "text_transformer", {}),
        ("text_embedding", "imdb_fc", {}),
    ]


def camouflage(sent: nn.Module, original: nn.Module, epsilon: float, generator: torch.Generator) -> nn.Module:
    """``sent`` with noise ``epsilon / sqrt(fan_in)`` on every entry of every parameter that differs from
    ``original`` (parameters the manipulation added count as changed); the model itself when epsilon is 0."""
    if epsilon == 0:
        return sent
    before = dict(original.named_parameters())
    with torch.no_grad():
        for name, parameter in sent.named_parameters():
            old = before.get(name)
            if old is not None and old.shape == parameter.shape and torch.equal(old, parameter):
                continue
            owner = sent.get_submodule(name.rsplit(".", 1)[0]) if "." in name else sent
            weight = getattr(owner, "weight", parameter)
            fan_in = max(1, weight[0].numel()) if weight.dim() > 1 else max(1, weight.numel())
            noise = torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
            parameter.add_(noise.to(parameter.device) * epsilon / math.sqrt(fan_in))
    return sent


def client_batch(attack: str, model: nn.Module, options: dict, train, batch_size: int) -> tuple:
    """``batch_size`` training samples; for fishing, one fished sample among samples that are not."""
    x, y = train.inputs(slice(0, 4 * batch_size)), train.y[:4 * batch_size]
    if attack == "class_fishing":
        target = y == options["target_class"]
    elif attack == "feature_fishing":
        feature = classifier_features(model, x)[:, options["feature"]]
        target = feature > options["threshold"]
    else:
        return x[:batch_size], y[:batch_size]
    pick = torch.cat([target.nonzero().flatten()[:1], (~target).nonzero().flatten()[:batch_size - 1]])
    return x[pick], y[pick]


def token_recall(reconstruction, tokens: torch.Tensor) -> float:
    """For token data, the share of the batch's true tokens the attack declares: (position, token) pairs for
    Decepticons (it reads single tokens), else the best declared sequence's share of each sequence's positions."""
    declared = reconstruction.declared_points()
    if len(declared) == 0:
        return 0.0
    if declared.shape[1:] == (2,) and tokens.shape[1] != 2:
        found = {tuple(p) for p in declared.tolist()}
        truth = {(position, int(t)) for row in tokens for position, t in enumerate(row.tolist())}
        return len(truth & found) / len(truth)
    same = (declared[:, None, :] == tokens[None, :, :].to(declared.device)).float().mean(dim=2)
    return float(same.max(dim=0).values.mean())


def leakage(built, secret, sent: nn.Module, batch: tuple) -> dict:
    """The attack's reconstruction from the gradient of ``sent`` on ``batch``, scored against the batch (for
    tokens also :func:`token_recall`)."""
    x, y = batch
    gradients = batch_gradients(sent, x, y)
    observed = Observed({k: v.unsqueeze(0) for k, v in gradients.items()}, "gradient", (0,), (len(y),), (sent,))
    reconstruction = built.reconstruct(observed, secret)
    scores = score(reconstruction, x, y)
    if not x.is_floating_point():
        scores["token_recall"] = token_recall(reconstruction, x)
    return scores


def run_point(attack: str, model: nn.Module, options: dict, batch: tuple, info, epsilon: float,
              seed: int) -> dict:
    """Leakage of the camouflaged manipulation on ``batch`` and the detectors' verdicts on it; with epsilon None
    the baseline: the same readout of the benign model's gradient (passive leakage, paper 002 §5.1)."""
    built = ATTACKS.build(attack, **options)
    context = AttackContext(info.input_shape, info.num_classes, clients=(0, 1), public=None, seed=seed)
    sent, secret = built.prepare(model, context)
    generator = torch.Generator().manual_seed(seed)
    own = sent[0] if isinstance(sent, dict) else sent
    if epsilon is None:
        try:
            scores = leakage(built, secret, model, batch)
        except (KeyError, ValueError) as error:  # the readout needs a layer the benign model lacks
            return {"epsilon": None, "recall": 0.0, "note": f"no benign readout: {error}"}
        if attack in FISHING:
            scores["fished_sample_leaked"] = float(0 in scores.get("leaked_indices", []))
        return {"epsilon": None, **{k: scores.get(k) for k in LEAKAGE}}
    own = camouflage(own, model, epsilon, generator)
    scores = leakage(built, secret, own, batch)
    if attack in FISHING:  # the fished sample is the batch's first (client_batch)
        scores["fished_sample_leaked"] = float(0 in scores.get("leaked_indices", []))
    return {"epsilon": epsilon, **{k: scores.get(k) for k in LEAKAGE}, **chain_verdicts(own, model, batch, seed)}


def chain_verdicts(sent: nn.Module, model: nn.Module, batch: tuple, seed: int) -> dict:
    """Whether the first-contact chain refuses ``sent`` (the client's own model ``model``, its samples ``batch``),
    and every detector's score, with the self-audit's beside them."""
    detectors = first_contact_detectors(SIGNATURES) + [build_detector("self_audit", batch_size=len(batch[1]), seed=seed)]
    verdicts = {v.detector: v for v in (d(sent, model, [batch]) for d in detectors)}
    return {"refused": any(verdicts[n].flagged for n in SIGNATURES),
            "detectors": {n: {"score": v.score, "threshold": v.threshold, "flagged": v.flagged, "layer": v.layer}
                          for n, v in verdicts.items()}}


def prepare_options(attack: str, model: nn.Module, options: dict, info, public: torch.Tensor) -> dict:
    """Options that depend on the model: the fished feature and its median, the text length."""
    options = dict(options)
    if attack == "feature_fishing":
        features = classifier_features(model, public)
        options["feature"] = int(features.var(dim=0).argmax())
        options["threshold"] = float(features[:, options["feature"]].median())
    if attack == "text_embedding":
        options["seq_len"] = info.input_shape[0]
    if attack == "decepticons":
        options["tokens_per_update"] = 32 * info.input_shape[0]
    if attack == "loki":
        options.update(zip(("feature_mean", "feature_std"), brightness_prior(public)))
    return options


def plot(attack: str, model_name: str, points: list[dict], baseline: dict, path: Path, *,
         knob: str = "epsilon", prior: dict | None = None) -> Path:
    """Leakage against epsilon (filled: refused by the chain, hollow: accepted) and against the chain's evidence
    (the largest score above its threshold of any detector); dotted: the same readout of the benign model; dashed:
    ``prior``, what the server has without any gradient."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evidence = [max(0.0, max(p["detectors"][n]["score"] - p["detectors"][n]["threshold"] for n in SIGNATURES))
                for p in points]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    linear = knob == "a"  # SEER's weight share runs from 0 to 1
    xs = [p[knob] if linear else max(p[knob], 1e-5) for p in points]
    for key, colour in (("recall", "tab:red"), ("ssim", "tab:blue"), ("token_recall", "tab:green"),
                        ("fished_sample_leaked", "tab:purple")):
        ys = [p.get(key) for p in points]
        if all(v is None for v in ys):
            continue
        ys = [float("nan") if v is None else v for v in ys]
        left.plot(xs, ys, color=colour, label=key)
        for line, style in ((baseline, ":"), (prior or {}, "--")):
            if line.get(key) is not None:
                for axis in (left, right):
                    axis.axhline(line[key], color=colour, linestyle=style, linewidth=1)
        for x, y, p in zip(xs, ys, points):
            left.scatter([x], [y], color=colour, facecolors=colour if p["refused"] else "none", zorder=3)
        right.scatter(evidence, ys, color=colour, facecolors=[colour if p["refused"] else "none" for p in points],
                      label=key)
    label = "camouflage epsilon (0 drawn at 1e-5)" if knob == "epsilon" else knob
    label = "SEER's weight share a (0: honest model)" if linear else label
    left.set(xscale="linear" if linear else "log", xlabel=label, ylabel="leakage", ylim=(-0.05, 1.05),
             title=f"{attack} on {model_name}")
    title = "filled: refused, dotted: benign" + (", dashed: prior" if prior else " readout")
    right.set(xscale="symlog", xlabel="chain evidence (largest score - threshold; > 0 refuses)",
              ylim=(-0.05, 1.05), title=title)
    right.legend(fontsize=7)
    left.legend(fontsize=7)
    return save_figure(fig, path)


def run_option_knob(attack: str, model_name: str, model: nn.Module, options: dict, batch: tuple, info,
                    baseline: dict, results: ResultsDir, seed: int, out: Path) -> dict:
    """The attack's own knob (:data:`OPTION_KNOBS`) turned with no camouflage: leakage and refusal per value, and
    its figure."""
    knob, values = OPTION_KNOBS[attack]
    points = []
    for value in values:
        key = f"{attack}/{knob}={value:g}"
        if key not in results:
            point = run_point(attack, model, {**options, knob: value}, batch, info, 0.0, seed)
            results.add(key, {"attack": attack, knob: value, **point})
        points.append(results.finished()[key])
    plot(attack, model_name, points, baseline, out / f"tradeoff_{attack}_{knob}.png", knob=knob)
    return {knob: [{knob: p[knob], **{k: p.get(k) for k in LEAKAGE}, "refused": p["refused"]} for p in points],
            "figure": f"tradeoff_{attack}_{knob}.png"}


def interpolate(honest: nn.Module, seer: nn.Module, share: float) -> nn.Module:
    """A copy of ``seer`` holding ``(1 - share) theta_honest + share theta_seer`` in every floating-point entry of
    its state (weights and batch-norm running statistics): SEER's own stealth knob."""
    mixed = copy.deepcopy(seer)
    before = honest.state_dict()
    mixed.load_state_dict({k: torch.lerp(before[k], v, share) if v.is_floating_point() else v
                           for k, v in seer.state_dict().items()})
    return mixed


def seer_setup(seed: int, count: int) -> dict:
    """SEER's trade-off case: the honest CNN with batch norm its shipped checkpoint was trained for (initialised
    with ``seed``), the attack's sent model and secret, ``count`` held-out client batches of :data:`SEER_BATCH`
    test images, the :data:`SEER_CHECKED` samples the chain reads (the first batches) and the no-gradient prior's
    SSIM (:func:`fedleak.experiments.seer.prior_ssim`)."""
    built = ATTACKS.build("seer", checkpoint="bn")
    _, test = model_data(FirstContactConfig(models=("cnn-bn",)), "cnn-bn")
    info = test.info
    torch.manual_seed(seed)
    honest = build_model("cnn", info.input_shape, info.num_classes, norm="batch", padding=2)
    sent, secret = built.prepare(honest, AttackContext(info.input_shape, info.num_classes, seed=seed))
    indices = client_batches(test, count, SEER_BATCH, seed)
    batches = [(test.inputs(b), test.y[b]) for b in indices]
    checked = tuple(torch.cat(part)[:SEER_CHECKED] for part in zip(*batches))
    prior = prior_ssim(SeerReproductionConfig.quick(seed=seed), test, indices)
    return {"built": built, "honest": honest, "sent": sent, "secret": secret, "batches": batches,
            "checked": checked, "prior": {"ssim": prior}}


def seer_point(case: dict, sent: nn.Module, seed: int) -> dict:
    """SEER's decoded image from the FedSGD gradient of ``sent`` on each client batch of ``case`` against that
    batch's true brightest image (mean SSIM and PSNR, :func:`fedleak.attacks.learned.seer.decoded_quality`), and
    the chain's verdicts on ``sent`` with the client's checked samples."""
    decoded, truth = [], []
    for x, y in case["batches"]:
        gradients = batch_gradients(sent, x, y)
        observed = Observed({k: v.unsqueeze(0) for k, v in gradients.items()}, "gradient", (0,), (len(y),), (sent,))
        decoded.append(case["built"].reconstruct(observed, case["secret"]).inputs)
        truth.append(x[brightest(x)].unsqueeze(0))
    quality = decoded_quality(torch.cat(decoded), torch.cat(truth))
    return {"ssim": float(quality["ssim"].mean()), "psnr": float(quality["psnr"].mean()),
            "ssim_per_batch": quality["ssim"].tolist(),
            **chain_verdicts(sent, case["honest"], case["checked"], seed)}


def run_seer(config: TradeoffConfig, results: ResultsDir, out: Path) -> dict:
    """SEER on its CNN with batch norm: camouflage at every epsilon (noise on all parameters: no honest model has
    SEER's weights) and its weight share ``a`` of :attr:`TradeoffConfig.seer_mix`; the benign readout is SEER's
    decoder on the honest model's gradient (a = 0), drawn beside the no-gradient prior. Both figures."""
    case = seer_setup(config.seed, config.seer_batches)
    if "seer/cnn-bn/benign" not in results:
        benign = seer_point(case, case["honest"], config.seed)
        results.add("seer/cnn-bn/benign", {"epsilon": None, "ssim": benign["ssim"], "psnr": benign["psnr"],
                                           "prior": case["prior"]})
    for epsilon in config.epsilons:
        key = f"seer/cnn-bn/eps={epsilon:g}"
        if key not in results:
            generator = torch.Generator().manual_seed(config.seed)
            sent = camouflage(copy.deepcopy(case["sent"]), case["honest"], epsilon, generator)
            results.add(key, {"attack": "seer", "model": "cnn-bn", "epsilon": epsilon,
                              **seer_point(case, sent, config.seed)})
    for share in config.seer_mix:
        key = f"seer/cnn-bn/a={share:g}"
        if key not in results:
            sent = interpolate(case["honest"], case["sent"], share)
            results.add(key, {"attack": "seer", "model": "cnn-bn", "a": share, **seer_point(case, sent, config.seed)})
    done = results.finished()
    baseline = done["seer/cnn-bn/benign"]
    points = [done[f"seer/cnn-bn/eps={e:g}"] for e in config.epsilons]
    mix = [done[f"seer/cnn-bn/a={a:g}"] for a in config.seer_mix]
    plot("seer", "cnn-bn", points, baseline, out / "tradeoff_seer.png", prior=case["prior"])
    plot("seer", "cnn-bn", mix, baseline, out / "tradeoff_seer_a.png", knob="a", prior=case["prior"])
    missed = [p for p in points if not p["refused"]]
    first = min(missed, key=lambda p: p["epsilon"]) if missed else None
    mixed_missed = [p for p in mix if not p["refused"]]
    last = max(mixed_missed, key=lambda p: p["a"]) if mixed_missed else None

    def row(p: dict, knob: str) -> dict:
        return {knob: p[knob], "ssim": p["ssim"], "psnr": p["psnr"], "refused": p["refused"],
                "scores": {n: d["score"] for n, d in p["detectors"].items()}}

    return {"model": "cnn-bn", "benign_readout": {"ssim": baseline["ssim"], "psnr": baseline["psnr"]},
            "prior": case["prior"], "batches": config.seer_batches, "batch_size": SEER_BATCH,
            "points": [row(p, "epsilon") for p in points],
            "smallest_epsilon_accepted": None if first is None else first["epsilon"],
            "leakage_when_first_accepted": None if first is None else {"ssim": first["ssim"], "psnr": first["psnr"]},
            "figure": "tradeoff_seer.png",
            "knobs": {"a": [row(p, "a") for p in mix], "figure": "tradeoff_seer_a.png",
                      "largest_a_accepted": None if last is None else last["a"],
                      "leakage_when_last_accepted": None if last is None else {"ssim": last["ssim"],
                                                                               "psnr": last["psnr"]}}}


def run_tradeoff(config: TradeoffConfig, out: str | Path) -> dict:
    """Every manipulation at every epsilon, then SEER (:func:`run_seer`; resumes finished points); writes
    ``tradeoff.json`` and the figures."""
    out = Path(out)
    results = ResultsDir(out, asdict(config), cells="tradeoff_cells.jsonl")
    done = results.finished()
    options_of = config.model_options or {}
    data, models = {}, {}
    for name in ("fcnn", "cnn", "vgg_cnn", "text_transformer", "imdb_fc"):
        data[name] = model_data(FirstContactConfig(models=(name,)), name)
        torch.manual_seed(config.seed)
        info = data[name][0].info
        models[name] = build_model(name, info.input_shape, info.num_classes, **options_of.get(name, {}))
    public = {name: test.inputs(slice(0, 256)) for name, (_, test) in data.items()}
    summary = {}
    todo = manipulations(public)
    with tqdm(total=len(todo) * len(config.epsilons), desc="tradeoff") as bar:
        for attack, model_name, options in todo:
            train, _ = data[model_name]
            model = models[model_name]
            options = prepare_options(attack, model, options, train.info, public[model_name])
            batch = client_batch(attack, model, options, train, config.batch_size)
            base_key = f"{attack}/{model_name}/benign"
            if base_key not in done:
                results.add(base_key, run_point(attack, model, options, batch, train.info, None, config.seed))
                done = results.finished()
            baseline = done[base_key]
            points = []
            for epsilon in config.epsilons:
                key = f"{attack}/{model_name}/eps={epsilon:g}"
                if key not in done:
                    results.add(key, {"attack": attack, "model": model_name,
                                      **run_point(attack, model, options, batch, train.info, epsilon, config.seed)})
                    done = results.finished()
                points.append(done[key])
                bar.update(1)
            missed = [p for p in points if not p["refused"]]
            stealthiest = min(missed, key=lambda p: p["epsilon"]) if missed else None
            plot(attack, model_name, points, baseline, out / f"tradeoff_{attack}.png")
            summary[attack] = {
                "model": model_name, "benign_readout": {k: baseline.get(k) for k in LEAKAGE},
                "points": [{k: p.get(k) for k in ("epsilon", *LEAKAGE, "refused")}
                           | {"scores": {n: d["score"] for n, d in p["detectors"].items()}} for p in points],
                "smallest_epsilon_accepted": None if stealthiest is None else stealthiest["epsilon"],
                "leakage_when_first_accepted": None if stealthiest is None else
                {k: stealthiest.get(k) for k in LEAKAGE},
                "figure": f"tradeoff_{attack}.png"}
            if attack in OPTION_KNOBS:
                summary[attack]["knobs"] = run_option_knob(attack, model_name, model, options, batch, train.info,
                                                           baseline, results, config.seed, out)
    summary["seer"] = run_seer(config, results, out)
    (out / "tradeoff.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary

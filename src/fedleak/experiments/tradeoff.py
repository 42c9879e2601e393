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
batches, :func:`fedleak.study.seer_case.prior_ssim`).

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
import functools
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from fedleak.attacks import ATTACKS, AttackContext
from fedleak.attacks.camouflage import initialiser_noise as camouflage
from fedleak.attacks.camouflage import interpolate
from fedleak.attacks.learned.seer import brightest, decoded_quality
from fedleak.attacks.malicious.robbing_the_fed import brightness_prior
from fedleak.cases.probe import fedsgd_observed
from fedleak.cases.scoring import score
from fedleak.checks import CheckedConfig, check_number, count_field
from fedleak.detection.chain import SIGNATURES, ChainSettings, build_chain, verdict_rows
from fedleak.metrics.text import token_recall
from fedleak.models import build_model
from fedleak.models.features import classifier_features
from fedleak.report import ResultsDir
from fedleak.report.stealth import stealth_plot
from fedleak.study.manipulated import load_data
from fedleak.study.seer_case import SeerReproductionConfig, client_batches, prior_ssim

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
# the figure (:func:`fedleak.report.stealth.stealth_plot`): leakage of :data:`LEAKAGE`, evidence of :data:`SIGNATURES`
plot = functools.partial(stealth_plot, signatures=SIGNATURES, leakage=LEAKAGE)


@dataclass
class TradeoffConfig(CheckedConfig):
    """The knob's values ``epsilons``, the client's ``batch_size`` and the models' options (as in
    ``--first-contact``)."""

    epsilons: tuple[float, ...] = EPSILONS
    batch_size: int = 32
    model_options: dict | None = None
    seed: int = 0
    seer_mix: tuple[float, ...] = SEER_MIX
    seer_batches: int = count_field(8)

    def __post_init__(self):
        super().__post_init__()
        self.epsilons = tuple(float(check_number("camouflage epsilon", e, low=0)) for e in self.epsilons)
        self.seer_mix = tuple(float(check_number("SEER's weight share (seer_mix)", a, low=0, high=1))
                              for a in self.seer_mix)


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


def leakage(built, secret, sent: nn.Module, batch: tuple) -> dict:
    """The attack's reconstruction from the gradient of ``sent`` on ``batch``, scored against the batch (for
    tokens also :func:`token_recall`)."""
    x, y = batch
    reconstruction = built.reconstruct(fedsgd_observed(sent, x, y), secret)
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
    """Whether the first-contact chain :data:`SIGNATURES` refuses ``sent`` (the client's own model ``model``, its
    samples ``batch``), and every detector's row, with the self-audit's beside them."""
    chain = build_chain((*SIGNATURES, "self_audit"), model, ChainSettings(samples=len(batch[1]), seed=seed),
                        refuse=False)
    rows = verdict_rows(chain.check(sent, batch, remember=False))
    return {"refused": any(rows[n]["flagged"] for n in SIGNATURES), "detectors": rows}


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


def sweep(results: ResultsDir, values, key, measure) -> list[dict]:
    """The cell ``key(value)`` for each of ``values``, measured (``measure(value)``) unless ``results`` holds it."""
    for value in values:
        if key(value) not in results:
            results.add(key(value), measure(value))
    done = results.finished()
    return [done[key(value)] for value in values]


def run_option_knob(attack: str, model_name: str, model: nn.Module, options: dict, batch: tuple, info,
                    baseline: dict, results: ResultsDir, seed: int, out: Path) -> dict:
    """The attack's own knob (:data:`OPTION_KNOBS`) turned with no camouflage: leakage and refusal per value, and
    its figure."""
    knob, values = OPTION_KNOBS[attack]
    points = sweep(results, values, lambda value: f"{attack}/{knob}={value:g}", lambda value: {
        "attack": attack, knob: value, **run_point(attack, model, {**options, knob: value}, batch, info, 0.0, seed)})
    plot(attack, model_name, points, baseline, out / f"tradeoff_{attack}_{knob}.png", knob=knob)
    return {knob: [{knob: p[knob], **{k: p.get(k) for k in LEAKAGE}, "refused": p["refused"]} for p in points],
            "figure": f"tradeoff_{attack}_{knob}.png"}


def seer_setup(seed: int, count: int) -> dict:
    """SEER's trade-off case: the honest CNN with batch norm its shipped checkpoint was trained for (initialised
    with ``seed``), the attack's sent model and secret, ``count`` held-out client batches of :data:`SEER_BATCH`
    test images, the :data:`SEER_CHECKED` samples the chain reads (the first batches) and the no-gradient prior's
    SSIM (:func:`fedleak.study.seer_case.prior_ssim`)."""
    built = ATTACKS.build("seer", checkpoint="bn")
    _, test = load_data("bundled", (32, 32), "cnn-bn")  # as ``--first-contact``: SEER's 1x32x32
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
        decoded.append(case["built"].reconstruct(fedsgd_observed(sent, x, y), case["secret"]).inputs)
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
    baseline = sweep(results, [None], lambda _: "seer/cnn-bn/benign", lambda _: {"epsilon": None, **{
        k: v for k, v in seer_point(case, case["honest"], config.seed).items() if k in ("ssim", "psnr")},
        "prior": case["prior"]})[0]
    points = sweep(results, config.epsilons, lambda epsilon: f"seer/cnn-bn/eps={epsilon:g}", lambda epsilon: {
        "attack": "seer", "model": "cnn-bn", "epsilon": epsilon, **seer_point(case, camouflage(
            copy.deepcopy(case["sent"]), case["honest"], epsilon, torch.Generator().manual_seed(config.seed)),
            config.seed)})
    mix = sweep(results, config.seer_mix, lambda share: f"seer/cnn-bn/a={share:g}", lambda share: {
        "attack": "seer", "model": "cnn-bn", "a": share,
        **seer_point(case, interpolate(case["honest"], case["sent"], share), config.seed)})
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
    options_of = config.model_options or {}
    data, models = {}, {}
    for name in ("fcnn", "cnn", "vgg_cnn", "text_transformer", "imdb_fc"):
        data[name] = load_data("bundled", (16, 16), name)  # as ``--first-contact``
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
            baseline = sweep(results, [None], lambda _: f"{attack}/{model_name}/benign",
                             lambda _: run_point(attack, model, options, batch, train.info, None, config.seed))[0]
            points = sweep(results, config.epsilons, lambda epsilon: f"{attack}/{model_name}/eps={epsilon:g}",
                           lambda epsilon: {"attack": attack, "model": model_name, **run_point(
                               attack, model, options, batch, train.info, epsilon, config.seed)})
            bar.update(len(points))
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

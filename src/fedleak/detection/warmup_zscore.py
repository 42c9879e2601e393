"""The warm-up Z-score detector (Wang & Li §5, Table 1, Fig. 3).

Before local training the client takes ``steps`` (5) SGD steps on ``samples`` (128) random local samples. After
each step it records, for every targeted layer (:mod:`fedleak.detection.monitored`), the mean, the standard deviation
and the largest absolute value of each parameter tensor (first convolution, first and last fully-connected weight
and bias, first and last attention layer) and of the output activations of up to three batch-norm layers. Each new
value is scored against the history of the values before it (step 0 being the received model itself):

    z_t = |s_t - mean(s_0..s_{t-1})| / max(std(s_0..s_{t-1}), ε · scale)

and the model is flagged when any z exceeds the threshold. A benign model drifts smoothly under SGD (a straight
drift scores ≈ 2-3); a manipulated one jumps as soon as the client's task loss pulls it back (Table 1: after
one step the Fishing model's last layer scores orders of magnitude above the benign model).

Deviation from the paper, which leaves the degenerate first step (one history value, zero spread) and the
threshold constant unstated in its text: the spread is floored at ``ε`` (``relative_floor``) times the statistic's
own size in the received model (the std for the mean), so the first step's score is a relative change in units of
ε and does not depend on the model's width or initialisation.
Degenerate statistics get defined floors instead of a division by (almost) zero:
- a size that is zero or rounding noise, below ``RESOLUTION`` (1e-4) of the statistic's largest absolute value in
  the same model (the std of a constant tensor, e.g. a bias initialised to 0.1, computes to about 1e-9 of its
  value), is replaced by the tensor's root-mean-square in the received model; for an all-zero tensor (a
  zero-initialised bias), by the root-mean-square of its layer's parameters, and for a batch-norm output by that
  of the output or, if it is zero, of the input;
- where the received model gives a statistic no size at all (an all-zero layer, such as a zero-initialised
  classifier or an all-zero model) no relative change can be measured: the floor is ε in the statistic's own
  units (the layer is taken to have unit size), so the score is the absolute change divided by ε and stays
  finite. Such series are listed in the verdict's ``details["unscaled"]``.
The default threshold was set from the benign false-alarm runs of ``fedleak detect-eval`` (see
:data:`DEFAULT_THRESHOLD`); :mod:`fedleak.detection.calibration` fits it to a chosen false-alarm rate instead.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn

from fedleak.detection.options import check_detector_options
from fedleak.detection.monitored import Target, find_targets
from fedleak.detection.verdict import Batch, Verdict, gather_samples, working_copy
from fedleak.fl.training import task_loss

STATISTICS = ("mean", "std", "max")
# Above every benign score of our runs (detect-eval --quick, 380 client-rounds: <= 12 on the FC-NN, VGG-CNN and
# transformer, <= 76 on the CNN with non-IID clients, ~70 on ResNet-18's batch-norm activation maxima in Table 1);
# the paper's constant is not in its text.
DEFAULT_THRESHOLD = 100.0
DEFAULT_RELATIVE_FLOOR = 1e-3
DEFAULT_ROUND_FLOOR = 0.05  # a federated round may move a statistic by a few percent of its size
RESOLUTION = 1e-4  # a size below this fraction of the largest |value| is rounding noise (docstring)
MIN_REMEMBERED = 2  # rounds remembered before the received model is scored against them (a spread needs two)


@dataclass
class WarmupProfile:
    """The statistics recorded in the warm-up: ``values[t, k, s]`` is statistic ``STATISTICS[s]`` of series
    ``series[k]`` after ``t`` SGD steps (t = 0 is the received model); ``scale[k]`` the root-mean-square of the
    tensor (of its layer, if the tensor is all zero) in the received model."""

    series: list[str]
    values: torch.Tensor
    scale: torch.Tensor
    targets: list[Target]


def _statistics(tensor: torch.Tensor) -> torch.Tensor:
    tensor = tensor.detach().float()
    return torch.stack([tensor.mean(), tensor.std(correction=0), tensor.abs().max()])


def _rms(tensors: list[torch.Tensor]) -> torch.Tensor:
    squares = sum(t.detach().float().pow(2).sum() for t in tensors)
    return (squares / sum(t.numel() for t in tensors)).sqrt()


def warmup_profile(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int = 5, lr: float = 0.01,
                   max_batchnorms: int = 3) -> WarmupProfile:
    """Run the warm-up (§5.1) on ``model`` in place — pass a copy — and record the statistics of §5.2."""
    if steps < 1:
        raise ValueError(f"the warm-up needs at least one SGD step, got steps={steps}")
    targets = find_targets(model, x[:2], max_batchnorms=max_batchnorms)
    if not targets:
        raise ValueError(f"found no layer to monitor in {type(model).__name__}: it has no convolution, "
                         f"fully-connected, batch-norm or attention layer")
    series, tensors, scales = [], [], []
    activations: dict[str, list[torch.Tensor]] = {}
    activation_scale: dict[str, torch.Tensor] = {}
    handles = []
    for target in targets:
        module = model.get_submodule(target.module)
        if target.kind == "activation":
            activations[target.label] = []
            handles.append(module.register_forward_hook(_activation_hook(target.label, activations, activation_scale)))
            continue
        params = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        module_scale = _rms([p for _, p in params])
        for name, param in params:
            series.append(f"{target.label}_{name}")
            tensors.append(param)
            own_scale = _rms([param])
            scales.append(torch.where(own_scale > 0, own_scale, module_scale))
    param_values = []
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)
    try:
        for step in range(steps + 1):
            param_values.append(torch.stack([_statistics(t) for t in tensors]) if tensors else None)
            if step == steps:
                with torch.no_grad():
                    model(x)  # the activations after the last update
                break
            optimizer.zero_grad(set_to_none=True)
            task_loss(model, model(x), y).backward()
            optimizer.step()
    finally:
        for handle in handles:
            handle.remove()
    per_step = []
    for step in range(steps + 1):
        rows = ([param_values[step]] if tensors else []) + [
            activations[label][step][None] for label in activations]
        per_step.append(torch.cat(rows))
    series += [f"{label}_activation" for label in activations]
    scales += [activation_scale[label] for label in activations]
    return WarmupProfile(series, torch.stack(per_step), torch.stack(scales), targets)


def _activation_hook(label: str, activations: dict, scale: dict):
    def hook(module, inputs, output):
        if label not in scale:
            own = _rms([output])
            scale[label] = torch.where(own > 0, own, _rms([inputs[0]]))
        activations[label].append(_statistics(output))
    return hook


def score_against(history: torch.Tensor, value: torch.Tensor, floor: torch.Tensor) -> torch.Tensor:
    """|value - mean(history)| / max(std(history), floor), elementwise; ``history`` has a leading time axis and
    ``floor`` broadcasts against ``value``."""
    spread = torch.maximum(history.std(dim=0, correction=0), floor)
    return (value - history.mean(dim=0)).abs() / spread


def zscores(profile: WarmupProfile, *, relative_floor: float = DEFAULT_RELATIVE_FLOOR) -> torch.Tensor:
    """``z[t-1, k, s]``: value after step t scored against steps 0..t-1 (module docstring), shape
    (steps, series, statistics)."""
    values = profile.values
    floor = _floor(profile, relative_floor)
    return torch.stack([score_against(values[:t], values[t], floor) for t in range(1, len(values))])


def _floor(profile: WarmupProfile, relative_floor: float, reference: torch.Tensor | None = None) -> torch.Tensor:
    """ε times each statistic's size in ``reference`` (default: the received model; the spread for the mean), or
    the layer's scale where that size is zero; shape (series, statistics)."""
    first = (profile.values[0] if reference is None else reference).abs()
    size = torch.cat([first[:, 1:2], first[:, 1:]], dim=1)
    noise = RESOLUTION * first[:, 2:3]  # rounding noise relative to the reference's own largest |value|
    tiny = torch.finfo(profile.values.dtype).tiny
    floor = relative_floor * torch.where(size > noise, size, profile.scale[:, None])
    return torch.where(floor >= tiny, floor, relative_floor)  # no size at all: unit size (module docstring)


def unscaled_series(profile: WarmupProfile, relative_floor: float) -> list[str]:
    """The series whose layer has no size in the received model (scored in absolute units, module docstring)."""
    tiny = torch.finfo(profile.values.dtype).tiny
    return [name for name, small in zip(profile.series, (relative_floor * profile.scale < tiny).tolist()) if small]


class WarmupZScore:
    """Detector: warm up a copy of the received model and flag it if any Z-score exceeds ``threshold`` (§5).

    The verdict names the series (layer and parameter) and statistic with the largest score and, in ``details``,
    the step it occurred at and every score (``zscores[step][series][statistic]``).

    ``remember_rounds`` > 0 is an extension beyond the paper: the detector also keeps the statistics of the last
    ``remember_rounds`` models it accepted (one instance per client) and scores the received model's statistics
    (step 0) against them with the same Z-score, reported as step 0, once it remembers at least two. A round of
    federated training moves the statistics far more than one SGD step, and not steadily, so their spread is
    floored at ``round_floor`` (5%) of each statistic's size in the last accepted model: only a change of about
    ``threshold x round_floor`` times that size is flagged (5x at the defaults). This catches manipulations that are static under SGD,
    such as trap weights, which the within-warm-up history cannot see, once the client has accepted a few benign
    rounds. Refused models are not remembered. That memory is :meth:`state_dict`.
    """

    def __init__(self, *, steps: int = 5, samples: int = 128, lr: float = 0.01,
                 threshold: float = DEFAULT_THRESHOLD, relative_floor: float = DEFAULT_RELATIVE_FLOOR,
                 max_batchnorms: int = 3, remember_rounds: int = 0, round_floor: float = DEFAULT_ROUND_FLOOR,
                 seed: int = 0):
        check_detector_options("detector 'warmup_zscore'", {
            "steps": steps, "samples": samples, "lr": lr, "threshold": threshold, "relative_floor": relative_floor,
            "max_batchnorms": max_batchnorms, "remember_rounds": remember_rounds, "round_floor": round_floor,
            "seed": seed})
        self.steps, self.samples, self.lr, self.threshold = steps, samples, lr, threshold
        self.relative_floor, self.max_batchnorms, self.seed = relative_floor, max_batchnorms, seed
        self.remember_rounds, self.round_floor = remember_rounds, round_floor
        self.rounds: list[torch.Tensor] = []
        self.series: list[str] | None = None

    def state_dict(self) -> dict:
        """The remembered rounds as one tensor ``(rounds, series, statistics)`` and the series they describe."""
        rounds = torch.stack(self.rounds) if self.rounds else torch.zeros(0)
        return {"rounds": rounds, "series": list(self.series or [])}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""
        rounds, series = (state.get("rounds"), state.get("series")) if isinstance(state, dict) else (None, None)
        if not isinstance(rounds, torch.Tensor) or not isinstance(series, list) or not all(
                isinstance(name, str) for name in series):
            raise ValueError("a WarmupZScore state needs 'rounds' (a tensor) and 'series' (a list of names)")
        if rounds.numel() and tuple(rounds.shape[1:]) != (len(series), len(STATISTICS)):
            raise ValueError(f"WarmupZScore state: remembered rounds of shape {tuple(rounds.shape)} do not match "
                             f"{len(series)} series x {len(STATISTICS)} statistics")
        self.rounds = list(rounds.float().unbind(0)) if rounds.numel() else []
        self.series = list(series) or None

    def __call__(self, received_model: nn.Module, local_model: nn.Module | None = None,
                 batches: Sequence[Batch] = (), *, device: str | torch.device = "cpu") -> Verdict:
        start = time.perf_counter()
        model = working_copy(received_model, device)
        generator = torch.Generator().manual_seed(self.seed)
        x, y = gather_samples(batches, self.samples, generator=generator, device=device)
        profile = warmup_profile(model, x, y, steps=self.steps, lr=self.lr, max_batchnorms=self.max_batchnorms)
        scores = zscores(profile, relative_floor=self.relative_floor)
        if profile.series != self.series:
            self.rounds, self.series = [], profile.series
        memory = [r.to(scores.device) for r in self.rounds]
        if len(memory) >= MIN_REMEMBERED:  # step 0: the received model against the models of earlier rounds
            floor = _floor(profile, self.round_floor, reference=memory[-1])  # sizes of the last accepted model
            first = score_against(torch.stack(memory), profile.values[0], floor)
            scores = torch.cat([first[None], scores])
        finite = torch.nan_to_num(scores, nan=torch.inf)
        flat = int(finite.argmax())
        step, index, stat = flat // (scores.shape[1] * 3), (flat // 3) % scores.shape[1], flat % 3
        score = float(finite.flatten()[flat])
        flagged = score > self.threshold
        if self.remember_rounds and not flagged:
            self.rounds = (self.rounds + [profile.values[0].detach()])[-self.remember_rounds:]
        first_step = 0 if len(memory) >= MIN_REMEMBERED else 1
        return Verdict(flagged, "warmup_zscore", profile.series[index], STATISTICS[stat], score, self.threshold,
                       time.perf_counter() - start,
                       {"step": step + first_step, "first_step": first_step, "series": profile.series,
                        "statistics": list(STATISTICS), "zscores": scores.tolist(), "samples": len(x),
                        "steps": self.steps, "rounds_remembered": len(memory),
                        "unscaled": unscaled_series(profile, self.relative_floor),
                        "paper": paper_mode(scores[1:] if first_step == 0 else scores, profile.series,
                                            self.threshold)})


def paper_mode(within: torch.Tensor, series: list[str], threshold: float) -> dict:
    """The verdict of the paper's detector (§5: warm-up steps 1.. scored against earlier steps only, no remembered
    round) from the warm-up scores ``within`` ``(steps, series, statistics)``: flagged, score, layer, statistic,
    step."""
    flat = int(torch.nan_to_num(within, nan=torch.inf).argmax())
    score = float(within.flatten()[flat])
    return {"flagged": score > threshold, "score": score, "layer": series[(flat // 3) % within.shape[1]],
            "statistic": STATISTICS[flat % 3], "step": flat // (3 * within.shape[1]) + 1}

"""The SEER server's training (Garov et al., ICLR 2024, §4 "Training"; paper 000 §3.3): the shared model, the
disaggregator and the reconstructor trained end to end on auxiliary data, through the batch gradient (a second
derivative), to minimise ``|| R(D(P grad L(f(x), y) / ||.||)) - x_p ||^2`` with ``x_p`` the brightest image of the
batch (:mod:`fedleak.attacks.learned.seer`). Adam on all three, one fresh batch of the auxiliary data per step.

Resumable and regenerable: every ``checkpoint_every`` steps the models and Adam's moments go to
``seer-<name>.partial.safetensors``; a rerun continues from there; the batch of step ``t`` depends only on the seed
and ``t``; training runs on one CPU thread, so the final ``seer-<name>.safetensors`` is the same byte for byte for
the same config, whether or not the run was interrupted (tests/attacks/test_seer.py checks this on a tiny profile).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import trange

from fedleak import seeds
from fedleak.attacks.learned.seer import (SeerProfile, brightest, build_parts, gradient_subset, parameter_names,
                                          random_subset, save_checkpoint)
from fedleak.data import load_dataset
from fedleak.fl.training import task_loss


@dataclass
class SeerTrainingConfig:
    """One SEER training: checkpoint ``name``; the shared ``model`` and its options; auxiliary data (``dataset``'s
    train split at ``image_size``); ``batch_size`` B; ``subset_size`` gradient entries (of the parameters under
    ``subset_layer``, default all) read by a disaggregator of ``code_size`` outputs; ``steps`` Adam steps of rate
    ``lr``; ``seed``; ``device``."""

    name: str = "bn"
    model: str = "cnn"
    model_options: dict = field(default_factory=lambda: {"norm": "batch", "padding": 2})
    dataset: str = "bundled"
    root: str | None = None
    image_size: int = 32
    batch_size: int = 16
    subset_size: int = 10240
    subset_layer: str | None = "classifier.weight"
    code_size: int = 64
    steps: int = 4000
    lr: float = 1e-3
    checkpoint_every: int = 100
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        for name in ("image_size", "batch_size", "subset_size", "code_size", "steps", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SEER training {name} must be a positive int, got {value!r}")
        if self.batch_size < 2:
            raise ValueError("SEER selects the brightest image of a batch; batch_size must be >= 2")
        if not self.lr > 0:
            raise ValueError(f"SEER training lr must be positive, got {self.lr}")


def seer_loss(model, decoder, names: list[str], subset: torch.Tensor, x: torch.Tensor, y: torch.Tensor
              ) -> torch.Tensor:
    """The SEER objective of one batch: mean squared error of the image decoded from the batch gradient's subset
    against the batch's brightest image (kept differentiable in the model through ``create_graph``)."""
    named = dict(model.named_parameters())
    params = [named[n] for n in names]
    grads = torch.autograd.grad(task_loss(model, model(x), y), params, create_graph=True)
    decoded = decoder(gradient_subset(dict(zip(names, grads)), names, subset).unsqueeze(0))
    return F.mse_loss(decoded[0], x[brightest(x)])


def _record(config: SeerTrainingConfig, step: int) -> dict:
    return {"training": asdict(config), "step": step, "torch": torch.__version__}


def _save_partial(path: Path, model, decoder, optimizer, subset, step: int, config: SeerTrainingConfig) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors |= {f"decoder.{k}": v.detach().cpu().contiguous() for k, v in decoder.state_dict().items()}
    for index, state in optimizer.state_dict()["state"].items():
        tensors |= {f"adam.{index}.{k}": v.detach().cpu().contiguous() for k, v in state.items()}
    tensors["subset"] = subset.cpu().contiguous()
    temporary = path.with_name(path.name + ".tmp")
    save_file(tensors, str(temporary), metadata={"record": json.dumps(_record(config, step), sort_keys=True)})
    temporary.replace(path)


def _load_partial(path: Path, model, decoder, optimizer, config: SeerTrainingConfig, device) -> int | None:
    """The step a partial run of the same config reached (its state loaded), else ``None``."""
    if not path.is_file():
        return None
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        record = json.loads(handle.metadata()["record"])
    if record["training"] != json.loads(json.dumps(asdict(config))):
        return None
    tensors = load_file(str(path), device=str(device))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    decoder.load_state_dict({k[8:]: v for k, v in tensors.items() if k.startswith("decoder.")})
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("adam."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})
    return record["step"]


def train_seer(config: SeerTrainingConfig, out: str | Path, *, progress: bool = True) -> Path:
    """Train (or resume, or skip when finished) the SEER attack of ``config``; returns the checkpoint's path,
    ``out/seer-<name>.safetensors``, with its JSON record beside it (module docstring)."""
    out = Path(out)
    final = out / f"seer-{config.name}.safetensors"
    if final.is_file() and final.with_suffix(".json").is_file():
        record = json.loads(final.with_suffix(".json").read_text())
        if record.get("training") == json.loads(json.dumps(asdict(config))) and record.get("step") == config.steps:
            return final
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the same floating-point order on every run (byte-for-byte checkpoints)
    try:
        aux = load_dataset(config.dataset, root=config.root, split="train", size=config.image_size)
        inputs, labels = aux.inputs(slice(None)).to(config.device), aux.y.to(config.device)
        profile = SeerProfile(config.model, dict(config.model_options), tuple(aux.info.input_shape),
                              aux.info.num_classes, config.subset_size, config.code_size)
        if len(inputs) < config.batch_size:
            raise ValueError(f"{config.dataset} holds {len(inputs)} training images, fewer than a batch of "
                             f"{config.batch_size}")
        torch.manual_seed(config.seed)
        model, decoder = build_parts(profile, config.device)
        subset = random_subset(model, config.subset_size, config.seed, config.subset_layer)
        names = parameter_names(model)
        optimizer = torch.optim.Adam([*model.parameters(), *decoder.parameters()], lr=config.lr)
        partial = out / f"seer-{config.name}.partial.safetensors"
        out.mkdir(parents=True, exist_ok=True)
        start = _load_partial(partial, model, decoder, optimizer, config, config.device) or 0
        model.train()
        bar = trange(start, config.steps, desc=f"SEER {config.name}", disable=not progress, initial=start,
                     total=config.steps)
        for step in bar:
            order = torch.randperm(len(inputs), generator=seeds.generator(config.seed, 0, step))
            batch = order[:config.batch_size].to(config.device)
            loss = seer_loss(model, decoder, names, subset, inputs[batch], labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
                bar.set_postfix(mse=f"{loss.item():.4f}")
                _save_partial(partial, model, decoder, optimizer, subset, step + 1, config)
        save_checkpoint(final, profile, model, decoder, subset, _record(config, config.steps))
        partial.unlink(missing_ok=True)
        return final
    finally:
        torch.set_num_threads(threads)

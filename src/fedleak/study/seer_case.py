"""The SEER case the reproductions share (Garov et al., ICLR 2024; paper 000 §4): the experiment's config, its
checkpoints (shipped or trained), held-out client batches, the attack against one client per batch, and the
no-gradient prior (what a server gets without any gradient: the mean brightest image of its auxiliary batches)."""
from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from fedleak import seeds
from fedleak.attacks.base import AttackContext
from fedleak.attacks.learned.seer import CHECKPOINTS, SeerAttack, brightest, decoded_quality
from fedleak.attacks.learned.seer_training import SeerTrainingConfig, train_seer
from fedleak.cases.probe import observed_update
from fedleak.checks import count_field
from fedleak.data import load_dataset
from fedleak.data.partition import ClientData
from fedleak.fl import FLConfig
from fedleak.fl.client import Client
from fedleak.models import build_model
from fedleak.study.config import RunConfig

NORM_TAGS = {"bn": "batch", "gn": "group", "ln": "layer"}
CLEAR = 0.05  # an SSIM gap this large counts as a clear difference in the closing note (set before measuring)


@dataclass
class SeerReproductionConfig(RunConfig):
    """The SEER experiment: training (``training``, the BN profile; GN and LN differ only in the norm), held-out
    evaluation on ``eval_batches`` client batches, FedAvg with ``fedavg_epochs`` local epochs of ``fedavg_batch``
    images at SGD rate ``fedavg_lr``; ``shipped``: load the checkpoints shipped with fedleak when their training
    config equals this one (else train under ``out/checkpoints``)."""

    dataset: str = "bundled"
    root: str | None = None
    training: SeerTrainingConfig = field(default_factory=SeerTrainingConfig)
    eval_batches: int = count_field(50)
    fedavg_epochs: int = count_field(1)
    fedavg_batch: int = count_field(4)
    fedavg_lr: float = 0.01
    shipped: bool = False

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.training, dict):
            self.training = SeerTrainingConfig(**self.training)
        self.training = replace(self.training, dataset=self.dataset, root=self.root, seed=self.seed,
                                device=self.device)

    @classmethod
    def quick(cls, **overrides) -> SeerReproductionConfig:
        """The shipped checkpoints (no training), 30 held-out batches."""
        return cls(**{"shipped": True, "eval_batches": 30, **training_overrides(overrides)})

    @classmethod
    def paper(cls, **overrides) -> SeerReproductionConfig:
        """Towards the paper's scale (for a GPU; not run on this project's CPUs): a full-width ResNet-18, batch 64,
        50,000 steps, 20,000 gradient entries drawn from all parameters into a 512-d code."""
        picked = {"batch_size": 64, "steps": 50_000,
                  **{k: overrides.pop(k) for k in ("batch_size", "steps") if k in overrides}}
        training = SeerTrainingConfig(model="resnet18", model_options={"norm": "batch", "width": 64},
                                      subset_layer=None, subset_size=20_000, code_size=512, checkpoint_every=1000,
                                      **picked)
        return cls(**overrides, training=training)

    @classmethod
    def with_training(cls, **overrides) -> SeerReproductionConfig:
        """The default profile with the training options ``steps`` and ``batch_size`` among ``overrides``."""
        return cls(**training_overrides(overrides))

    def trained(self, tag: str) -> SeerTrainingConfig:
        """The training config of the ``tag`` (bn, gn, ln) attack."""
        options = {**self.training.model_options, "norm": NORM_TAGS[tag]}
        return replace(self.training, name=tag, model_options=options)


def training_overrides(overrides: dict) -> dict:
    """``overrides`` with ``steps`` and ``batch_size`` moved into a ``training`` config."""
    overrides = dict(overrides)
    picked = {k: overrides.pop(k) for k in ("steps", "batch_size") if k in overrides}
    if "training" in overrides:
        if picked:
            raise ValueError("pass either training= or steps/batch_size, not both")
        return overrides
    return {**overrides, "training": SeerTrainingConfig(**picked)}


def checkpoint(config: SeerReproductionConfig, tag: str, out: Path, *, progress: bool = True) -> tuple[Path, str]:
    """The ``tag`` attack's checkpoint and where it came from ("shipped" or "trained")."""
    wanted = config.trained(tag)
    if config.shipped:
        shipped = CHECKPOINTS / f"seer-{tag}.safetensors"
        if shipped.is_file():
            record = json.loads(shipped.with_suffix(".json").read_text())
            if record["training"] == json.loads(json.dumps(asdict(wanted))):
                return shipped, "shipped"
    return train_seer(wanted, out / "checkpoints", progress=progress), "trained"


def client_batches(test, count: int, batch_size: int, seed: int) -> list[torch.Tensor]:
    """``count`` disjoint-as-possible held-out batches (indices into ``test``), drawn with ``seed``."""
    order = torch.randperm(len(test), generator=seeds.generator(seed, stream=seeds.DETECTION))
    per_pass = len(test) // batch_size
    return [order[(i % per_pass) * batch_size:(i % per_pass + 1) * batch_size] if i < per_pass else
            torch.randperm(len(test), generator=seeds.generator(seed, round=i))[:batch_size] for i in range(count)]


def attack_batches(path: Path, test, batches: list[torch.Tensor], fl: FLConfig, *, device: str = "cpu",
                   progress: bool = True, desc: str = "", model=None) -> dict:
    """SEER from ``path`` against one client per batch (each holding that batch, training by ``fl``): the decoded
    image and the SSIM/PSNR against the batch's brightest image. ``model``: the global model the server sends
    instead of the checkpoint's (e.g. after honest rounds), read with the checkpoint's decoder."""
    attack = SeerAttack(str(path))
    shape = tuple(test.info.input_shape)
    sent, secret = attack.prepare(attack_model(path, shape, test.info.num_classes, device),
                                  AttackContext(shape, test.info.num_classes, seed=fl.seed, device=device))
    sent = sent if model is None else model
    decoded, truth = [], []
    for index, batch in enumerate(tqdm(batches, desc=desc, disable=not progress)):
        data = test.subset(batch)
        client = Client(index, ClientData(data, test.subset(batch[:0])), fl)
        update = client.handle(copy.deepcopy(sent), round=1)
        observed = observed_update(update, index, sent)
        decoded.append(attack.reconstruct(observed, secret, device=device).inputs)
        images = data.inputs(slice(None))
        truth.append(images[brightest(images)].unsqueeze(0).to(device))
    decoded, truth = torch.cat(decoded), torch.cat(truth)
    quality = decoded_quality(decoded, truth)
    return {"decoded": decoded, "truth": truth, "ssim": quality["ssim"], "psnr": quality["psnr"]}


def attack_model(path: Path, shape, num_classes: int, device: str):
    """The architecture the checkpoint at ``path`` was trained for (the server's global model)."""
    profile = json.loads(Path(path).with_suffix(".json").read_text())["profile"]
    return build_model(profile["model"], shape, num_classes, device=device, **profile["model_options"])


def prior_ssim(config: SeerReproductionConfig, test, batches: list[torch.Tensor]) -> float:
    """SSIM of the server's guess without a gradient (its auxiliary batches' mean brightest image) against the
    held-out brightest images."""
    aux = load_dataset(config.dataset, root=config.root, split="train", size=config.training.image_size)
    inputs = aux.inputs(slice(None))
    guesses = []
    for step in range(200):
        draw = torch.randperm(len(inputs), generator=seeds.generator(config.seed, 1, step))
        order = draw[:config.training.batch_size]
        guesses.append(inputs[order][brightest(inputs[order])])
    guess = torch.stack(guesses).mean(dim=0, keepdim=True)
    truth = torch.stack([test.inputs(b)[brightest(test.inputs(b))] for b in batches])
    return float(decoded_quality(guess.expand_as(truth), truth)["ssim"].mean())

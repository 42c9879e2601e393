"""SEER (Garov et al., ICLR 2024; paper 000 §3.3 and §4, ref. [14]): a learned attack that reads one
property-selected image, the brightest of the batch, out of a batch gradient, even of a large batch or of a secure
aggregate.

The server trains three things together on auxiliary data (:mod:`fedleak.attacks.learned.seer_training`): the
shared model ``f`` it will send, a secret linear *disaggregator* ``D`` and a *reconstructor* (decoder) ``R``, so
that for a batch ``x`` with labels ``y``

    R(D(g / ||g||)) ~ x_p,   g = P grad_theta L(f(x), y),   p = argmax_i mean(x_i)

(SEER's training objective as paper 000 §4.1.3 writes it, with the brightness property of §4.1), where ``P``
keeps a fixed random subset of the gradient's entries, of all parameters or of one layer's (the shipped profiles
read the whole output-layer weight gradient). Only the batch statistics of batch norm let
``f`` single out the brightest image of a batch (each sample is normalised by statistics of the others); with
group or layer norm every sample is normalised on its own (paper 000 §4.1.1). Dividing by ``||g||`` makes the
readout blind to the update's scale, so a FedAvg delta (``-lr`` times a gradient for one local step) or a
weighted mean of several clients' updates reads the same way; a FedAvg delta enters with its sign flipped.

A trained attack is a checkpoint: ``<name>.safetensors`` (the model's state ``model.*``, the decoder's
``decoder.*`` and the gradient ``subset``) and ``<name>.json`` beside it (the :class:`SeerProfile` and training
config, seed included). The small profiles shipped with fedleak (``bn``, ``gn``, ``ln``: the project's CNN with
batch, group or layer norm after each convolution, 32x32 Fashion-MNIST, batch 16, the disaggregator reading the
output layer's weight gradient; 4,000 Adam steps each) live in ``checkpoints/`` beside this module; ``fedleak
reproduce seer --out DIR`` regenerates them, byte for byte, in ``DIR/checkpoints``.
"""
from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from fedleak.attacks.base import AttackContext, Observed, Reconstruction
from fedleak.models import build_model

CHECKPOINTS = Path(__file__).with_name("checkpoints")
SHIPPED = ("bn", "gn", "ln")  # the shipped small profiles, one per norm
TINY = 1e-12  # floor of a gradient norm (an all-zero update decodes as zero code)


@dataclass(frozen=True)
class SeerProfile:
    """The architecture of a SEER attack: the shared ``model`` (registry name and options) for inputs of
    ``input_shape`` with ``num_classes``, the number of gradient entries ``subset_size`` the disaggregator reads and
    its output size ``code_size``."""

    model: str
    model_options: dict
    input_shape: tuple[int, ...]
    num_classes: int
    subset_size: int
    code_size: int

    def __post_init__(self):
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
        if len(self.input_shape) != 3 or min(self.input_shape[1:]) % 4:
            raise ValueError(f"SEER decodes images (C, H, W) with H and W multiples of 4; got {self.input_shape}")
        for name in ("num_classes", "subset_size", "code_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SEER {name} must be a positive int, got {value!r}")


class SeerDecoder(nn.Module):
    """The secret part of SEER: the linear disaggregator ``D`` (subset of the gradient -> code) and the
    reconstructor ``R`` (code -> image in [0, 1]: one linear layer to a quarter-size map, two transposed
    convolutions)."""

    def __init__(self, subset_size: int, code_size: int, image_shape: tuple[int, ...]):
        super().__init__()
        channels, height, width = image_shape
        self.image_shape = tuple(image_shape)
        self.disaggregator = nn.Linear(subset_size, code_size)
        self.reconstructor = nn.Sequential(
            nn.Linear(code_size, 32 * (height // 4) * (width // 4)), nn.ReLU(),
            nn.Unflatten(1, (32, height // 4, width // 4)),
            nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(16, channels, 4, stride=2, padding=1), nn.Sigmoid())

    def forward(self, gradient: torch.Tensor) -> torch.Tensor:
        """Images (V, C, H, W) decoded from gradient subsets (V, subset_size), each scaled to unit norm."""
        unit = gradient / gradient.norm(dim=1, keepdim=True).clamp_min(TINY)
        return self.reconstructor(self.disaggregator(unit))


def brightest(x: torch.Tensor) -> torch.Tensor:
    """SEER's property: the index of the brightest image (highest mean pixel) of the batch ``x`` (B, C, H, W)."""
    return x.flatten(1).mean(dim=1).argmax()


def parameter_names(model: nn.Module) -> list[str]:
    """The trainable parameters whose gradient entries the subset indexes, in ``named_parameters`` order."""
    return [name for name, p in model.named_parameters() if p.requires_grad]


def gradient_subset(tensors: Mapping[str, torch.Tensor], names: list[str], subset: torch.Tensor) -> torch.Tensor:
    """The entries ``subset`` of the named tensors flattened and concatenated in ``names`` order (P g)."""
    missing = [n for n in names if n not in tensors]
    if missing:
        raise ValueError(f"the update lacks the parameters SEER reads: {', '.join(missing[:5])}"
                         f"{' ...' if len(missing) > 5 else ''}")
    return torch.cat([tensors[n].flatten() for n in names])[subset.to(tensors[names[0]].device)]


def random_subset(model: nn.Module, size: int, seed: int, layer: str | None = None) -> torch.Tensor:
    """``size`` distinct gradient entries (sorted indices into all trainable parameters, flattened in order),
    drawn uniformly with ``seed`` from the parameters whose names start with ``layer`` (all when ``None``)."""
    pool, start = [], 0
    for name, p in model.named_parameters():
        if p.requires_grad:
            if layer is None or name.startswith(layer):
                pool.append(torch.arange(start, start + p.numel()))
            start += p.numel()
    pool = torch.cat(pool) if pool else torch.empty(0, dtype=torch.long)
    if size > len(pool):
        raise ValueError(f"SEER subset_size {size} exceeds the {len(pool)} trainable parameters"
                         f"{'' if layer is None else f' under {layer!r}'} of the model")
    generator = torch.Generator().manual_seed(seed)
    return pool[torch.randperm(len(pool), generator=generator)[:size]].sort().values


def build_parts(profile: SeerProfile, device: str | torch.device = "cpu") -> tuple[nn.Module, SeerDecoder]:
    """A freshly initialised shared model and decoder of ``profile`` (under the caller's RNG state)."""
    model = build_model(profile.model, profile.input_shape, profile.num_classes, device=device,
                        **profile.model_options)
    decoder = SeerDecoder(profile.subset_size, profile.code_size, profile.input_shape).to(device)
    return model, decoder


def save_checkpoint(path: str | Path, profile: SeerProfile, model: nn.Module, decoder: SeerDecoder,
                    subset: torch.Tensor, record: dict) -> Path:
    """``path`` (.safetensors) with the model's and decoder's state and the subset, and ``path`` with suffix .json
    holding the profile and ``record`` (training config, seed, step); both written deterministically."""
    path = Path(path)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors |= {f"decoder.{k}": v.detach().cpu().contiguous() for k, v in decoder.state_dict().items()}
    tensors["subset"] = subset.cpu().contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    path.with_suffix(".json").write_text(json.dumps({"profile": asdict(profile), **record}, indent=2,
                                                    sort_keys=True) + "\n")
    return path


def checkpoint_path(checkpoint: str | Path) -> Path:
    """A shipped profile's file (``bn``, ``gn``, ``ln``) or the given ``.safetensors`` path."""
    if str(checkpoint) in SHIPPED:
        return CHECKPOINTS / f"seer-{checkpoint}.safetensors"
    path = Path(checkpoint)
    if path.suffix != ".safetensors":
        raise ValueError(f"SEER checkpoint {checkpoint!r} is neither a shipped profile ({', '.join(SHIPPED)}) nor a "
                         ".safetensors file")
    return path


def load_checkpoint(checkpoint: str | Path, device: str | torch.device = "cpu"
                    ) -> tuple[SeerProfile, nn.Module, SeerDecoder, torch.Tensor, dict]:
    """The profile, trained model, decoder, subset and JSON record of a checkpoint (safetensors only: a model from
    elsewhere is never unpickled)."""
    path = checkpoint_path(checkpoint)
    meta_path = path.with_suffix(".json")
    if not path.is_file() or not meta_path.is_file():
        raise FileNotFoundError(f"SEER checkpoint {path} or its config {meta_path.name} is missing; train it with "
                                "`fedleak reproduce seer`")
    record = json.loads(meta_path.read_text())
    profile = SeerProfile(**record["profile"])
    tensors = load_file(str(path), device=str(device))
    model, decoder = build_parts(profile, device)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    decoder.load_state_dict({k[8:]: v for k, v in tensors.items() if k.startswith("decoder.")})
    return profile, model, decoder, tensors["subset"], record


@dataclass(frozen=True)
class SeerSecret:
    """What the server keeps: the decoder, the parameter names and entries it reads, the image shape."""

    decoder: SeerDecoder
    names: tuple[str, ...]
    subset: torch.Tensor
    input_shape: tuple[int, ...]


class SeerAttack:
    """SEER (module docstring): ``prepare`` sends the jointly trained model of ``checkpoint`` (a shipped profile
    ``bn``/``gn``/``ln`` or a .safetensors path), ``reconstruct`` decodes one image, the batch's brightest, from
    each observed update (a client's gradient or FedAvg delta, or the secure aggregate)."""

    name = "seer"

    def __init__(self, checkpoint: str = "bn"):
        checkpoint_path(checkpoint)  # a clear error now for a name that is no checkpoint
        self.checkpoint = checkpoint

    def prepare(self, model: nn.Module, context: AttackContext) -> tuple[nn.Module, SeerSecret]:
        """The trained model in place of ``model`` (same architecture required) and the decoder."""
        profile, trained, decoder, subset, _ = load_checkpoint(self.checkpoint, context.device)
        if tuple(context.input_shape) != profile.input_shape:
            raise ValueError(f"SEER checkpoint {self.checkpoint!r} decodes inputs {profile.input_shape}; the data "
                             f"has {tuple(context.input_shape)}")
        mine, theirs = model.state_dict(), trained.state_dict()
        differ = [k for k in theirs if k not in mine or mine[k].shape != theirs[k].shape]
        if differ or set(mine) != set(theirs):
            example = (differ or sorted(set(mine) ^ set(theirs)))[:3]
            raise ValueError(f"SEER checkpoint {self.checkpoint!r} was trained for {profile.model} "
                             f"{profile.model_options}; the model differs (e.g. {example})")
        sent = copy.deepcopy(model)
        sent.load_state_dict(theirs)
        decoder.eval()
        return sent, SeerSecret(decoder, tuple(parameter_names(trained)), subset, profile.input_shape)

    @torch.no_grad()
    def reconstruct(self, observed: Observed, secret: SeerSecret, knowledge=None, *,
                    device: str | torch.device = "cpu") -> Reconstruction:
        if observed.kind not in ("gradient", "delta"):
            raise ValueError(f"SEER reads gradients or FedAvg deltas, not {observed.kind!r} updates")
        sign = -1.0 if observed.kind == "delta" else 1.0  # a local SGD step moves against the gradient
        rows = [sign * gradient_subset({k: v.to(device) for k, v in observed.row(i).items()}, list(secret.names),
                                       secret.subset) for i in range(len(observed.sources))]
        decoder = secret.decoder.to(device)
        images = decoder(torch.stack(rows).float())
        count = len(images)
        return Reconstruction(images, meta={"source": torch.arange(count, device=images.device)},
                              info={"subset_size": secret.subset.numel(), "property": "brightest"})


def seer(checkpoint: str = "bn") -> SeerAttack:
    """SEER: a jointly trained model, disaggregator and decoder read the brightest image of a batch out of its
    gradient, the secure aggregate or a FedAvg delta (Garov et al., ICLR 2024)."""
    return SeerAttack(checkpoint)


def decoded_quality(decoded: torch.Tensor, truth: torch.Tensor) -> dict[str, torch.Tensor]:
    """SSIM and PSNR (per pair) of decoded images against the true property images (:mod:`fedleak.metrics`)."""
    from fedleak.metrics.image import psnr, ssim

    decoded, truth = decoded.clamp(0, 1).float(), truth.float().to(decoded.device)
    return {"ssim": ssim(decoded, truth), "psnr": psnr(decoded, truth).clamp_max(100.0)}


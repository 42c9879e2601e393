"""The benign zoo: an *evaluation* set of ordinary models in ordinary states, none built with fedleak's model
registry, on which a client-side detector must not refuse a model (``fedleak detect-eval --open-world``,
:mod:`fedleak.experiments.open_world`). It is not a tuning set: no detector threshold may be chosen on it.

Families (:mod:`fedleak.benchmarks.zoo_models`): MLPs, LeNet, compact batch-norm CNNs (28-224 px), torchvision-
style ResNets (zero-init residual, group norm, ResNeXt-style grouped convolutions), MobileNet v1/v2 (3x3 depthwise
convolutions at PyTorch's default init), all-convolutional classifiers (no linear layer), timm-style ViTs
(zero-init projections and heads, LoRA on ``qkv``), language models (transformer, tied transformer, LSTM) and a
fastText-style bag-of-embeddings classifier. States (:mod:`fedleak.benchmarks.zoo_states`): the initialiser's,
briefly pre-trained with SGD / Adam / AdamW with and without weight decay, magnitude-pruned (50%, 90%),
structurally pruned (zeroed or removed channels), int8 quantised-dequantised (per tensor, per channel), Net2Net-
widened, distilled, with PEFT-style LoRA adapters. Pre-training reads sklearn's digits (images, resized) or the
test split of Debian's fortunes (text); the clients of the evaluation hold other data (Fashion-MNIST, the fortunes
training split). :meth:`ZooVariant.build` is deterministic in its seed; nothing is cached on disk.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from fedleak.benchmarks import zoo_models as zm
from fedleak.benchmarks import zoo_states as zs
from fedleak.data import load_dataset

VOCAB, SEQ_LEN = 500, 24  # the language models' vocabulary and context (fortunes, most frequent words)
PRETRAIN_IMAGES = 512  # digits used for pre-training (resized to the variant's input)


@functools.lru_cache(maxsize=None)
def source_data(source: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The raw inputs and labels of one source: ``digits`` / ``fashion`` images (N, 1, H, W) in [0, 1];
    ``fortunes-train`` / ``fortunes-test`` tokens (N, SEQ_LEN + 1) and category labels."""
    if source.startswith("fortunes"):
        data = load_dataset("fortunes", split=source.split("-")[1], vocab_size=VOCAB, seq_len=SEQ_LEN + 1)
    else:
        data = load_dataset("digits" if source == "digits" else "bundled", split="train")
    return data.inputs(slice(None)), data.y


def as_input(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Grey images ``(N, 1, H, W)`` resized (bilinear) and repeated to ``shape = (C, H', W')``."""
    x = F.interpolate(x, size=shape[1:], mode="bilinear", align_corners=False) if x.shape[2:] != shape[1:] else x
    return x.expand(-1, shape[0], -1, -1).contiguous()


def samples(inputs: str, shape: tuple[int, ...], source: str, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The samples ``index`` of ``source`` as a model of ``inputs`` kind takes them: images resized to ``shape``;
    ``text``: token sequences and their category; ``lm``: tokens and the next token at every position."""
    x, y = source_data(source)
    x, y = x[index], y[index]
    if inputs == "image":
        return as_input(x, shape), y
    if inputs == "lm":
        return x[:, :-1], x[:, 1:]
    return x[:, :-1], y


@dataclass(frozen=True)
class ZooVariant:
    """One benign model: ``make(shape)`` builds the architecture for inputs of ``shape``, then each function of
    ``states`` (model, variant, generator) -> model puts it in its state. ``inputs``: "image", "text" (token
    classification) or "lm" (next tokens)."""

    name: str
    family: str
    inputs: str
    shape: tuple[int, ...]
    make: Callable[[tuple], nn.Module] = field(repr=False)
    states: tuple[Callable, ...] = field(default=(), repr=False)

    @property
    def state(self) -> str:
        return "+".join(getattr(s, "label", "state") for s in self.states) or "init"

    def build(self, seed: int) -> nn.Module:
        """The model from ``seed`` alone (the global RNG is left as it was), in eval mode."""
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            generator = torch.Generator().manual_seed(seed)
            model = self.make(self.shape)
            for state in self.states:
                model = state(model, self, generator)
        return model.eval()

    def pretraining_data(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Data for central pre-training: :data:`PRETRAIN_IMAGES` digits at the variant's shape, or the fortunes
        test split."""
        source = "digits" if self.inputs == "image" else "fortunes-test"
        count = len(source_data(source)[1])
        index = torch.randperm(count, generator=generator)[:PRETRAIN_IMAGES if self.inputs == "image" else count]
        return samples(self.inputs, self.shape, source, index)


def _state(label: str):
    def wrap(fn):
        fn.label = label
        return fn
    return wrap


def trained(optimizer: str = "sgd", weight_decay: float = 0.0, steps: int = 30):
    """A state: ``steps`` of central pre-training with ``optimizer`` and ``weight_decay``."""
    @_state(f"{optimizer}{f'-wd{weight_decay:g}' if weight_decay else ''}")
    def apply(model, variant, generator):
        return zs.pretrain(model.train(), variant.pretraining_data(generator), optimizer=optimizer,
                           weight_decay=weight_decay, steps=steps, generator=generator)
    return apply


def step(label: str, fn: Callable[[nn.Module], nn.Module]):
    """A state: ``fn(model)``, named ``label``."""
    return _state(label)(lambda model, variant, generator: fn(model))


def widened(noise: float = 0.0):
    return _state(f"net2wider{f'-noise{noise:g}' if noise else ''}")(
        lambda model, variant, generator: zs.widen(model, 2, noise=noise, generator=generator))


def distilled(teacher: Callable[[tuple], nn.Module]):
    """A state: distilled from ``teacher(shape)`` pre-trained with SGD (the teacher is built from the same
    generator)."""
    @_state("distilled")
    def apply(student, variant, generator):
        model = trained("sgd", steps=40)(teacher(variant.shape), variant, generator)
        return zs.distill(student, model, variant.pretraining_data(generator)[0], generator=generator)
    return apply


def lora(names: tuple[str, ...]):
    return step("lora", lambda model: zm.add_lora(model, names))


SGD, ADAM = trained("sgd"), trained("adam")
G28, RGB32, RGB64, RGB96, RGB224 = (1, 28, 28), (3, 32, 32), (3, 64, 64), (3, 96, 96), (3, 224, 224)


def _mlp(shape):
    return zm.mlp(shape[0] * shape[1] * shape[2], (256, 128) if shape[1] <= 32 else (64,))


def _lenet(shape):
    return zm.lenet(shape[0], shape[1])


def _bncnn(shape):
    return zm.bn_cnn(shape[0], (8, 16, 32) if shape[1] >= 224 else (16, 32, 64), stem_stride=4 if shape[1] >= 224
                     else 1)


def _vit(shape, **options):
    return zm.ViT(shape[0], shape[1], 8 if shape[1] >= 64 else 4, **options)


def _lm(shape, **options):
    return zm.TransformerLM(VOCAB, SEQ_LEN, **options)


def _bag(shape):
    return zm.BagClassifier(VOCAB, int(source_data("fortunes-train")[1].max()) + 1)  # one class per category


def _variants() -> tuple[ZooVariant, ...]:
    v = []

    def add(name, family, inputs, shape, make, *states):
        v.append(ZooVariant(name, family, inputs, shape, make, tuple(states)))

    # MLPs: every optimiser, with and without weight decay, then pruned, quantised, widened, distilled, LoRA
    add("mlp", "mlp", "image", G28, _mlp)
    for opt, wd in (("sgd", 0), ("sgd", 5e-4), ("adam", 0), ("adam", 1e-2), ("adamw", 0), ("adamw", 0.05)):
        add(f"mlp-{opt}{'-wd' if wd else ''}", "mlp", "image", G28, _mlp, trained(opt, wd))
    add("mlp-adam-wd-long", "mlp", "image", G28, _mlp, trained("adam", 1e-2, steps=300))
    add("mlp-pruned50", "mlp", "image", G28, _mlp, SGD, step("magnitude50", lambda m: zs.prune_magnitude(m, 0.5)))
    add("mlp-pruned90", "mlp", "image", G28, _mlp, SGD, step("magnitude90", lambda m: zs.prune_magnitude(m, 0.9)))
    add("mlp-structured50", "mlp", "image", G28, _mlp, SGD,
        step("ln-structured50", lambda m: zs.prune_structured(m, 0.5)))
    add("mlp-slimmed50", "mlp", "image", G28, _mlp, SGD, step("units-removed50", lambda m: zs.remove_units(m, 0.5)))
    add("mlp-int8-tensor", "mlp", "image", G28, _mlp, SGD,
        step("int8-tensor", lambda m: zs.quantize_dequantize(m, per_channel=False)))
    add("mlp-int8-channel", "mlp", "image", G28, _mlp, SGD,
        step("int8-channel", lambda m: zs.quantize_dequantize(m, per_channel=True)))
    add("mlp-net2wider", "mlp", "image", G28, _mlp, SGD, widened())
    add("mlp-net2wider-noise-sgd", "mlp", "image", G28, _mlp, SGD, widened(0.01), SGD)
    add("mlp-distilled", "mlp", "image", G28, lambda s: zm.mlp(784, (64,)), distilled(_mlp))
    add("mlp-lora", "lora", "image", G28, _mlp, SGD, lora(("1", "3", "5")))
    add("mlp-lora-adam", "lora", "image", G28, _mlp, SGD, lora(("1", "3", "5")), ADAM)
    add("mlp-224", "mlp", "image", (1, 224, 224), _mlp)
    # LeNet (no normalisation)
    add("lenet", "lenet", "image", G28, _lenet)
    add("lenet-sgd", "lenet", "image", G28, _lenet, SGD)
    add("lenet-adam-l2", "lenet", "image", G28, _lenet, trained("adam", 1e-2))
    add("lenet-pruned90", "lenet", "image", G28, _lenet, SGD,
        step("magnitude90", lambda m: zs.prune_magnitude(m, 0.9)))
    add("lenet-int8-channel", "lenet", "image", G28, _lenet, SGD,
        step("int8-channel", lambda m: zs.quantize_dequantize(m, per_channel=True)))
    add("lenet-rgb32-adamw", "lenet", "image", RGB32, _lenet, trained("adamw", 0.05))
    # compact batch-norm CNNs, 28 to 224 px
    for shape in (G28, RGB64, RGB96, RGB224):
        add(f"bncnn-{shape[1]}", "bn-cnn", "image", shape, _bncnn)
    add("bncnn-64-adam", "bn-cnn", "image", RGB64, _bncnn, ADAM)
    add("bncnn-96-sgd", "bn-cnn", "image", RGB96, _bncnn, SGD)
    add("bncnn-64-adam-long", "bn-cnn", "image", RGB64, _bncnn, trained("adam", steps=100))
    add("bncnn-bn1d-96", "bn-cnn", "image", RGB96, lambda s: zm.bn_head_cnn(3))
    add("bncnn-bn1d-64-sgd", "bn-cnn", "image", RGB64, lambda s: zm.bn_head_cnn(3), SGD)
    add("bncnn-32-structured50", "bn-cnn", "image", RGB32, _bncnn, SGD,
        step("ln-structured50", lambda m: zs.prune_structured(m, 0.5)))
    add("bncnn-32-distilled", "bn-cnn", "image", RGB32, lambda s: zm.bn_cnn(3, (8, 16, 32)), distilled(_bncnn))
    # residual nets
    add("resnet", "resnet", "image", RGB32, lambda s: zm.ResNet(3))
    add("resnet-zero-init", "resnet", "image", RGB32, lambda s: zm.ResNet(3, zero_init_residual=True))
    add("resnet-zero-init-sgd", "resnet", "image", RGB32, lambda s: zm.ResNet(3, zero_init_residual=True), SGD)
    add("resnet-gn", "resnet", "image", RGB32, lambda s: zm.ResNet(3, norm="group"))
    add("resnext-g4-adamw", "resnet", "image", RGB32, lambda s: zm.ResNet(3, groups=4), trained("adamw", 0.05))
    add("resnet-64-zero-init", "resnet", "image", RGB64, lambda s: zm.ResNet(3, zero_init_residual=True))
    add("resnet-pruned50", "resnet", "image", RGB32, lambda s: zm.ResNet(3), SGD,
        step("magnitude50", lambda m: zs.prune_magnitude(m, 0.5)))
    add("resnet-int8-tensor", "resnet", "image", RGB32, lambda s: zm.ResNet(3), SGD,
        step("int8-tensor", lambda m: zs.quantize_dequantize(m, per_channel=False)))
    # depthwise / inverted residual
    add("mobilenet-v1-32", "mobilenet", "image", RGB32, lambda s: zm.mobilenet(3))
    add("mobilenet-v1-96", "mobilenet", "image", RGB96, lambda s: zm.mobilenet(3))
    add("mobilenet-v2-64", "mobilenet", "image", RGB64, lambda s: zm.mobilenet(3, inverted=True))
    add("mobilenet-v2-32-adamw", "mobilenet", "image", RGB32, lambda s: zm.mobilenet(3, inverted=True),
        trained("adamw", 0.05))
    add("mobilenet-v2-full-32", "mobilenet", "image", RGB32, lambda s: zm.mobilenet_v2(3))
    add("mobilenet-v2-w1-32", "mobilenet", "image", RGB32, lambda s: zm.mobilenet_v2(3, width_mult=1.0))
    add("mobilenet-v2-full-64-int8", "mobilenet", "image", RGB64, lambda s: zm.mobilenet_v2(3),
        step("int8-channel", lambda m: zs.quantize_dequantize(m, per_channel=True)))
    add("mobilenet-v1-224", "mobilenet", "image", RGB224, lambda s: zm.mobilenet(3, (8, 16, 32), stem_stride=4))
    # all-convolutional classifiers (no linear layer)
    add("allconv-28", "all-conv", "image", G28, lambda s: zm.all_conv(1))
    add("allconv-32-sgd", "all-conv", "image", RGB32, lambda s: zm.all_conv(3), SGD)
    add("allconv-bn-64", "all-conv", "image", RGB64, lambda s: zm.all_conv(3, norm=True))
    # ViTs
    add("vit", "vit", "image", RGB32, _vit)
    add("vit-zero-proj", "vit", "image", RGB32, functools.partial(_vit, zero_proj=True))
    add("vit-zero-head", "vit", "image", RGB32, functools.partial(_vit, zero_head=True))
    add("vit-zero-proj-head-64", "vit", "image", RGB64, functools.partial(_vit, zero_proj=True, zero_head=True))
    add("vit-adamw", "vit", "image", G28, _vit, trained("adamw", 0.05))
    add("vit-lora-qkv", "lora", "image", RGB32, _vit, trained("adamw", 0.05), lora(("qkv",)))
    # language models and a text classifier (fortunes tokens)
    text = (SEQ_LEN,)
    add("lm-transformer", "lm", "lm", text, _lm)
    add("lm-transformer-tied", "lm", "lm", text, functools.partial(_lm, tied=True))
    add("lm-transformer-adamw", "lm", "lm", text, _lm, trained("adamw", 0.1))
    add("lm-lstm", "lm", "lm", text, lambda s: zm.LSTMLM(VOCAB))
    add("lm-lstm2-sgd", "lm", "lm", text, lambda s: zm.LSTMLM(VOCAB, layers=2), SGD)
    add("lm-lstm-adam", "lm", "lm", text, lambda s: zm.LSTMLM(VOCAB), ADAM)
    add("text-bag", "text", "text", text, _bag)
    add("text-bag-adam-l2", "text", "text", text, _bag, trained("adam", 1e-2))
    return tuple(v)


ZOO: tuple[ZooVariant, ...] = _variants()
BY_NAME = {variant.name: variant for variant in ZOO}


def zoo_variants(names: tuple[str, ...] | None = None) -> tuple[ZooVariant, ...]:
    """The variants named (all by default); an unknown name fails with the list."""
    if names is None:
        return ZOO
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise ValueError(f"unknown benign zoo variant(s) {unknown}; variants: {', '.join(BY_NAME)}")
    return tuple(BY_NAME[n] for n in names)

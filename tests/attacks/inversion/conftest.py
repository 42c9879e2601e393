"""Victims for the gradient-inversion tests: bundled Fashion-MNIST images at 32x32 and the paper's CNN."""
from __future__ import annotations

import pytest
import torch

from fedleak.attacks.inversion import invert
from fedleak.attacks.inversion.presets import PRESETS, short_run
from fedleak.cases.victims import victim_case
from fedleak.data import load_dataset
from fedleak.metrics import attack_success_rate, ssim
from fedleak.models import build_model

ITERATIONS = 300


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread per test process: with two pytest-xdist workers on two cores, two threads each make
    the many small ops of a batched attack wait on each other (10-50x slower under contention)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def bundled32():
    return load_dataset("bundled", size=(32, 32))


@pytest.fixture(scope="session")
def victims(bundled32):
    """Four victim images of different classes (one client's B = 1 steps) and their labels."""
    idx = torch.tensor([0, 37, 74, 111])
    return bundled32.inputs(idx), bundled32.y[idx]


@pytest.fixture(scope="session")
def cnn(bundled32):
    torch.manual_seed(0)
    return build_model("cnn", bundled32.info.input_shape, bundled32.info.num_classes)


@pytest.fixture(scope="session")
def attack_on(cnn, victims):
    """``attack_on(attack, defenses)`` -> (per-victim SSIM, ASR, Reconstruction, VictimCase): a short run
    (:func:`short_run`, 300 iterations) of a preset against B = 1 gradients of the defended CNN; all victims
    are reconstructed in one batched optimisation."""
    images, labels = victims

    def run(attack: str, defenses: str = ""):
        torch.manual_seed(1)
        case = victim_case(cnn, "cnn", defenses, images, labels)
        result = invert(short_run(PRESETS[attack], ITERATIONS), case.observed, case.knowledge, seed=0)
        scores = ssim(result.inputs, case.images)
        return scores, attack_success_rate(scores), result, case

    return run

"""Shared fixtures: a little real data and a benign model from a short FedAvg run."""
from __future__ import annotations

import pytest
import torch

from fedleak.data import load_dataset
from fedleak.fl import FederationSpec, FLConfig, build_federation



@pytest.fixture(scope="session")
def batch16():
    """128 bundled Fashion-MNIST images at 16x16 and their labels."""
    data = load_dataset("bundled", size=(16, 16))
    return data.inputs(slice(0, 128)), data.y[:128]


@pytest.fixture(scope="session")
def fedavg_cnn():
    """The server after two benign FedAvg rounds of the CNN (16x16, padding 2) with three clients."""
    config = FLConfig(num_clients=3, rounds=2, batch_size=32, lr=2e-3, seed=0)
    server = build_federation(FederationSpec(dataset="bundled", model="cnn", size=(16, 16),
                                             model_options={"padding": 2}), config, progress=False)
    history = server.run()
    assert history.final_accuracy > 0.4  # it learned something: a benign, trained model
    return server


@pytest.fixture()
def benign_cnn(fedavg_cnn):
    return fedavg_cnn.model


def make_batch(x: torch.Tensor, y: torch.Tensor, n: int = 128):
    return [(x[:n], y[:n])]

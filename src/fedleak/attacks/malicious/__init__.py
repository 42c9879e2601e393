"""Model manipulations by a malicious server, looked up by name in ``MANIPULATIONS``.

A manipulation is ``manipulate(model, config) -> (manipulated_model, secret)``: the server sends the manipulated
model and keeps the secret (which layer, the map of forwarded inputs, the embedding table, the imprint bins).
Its ``extract(update_tensors, secret) -> reconstruction`` reads the client's update only; the client's data
is used by nobody but the metrics.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch.nn as nn

from fedleak.registry import Registry


@dataclass(frozen=True)
class Manipulation:
    """One attack of a malicious server: its ``manipulate`` function, its ``extract`` function and the dataclass
    ``config`` that ``manipulate`` takes."""

    manipulate: Callable[[nn.Module, Any], tuple[nn.Module, Any]]
    extract: Callable[..., Any]
    config: type


MANIPULATIONS: Registry = Registry("manipulation")


from fedleak.attacks.analytic import extract_at_layer  # noqa: E402
from fedleak.attacks.malicious import (curious_kernels, decepticons, fishing, forwarding,  # noqa: E402
                                       robbing_the_fed, text_embedding, trap_weights)

for _name, _entry in {
    "trap_weights": Manipulation(trap_weights.trap_weights, extract_at_layer, trap_weights.TrapWeightsConfig),
    "input_forwarding": Manipulation(forwarding.input_forwarding, extract_at_layer, forwarding.InputForwardingConfig),
    "curious_kernels": Manipulation(curious_kernels.curious_kernels, extract_at_layer,
                                    curious_kernels.CuriousKernelsConfig),
    "text_embedding": Manipulation(text_embedding.text_embedding, text_embedding.extract_text,
                                   text_embedding.TextEmbeddingConfig),
    "robbing_the_fed": Manipulation(robbing_the_fed.robbing_the_fed, robbing_the_fed.extract_imprint,
                                    robbing_the_fed.RobbingConfig),
    "class_fishing": Manipulation(fishing.class_fishing, fishing.extract_fishing, fishing.ClassFishingConfig),
    "feature_fishing": Manipulation(fishing.feature_fishing, fishing.extract_fishing, fishing.FeatureFishingConfig),
    "decepticons": Manipulation(decepticons.decepticons, decepticons.extract_decepticons,
                                decepticons.DecepticonsConfig),
}.items():
    MANIPULATIONS.register(_name)(_entry)
del _name, _entry

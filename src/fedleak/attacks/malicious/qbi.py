"""QBI: quantile-based bias initialisation of the extraction layer (Nowak et al., "QBI: Quantile-based Bias
Initialization for Efficient Private Data Reconstruction in Federated Learning", 2024, arXiv:2406.18745; not
among /work/shared/papers, so no section numbers).

Row i of ``y = ReLU(W x + b)`` yields an input exactly when one input of the batch of B activates it (paper 002
§5.2). If each row fires for a share p of the data, a batch leaves it with exactly one active input with
probability ``B p (1 - p)^(B - 1)``, largest at ``p = 1 / B``. QBI draws the weights at random (here N(0, ``std``)) and
solves for the bias that gives that share: ``b_i = -q_i`` with ``q_i`` the ``1 - 1/B``
quantile of ``w_i . x`` over the server's public data, so that row i fires for about one input in B. Trap weights
(paper 002 Algorithm 1) instead shape the weights and leave the bias at zero; Robbing the Fed bins one measurement.
Readout: :func:`fedleak.attacks.analytic.extract_at_layer` (Eq. 5 per row).

Here the quantile is the empirical one of the server's public sample; PAIRS, the paper's search over the weights
when that sample is of the client's own distribution, is :mod:`fedleak.attacks.malicious.pairs`.
When the layer is not the first, the layers before it forward the input (paper 002 §7; :mod:`forwarding`).
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
from dataclasses import dataclass

import torch
import torch.nn as nn

from fedleak.attacks.analytic import LayerSecret, extract_at_layer, extraction_layer
from fedleak.attacks.base import AttackContext, Observed, Reconstruction
from fedleak.attacks.malicious.forwarding import forward_input
from fedleak.checks import CheckedConfig, count_field, levels_field, positive_field, seed_field
from fedleak.models.anatomy import trace


@dataclass
class QbiConfig(CheckedConfig, what="QBI"):
    """``batch_size``: the B the rows are tuned for (each fires for ~1/B of the public data); ``std`` of the
    random N(0, std) weights; ``layer``: the extraction layer (default: the first fully connected layer);
    ``levels``: the data's quantisation the attacker assumes; ``seed`` of the weights."""

    batch_size: int = count_field(64)
    std: float = positive_field(1.0)
    layer: str | None = None
    levels: int | None = levels_field()
    seed: int = seed_field()


def quantile_biases(weights: torch.Tensor, public: torch.Tensor, batch_size: int) -> torch.Tensor:
    """QBI's bias per row (N,): minus the ``1 - 1/B`` quantile of ``public (P, D) @ weights (N, D)^T``, so that
    each row fires for a share 1/B of the public points."""
    pre = public.to(weights) @ weights.T  # (P, N)
    return -torch.quantile(pre, 1.0 - 1.0 / batch_size, dim=0)


class QbiAttack:
    """QBI (module docstring): ``prepare`` sets the extraction layer's weights and quantile biases from the round's
    public data; ``reconstruct`` reads every observed update by Eq. 5 per row."""

    name = "qbi"
    config_type = QbiConfig

    def __init__(self, **options):
        self.options = options
        self.config_type(**options)  # bad options fail here, before any round

    def row_weights(self, config: QbiConfig, features: torch.Tensor, rest: torch.Tensor,
                    generator: torch.Generator) -> torch.Tensor:
        """QBI's weights on the input columns (N, C): N(0, std) at random. ``features`` (P, C): the public inputs
        at those columns; ``rest`` (P, N): what the rows' other columns add (PAIRS reads both)."""
        return config.std * torch.randn(rest.shape[1], features.shape[1], generator=generator)

    @torch.no_grad()
    def prepare(self, model: nn.Module, context: AttackContext) -> tuple[nn.Module, LayerSecret]:
        config = self.config_type(**{"seed": context.seed, **self.options})
        if context.public is None or len(context.public) < 2:
            raise ValueError("QBI sets its biases from quantiles of public data; the server holds none "
                             "(pass public= to the Audit)")
        if tuple(context.public.shape[1:]) != tuple(context.input_shape):
            raise ValueError(f"public data of shape {tuple(context.public.shape[1:])} does not match the model "
                             f"input {tuple(context.input_shape)}")
        model = copy.deepcopy(model)
        anatomy = trace(model, input_shape=context.input_shape)
        name, linear = extraction_layer(anatomy, config.layer)
        generator = torch.Generator().manual_seed(config.seed)
        input_map = forward_input(anatomy, name, generator=generator, levels=config.levels)
        columns = input_map.positions.to(linear.weight.device)
        seen: list[torch.Tensor] = []  # the layer's inputs on the public data, through the forwarding layers
        handle = linear.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].flatten(1)))
        try:
            model(context.public.to(linear.weight.device, torch.float32))
        finally:
            handle.remove()
        features = seen[0]
        others = torch.ones(linear.in_features, dtype=torch.bool, device=columns.device)
        others[columns] = False  # what the rows' other columns add (zero when the layer reads the raw input)
        rest = features[:, others] @ linear.weight[:, others].T
        weights = self.row_weights(config, features[:, columns], rest, generator)
        linear.weight[:, columns] = weights.to(linear.weight)
        linear.bias.copy_(quantile_biases(linear.weight, features, config.batch_size))
        return model, LayerSecret(name, input_map)

    def reconstruct(self, observed: Observed, secret: LayerSecret, knowledge=None, *,
                    device: str | torch.device = "cpu") -> Reconstruction:
        return Reconstruction.concat([extract_at_layer(observed.row(i), secret, device=device)
                                      for i in range(len(observed.sources))])


def qbi(**options) -> QbiAttack:
    """QBI: random weights and quantile biases so each extraction row fires for ~1/B of the data (Nowak et al.
    2024)."""
    return QbiAttack(**options)


qbi.__signature__ = inspect.Signature([  # the registry reads the options from the signature
    inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default) for f in dataclasses.fields(QbiConfig)])

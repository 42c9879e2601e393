"""The configuration of one gradient-inversion attack: the optimisation of Algorithm 1 (paper 001) and the
gradient model, i.e. how the attack mimics the client's randomness (§4, Algorithm 2)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from fedleak.checks import CheckedConfig, checked, choice_field, count_field, positive_field, weight_field

DISTANCE_NAMES = ("l2", "cosine", "layer_cosine")
OPTIMIZERS = ("adam", "lbfgs")
RANDOMNESS = ("fresh", "true", "optimised")
DP_MODES = ("ignore", "true", "optimised")
PRUNING_MODES = ("ignore", "mask", "known")
BN_PRIORS = ("auto", "none", "running", "inferred", "proxy")


@dataclass(frozen=True)
class InversionConfig(CheckedConfig, what="inversion"):
    """One attack. Defaults are the Inverting Gradients settings of paper 001 §5.2.

    Optimisation: ``distance`` (GDF), ``tv_weight`` (lambda_TV), ``optimizer`` with learning rate ``lr``,
    multiplied by ``lr_decay`` when a victim's loss has not improved for ``plateau`` iterations; a victim stops
    when its loss is below ``loss_threshold``, has not improved for ``patience`` iterations, or after
    ``max_iterations``. ``restarts`` independent initialisations per victim; the lowest final loss wins.
    ``signed`` feeds the sign of the image gradient to Adam (Inverting Gradients' implementation).
    ``optimise_labels``: DLG's joint optimisation of soft labels instead of analytic label recovery.

    Gradient model, per source of client randomness:
    ``dropout``/``bottleneck``: "fresh" (a new random draw every iteration: the attack ignores the defense),
    "true" (the client's own draw, given by the server knowledge: WIIG), "optimised" (free tensors optimised
    jointly: DIA's masks, clamped to [0, 1] and pulled toward the keep rate with ``mask_weight``; VBIA's
    reparameterisation noise). ``dp``: "ignore", "true" (the client's clipping and noise: WIIG) or "optimised"
    (DPIA: dummy noise pulled toward mean 0 and std sigma*tau with ``noise_weight``). ``pruning``: "ignore",
    "mask" (GPIA: the received gradient's zero pattern is applied to the dummy gradient, eq. 2) or "known"
    (the mask only where the server knowledge says the client pruned: CDIA). ``ignore_after_bottleneck``: PIG,
    the bottleneck decoder's and every later layer's gradients are left out of the distance.

    Image prior of batch-norm models (Yin et al. 2021, eq. 5; :mod:`fedleak.attacks.inversion.bn_prior`):
    ``bn_prior`` names the target statistics of every batch-norm layer, "running" (the sent model's running
    statistics), "inferred" (read off the BN buffers of a FedAvg update), "proxy" (the server's public data),
    "none", or "auto" (inferred, else running when the model has trained them, else proxy when the server has
    public data, else none); ``bn_weight`` is its weight. A model without batch norm is unaffected.
    """

    name: str = "custom"
    distance: str = choice_field(DISTANCE_NAMES, "cosine")
    tv_weight: float = weight_field(0.01)
    optimizer: str = choice_field(OPTIMIZERS, "adam")
    lr: float = positive_field(1.0)
    lr_decay: float = checked(0.1, low=0, high=1, low_open=True)
    plateau: int = count_field(400)
    loss_threshold: float = weight_field(1e-5)
    patience: int = count_field(4000)
    max_iterations: int = count_field(20_000)
    restarts: int = count_field(1)
    signed: bool = False
    boxed: bool = True
    optimise_labels: bool = False
    dropout: str = choice_field(RANDOMNESS, "fresh")
    bottleneck: str = choice_field(RANDOMNESS, "fresh")
    dp: str = choice_field(DP_MODES, "ignore")
    pruning: str = choice_field(PRUNING_MODES, "ignore")
    ignore_after_bottleneck: bool = False
    mask_weight: float = weight_field(1.0)
    noise_weight: float = weight_field(1.0)
    bn_prior: str = choice_field(BN_PRIORS, "auto")
    bn_weight: float = weight_field(1e-2)

    def with_(self, **changes) -> "InversionConfig":
        """A copy with some fields changed (e.g. a shorter ``max_iterations`` for a quick run)."""
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)

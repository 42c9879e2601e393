"""Every attack, looked up by name in one registry: ``ATTACKS.build(name, **options)`` gives an attack with the one
shape of :mod:`fedleak.attacks.base` (``prepare`` what the server sends, ``reconstruct`` from what it observed).

Honest-but-curious: the gradient-inversion presets of paper 001 (:mod:`fedleak.attacks.inversion`), FedAvg
inversion (``fedavg_inversion``, Dimitrov et al. 2022) and passive analytic extraction (``passive``, paper 002
§5.1). Malicious server: the model manipulations of papers 002 and 000
(:mod:`fedleak.attacks.malicious`). Learned: SEER's trained model and decoder (:mod:`fedleak.attacks.learned`).
"""
from fedleak.registry import Registry

ATTACKS: Registry = Registry("attack")

from fedleak.attacks import passive  # noqa: E402
from fedleak.attacks import dager  # noqa: E402
from fedleak.attacks.analytic import extract_at_layer  # noqa: E402
from fedleak.attacks.base import (AnalyticAttack, Attack, AttackContext, Observed, Reconstruction,  # noqa: E402
                                  analytic_factory)
from fedleak.attacks.inversion.attack import inversion_factory  # noqa: E402
from fedleak.attacks.inversion.fedavg import fedavg_inversion  # noqa: E402
from fedleak.attacks.inversion.presets import PRESETS  # noqa: E402
from fedleak.attacks import spear  # noqa: E402
from fedleak.attacks.learned import seer  # noqa: E402
from fedleak.attacks.malicious import (curious_kernels, decepticons, fishing, forwarding, loki,  # noqa: E402
                                       model_inconsistency, pairs, qbi, robbing_the_fed, text_embedding,
                                       trap_weights)

for _name, _config in PRESETS.items():
    ATTACKS.register(_name)(inversion_factory(_config))

ANALYTIC = {  # name: (manipulate, extract, config type, description)
    "passive": (passive.passive, extract_at_layer, passive.PassiveConfig,
                "Passive analytic extraction from the first fully connected layer (paper 002 §5.1, Eq. 5)."),
    "passive_text": (passive.passive_text, text_embedding.extract_text, passive.PassiveTextConfig,
                     "Passive text extraction through the model's own embedding table (paper 002 Table 3)."),
    "trap_weights": (trap_weights.trap_weights, extract_at_layer, trap_weights.TrapWeightsConfig,
                     "Trap weights (paper 002 Algorithm 1), with input forwarding through earlier layers."),
    "input_forwarding": (forwarding.input_forwarding, extract_at_layer, forwarding.InputForwardingConfig,
                         "Identity conv/FC layers carry the input to the extraction layer (paper 002 §7, App. B)."),
    "curious_kernels": (curious_kernels.curious_kernels, extract_at_layer, curious_kernels.CuriousKernelsConfig,
                        "Scaled identity kernels in every convolution (paper 000 App. A.1.2)."),
    "text_embedding": (text_embedding.text_embedding, text_embedding.extract_text, text_embedding.TextEmbeddingConfig,
                       "Text through a uniform embedding and trap weights on the dense layer (paper 002 §8)."),
    "robbing_the_fed": (robbing_the_fed.robbing_the_fed, robbing_the_fed.extract_imprint,
                        robbing_the_fed.RobbingConfig,
                        "Robbing the Fed imprint bins over mean brightness, inserted or reusing a layer (paper 000 §3)."),
    "class_fishing": (fishing.class_fishing, fishing.extract_fishing, fishing.ClassFishingConfig,
                      "Class fishing on the last layer: one class's inputs alone carry a gradient (paper 000 §3)."),
    "feature_fishing": (fishing.feature_fishing, fishing.extract_fishing, fishing.FeatureFishingConfig,
                        "Feature fishing: only inputs past a feature threshold carry a gradient (paper 000 §3)."),
    "decepticons": (decepticons.decepticons, decepticons.extract_decepticons, decepticons.DecepticonsConfig,
                    "Decepticons: attention disabled, the MLP imprints single tokens (paper 000 App. A.1.4)."),
}
for _name, (*_parts, _description) in ANALYTIC.items():
    ATTACKS.register(_name, description=_description)(analytic_factory(_name, *_parts))
del _name, _config, _parts, _description
ATTACKS.register("loki")(loki.loki)
ATTACKS.register("model_inconsistency")(model_inconsistency.model_inconsistency)
ATTACKS.register("seer")(seer.seer)
ATTACKS.register("fedavg_inversion")(fedavg_inversion)
ATTACKS.register("dager")(dager.dager)
ATTACKS.register("spear")(spear.spear)
ATTACKS.register("qbi")(qbi.qbi)
ATTACKS.register("pairs")(pairs.pairs)

# honest-but-curious attacks beside the inversion presets
HONEST = ("passive", "passive_text", "dager", "fedavg_inversion", "spear")
MALICIOUS = tuple(name for name in ATTACKS if name not in PRESETS and name not in HONEST)


def prepare(name: str, model, context: AttackContext | None = None, **options):
    """``ATTACKS.build(name, **options).prepare(model, context)``: what the server sends and keeps, in one call
    (``context`` defaults to the model's own input shape)."""
    return ATTACKS.build(name, **options).prepare(model, context or AttackContext.of(model))

__all__ = ["ATTACKS", "MALICIOUS", "prepare", "AnalyticAttack", "Attack", "AttackContext", "Observed", "Reconstruction"]

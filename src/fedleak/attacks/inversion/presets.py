"""The named gradient-inversion attacks (registered in :data:`fedleak.attacks.ATTACKS` by :mod:`fedleak.attacks`).

``ig`` carries the settings of paper 001 §5.2 (cosine distance, TV weight 0.01, Adam from learning rate 1 decayed
by 0.1 after 400 iterations without improvement, stop below loss 1e-5, after 4,000 iterations without
improvement or after 20,000). The targeted attacks of §4 differ from ``ig`` only in their gradient model.

Every preset has the batch-norm statistics prior of GradInversion (Yin et al. 2021, eq. 5) as its option
``bn_prior`` (default "auto": on for a model with batch norm whose statistics are known, off otherwise, so a model
without batch norm inverts exactly as before) with weight ``bn_weight`` = 1e-2 (chosen without tuning; deviation:
GradInversion also adds a group-consistency prior, eq. 7, and an l2 image prior, which fedleak does not).
FedAvg inversion (Dimitrov et al. 2022) is ``fedavg_inversion`` (:mod:`fedleak.attacks.inversion.fedavg`): IG's
settings with the client's local training simulated.
"""
from __future__ import annotations

from fedleak.attacks.inversion.config import InversionConfig

IG = InversionConfig(name="ig")

# One line per preset for ``fedleak list attacks``; the comments below give the details.
DESCRIPTIONS = {
    "dlg": "Deep Leakage from Gradients (Zhu et al. 2019): L2 distance, L-BFGS, labels optimised jointly.",
    "idlg": "iDLG (Zhao et al. 2020): DLG with the label read off the output-layer gradient.",
    "ig": "Inverting Gradients (Geiping et al. 2020) with the settings of paper 001 §5.2.",
    "wiig": "Well-Informed IG (paper 001 §4.1, §4.3): the client's true randomness, a baseline.",
    "dia": "Dropout Inversion Attack: the client's Dropout masks optimised jointly.",
    "dpia": "DP Inversion Attack (paper 001 §4.1): dummy DP noise optimised jointly.",
    "gpia": "Gradient Pruning Inversion Attack (paper 001 §4.2): the received pruning mask on the dummy gradient.",
    "vbia": "Variational Bottleneck Inversion Attack (paper 001 §4.3): bottleneck noise optimised jointly.",
    "pig": "Partial IG: the bottleneck decoder and later layers left out of the distance.",
    "cdia": "Combined Defenses Inversion Attack (paper 001 Algorithm 2): DIA + GPIA + VBIA as the client's defenses need.",
}

PRESETS: dict[str, InversionConfig] = {
    # Deep Leakage from Gradients (Zhu et al. 2019): L2 distance, L-BFGS (lr 1), soft labels optimised jointly,
    # no prior; DLG's 300 iterations. Deviation: strong-Wolfe line search (see loop._lbfgs).
    "dlg": InversionConfig(name="dlg", distance="l2", tv_weight=0.0, optimizer="lbfgs", lr=1.0, max_iterations=300,
                           patience=300, plateau=300, boxed=False, optimise_labels=True),
    # iDLG (Zhao et al. 2020): DLG with the label read off the output-layer gradient.
    "idlg": InversionConfig(name="idlg", distance="l2", tv_weight=0.0, optimizer="lbfgs", lr=1.0,
                            max_iterations=300, patience=300, plateau=300, boxed=False),
    "ig": IG,
    # Well-Informed IG (§4.1, §4.3): the client's true Dropout masks, bottleneck noise and DP noise; the pruning
    # mask where the client pruned.
    "wiig": IG.with_(name="wiig", dropout="true", bottleneck="true", dp="true", pruning="known"),
    # Dropout Inversion Attack (Scheliga et al. 2023): Dropout masks optimised jointly.
    "dia": IG.with_(name="dia", dropout="optimised"),
    # DP Inversion Attack (§4.1): dummy DP noise optimised jointly.
    "dpia": IG.with_(name="dpia", dp="optimised"),
    # Gradient Pruning Inversion Attack (§4.2): the client's pruning mask on the dummy gradient.
    "gpia": IG.with_(name="gpia", pruning="mask"),
    # Variational Bottleneck Inversion Attack (§4.3): reparameterisation noise optimised jointly.
    "vbia": IG.with_(name="vbia", bottleneck="optimised"),
    # Partial IG, the "ignore" attack (Scheliga et al. 2024b): decoder and later layers left out.
    "pig": IG.with_(name="pig", ignore_after_bottleneck=True),
    # Combined Defenses Inversion Attack (Algorithm 2): DIA + GPIA + VBIA for whichever defenses the client
    # used; DP is not targeted (§4.4).
    "cdia": IG.with_(name="cdia", dropout="optimised", bottleneck="optimised", pruning="known"),
}


def short_run(config: InversionConfig, iterations: int) -> InversionConfig:
    """``config`` for a budget of ``iterations`` (tests, ``--quick`` profiles, CPU demos). Deviations from §5.2,
    measured on the bundled Fashion-MNIST with the cnn: Adam starts at lr 0.1 instead of 1 (lr 1 needs the
    thousands of iterations of the full schedule to settle), the plateau and patience scale with the budget, and
    the TV weight is 1e-3 instead of 1e-2 (with free bottleneck noise, lambda_TV = 0.01 dominates the cosine
    distance once it is small, and the noise then trades image detail for smoothness: VBIA on CVB reaches SSIM
    about 0.55 after 500 iterations with 1e-2 and about 0.8 with 1e-3)."""
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    return config.with_(lr=0.1 if config.optimizer == "adam" else config.lr, tv_weight=config.tv_weight and 1e-3,
                        max_iterations=iterations, plateau=max(1, iterations // 3), patience=iterations)


"""How well an attack did, measured against the true data (used only for scoring): reconstruction quality of
images (:mod:`fedleak.metrics.image`, re-exported here) and extraction success of analytic attacks
(:mod:`fedleak.metrics.extraction`)."""
from fedleak.metrics.image import attack_success_rate, match_reconstructions, mse, psnr, ssim

__all__ = ["attack_success_rate", "match_reconstructions", "mse", "psnr", "ssim"]

"""Reconstruction quality of images (paper 001 §5.2): SSIM (Wang et al. 2004, 11x11 Gaussian window with
sigma 1.5, K = (0.01, 0.03), via pytorch-msssim), PSNR and MSE per image, the attack success rate (share of
images with SSIM above 0.5, Wagner & Eckhoff 2018) and the matching of reconstructions to their victims.

Images are ``(N, C, H, W)`` tensors with values in ``[0, data_range]``; every per-image metric returns an
``(N,)`` tensor on the inputs' device.
"""
from __future__ import annotations

import torch
from pytorch_msssim import ssim as _ssim
from scipy.optimize import linear_sum_assignment

WINDOW = 11
WINDOW_SIGMA = 1.5


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape:
        raise ValueError(f"images to compare differ in shape: {tuple(x.shape)} and {tuple(y.shape)}")
    if x.dim() != 4:
        raise ValueError(f"expected image batches of shape (N, C, H, W), got {tuple(x.shape)}")


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM of each image pair (averaged over channels and valid window positions), shape ``(N,)``."""
    _check_pair(x, y)
    if min(x.shape[-2:]) < WINDOW:
        raise ValueError(f"SSIM uses an {WINDOW}x{WINDOW} window; images of size {tuple(x.shape[-2:])} are smaller")
    return _ssim(x.float(), y.float(), data_range=data_range, size_average=False, win_size=WINDOW,
                 win_sigma=WINDOW_SIGMA)


def mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error of each image pair, shape ``(N,)``."""
    _check_pair(x, y)
    return (x.float() - y.float()).pow(2).flatten(1).mean(dim=1)


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio ``10 log10(data_range^2 / MSE)`` in dB of each image pair (inf where equal)."""
    return 10.0 * torch.log10(data_range**2 / mse(x, y))


def attack_success_rate(ssims: torch.Tensor, threshold: float = 0.5) -> float:
    """ASR: the share of reconstructions whose SSIM is above ``threshold`` (paper 001 §5.2: tau_ASR = 0.5)."""
    ssims = torch.as_tensor(ssims)
    if ssims.numel() == 0:
        raise ValueError("attack_success_rate needs at least one SSIM value")
    return float((ssims > threshold).float().mean())


def pairwise(metric, recon: torch.Tensor, truth: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """``metric(recon[i], truth[j])`` for every pair, an ``(R, T)`` matrix (computed ``chunk`` pairs at a time)."""
    rows, cols = len(recon), len(truth)
    flat_i = torch.arange(rows, device=recon.device).repeat_interleave(cols)
    flat_j = torch.arange(cols, device=truth.device).repeat(rows)
    values = [metric(recon[flat_i[s : s + chunk]], truth[flat_j[s : s + chunk]])
              for s in range(0, rows * cols, chunk)]
    return torch.cat(values).reshape(rows, cols)


def match_reconstructions(recon: torch.Tensor, truth: torch.Tensor, by: str = "ssim",
                          data_range: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Reorder ``recon`` so that ``recon[order[i]]`` is matched to victim ``truth[i]``: the one-to-one
    assignment maximising total SSIM (``by="ssim"``) or minimising total MSE (``by="mse"``), found with the
    Hungarian method. Returns ``(recon[order], order)``; for one victim it is the identity."""
    _check_pair(recon, truth)
    if by == "ssim":
        cost = -pairwise(lambda a, b: ssim(a, b, data_range), recon, truth)
    elif by == "mse":
        cost = pairwise(mse, recon, truth)
    else:
        raise ValueError(f"match_reconstructions: unknown criterion {by!r}; valid: ssim, mse")
    rows, cols = linear_sum_assignment(cost.detach().cpu().numpy())
    order = torch.empty(len(truth), dtype=torch.long)
    order[torch.as_tensor(cols)] = torch.as_tensor(rows)
    order = order.to(recon.device)
    return recon[order], order

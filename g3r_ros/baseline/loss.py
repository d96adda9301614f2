"""Photometric loss of 3DGS: (1 - lambda) L1 + lambda (1 - SSIM), and PSNR.

The SSIM follows graphdeco's ``loss_utils.ssim``: a normalized Gaussian window
(11x11, sigma 1.5) applied per channel with ``conv2d`` and zero padding of half the window,
constants C1 = 0.01^2 and C2 = 0.03^2, and the mean of the SSIM map. It is differentiable.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

_C1 = 0.01**2
_C2 = 0.03**2


@lru_cache(maxsize=8)
def _window_cpu(size: int, sigma: float) -> torch.Tensor:
    """(size,size) normalized 2D Gaussian window, float64 on CPU (cached)."""
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2.0 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(img: torch.Tensor, ref: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean structural similarity of two image batches ``img``, ``ref``: (B,C,H,W) in [0,1].

    Returns a scalar tensor (differentiable with respect to both inputs).
    """
    return ssim_map(img, ref, window, sigma).mean()


def ssim_map(img: torch.Tensor, ref: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-pixel SSIM (B,C,H,W) of two (B,C,H,W) image batches (zero-padded borders)."""
    if img.shape != ref.shape or img.dim() != 4:
        raise ValueError(f"ssim expects two (B,C,H,W) tensors of one shape, got {tuple(img.shape)}, "
                         f"{tuple(ref.shape)}")
    ch = img.shape[1]
    w = _window_cpu(int(window), float(sigma)).to(device=img.device, dtype=img.dtype)
    w = w.expand(ch, 1, window, window).contiguous()
    pad = window // 2

    def blur(x):
        return F.conv2d(x, w, padding=pad, groups=ch)

    mu1, mu2 = blur(img), blur(ref)
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    s1 = blur(img * img) - mu1_sq
    s2 = blur(ref * ref) - mu2_sq
    s12 = blur(img * ref) - mu12
    num = (2 * mu12 + _C1) * (2 * s12 + _C2)
    den = (mu1_sq + mu2_sq + _C1) * (s1 + s2 + _C2)
    return num / den


def photometric_loss(render_rgb: torch.Tensor, gt_rgb: torch.Tensor, lambda_dssim: float = 0.2,
                     window: int = 11, sigma: float = 1.5) -> tuple[torch.Tensor, torch.Tensor]:
    """3DGS loss of renders against ground truth, both (C,H,W,3) in [0,1].

    Returns ``(loss, l1)``: ``loss = (1 - lambda) * mean|r - g| + lambda * (1 - SSIM(r, g))``.
    """
    if render_rgb.shape != gt_rgb.shape:
        raise ValueError(f"render {tuple(render_rgb.shape)} and ground truth {tuple(gt_rgb.shape)} differ")
    l1 = (render_rgb - gt_rgb).abs().mean()
    if lambda_dssim == 0.0:
        return l1, l1
    s = ssim(render_rgb.permute(0, 3, 1, 2), gt_rgb.permute(0, 3, 1, 2), window, sigma)
    return (1.0 - lambda_dssim) * l1 + lambda_dssim * (1.0 - s), l1


def psnr(render_rgb: torch.Tensor, gt_rgb: torch.Tensor) -> float:
    """PSNR in dB of a render (clamped to [0,1]) against ground truth, any equal shapes."""
    mse = float(((render_rgb.detach().clamp(0.0, 1.0) - gt_rgb) ** 2).mean())
    return float("inf") if mse <= 0.0 else -10.0 * math.log10(mse)

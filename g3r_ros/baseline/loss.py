"""Photometric loss of 3DGS: (1 - lambda) L1 + lambda (1 - SSIM), and PSNR.

The SSIM is :func:`g3r_ros.metrics.ssim` (graphdeco's ``loss_utils.ssim``: Gaussian window
11x11, sigma 1.5, zero padding, mean of the SSIM map), the same one the evaluation reports.
"""

from __future__ import annotations

import math

import torch

from ..metrics import ssim


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
    s = ssim(render_rgb, gt_rgb, window, sigma).mean()
    return (1.0 - lambda_dssim) * l1 + lambda_dssim * (1.0 - s), l1


def psnr(render_rgb: torch.Tensor, gt_rgb: torch.Tensor) -> float:
    """PSNR in dB of a render (clamped to [0,1]) against ground truth, any equal shapes."""
    mse = float(((render_rgb.detach().clamp(0.0, 1.0) - gt_rgb) ** 2).mean())
    return float("inf") if mse <= 0.0 else -10.0 * math.log10(mse)

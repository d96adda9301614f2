"""Image quality metrics: PSNR, SSIM, LPIPS availability, picture helpers.

Images are torch tensors in [0,1], channels last: (H,W,3) or a batch (B,H,W,3).

SSIM is the one of graphdeco's 3DGS (``loss_utils.ssim``), used for evaluation, as the
training loss term and in the 3DGS baseline's loss alike: a normalized Gaussian window
(11x11, sigma 1.5) per channel with zero padding of half the window, C1 = 0.01², C2 = 0.03²,
and the mean of the SSIM map. It is differentiable.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

SSIM_KERNEL_SIZE = 11
SSIM_SIGMA = 1.5
_C1 = 0.01**2
_C2 = 0.03**2


def _check_pair(img: torch.Tensor, ref: torch.Tensor) -> None:
    if not isinstance(img, torch.Tensor) or not isinstance(ref, torch.Tensor):
        raise TypeError("img and ref must be torch tensors")
    if img.shape != ref.shape:
        raise ValueError(f"img and ref shapes differ: {tuple(img.shape)} vs {tuple(ref.shape)}")
    if img.dim() not in (3, 4) or img.shape[-1] != 3:
        raise ValueError(f"images must be (H,W,3) or (B,H,W,3), got {tuple(img.shape)}")


def psnr(img: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB for images in [0,1] (peak 1).

    img, ref: (H,W,3) → scalar, or (B,H,W,3) → (B,) one value per image. mask: optional
    (H,W), (H,W,1), (B,H,W) or (B,H,W,1), bool or float weights; the MSE is averaged over
    masked pixels only. Identical images (MSE = 0) give +inf; an empty mask gives NaN.
    """
    _check_pair(img, ref)
    batched = img.dim() == 4
    x, y = (img, ref) if batched else (img[None], ref[None])
    err = (x.float() - y.float()) ** 2  # (B,H,W,3)
    if mask is None:
        mse = err.mean(dim=(1, 2, 3))
    else:
        m = mask.to(err.dtype)
        if m.dim() == img.dim() and m.shape[-1] == 1:  # trailing channel axis of size 1
            m = m[..., 0]
        if m.dim() == 2:
            m = m[None]
        if m.shape[-2:] != x.shape[1:3] or m.shape[0] not in (1, x.shape[0]):
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match images {tuple(img.shape)}")
        m = m.expand(x.shape[0], -1, -1)[..., None]
        mse = (err * m).sum(dim=(1, 2, 3)) / (3.0 * m.sum(dim=(1, 2, 3)))
    out = 10.0 * torch.log10(1.0 / mse)
    return out if batched else out[0]


def psnr_from_mse(mse):
    """PSNR in dB (peak 1) from a mean squared error: a float gives a float, a tensor a
    tensor. MSE 0 gives +inf; a negative or NaN MSE gives NaN."""
    if isinstance(mse, torch.Tensor):
        return 10.0 * torch.log10(1.0 / mse)
    mse = float(mse)
    if np.isnan(mse) or mse < 0:
        return float("nan")
    return float("inf") if mse == 0 else -10.0 * float(np.log10(mse))


@lru_cache(maxsize=8)
def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    """(size,size) normalized 2D Gaussian window, float64 on CPU (cached)."""
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2.0 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim_map(img: torch.Tensor, ref: torch.Tensor, window: int = SSIM_KERNEL_SIZE,
             sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Per-pixel SSIM (B,H,W,C) of two (B,H,W,C) image batches (any C; zero-padded borders)."""
    if img.shape != ref.shape or img.dim() != 4:
        raise ValueError(f"ssim_map expects two (B,H,W,C) tensors of one shape, got {tuple(img.shape)}, "
                         f"{tuple(ref.shape)}")
    x, y = img.permute(0, 3, 1, 2), ref.permute(0, 3, 1, 2)
    ch = x.shape[1]
    w = _gaussian_window(int(window), float(sigma)).to(device=x.device, dtype=x.dtype)
    w = w.expand(ch, 1, window, window).contiguous()

    def blur(t):
        return F.conv2d(t, w, padding=window // 2, groups=ch)

    mu1, mu2 = blur(x), blur(y)
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    s1 = blur(x * x) - mu1_sq
    s2 = blur(y * y) - mu2_sq
    s12 = blur(x * y) - mu12
    num = (2 * mu12 + _C1) * (2 * s12 + _C2)
    den = (mu1_sq + mu2_sq + _C1) * (s1 + s2 + _C2)
    return (num / den).permute(0, 2, 3, 1)


def ssim(img: torch.Tensor, ref: torch.Tensor, window: int = SSIM_KERNEL_SIZE,
         sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Structural similarity (graphdeco's, see the module doc): the mean of :func:`ssim_map`.

    img, ref: (H,W,3) → scalar, or (B,H,W,3) → (B,), one value per image. Differentiable
    (usable as a loss, e.g. ``1 - ssim``).
    """
    _check_pair(img, ref)
    batched = img.dim() == 4
    x, y = (img, ref) if batched else (img[None], ref[None])
    out = ssim_map(x, y, window, sigma).mean(dim=(1, 2, 3))
    return out if batched else out[0]


def lpips_available() -> tuple[bool, str]:
    """LPIPS needs pretrained network weights, which no installed package ships here (and
    nothing may be downloaded), so it is reported as unavailable, never approximated."""
    return False, ("LPIPS needs pretrained AlexNet/VGG weights that no installed package ships; "
                   "they cannot be downloaded in this environment, so LPIPS is not reported")


def to_uint8(img) -> np.ndarray:
    """Image in [0,1] (torch or NumPy, any shape) → uint8 NumPy array (clamped, rounded)."""
    if isinstance(img, torch.Tensor):
        img = img.detach().to("cpu", torch.float32).numpy()
    a = np.asarray(img, dtype=np.float32)
    return (np.clip(np.nan_to_num(a, nan=0.0), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def error_map(img, ref, vmax: float = 0.25, cmap: str = "inferno") -> np.ndarray:
    """Per-pixel error as a uint8 heat map (H,W,3).

    The error is the mean absolute difference over RGB, mapped through ``cmap`` on the
    fixed range [0, vmax] (default 0.25), so maps of different images are comparable.
    img, ref: (H,W,3) in [0,1], torch or NumPy.
    """
    import matplotlib

    a = img.detach().cpu().float().numpy() if isinstance(img, torch.Tensor) else np.asarray(img, np.float32)
    b = ref.detach().cpu().float().numpy() if isinstance(ref, torch.Tensor) else np.asarray(ref, np.float32)
    if a.shape != b.shape or a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"error_map needs two (H,W,3) images of one shape, got {a.shape} and {b.shape}")
    if not vmax > 0:
        raise ValueError(f"vmax must be > 0, got {vmax}")
    err = np.clip(np.abs(a - b).mean(axis=-1) / vmax, 0.0, 1.0)
    rgba = matplotlib.colormaps[cmap](err)
    return to_uint8(rgba[..., :3])

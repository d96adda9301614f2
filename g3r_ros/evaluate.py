"""Evaluation of a reconstruction on keyframes: renders, PSNR and SSIM per view."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .geometry import CameraBatch, PinholeCamera
from .metrics import psnr, ssim
from .render import render
from .render.types import GaussianParams
from .views import image_to_tensor
from .window import Keyframe

ParamsAt = Callable[[float | None], GaussianParams]


BANDS = ("top", "middle", "bottom")


@dataclass
class ViewScore:
    """One evaluated view. render: (H,W,3) float32 in [0,1] (numpy). psnr_bands: PSNR of the
    top, middle and bottom thirds of the image rows (the LiDAR sees little of the top one)."""

    index: int
    stamp: float
    psnr: float
    ssim: float
    render: np.ndarray
    psnr_bands: tuple[float, float, float] = (float("nan"),) * 3


def band_psnr(img: torch.Tensor, ref: torch.Tensor) -> tuple[float, float, float]:
    """PSNR (dB) of the top, middle and bottom thirds of the rows: img, ref (H,W,3) in [0,1]."""
    h = img.shape[0]
    edges = [0, h // 3, (2 * h) // 3, h]
    return tuple(float(psnr(img[a:b], ref[a:b])) for a, b in zip(edges[:-1], edges[1:]))


@torch.no_grad()
def render_camera(params: GaussianParams, camera: PinholeCamera, *, background=None, backend="auto") -> torch.Tensor:
    """Render one camera → (H,W,3) float in [0,1] (clamped)."""
    cams = CameraBatch.from_cameras([camera], device=params.means.device)
    out = render(params, cams, background=background, backend=backend, render_depth=False)
    return out.rgb[0].clamp(0.0, 1.0)


@torch.no_grad()
def evaluate_keyframes(params_at: ParamsAt, keyframes: list[Keyframe], *, background=None, backend="auto",
                       device="cpu", keep_renders: bool = True) -> list[ViewScore]:
    """Render every keyframe at its own stamp and score it against its image."""
    scores = []
    for kf in keyframes:
        params = params_at(kf.stamp)
        img = render_camera(params, kf.camera, background=background, backend=backend)
        ref = image_to_tensor(kf.image, device=img.device)
        scores.append(ViewScore(kf.index, kf.stamp, float(psnr(img, ref)), float(ssim(img, ref)),
                                img.cpu().numpy() if keep_renders else np.zeros((0, 0, 3), np.float32),
                                band_psnr(img, ref)))
    return scores


def mean_psnr(scores: list[ViewScore]) -> float:
    """Mean PSNR over views (NaN when empty)."""
    return float(np.mean([s.psnr for s in scores])) if scores else float("nan")


def mean_ssim(scores: list[ViewScore]) -> float:
    return float(np.mean([s.ssim for s in scores])) if scores else float("nan")


def mean_band_psnr(scores: list[ViewScore]) -> dict[str, float]:
    """{"top", "middle", "bottom"}: mean PSNR of each image band over views (NaN when empty)."""
    if not scores:
        return {b: float("nan") for b in BANDS}
    return {b: float(np.mean([s.psnr_bands[i] for s in scores])) for i, b in enumerate(BANDS)}

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


@dataclass
class ViewScore:
    """One evaluated view. render: (H,W,3) float32 in [0,1] (numpy)."""

    index: int
    stamp: float
    psnr: float
    ssim: float
    render: np.ndarray


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
                                img.cpu().numpy() if keep_renders else np.zeros((0, 0, 3), np.float32)))
    return scores


def mean_psnr(scores: list[ViewScore]) -> float:
    """Mean PSNR over views (NaN when empty)."""
    return float(np.mean([s.psnr for s in scores])) if scores else float("nan")


def mean_ssim(scores: list[ViewScore]) -> float:
    return float(np.mean([s.ssim for s in scores])) if scores else float("nan")

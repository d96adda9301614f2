"""Data types of the renderer contract (see ``g3r_ros.render.render``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Alpha cap per Gaussian per pixel. gsplat 1.5.3's CUDA rasterizer uses 0.999; graphdeco's
# original rasterizer and newer gsplat releases use 0.99.
ALPHA_MAX = 0.999
# Minimum alpha that a Gaussian contributes to a pixel.
ALPHA_MIN = 1.0 / 255.0
# A pixel stops compositing before the first Gaussian that would take T to <= this.
TRANSMITTANCE_MIN = 1e-4
# Low-pass filter added to the diagonal of every 2D covariance (pixels^2).
EPS2D = 0.3
NEAR_PLANE = 0.01
FAR_PLANE = 1e10


@dataclass
class GaussianParams:
    """Renderable 3D Gaussians, all in the world frame.

    means: (N,3) world. quats: (N,4) w,x,y,z (need not be unit). log_scales: (N,3).
    opacity_logits: (N,) pre-sigmoid opacity. rgb: (N,3) colour in [0,1] (not clamped here).
    """

    means: torch.Tensor
    quats: torch.Tensor
    log_scales: torch.Tensor
    opacity_logits: torch.Tensor
    rgb: torch.Tensor

    def __len__(self) -> int:
        return int(self.means.shape[0])

    @staticmethod
    def cat(parts: list[GaussianParams]) -> GaussianParams:
        """Concatenate several sets (e.g. background + actors + distant) into one."""
        return GaussianParams(*(torch.cat([getattr(p, f) for p in parts], 0) for f in
                                ("means", "quats", "log_scales", "opacity_logits", "rgb")))

    def detach(self) -> GaussianParams:
        return GaussianParams(self.means.detach(), self.quats.detach(), self.log_scales.detach(),
                              self.opacity_logits.detach(), self.rgb.detach())


@dataclass
class RenderOutput:
    """Per-camera renders. rgb: (C,H,W,3). alpha: (C,H,W,1). depth: (C,H,W,1) expected
    depth along the optical axis, gsplat's "ED": sum_i(w_i z_i) / max(alpha, 1e-10);
    None when ``render_depth=False``."""

    rgb: torch.Tensor
    alpha: torch.Tensor
    depth: torch.Tensor | None
    # Projected centres (C,N,2) pixels. When the inputs require grad, this tensor has
    # ``retain_grad()`` called, so after ``backward()`` its ``.grad`` holds the view-space
    # positional gradient that 3DGS densification thresholds.
    means2d: torch.Tensor | None = None
    # (C,N) int: screen-space radius in pixels (max of the box half-extents), 0 = culled.
    radii: torch.Tensor | None = None

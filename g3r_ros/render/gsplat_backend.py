"""The gsplat 1.5.3 CUDA backend: a thin mapping of our parameters onto ``gsplat.rasterization``.

Only usable on CUDA tensors; gsplat JIT-builds its CUDA extension on first use (minutes).
The settings reproduce the semantics that the torch backend implements:
``packed=False, rasterize_mode="classic", render_mode="RGB+ED"`` (or "RGB"), with the
same eps2d and near/far planes, and radius_clip=0.
"""

from __future__ import annotations

import functools
import logging

import torch

from ..geometry import CameraBatch
from .types import EPS2D, FAR_PLANE, NEAR_PLANE, GaussianParams, RenderOutput

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def gsplat_cuda_available() -> bool:
    """True when torch sees a GPU, gsplat imports and its CUDA extension loads (or builds)."""
    if not torch.cuda.is_available():
        return False
    try:
        import gsplat  # noqa: F401
        from gsplat.cuda._backend import _C
    except Exception as e:  # noqa: BLE001 - any import/build failure means "not available"
        log.info("gsplat CUDA backend unavailable: %s", e)
        return False
    if _C is None:
        log.info("gsplat CUDA backend unavailable: its CUDA extension did not build")
        return False
    return True


def render_gsplat(gaussians: GaussianParams, cameras: CameraBatch, background: torch.Tensor | None,
                  render_depth: bool = True) -> RenderOutput:
    """Render with gsplat on CUDA. Inputs are assumed validated (see ``render``), N > 0.

    background: (C,3) or None. Returns the same fields as the torch backend; ``means2d``
    is gsplat's projected-means tensor (C,N,2) (its ``.grad`` is the positional gradient),
    ``radii`` the max of gsplat's per-axis radii (C,N).
    """
    from gsplat import rasterization

    colors, alphas, meta = rasterization(
        means=gaussians.means,
        quats=gaussians.quats,
        scales=torch.exp(gaussians.log_scales),
        opacities=torch.sigmoid(gaussians.opacity_logits),
        colors=gaussians.rgb,
        viewmats=cameras.viewmats,
        Ks=cameras.Ks,
        width=cameras.width,
        height=cameras.height,
        near_plane=NEAR_PLANE,
        far_plane=FAR_PLANE,
        radius_clip=0.0,
        eps2d=EPS2D,
        packed=False,
        tile_size=16,
        backgrounds=background,
        render_mode="RGB+ED" if render_depth else "RGB",
        rasterize_mode="classic",
    )
    means2d = meta["means2d"]
    if means2d.requires_grad:
        means2d.retain_grad()
    radii = meta["radii"]
    if radii.dim() == 3:  # (C,N,2) per-axis radii in gsplat >= 1.5
        radii = radii.amax(-1)
    return RenderOutput(rgb=colors[..., :3], alpha=alphas, depth=colors[..., 3:4] if render_depth else None,
                        means2d=means2d, radii=radii.to(torch.int32))

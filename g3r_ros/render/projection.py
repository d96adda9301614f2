"""EWA projection of 3D Gaussians into pinhole cameras (gsplat 1.5.3 "classic" semantics).

Everything here is plain, differentiable PyTorch on any device and dtype. It mirrors
gsplat's CUDA ``fully_fused_projection`` (``ProjectionEWA3DGSFused.cu`` + ``persp_proj``):

- world → camera with the view matrix (``viewmats`` = ``T_cam_world``);
- the perspective Jacobian is evaluated at the centre clamped to 1.3x the field of view
  (``lim = (W - cx)/fx + 0.3 * W/(2 fx)`` and the mirrored bounds);
- ``EPS2D`` is added to the diagonal of the 2D covariance; conics are its inverse;
- a Gaussian is culled (radius 0) when its depth is outside (near, far), when the
  blurred 2D covariance is not positive definite, when its opacity is below 1/255,
  or when its box lies fully outside the image;
- the box half-extent per axis is ``ceil(extent * sqrt(cov2d_ii))`` with the
  opacity-aware ``extent = min(3.33, sqrt(2 ln(255 * opacity)))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..geometry import quat_to_rotmat_torch
from .types import ALPHA_MIN, EPS2D, FAR_PLANE, NEAR_PLANE

# gsplat's cap on the box extent in standard deviations. Because sqrt(2 ln 255) = 3.3294 < 3.33,
# the opacity-aware extent is always the binding one for opacity <= 1.
EXTENT_MAX = 3.33


@dataclass
class Projection:
    """Per-camera projected Gaussians. C cameras, N Gaussians.

    means2d: (C,N,2) pixel centres (x right, y down; pixel (i,j) has centre (j+.5, i+.5)).
    conics: (C,N,3) inverse blurred 2D covariance, upper triangle (xx, xy, yy).
    depths: (C,N) z of the centre in the optical frame.
    extent_xy: (C,N,2) un-rounded opacity-aware box half-extents in pixels
        (``extent * sqrt(cov2d_ii)``), no grad: every pixel whose alpha can reach 1/255
        has its centre within this box. 0 where culled.
    radii_xy: (C,N,2) int32 gsplat radii, ``ceil`` of ``extent_xy``; 0 where culled.
    valid: (C,N) bool, ``radii_xy > 0`` on both axes.
    """

    means2d: torch.Tensor
    conics: torch.Tensor
    depths: torch.Tensor
    extent_xy: torch.Tensor
    radii_xy: torch.Tensor
    valid: torch.Tensor


def quat_scale_to_covar(quats: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """(N,4) quaternions w,x,y,z (normalized here) and (N,3) scales → (N,3,3) R S S R^T."""
    M = quat_to_rotmat_torch(quats) * scales[..., None, :]
    return M @ M.transpose(-1, -2)


def project_gaussians(
    means: torch.Tensor,
    covars: torch.Tensor,
    opacities: torch.Tensor | None,
    viewmats: torch.Tensor,
    Ks: torch.Tensor,
    width: int,
    height: int,
    *,
    eps2d: float = EPS2D,
    near_plane: float = NEAR_PLANE,
    far_plane: float = FAR_PLANE,
) -> Projection:
    """Project Gaussians into C cameras.

    means: (N,3) world. covars: (N,3,3) world. opacities: (N,) in [0,1], or None for gsplat's
    opacity-unaware boxes (extent 3.33, no opacity culling; as gsplat without ``opacities``).
    viewmats: (C,4,4) ``T_cam_world``. Ks: (C,3,3). Returns a :class:`Projection`.

    Differentiable w.r.t. means, covars (and through them quats/scales) for the valid
    entries. Culled entries carry finite placeholder values and receive zero gradient.
    """
    R = viewmats[:, :3, :3]  # (C,3,3)
    t = viewmats[:, :3, 3]  # (C,3)
    means_c = torch.einsum("cij,nj->cni", R, means) + t[:, None, :]  # (C,N,3)
    covars_c = torch.einsum("cij,njk,clk->cnil", R, covars, R)  # (C,N,3,3)

    x, y, z = means_c.unbind(-1)
    in_depth = (z >= near_plane) & (z <= far_plane)
    # A safe depth keeps culled entries finite, so their zero gradient stays zero (not NaN).
    zs = torch.where(in_depth, z, torch.ones_like(z))

    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]  # (C,1)
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    tan_fovx = 0.5 * width / fx
    tan_fovy = 0.5 * height / fy
    lim_x_pos = (width - cx) / fx + 0.3 * tan_fovx
    lim_x_neg = cx / fx + 0.3 * tan_fovx
    lim_y_pos = (height - cy) / fy + 0.3 * tan_fovy
    lim_y_neg = cy / fy + 0.3 * tan_fovy
    tx = zs * torch.minimum(torch.maximum(x / zs, -lim_x_neg), lim_x_pos)
    ty = zs * torch.minimum(torch.maximum(y / zs, -lim_y_neg), lim_y_pos)

    rz = 1.0 / zs
    zero = torch.zeros_like(zs)
    J = torch.stack([fx * rz, zero, -fx * tx * rz * rz, zero, fy * rz, -fy * ty * rz * rz], -1)
    J = J.reshape(zs.shape + (2, 3))
    cov2d = J @ covars_c @ J.transpose(-1, -2)  # (C,N,2,2)
    means2d = torch.stack([fx * x * rz + cx, fy * y * rz + cy], -1)

    a = cov2d[..., 0, 0] + eps2d
    b = 0.5 * (cov2d[..., 0, 1] + cov2d[..., 1, 0])
    c = cov2d[..., 1, 1] + eps2d
    det = a * c - b * b
    pos_det = det > 0
    det_s = torch.where(pos_det, det, torch.ones_like(det))
    conics = torch.stack([c / det_s, -b / det_s, a / det_s], -1)

    with torch.no_grad():
        if opacities is None:
            opaque = torch.ones_like(in_depth)
            extent = torch.full_like(z, EXTENT_MAX).detach()
        else:
            op = opacities.detach().to(z.dtype).expand_as(z)
            opaque = op >= ALPHA_MIN
            extent = torch.sqrt(2.0 * torch.log(op.clamp_min(ALPHA_MIN) / ALPHA_MIN)).clamp_max(EXTENT_MAX)
        ext_xy = extent[..., None] * torch.stack([a.detach(), c.detach()], -1).clamp_min(0).sqrt()
        # Clamp before the int32 cast: absurd scales would otherwise overflow it.
        radii_f = torch.ceil(ext_xy).clamp_max(float(1 << 30))
        valid = in_depth & pos_det & opaque & (radii_f > 0).any(-1)
        mx, my = means2d.detach().unbind(-1)
        rx, ry = radii_f.unbind(-1)
        inside = (mx + rx > 0) & (mx - rx < width) & (my + ry > 0) & (my - ry < height)
        valid = valid & inside
        # gsplat keeps a Gaussian when either radius is > 0; with EPS2D > 0 both are.
        ext_xy = torch.where(valid[..., None], ext_xy, torch.zeros_like(ext_xy))
        radii_xy = torch.where(valid[..., None], radii_f, torch.zeros_like(radii_f)).to(torch.int32)
    return Projection(means2d=means2d, conics=conics, depths=z, extent_xy=ext_xy, radii_xy=radii_xy,
                      valid=valid)


def opacity_extent(opacity: float) -> float:
    """Scalar version of the opacity-aware extent (standard deviations), for docs and tests."""
    if opacity < ALPHA_MIN:
        return 0.0
    return min(EXTENT_MAX, math.sqrt(2.0 * math.log(opacity / ALPHA_MIN)))

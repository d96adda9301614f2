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


# Upper-triangle order of the symmetric 6-vectors used here: xx, xy, xz, yy, yz, zz.
_TRIU_I = (0, 0, 0, 1, 1, 2)
_TRIU_J = (0, 1, 2, 1, 2, 2)


def quat_scale_to_covar6(quats: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """(N,4) quaternions w,x,y,z (normalized here) and (N,3) scales → (N,6) upper triangle
    [xx, xy, xz, yy, yz, zz] of R S S R^T (elementwise: batched 3x3 matmuls are slow on CPU)."""
    R = quat_to_rotmat_torch(quats)  # (N,3,3)
    rows = R.unbind(1)  # R[:, i, :], (N,3) each
    rows_s = (R * (scales * scales)[:, None, :]).unbind(1)
    return torch.stack([(rows[i] * rows_s[j]).sum(-1) for i, j in zip(_TRIU_I, _TRIU_J)], -1)


def covar6_to_matrix(c6: torch.Tensor) -> torch.Tensor:
    """(...,6) upper triangle → (...,3,3) symmetric matrix."""
    xx, xy, xz, yy, yz, zz = c6.unbind(-1)
    return torch.stack([xx, xy, xz, xy, yy, yz, xz, yz, zz], -1).reshape(c6.shape[:-1] + (3, 3))


def quat_scale_to_covar(quats: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """(N,4) quaternions w,x,y,z (normalized here) and (N,3) scales → (N,3,3) R S S R^T."""
    return covar6_to_matrix(quat_scale_to_covar6(quats, scales))


def _rotate_covar6_matrix(R: torch.Tensor) -> torch.Tensor:
    """(C,3,3) rotations → (C,6,6) A with covar6(R S R^T) = A @ covar6(S) for symmetric S."""
    K = torch.einsum("cai,cbj->cabij", R, R)  # K[c,a,b,i,j] = R_ai R_bj
    ii, jj = list(_TRIU_I), list(_TRIU_J)
    out = K[:, ii, jj]  # (C,6,3,3): output pairs (a,b)
    A = out[:, :, ii, jj]  # (C,6,6): coefficient of S_ij
    off = torch.tensor([i != j for i, j in zip(_TRIU_I, _TRIU_J)], device=R.device)
    return A + torch.where(off, out[:, :, jj, ii], torch.zeros_like(A))


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

    means: (N,3) world. covars: (N,3,3) or (N,6) upper triangle [xx,xy,xz,yy,yz,zz], world.
    opacities: (N,) in [0,1], or None for gsplat's opacity-unaware boxes (extent 3.33, no
    opacity culling; as gsplat without ``opacities``).
    viewmats: (C,4,4) ``T_cam_world``. Ks: (C,3,3). Returns a :class:`Projection`.

    Differentiable w.r.t. means, covars (and through them quats/scales) for the valid
    entries. Culled entries carry finite placeholder values and receive zero gradient.
    """
    R = viewmats[:, :3, :3]  # (C,3,3)
    t = viewmats[:, :3, 3]  # (C,3)
    means_c = torch.matmul(means, R.transpose(1, 2)) + t[:, None, :]  # (C,N,3)
    c6 = covars if covars.shape[-1] == 6 else covars[:, _TRIU_I, _TRIU_J]
    s_xx, s_xy, s_xz, s_yy, s_yz, s_zz = torch.matmul(c6, _rotate_covar6_matrix(R).transpose(1, 2)).unbind(-1)

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

    # J = [[j00, 0, j02], [0, j11, j12]]; cov2d = J cov_c J^T written out (no 3x3 batched matmuls).
    rz = 1.0 / zs
    j00, j11 = fx * rz, fy * rz
    j02, j12 = -j00 * tx * rz, -j11 * ty * rz
    cov_xx = j00 * (j00 * s_xx + 2.0 * j02 * s_xz) + j02 * j02 * s_zz
    cov_xy = j00 * (j11 * s_xy + j12 * s_xz) + j02 * (j11 * s_yz + j12 * s_zz)
    cov_yy = j11 * (j11 * s_yy + 2.0 * j12 * s_yz) + j12 * j12 * s_zz
    means2d = torch.stack([fx * x * rz + cx, fy * y * rz + cy], -1)

    a = cov_xx + eps2d
    b = cov_xy
    c = cov_yy + eps2d
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

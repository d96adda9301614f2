"""The pure-PyTorch tile rasterizer (any device, differentiable in every Gaussian parameter).

Pipeline: EWA projection (``projection``) → vectorized tile binning (``binning``) →
per-chunk quadratic log-alpha coefficients (autograd) → compositing with a hand-written
backward (``composite``) → tiles scattered back into images, background and "ED" depth.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..geometry import CameraBatch
from .binning import bin_gaussians
from .composite import EXP_FLOOR, composite_tiles, tile_monomials
from .projection import Projection, project_gaussians, quat_scale_to_covar
from .types import GaussianParams, RenderOutput

TILE_SIZE = 8
# Work elements (tiles x pixels x K) per compositing chunk; bounds the transient memory.
CHUNK_ELEMENTS = 1 << 22


def project(gaussians: GaussianParams, cameras: CameraBatch) -> Projection:
    """EWA projection of ``gaussians`` into every camera of ``cameras`` (see ``projection``)."""
    covars = quat_scale_to_covar(gaussians.quats, torch.exp(gaussians.log_scales))
    return project_gaussians(gaussians.means, covars, torch.sigmoid(gaussians.opacity_logits),
                             cameras.viewmats, cameras.Ks, cameras.width, cameras.height)


def _entry_table(gaussians: GaussianParams, proj: Projection, entries: torch.Tensor, render_depth: bool):
    """(E+1, 6+F) per-entry parameters [mx, my, conic_xx, conic_xy, conic_yy, log_opacity, feat...],
    last row padding (log-opacity far below EXP_FLOOR, so it never contributes)."""
    N = len(gaussians)
    n = entries % N
    cols = [proj.means2d.reshape(-1, 2)[entries], proj.conics.reshape(-1, 3)[entries],
            F.logsigmoid(gaussians.opacity_logits)[n, None], gaussians.rgb[n]]
    if render_depth:
        cols.append(proj.depths.reshape(-1)[entries, None])
    table = torch.cat(cols, 1)
    pad = torch.zeros(1, table.shape[1], dtype=table.dtype, device=table.device)
    pad[0, 5] = 4.0 * EXP_FLOOR
    return torch.cat([table, pad], 0)


def _chunk_inputs(table: torch.Tensor, idx: torch.Tensor, tile_ids: torch.Tensor, tiles_x: int,
                  tiles_per_image: int, tile_size: int):
    """Gather one chunk. idx: (Tc,K) rows of ``table``. Returns coef (Tc,6,K), feat (Tc,F,K)."""
    Tc, K = idx.shape
    g = table[idx.reshape(-1)].reshape(Tc, K, -1)
    # The expansion around the tile centre cancels large terms for long, thin Gaussians far
    # from their centre (a mx^2 ~ b mx my ~ 1e3): form the 6 coefficients in float64 (cheap,
    # (Tc,K) only), so the float32 matmul only sums well-conditioned terms.
    cdt = torch.float64 if table.dtype in (torch.float32, torch.float16, torch.bfloat16) else table.dtype
    q = g[..., :6].to(cdt)
    local = tile_ids % tiles_per_image
    ox = ((local % tiles_x) * tile_size + tile_size / 2.0).to(cdt)[:, None]
    oy = ((local // tiles_x) * tile_size + tile_size / 2.0).to(cdt)[:, None]
    mx = q[..., 0] - ox
    my = q[..., 1] - oy
    a, b, c, logop = q[..., 2], q[..., 3], q[..., 4], q[..., 5]
    # log alpha = logop - (a dx^2 / 2 + b dx dy + c dy^2 / 2), dx = u - mx, dy = v - my.
    bx, by = b * mx, b * my
    coef = torch.stack([
        logop - 0.5 * a * mx * mx - bx * my - 0.5 * c * my * my,
        a * mx + by,
        c * my + bx,
        -0.5 * a,
        -b,
        -0.5 * c,
    ], 1).to(table.dtype)
    feat = g[..., 6:].transpose(1, 2)
    return coef, feat


def render_torch(gaussians: GaussianParams, cameras: CameraBatch, background: torch.Tensor | None,
                 render_depth: bool = True, tile_size: int = TILE_SIZE,
                 chunk_elements: int = CHUNK_ELEMENTS) -> RenderOutput:
    """Render with the torch backend. Inputs are assumed validated (see ``render``).

    gaussians: N Gaussians (world). cameras: C cameras (same dtype/device as the Gaussians).
    background: (C,3) or None (black). Returns rgb (C,H,W,3), alpha (C,H,W,1),
    depth (C,H,W,1) or None, means2d (C,N,2) and radii (C,N) int32.
    """
    C, H, W = len(cameras), cameras.height, cameras.width
    dtype, dev = gaussians.means.dtype, gaussians.means.device
    proj = project(gaussians, cameras)
    bins = bin_gaussians(proj.means2d, proj.extent_xy, proj.depths, proj.valid, W, H, tile_size=tile_size,
                         chunk_elements=chunk_elements)
    n_feat = 4 if render_depth else 3
    P = tile_size * tile_size
    tiles_per_image = bins.tiles_x * bins.tiles_y
    n_tiles = C * tiles_per_image
    table = _entry_table(gaussians, proj, bins.entries, render_depth)
    mono = tile_monomials(tile_size, dtype=dtype, device=dev)

    outs, trans, ids = [], [], []
    for tile_ids, K in bins.chunks:
        idx = bins.padded_index(tile_ids, K)
        coef, feat = _chunk_inputs(table, idx, tile_ids, bins.tiles_x, tiles_per_image, tile_size)
        out, t_final = composite_tiles(mono, coef, feat)
        outs.append(out)
        trans.append(t_final)
        ids.append(tile_ids)
    img = torch.zeros(n_tiles, P, n_feat, dtype=dtype, device=dev)
    t_img = torch.ones(n_tiles, P, dtype=dtype, device=dev)
    if ids:
        all_ids = torch.cat(ids)
        img = img.index_copy(0, all_ids, torch.cat(outs))
        t_img = t_img.index_copy(0, all_ids, torch.cat(trans))

    def to_image(x):  # (C*TH*TW, P, F) → (C, H, W, F)
        f = x.shape[-1]
        x = x.reshape(C, bins.tiles_y, bins.tiles_x, tile_size, tile_size, f).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(C, bins.tiles_y * tile_size, bins.tiles_x * tile_size, f)[:, :H, :W]

    img = to_image(img)
    t_img = to_image(t_img[..., None])
    rgb = img[..., :3]
    if background is not None:
        rgb = rgb + t_img * background[:, None, None, :]
    alpha = 1.0 - t_img
    depth = img[..., 3:4] / alpha.clamp_min(1e-10) if render_depth else None
    radii = proj.radii_xy.amax(-1)
    return RenderOutput(rgb=rgb, alpha=alpha, depth=depth, means2d=proj.means2d, radii=radii)

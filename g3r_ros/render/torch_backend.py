"""The pure-PyTorch tile rasterizer (any device, differentiable in every Gaussian parameter).

Pipeline: EWA projection (``projection``) → vectorized tile binning (``binning``) →
per-chunk quadratic log-alpha coefficients (autograd) → compositing with a hand-written
backward (``composite``) → tiles scattered back into images, background and "ED" depth.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from ..geometry import CameraBatch
from .binning import bin_gaussians
from .composite import K_BLOCK, LOG_ALPHA_MAX, composite_tiles, tile_monomials
from .projection import Projection, project_gaussians, quat_scale_to_covar6
from .types import GaussianParams, RenderOutput

# 4x4 tiles, 256-Gaussian blocks and 1M-element chunks, timed on G3R steps over a held-out
# synthetic street (CPU, 2 threads; tools/raster_knob_sweep.py): 4 steps 4.33 s against 6.60 s
# with the earlier 8x8 / 64 / 4M (PREVIOUS_KNOBS). Small tiles waste fewer pixel evaluations on
# small footprints; long blocks mean fewer, larger tensor ops per tile. See docs/RENDERER.md.
TILE_SIZE = 4
# Work elements (tiles x pixels x K) per compositing chunk; bounds the transient memory.
CHUNK_ELEMENTS = 1 << 20
# The defaults before they were timed on G3R steps (g3r bench train's earlier trainer uses them).
PREVIOUS_KNOBS = {"tile_size": 8, "k_block": 64, "chunk_elements": 1 << 22}


@contextlib.contextmanager
def rasterizer_knobs(tile_size: int | None = None, k_block: int | None = None, chunk_elements: int | None = None):
    """Temporarily change the defaults of :func:`render_torch`'s performance knobs (for side-by-side
    benchmarks of earlier settings); None keeps a knob as it is."""
    global TILE_SIZE, K_BLOCK, CHUNK_ELEMENTS
    saved = TILE_SIZE, K_BLOCK, CHUNK_ELEMENTS
    TILE_SIZE = tile_size or TILE_SIZE
    K_BLOCK = k_block or K_BLOCK
    CHUNK_ELEMENTS = chunk_elements or CHUNK_ELEMENTS
    try:
        yield
    finally:
        TILE_SIZE, K_BLOCK, CHUNK_ELEMENTS = saved


def project(gaussians: GaussianParams, cameras: CameraBatch) -> Projection:
    """EWA projection of ``gaussians`` into every camera of ``cameras`` (see ``projection``)."""
    covars = quat_scale_to_covar6(gaussians.quats, torch.exp(gaussians.log_scales))
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
    pad[0, 5] = -1000.0
    return torch.cat([table, pad], 0)


def render_torch(gaussians: GaussianParams, cameras: CameraBatch, background: torch.Tensor | None,
                 render_depth: bool = True, tile_size: int | None = None,
                 chunk_elements: int | None = None, k_block: int | None = None) -> RenderOutput:
    """Render with the torch backend. Inputs are assumed validated (see ``render``).

    gaussians: N Gaussians (world). cameras: C cameras (same dtype/device as the Gaussians).
    background: (C,3) or None (black). tile_size, chunk_elements, k_block: performance knobs
    (tiles of tile_size^2 pixels; work-array budget; Gaussians per early-exit block).
    Returns rgb (C,H,W,3), alpha (C,H,W,1), depth (C,H,W,1) or None, means2d (C,N,2) and radii (C,N) int32.
    """
    C, H, W = len(cameras), cameras.height, cameras.width
    tile_size = TILE_SIZE if tile_size is None else tile_size
    chunk_elements = CHUNK_ELEMENTS if chunk_elements is None else chunk_elements
    k_block = K_BLOCK if k_block is None else k_block
    dtype, dev = gaussians.means.dtype, gaussians.means.device
    proj = project(gaussians, cameras)
    bins = bin_gaussians(proj.means2d, proj.extent_xy, proj.depths, proj.valid, W, H, tile_size=tile_size,
                         chunk_elements=chunk_elements, k_block=k_block)
    n_feat = 4 if render_depth else 3
    P = tile_size * tile_size
    tiles_per_image = bins.tiles_x * bins.tiles_y
    n_tiles = C * tiles_per_image
    table = _entry_table(gaussians, proj, bins.entries, render_depth)
    mono = tile_monomials(tile_size, dtype=dtype, device=dev)
    # Only Gaussians with opacity >= ALPHA_MAX can hit the alpha cap.
    may_cap = bool((table[:-1, 5] >= LOG_ALPHA_MAX - 1e-6).any())

    outs, trans, ids = [], [], []
    for tile_ids, K in bins.chunks:
        idx = bins.padded_index(tile_ids, K)
        local = tile_ids % tiles_per_image
        origin = torch.stack([(local % bins.tiles_x) * tile_size, (local // bins.tiles_x) * tile_size], 1)
        origin = origin.to(dtype) + tile_size / 2.0
        out, t_final = composite_tiles(mono, table, idx, origin, bins.tile_count[tile_ids], may_cap, k_block)
        outs.append(out)
        trans.append(t_final)
        ids.append(tile_ids)
    img = torch.zeros(n_tiles, P, n_feat, dtype=dtype, device=dev)
    t_img = torch.ones(n_tiles, P, dtype=dtype, device=dev)
    if ids:
        all_ids = torch.cat(ids)
        img = img.index_copy(0, all_ids, torch.cat(outs))
        t_img = t_img.index_copy(0, all_ids, torch.cat(trans))
    elif table.requires_grad:
        # Nothing visible: keep the outputs in the graph (zero gradients, backward() still works).
        img = img + 0.0 * table.sum()

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

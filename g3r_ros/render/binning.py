"""Vectorized tile binning: projected Gaussians → depth-sorted, padded per-tile lists.

No Python loop over tiles or Gaussians. The steps:

1. the valid (camera, Gaussian) entries are sorted by depth (stable: ties by index);
2. each entry's opacity-aware box (every pixel centre where its alpha can reach 1/255)
   is expanded into (tile, entry) pairs with ``repeat_interleave``;
3. a stable sort by global tile id (``camera * tiles_per_image + tile``) keeps each tile's
   pairs in depth order;
4. tiles are grouped (largest count first) into chunks whose [tiles, pixels, K-block]
   work arrays stay within a budget; each chunk is padded to its largest count.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Slack (pixels) added to the box so float rounding never drops a pixel whose alpha is >= 1/255.
BOX_MARGIN_PX = 1e-3
BOX_MARGIN_REL = 1e-5


@dataclass
class TileBins:
    """Binning result for C cameras of one image size.

    entries: (E,) flat indices ``c * N + n`` of the valid entries, in depth order.
    pair_entry: (M,) position in ``entries`` of every (tile, entry) pair, sorted by
        (tile, depth). tile_start / tile_count: (C*TH*TW,) offsets into ``pair_entry``.
    tile_size, tiles_x, tiles_y: the tiling (TW = tiles_x, TH = tiles_y).
    chunks: list of (tile_ids (Tc,) long, K) — tiles composited together, padded to K.
    """

    entries: torch.Tensor
    pair_entry: torch.Tensor
    tile_start: torch.Tensor
    tile_count: torch.Tensor
    tile_size: int
    tiles_x: int
    tiles_y: int
    chunks: list

    def padded_index(self, tile_ids: torch.Tensor, K: int) -> torch.Tensor:
        """(Tc,K) long: positions in ``entries`` per tile slot, ``len(entries)`` for padding."""
        kk = torch.arange(K, device=tile_ids.device)
        cnt = self.tile_count[tile_ids][:, None]
        pos = self.tile_start[tile_ids][:, None] + kk
        inside = kk < cnt
        pos = torch.where(inside, pos, torch.zeros_like(pos))
        idx = self.pair_entry[pos] if self.pair_entry.numel() else torch.zeros_like(pos)
        return torch.where(inside, idx, torch.full_like(idx, self.entries.numel()))


def pixel_box(means2d: torch.Tensor, extent_xy: torch.Tensor, width: int, height: int):
    """Inclusive pixel index ranges covered by the boxes.

    means2d: (E,2) pixels, extent_xy: (E,2) half-extents. Pixel j is covered when its centre
    j+0.5 satisfies |j + 0.5 - mx| <= ex. Returns (j0, j1, i0, i1) int64, clamped to the
    image; j1 < j0 or i1 < i0 means empty.
    """
    e = extent_xy * (1.0 + BOX_MARGIN_REL) + BOX_MARGIN_PX
    lo = torch.ceil(means2d - e - 0.5)
    hi = torch.floor(means2d + e - 0.5)
    lo = lo.clamp(min=0).to(torch.int64)
    hi = torch.minimum(hi, torch.tensor([width - 1.0, height - 1.0], dtype=hi.dtype, device=hi.device))
    hi = hi.clamp(min=-1).to(torch.int64)
    return lo[:, 0], hi[:, 0], lo[:, 1], hi[:, 1]


def bin_gaussians(means2d: torch.Tensor, extent_xy: torch.Tensor, depths: torch.Tensor, valid: torch.Tensor,
                  width: int, height: int, tile_size: int = 8, chunk_elements: int = 1 << 22,
                  k_block: int = 64) -> TileBins:
    """Bin projected Gaussians into tiles.

    means2d: (C,N,2), extent_xy: (C,N,2), depths: (C,N), valid: (C,N) bool (no grad needed).
    chunk_elements: budget of Tc * tile_size^2 * k_block (the work arrays of one K-block of a chunk).
    """
    C, N = valid.shape
    dev = valid.device
    tiles_x = (width + tile_size - 1) // tile_size
    tiles_y = (height + tile_size - 1) // tile_size
    n_tiles = C * tiles_x * tiles_y
    with torch.no_grad():
        entries = valid.reshape(-1).nonzero().squeeze(1)
        order = torch.argsort(depths.reshape(-1)[entries], stable=True)
        entries = entries[order]
        cam = entries // N
        m2 = means2d.detach().reshape(-1, 2)[entries]
        ex = extent_xy.detach().reshape(-1, 2)[entries]
        j0, j1, i0, i1 = pixel_box(m2, ex, width, height)
        tx0, ty0 = j0 // tile_size, i0 // tile_size
        nx = torch.where(j1 >= j0, j1 // tile_size - tx0 + 1, torch.zeros_like(j0))
        ny = torch.where(i1 >= i0, i1 // tile_size - ty0 + 1, torch.zeros_like(i0))
        counts = nx * ny
        E = entries.numel()
        rep = torch.repeat_interleave(torch.arange(E, device=dev), counts)
        # Per pair: its entry's first tile, its box width, and its index r inside the box.
        first = torch.cumsum(counts, 0) - counts
        base = cam * (tiles_x * tiles_y) + ty0 * tiles_x + tx0
        packed = torch.stack([base, nx, first], 1)[rep]
        r = torch.arange(rep.numel(), device=dev) - packed[:, 2]
        # r // nx and r % nx in float32 (exact for these small ints; integer division is slow).
        dy = torch.floor((r.to(torch.float32) + 0.5) / packed[:, 1].to(torch.float32)).to(torch.int64)
        tile = packed[:, 0] + dy * (tiles_x - packed[:, 1]) + r
        key = tile.to(torch.int32) if n_tiles < 2**31 else tile
        tile_sorted, perm = torch.sort(key, stable=True)
        tile_sorted = tile_sorted.to(torch.int64)
        pair_entry = rep[perm]
        tile_count = torch.bincount(tile_sorted, minlength=n_tiles)
        tile_start = torch.cumsum(tile_count, 0) - tile_count
        chunks = _make_chunks(tile_count, tile_size * tile_size, chunk_elements, k_block)
    return TileBins(entries=entries, pair_entry=pair_entry, tile_start=tile_start, tile_count=tile_count,
                    tile_size=tile_size, tiles_x=tiles_x, tiles_y=tiles_y, chunks=chunks)


def _make_chunks(tile_count: torch.Tensor, pixels: int, chunk_elements: int, k_block: int) -> list:
    """Group the non-empty tiles, largest count first, into chunks of at most
    ``chunk_elements // (pixels * k_block)`` tiles. Returns [(tile_ids (Tc,), K = max count)]."""
    counts, order = torch.sort(tile_count, descending=True, stable=True)
    n = int((counts > 0).sum())
    per = max(1, chunk_elements // (pixels * k_block))
    return [(order[s:min(n, s + per)], int(counts[s])) for s in range(0, n, per)]

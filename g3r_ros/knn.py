"""Point-cloud helpers for Gaussian initialization: voxel downsampling and k-NN distances.

Nearest neighbours use ``scipy.spatial.cKDTree``.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.spatial import cKDTree

log = logging.getLogger(__name__)


def voxel_downsample(points: np.ndarray, voxel_size: float, colors: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray | None]:
    """Average the points (and colours) that fall into each cubic voxel.

    points: (N,3) any frame. voxel_size: metres (> 0). colors: optional (N,C).
    Returns (M,3) voxel centroids (float64) and (M,C) mean colours (or None), M <= N,
    in a deterministic order (sorted by voxel key).
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be (N,3), got {points.shape}")
    if not voxel_size > 0:
        raise ValueError(f"voxel_size must be > 0, got {voxel_size}")
    if len(points) == 0:
        return points.copy(), (None if colors is None else np.zeros((0, np.shape(colors)[1])))
    keys = np.floor(points / voxel_size).astype(np.int64)
    keys -= keys.min(axis=0)
    dims = keys.max(axis=0) + 1
    if float(dims[0]) * float(dims[1]) * float(dims[2]) < 2.0**62:  # one int64 key per voxel: fast 1-D unique
        flat = (keys[:, 0] * dims[1] + keys[:, 1]) * dims[2] + keys[:, 2]
        _, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    else:  # astronomically spread input: row-wise unique
        _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    m = len(counts)
    out = np.stack([np.bincount(inverse, weights=points[:, i], minlength=m) for i in range(3)], 1) / counts[:, None]
    out_colors = None
    if colors is not None:
        colors = np.asarray(colors, dtype=np.float64)
        if len(colors) != len(points):
            raise ValueError(f"colors ({len(colors)}) and points ({len(points)}) differ in length")
        out_colors = np.stack([np.bincount(inverse, weights=colors[:, i], minlength=m)
                               for i in range(colors.shape[1])], 1) / counts[:, None]
    return out, out_colors


def downsample_to_budget(points: np.ndarray, voxel_size: float, max_points: int,
                         colors: np.ndarray | None = None, rng: np.random.Generator | None = None
                         ) -> tuple[np.ndarray, np.ndarray | None, float]:
    """Voxel-downsample at ``voxel_size``; while above ``max_points``, grow the voxel.

    The voxel grows by the square root of the excess (LiDAR samples surfaces, so the count
    falls roughly with the voxel area), at most 12 times; a last random subsample enforces
    the budget exactly. Returns (points (M,3), colors (M,C) | None, voxel size used).
    """
    if max_points <= 0:
        raise ValueError(f"max_points must be > 0, got {max_points}")
    rng = rng or np.random.default_rng(0)
    size = float(voxel_size)
    pts, cols = voxel_downsample(points, size, colors)
    for _ in range(12):
        if len(pts) <= max_points:
            break
        size *= max(1.05, float(np.sqrt(len(pts) / max_points)))
        pts, cols = voxel_downsample(points, size, colors)
    if len(pts) > max_points:
        keep = np.sort(rng.choice(len(pts), max_points, replace=False))
        pts = pts[keep]
        cols = None if cols is None else cols[keep]
    if size != voxel_size:
        log.info("voxel size grown from %.3g to %.3g m to fit %d points", voxel_size, size, max_points)
    return pts, cols, size


def knn_distance(points: np.ndarray, k: int = 3, fallback: float = 0.1) -> np.ndarray:
    """Distance from each point to its k-th nearest *other* point.

    points: (N,3). Returns (N,) float64. With fewer than k+1 points, the farthest
    available neighbour is used; a single point gets ``fallback``. Zero distances
    (duplicate points) are left as zero: callers clamp.
    """
    points = np.asarray(points, dtype=np.float64)
    n = len(points)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if n == 0:
        return np.zeros(0)
    if n == 1:
        return np.full(1, float(fallback))
    k_eff = min(k, n - 1)
    dist, _ = cKDTree(points).query(points, k=k_eff + 1)
    return np.asarray(dist)[:, k_eff]


def surface_normals(points: np.ndarray, k: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Local surface normal and planarity of each point from its k nearest neighbours (PCA).

    points: (N,3) any frame. Returns normals (N,3) unit, the eigenvector of the smallest
    eigenvalue of the neighbourhood covariance (sign arbitrary), and planarity (N,) in [0,1],
    1 − λ3 / λ2 with λ1 ≥ λ2 ≥ λ3: near 1 when one direction is much thinner than the other
    two (surfaces), near 0 on blobs and on lines (whose two short axes are alike). With
    fewer than 3 points the normal is +z and the planarity 0.
    """
    points = np.asarray(points, dtype=np.float64)
    n = len(points)
    normals = np.tile(np.array([0.0, 0.0, 1.0]), (n, 1))
    planarity = np.zeros(n)
    if n < 3:
        return normals, planarity
    k_eff = min(int(k), n)
    _, idx = cKDTree(points).query(points, k=k_eff)
    nb = points[np.asarray(idx).reshape(n, k_eff)]  # (N,k,3)
    centred = nb - nb.mean(axis=1, keepdims=True)
    cov = centred.transpose(0, 2, 1) @ centred / k_eff  # (N,3,3); batched matmul, much faster than einsum
    w, v = np.linalg.eigh(cov)  # ascending eigenvalues
    normals = v[:, :, 0]
    planarity = 1.0 - w[:, 0] / np.maximum(w[:, 1], 1e-18)
    return normals, np.clip(planarity, 0.0, 1.0)

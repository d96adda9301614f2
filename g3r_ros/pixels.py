"""Pinhole projection and image sampling in NumPy (float64), shared by the initializers.

Pixel convention (gsplat's): pixel (row i, column j) covers [j, j+1) × [i, i+1) and its
centre is at (j + 0.5, i + 0.5).
"""

from __future__ import annotations

import numpy as np

from .geometry import transform_points


def project_points(camera, points_world: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """u, v (pixels) and z (metres along the optical axis) of world points in ``camera``.

    camera: a :class:`~g3r_ros.geometry.PinholeCamera` (K, ``T_world_cam``). points_world:
    (N,3). Points at or behind the camera plane get z ≤ 0 and meaningless u, v."""
    pc = transform_points(camera.T_cam_world, np.asarray(points_world, dtype=np.float64))
    z = pc[:, 2]
    zs = np.where(z > 1e-9, z, 1.0)
    u = camera.K[0, 0] * pc[:, 0] / zs + camera.K[0, 2]
    v = camera.K[1, 1] * pc[:, 1] / zs + camera.K[1, 2]
    return u, v, z


def sample_bilinear(image: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Sample an (H,W,3) uint8 image at continuous pixel coordinates → (N,3) float64 in [0,1].

    Coordinates outside the image are clamped to the border."""
    h, w = image.shape[:2]
    x = np.clip(u - 0.5, 0, w - 1)
    y = np.clip(v - 0.5, 0, h - 1)
    x0 = np.clip(np.floor(x).astype(np.int64), 0, max(w - 2, 0))
    y0 = np.clip(np.floor(y).astype(np.int64), 0, max(h - 2, 0))
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    img = image.astype(np.float64) / 255.0
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bot = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return top * (1 - fy) + bot * fy

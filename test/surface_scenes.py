"""Analytic scenes of flat Gaussians for the sensor-simulation tests: a ground plane and a wall.

Discs lie on the planes (normal sigma 1 % of the in-plane sigma, like the map's surface
elements), optionally tilted at random about their centres, as G3R's photometric updates tilt
them; the surface they sample is still the plane.
"""

from __future__ import annotations

import numpy as np
import torch

from g3r_ros.geometry import rotmat_to_quat
from g3r_ros.render.types import GaussianParams

GROUND_Z = -1.7   # the ground below a sensor at the origin (KITTI's Velodyne height)
WALL_X = 12.0     # a wall across the road ahead


def _discs(centres: np.ndarray, normal: np.ndarray, sigma: float, tilt_deg: float, opacity: float,
           rng: np.random.Generator) -> GaussianParams:
    n = len(centres)
    normal = normal / np.linalg.norm(normal)
    a = np.cross(normal, [0.0, 0.0, 1.0] if abs(normal[2]) < 0.9 else [1.0, 0.0, 0.0])
    a /= np.linalg.norm(a)
    b = np.cross(normal, a)
    R = np.stack([a, b, normal], axis=1)  # local z = the normal
    quats = []
    for _ in range(n):
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        ang = np.radians(rng.uniform(-tilt_deg, tilt_deg))
        K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        Rt = np.eye(3) + np.sin(ang) * K + (1 - np.cos(ang)) * K @ K
        quats.append(rotmat_to_quat(Rt @ R))
    log_s = np.log(np.array([sigma, sigma, 0.01 * sigma]))
    logit = np.log(opacity / (1 - opacity))
    f32 = torch.float32
    return GaussianParams(torch.tensor(centres, dtype=f32), torch.tensor(np.array(quats), dtype=f32),
                          torch.tensor(np.tile(log_s, (n, 1)), dtype=f32),
                          torch.full((n,), float(logit)), torch.full((n, 3), 0.5))


def plane_scene(*, spacing: float = 0.25, extent: float = 30.0, tilt_deg: float = 0.0, wall: bool = True,
                wall_opacity: float = 0.95, seed: int = 0) -> GaussianParams:
    """Ground z = GROUND_Z over |x|, |y| <= extent and (``wall``) the wall x = WALL_X, |y| <= 8, z up to 3 m."""
    rng = np.random.default_rng(seed)
    g = np.arange(-extent, extent + 1e-9, spacing)
    gx, gy = np.meshgrid(g, g)
    ground = np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, GROUND_Z)], 1)
    keep = ~(wall & (ground[:, 0] > WALL_X))  # nothing behind the wall
    parts = [_discs(ground[keep], np.array([0.0, 0.0, 1.0]), 0.6 * spacing, tilt_deg, 0.95, rng)]
    if wall:
        wy, wz = np.meshgrid(np.arange(-8.0, 8.0 + 1e-9, spacing), np.arange(GROUND_Z, 3.0, spacing))
        pts = np.stack([np.full(wy.size, WALL_X), wy.ravel(), wz.ravel()], 1)
        parts.append(_discs(pts, np.array([1.0, 0.0, 0.0]), 0.6 * spacing, tilt_deg, wall_opacity, rng))
    return GaussianParams.cat(parts)


def true_range(dirs: np.ndarray, origin=(0.0, 0.0, 0.0), wall: bool = True, extent: float = np.inf) -> np.ndarray:
    """Range from ``origin`` along unit ``dirs`` (N,3) to the first of the ground (|x|, |y| <= extent,
    not behind the wall) and the wall (inf: none)."""
    o = np.asarray(origin, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        tg = np.where(dirs[:, 2] < 0, (GROUND_Z - o[2]) / dirs[:, 2], np.inf)
        gx, gy = o[0] + tg * dirs[:, 0], o[1] + tg * dirs[:, 1]
        tg = np.where((np.abs(gx) <= extent) & (np.abs(gy) <= extent) & ~(wall & (gx > WALL_X)), tg, np.inf)
        tw = np.where(dirs[:, 0] > 0, (WALL_X - o[0]) / dirs[:, 0], np.inf) if wall else np.full(len(dirs), np.inf)
    hit_w = o[None, 1] + tw * dirs[:, 1]
    zw = o[2] + tw * dirs[:, 2]
    tw = np.where((np.abs(hit_w) <= 8.0) & (zw <= 3.0) & (zw >= GROUND_Z), tw, np.inf)
    return np.minimum(tg, tw)

"""A spinning multi-beam LiDAR, simulated by ray casting against the scene's geometry.

One scan is instantaneous at its stamp (no motion skew, like de-skewed logs), with the moving
actors where they are at that stamp. The sensor sees only what its beams reach: nothing above
the top beam, no sky, nothing beyond ``max_range`` or closer than ``min_range``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .raycast import SphericalGrid, cast_grid
from .scene import SyntheticScene
from .shading import surface


@dataclass
class LidarScan:
    """points (N,3) float32 in the LiDAR frame (x fwd, y left, z up); intensity (N,) float32
    in [0,1]; ring (N,) int16 beam index (0 = top); azimuth_index (N,) int32. Ordered by
    azimuth step, then beam, as a spinning sensor reports them."""

    points: np.ndarray
    intensity: np.ndarray
    ring: np.ndarray
    azimuth_index: np.ndarray
    stamp: float


def lidar_grid(scene: SyntheticScene, stamp: float) -> SphericalGrid:
    L = scene.lidar
    T_road_lidar = scene.T_road_map @ scene.lidar_pose(stamp)
    return SphericalGrid(L.elevations, L.azimuth_steps, T_road_lidar, L.max_range)


def dropout_probability(base: float, reflectivity: np.ndarray, rng_m: np.ndarray, max_range: float) -> np.ndarray:
    """Probability (M,) that a return is lost: ``base`` on ordinary surfaces, up to 10x more on
    poor reflectors (material reflectivity below 0.1: glass 0.06-0.08, tyres 0.05) and 3x more
    at the far end of the range."""
    poor = np.clip((0.1 - reflectivity) / 0.05, 0.0, 1.0)
    return np.clip(base * (1.0 + 9.0 * poor + 2.0 * (rng_m / max_range) ** 2), 0.0, 1.0)


def lidar_scan(scene: SyntheticScene, stamp: float, frame_index: int = 0) -> LidarScan:
    """Scan at ``stamp``. Range noise (config ``lidar_noise_m``) and dropout (``lidar_dropout``,
    see :func:`dropout_probability`) are drawn from generators seeded by (scene seed,
    ``frame_index``), so scans are reproducible; each beam's fixed range bias
    (``lidar_beam_bias_m``) is drawn once per drive."""
    L = scene.lidar
    grid = lidar_grid(scene, stamp)
    posed = scene.posed(stamp)
    t, hit = cast_grid(grid, scene.geometry, scene.layout.terrain, posed)
    t = t.T.reshape(-1)            # (azimuth, beam) order
    hit = hit.T.reshape(-1)
    dirs_road = grid.dirs.transpose(1, 0, 2).reshape(-1, 3)
    dirs_sensor = grid.dirs_sensor.transpose(1, 0, 2).reshape(-1, 3)
    ok = np.isfinite(t) & (t >= L.min_range)
    hit = np.where(ok, hit, -1)
    idx, _, refl, _, nrm = surface(scene, grid.origin, dirs_road, np.where(ok, t, np.inf), hit, posed, detail=0.0)
    rng_t = t[idx]
    cos_inc = np.abs((nrm * dirs_road[idx]).sum(1))
    intensity = np.clip(refl * (0.35 + 0.65 * cos_inc), 0.0, 1.0)
    if L.noise_m > 0:
        g = np.random.default_rng([scene.seed, 0x4C494441, int(frame_index)])
        rng_t = np.maximum(rng_t + g.normal(0.0, L.noise_m, len(rng_t)), 0.0)
    if np.any(L.beam_bias):
        rng_t = np.maximum(rng_t + L.beam_bias[idx % grid.H], 0.0)
    if L.dropout > 0:
        g = np.random.default_rng([scene.seed, 0x44524F50, int(frame_index)])
        keep = g.random(len(rng_t)) >= dropout_probability(L.dropout, refl, t[idx], L.max_range)
        idx, rng_t, intensity = idx[keep], rng_t[keep], intensity[keep]
    pts = dirs_sensor[idx] * rng_t[:, None]
    ring = (idx % grid.H).astype(np.int16)
    az = (idx // grid.H).astype(np.int32)
    return LidarScan(pts.astype(np.float32), intensity.astype(np.float32), ring, az, float(stamp))

"""How close simulated sensors are to real ones: scan and depth-image comparisons (ROS-free).

LiDAR (:func:`compare_scan`), at one sensor pose:

- the simulated range is cast along the exact direction of every real return
  (:func:`g3r_ros.lidar_sim.cast_rays`), so a range error is never a beam-pattern mismatch;
  over real returns with a simulated return: the median absolute range error and the fraction
  within 0.5 m; ``drop_rate`` = real returns without a simulated one;
- ``ghost_rate``: simulated returns of the beam model (:func:`~g3r_ros.lidar_sim.simulate_lidar`)
  with no real return in the same cell of the pattern, within ``tolerance_cells`` beams and
  azimuth steps (real returns are binned by the nearest beam elevation and azimuth step; 1
  cell absorbs a real unit's calibration differing from the nominal pattern, 0 for a
  simulated truth on the same pattern).

Depth images (:func:`compare_depth`): the real scan is projected into the camera (nearest
return per pixel, as a z-buffer) and compared with the rendered depth at those pixels:
median absolute relative error and the fraction within 5 %; ``coverage`` = projected pixels
where the rendered depth is valid (not NaN).
"""

from __future__ import annotations

import numpy as np

from .geometry import PinholeCamera, transform_points
from .lidar_sim import BeamModel, CastConfig, SimulatedScan, cast_rays


def _median(x: np.ndarray) -> float | None:
    return float(np.median(x)) if len(x) else None


def _frac(mask: np.ndarray) -> float | None:
    return float(np.mean(mask)) if len(mask) else None


def real_returns_in_range(points: np.ndarray, beams: BeamModel) -> np.ndarray:
    """Real returns (N,3) sensor frame kept for comparison: finite, within the beam model's range limits."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    r = np.linalg.norm(p, axis=1)
    return p[np.isfinite(r) & (r >= beams.min_range) & (r <= beams.max_range)]


def pattern_cells(points: np.ndarray, beams: BeamModel) -> tuple[np.ndarray, np.ndarray]:
    """(ring, azimuth index) of sensor-frame points: nearest beam elevation, nearest azimuth step."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    el = np.degrees(np.arctan2(p[:, 2], np.hypot(p[:, 0], p[:, 1])))
    els = np.asarray(beams.elevations_deg)
    ring = np.abs(el[:, None] - els[None, :]).argmin(1)
    az = np.degrees(np.arctan2(p[:, 1], p[:, 0])) % 360.0
    return ring, np.mod(np.round(az / (360.0 / beams.n_azimuth)).astype(np.int64), beams.n_azimuth)


def ghost_mask(scan: SimulatedScan, real_points: np.ndarray, tolerance_cells: int = 1) -> np.ndarray:
    """(N,) True for simulated returns with no real return within ``tolerance_cells`` of their cell."""
    beams = scan.beams
    occupied = np.zeros((beams.n_beams, beams.n_azimuth), bool)
    ring, az = pattern_cells(real_points, beams)
    occupied[ring, az] = True
    if tolerance_cells > 0:
        grown = occupied.copy()
        for dr in range(-tolerance_cells, tolerance_cells + 1):
            for da in range(-tolerance_cells, tolerance_cells + 1):
                shifted = np.roll(occupied, da, axis=1)  # azimuth wraps around
                if dr > 0:
                    shifted = np.concatenate([np.zeros((dr, beams.n_azimuth), bool), shifted[:-dr]])
                elif dr < 0:
                    shifted = np.concatenate([shifted[-dr:], np.zeros((-dr, beams.n_azimuth), bool)])
                grown |= shifted
        occupied = grown
    return ~occupied[scan.ring.astype(np.int64), scan.azimuth_index.astype(np.int64)]


def range_metrics(real_ranges: np.ndarray, sim_ranges: np.ndarray) -> dict:
    """Per-return comparison: real ranges (N,) and the simulated ranges along the same rays (N,),
    NaN where the simulation has no return."""
    hit = np.isfinite(sim_ranges)
    err = np.abs(sim_ranges[hit].astype(np.float64) - real_ranges[hit])
    return {"real_returns": int(len(real_ranges)), "matched_returns": int(hit.sum()),
            "median_abs_error_m": _median(err), "mean_abs_error_m": float(err.mean()) if len(err) else None,
            "within_0_5m": _frac(err <= 0.5), "within_0_2m": _frac(err <= 0.2), "drop_rate": _frac(~hit)}


def compare_scan(map_like, T_world_lidar: np.ndarray, real_points: np.ndarray, scan: SimulatedScan, *,
                 tolerance_cells: int = 1, config: CastConfig | None = None) -> dict:
    """Simulated LiDAR vs a real (or exact) scan ``real_points`` (N,3, sensor frame) at ``T_world_lidar``.

    ``scan``: :func:`~g3r_ros.lidar_sim.simulate_lidar` of the same map and pose (for the ghost
    rate). Returns JSON-ready figures (module doc) and, under ``"_"``, the compared real returns
    (M,3) and both ranges per return, for subsets (:func:`range_metrics`)."""
    beams = scan.beams
    real = real_returns_in_range(real_points, beams)
    r_real = np.linalg.norm(real, axis=1)
    cast = cast_rays(map_like, T_world_lidar, real / np.maximum(r_real[:, None], 1e-12), max_range=beams.max_range,
                     min_range=beams.min_range, pixel_h_deg=beams.azimuth_step_deg,
                     pixel_v_deg=0.5 * beams.beam_spacing_deg, config=config)
    ghosts = ghost_mask(scan, real, tolerance_cells) if len(scan) else np.zeros(0, bool)
    return {**range_metrics(r_real, cast.ranges), "simulated_returns": int(len(scan)), "ghost_rate": _frac(ghosts),
            "_": {"points": real, "real_ranges": r_real, "sim_ranges": cast.ranges}}


def project_scan(camera: PinholeCamera, points_world: np.ndarray, min_depth: float = 0.5) -> np.ndarray:
    """(H,W) float32 z-buffer of world points seen by ``camera`` (nearest per pixel), NaN elsewhere."""
    uv, z = camera.project(np.asarray(points_world, dtype=np.float64).reshape(-1, 3))
    ok = np.isfinite(z) & (z > min_depth)
    u, v = np.floor(uv[ok, 0]).astype(np.int64), np.floor(uv[ok, 1]).astype(np.int64)
    z = z[ok]
    inside = (u >= 0) & (v >= 0) & (u < camera.width) & (v < camera.height)
    u, v, z = u[inside], v[inside], z[inside]
    buf = np.full(camera.width * camera.height, np.inf)
    np.minimum.at(buf, v * camera.width + u, z)
    buf[~np.isfinite(buf)] = np.nan
    return buf.reshape(camera.height, camera.width).astype(np.float32)


def compare_depth(depth: np.ndarray, camera: PinholeCamera, points_world: np.ndarray) -> dict:
    """Rendered depth (H,W) metres (NaN = invalid) of ``camera`` vs real returns projected into it."""
    ref = project_scan(camera, points_world)
    seen = np.isfinite(ref)
    both = seen & np.isfinite(depth)
    rel = np.abs(depth[both].astype(np.float64) - ref[both]) / ref[both]
    return {"lidar_pixels": int(seen.sum()), "compared_pixels": int(both.sum()),
            "coverage": _frac(both[seen]), "median_rel_error": _median(rel),
            "median_abs_error_m": _median(np.abs(depth[both].astype(np.float64) - ref[both])),
            "within_5pct": _frac(rel <= 0.05)}


def to_sensor(T_world_lidar: np.ndarray, points_world: np.ndarray) -> np.ndarray:
    """World points (N,3) → sensor frame of ``T_world_lidar``."""
    return transform_points(np.linalg.inv(np.asarray(T_world_lidar, dtype=np.float64)), points_world)

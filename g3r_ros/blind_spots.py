"""Gaussians where the LiDAR is blind: vertical "curtains" above the highest return.

A driving LiDAR sees little above the horizontal (KITTI's HDL-64E about +2°): no return lies
on upper façades, tree crowns or the tops of poles, yet they fill the top third of every
camera image. G3R does not densify, so without points there the network can only stretch
the distant sphere or the highest LiDAR points over them.

This module proposes points for those regions from the source views (NumPy, float64):

1. project the background LiDAR into a source view; in every image column bin (one every
   ``angle_step_deg``) take the highest projected return, ``X_top``;
2. if ``X_top`` belongs to a structure (at least ``min_structure_height_m`` above the
   ground) within ``max_distance_m``, assume the structure continues upwards: cast the rays
   of the pixels above it (one every ``angle_step_deg``) onto the vertical plane through
   ``X_top`` that faces the camera, up to ``max_height_m`` above the ground;
3. colour each candidate from the pixel it came from;
4. keep only candidates that other source views agree with (multi-view photo-consistency:
   the median colour difference over the views that see them, in front of the LiDAR depth
   there, is at most ``max_color_error``), then voxel-downsample to a budget.

Each proposed point is returned with an orientation (a flat disc facing the camera it came
from) and a sigma equal to its angular sample spacing at its depth (metric, so the same at
any image resolution). Heights are measured along the world ``up`` vector from a ground
level estimated as a low percentile of the LiDAR near the ego path.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from .knn import voxel_downsample
from .pixels import project_points, sample_bilinear

log = logging.getLogger(__name__)


@dataclass
class BlindSpotConfig:
    """Curtain points above the LiDAR's field of view (see module doc). ``enabled: false`` turns it off.

    angle_step_deg: angular spacing of the column bins and of the rows sampled above each
    top return. min_structure_height_m / max_height_m: a column is extruded only when its
    highest return is at least this high above the ground, and up to this height.
    max_distance_m: horizontal distance limit of the highest return (farther: the distant
    sphere's job). views_checked: at most this many other source views test each candidate.
    max_color_error: mean absolute RGB difference (0..1) allowed by the consistency test.
    voxel_size / max_points: downsampling of the accepted candidates. ground_percentile /
    ground_radius_m: the ground lies this percentile of the LiDAR heights (relative to the ego
    path) below the path, over the points within this horizontal radius of it (:class:`GroundModel`).
    """

    enabled: bool = True
    angle_step_deg: float = 0.6
    min_structure_height_m: float = 0.8
    max_height_m: float = 15.0
    max_distance_m: float = 40.0
    views_checked: int = 4
    max_color_error: float = 0.12
    voxel_size: float = 0.2
    max_points: int = 15000
    ground_percentile: float = 10.0
    ground_radius_m: float = 15.0

    def validate(self) -> None:
        if not 0.05 <= self.angle_step_deg <= 10.0:
            raise ValueError(f"blind_spots.angle_step_deg must be in [0.05, 10], got {self.angle_step_deg}")
        if not 0 <= self.min_structure_height_m < self.max_height_m:
            raise ValueError("blind_spots: need 0 <= min_structure_height_m < max_height_m")
        if not self.max_distance_m > 0 or not self.voxel_size > 0 or self.max_points < 1:
            raise ValueError("blind_spots: max_distance_m and voxel_size must be > 0, max_points >= 1")
        if self.views_checked < 1 or not 0 < self.max_color_error <= 1:
            raise ValueError("blind_spots: views_checked must be >= 1 and max_color_error in (0, 1]")
        if not 0 <= self.ground_percentile <= 100 or not self.ground_radius_m > 0:
            raise ValueError("blind_spots: ground_percentile must be in [0, 100] and ground_radius_m > 0")


@dataclass
class BlindSpotPoints:
    """Proposed points. means (M,3) world; normals (M,3) unit, facing their camera; sigmas (M,)
    metres; colors (M,3) in [0,1]; proposed / accepted: candidate counts before and after
    the consistency test."""

    means: np.ndarray
    normals: np.ndarray
    sigmas: np.ndarray
    colors: np.ndarray
    proposed: int = 0
    accepted: int = 0

    def __len__(self) -> int:
        return len(self.means)


class GroundModel:
    """Ground height along ``up`` under any point, following the ego path (roads slope).

    The ground lies a fixed offset below the ego (sensor) path: that offset is a low
    percentile (``ground_percentile``) of the LiDAR heights relative to the nearest ego sample,
    over the points within ``ground_radius_m`` of the path. points, ego: (N,3), (M,3) world.
    """

    def __init__(self, points: np.ndarray, ego: np.ndarray, up: np.ndarray, cfg: BlindSpotConfig):
        from scipy.spatial import cKDTree

        self.up = up
        self.ego_h = ego @ up
        self.tree = cKDTree(ego - np.outer(self.ego_h, up))
        d, i = self.tree.query(points - np.outer(points @ up, up))
        near = d <= cfg.ground_radius_m
        rel = (points @ up - self.ego_h[i])[near] if near.sum() >= 10 else points @ up - self.ego_h[i]
        self.offset = float(np.percentile(rel, cfg.ground_percentile)) if len(rel) else 0.0

    def height(self, points: np.ndarray) -> np.ndarray:
        """(N,) height of world points above the ground under them (metres)."""
        points = np.atleast_2d(points)
        _, i = self.tree.query(points - np.outer(points @ self.up, self.up))
        return points @ self.up - (self.ego_h[i] + self.offset)


def _curtain_candidates(kf, lidar: np.ndarray, up: np.ndarray, ground: GroundModel, cfg: BlindSpotConfig):
    """Candidates of one source view → (means, normals, sigmas, colors)."""
    cam = kf.camera
    W, H = cam.width, cam.height
    step = math.radians(cfg.angle_step_deg)
    col_px = max(1.0, step * cam.K[0, 0])
    row_px = max(1.0, step * cam.K[1, 1])
    u, v, z = project_points(cam, lidar)
    inside = (z > 0.5) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
    if not inside.any():
        return None
    idx = np.nonzero(inside)[0]
    col = np.floor(u[idx] / col_px).astype(np.int64)
    order = np.lexsort((v[idx], col))  # by column, then top-most first
    col_sorted = col[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = col_sorted[1:] != col_sorted[:-1]
    top = idx[order[first]]  # top-most return of each occupied column bin
    center = cam.center
    X = lidar[top]
    height = ground.height(X)
    horiz = (X - center) - np.outer((X - center) @ up, up)
    dist = np.linalg.norm(horiz, axis=1)
    ok = (height >= cfg.min_structure_height_m) & (dist <= cfg.max_distance_m) & (dist > 0.5)
    if not ok.any():
        return None
    top, X, dist, horiz, height = top[ok], X[ok], dist[ok], horiz[ok], height[ok]
    n_plane = -horiz / dist[:, None]  # faces the camera
    K_inv = np.linalg.inv(cam.K)
    R = cam.T_world_cam[:3, :3]
    means, normals, sigmas, colors = [], [], [], []
    for j in range(len(top)):
        u0, v_top = u[top[j]], v[top[j]]
        rows = v_top - row_px * np.arange(1, int(v_top / row_px) + 1)
        if len(rows) == 0:
            continue
        pix = np.stack([np.full_like(rows, u0), rows, np.ones_like(rows)], axis=1)
        d = (pix @ K_inv.T) @ R.T  # ray directions in world (not unit)
        denom = d @ n_plane[j]
        t = ((X[j] - center) @ n_plane[j]) / np.where(np.abs(denom) > 1e-9, denom, np.nan)
        P = center + t[:, None] * d
        P = np.where(np.isfinite(P), P, 0.0)
        h = ground.height(P)
        good = np.isfinite(t) & (t > 0) & (h <= cfg.max_height_m) & (h > height[j])
        if not good.any():
            continue
        P, rows = P[good], rows[good]
        depth = np.linalg.norm(P - center, axis=1)
        means.append(P)
        normals.append(np.repeat(n_plane[j][None], len(P), axis=0))
        sigmas.append(depth * step)
        colors.append(sample_bilinear(kf.image, np.full(len(rows), u0), rows))
    if not means:
        return None
    return (np.concatenate(means), np.concatenate(normals), np.concatenate(sigmas), np.concatenate(colors))


def _consistency_error(points: np.ndarray, colors: np.ndarray, origin: np.ndarray, keyframes, lidar: np.ndarray,
                       cfg: BlindSpotConfig) -> np.ndarray:
    """Median over other source views of the mean |RGB − pixel| of each candidate (inf if none sees it).

    A view sees a candidate when it projects inside the image, in front of the camera, and not
    behind the nearest LiDAR return projected into the same cell (0.3 m tolerance).
    origin: (M,) index of the view each candidate came from."""
    V = len(keyframes)
    errs = np.full((V, len(points)), np.nan)
    for vi, kf in enumerate(keyframes):
        cam = kf.camera
        u, v, z = project_points(cam, points)
        inside = (z > 0.5) & (u >= 0) & (u < cam.width) & (v >= 0) & (v < cam.height) & (origin != vi)
        if not inside.any():
            continue
        # nearest LiDAR depth per 4x4-pixel cell: candidates behind it are occluded there
        lu, lv, lz = project_points(cam, lidar)
        lin = (lz > 0.5) & (lu >= 0) & (lu < cam.width) & (lv >= 0) & (lv < cam.height)
        cw, ch = (cam.width + 3) // 4, (cam.height + 3) // 4
        zbuf = np.full(cw * ch, np.inf)
        np.minimum.at(zbuf, (lv[lin] // 4).astype(np.int64) * cw + (lu[lin] // 4).astype(np.int64), lz[lin])
        i = np.nonzero(inside)[0]
        cell = (v[i] // 4).astype(np.int64) * cw + (u[i] // 4).astype(np.int64)
        vis = z[i] <= zbuf[cell] + 0.3
        i = i[vis]
        errs[vi, i] = np.abs(sample_bilinear(kf.image, u[i], v[i]) - colors[i]).mean(axis=1)
    # at most views_checked views per candidate: the nearest in index to its origin
    if V > cfg.views_checked:
        dist = np.abs(np.arange(V)[:, None] - origin[None, :]).astype(np.float64)
        dist[np.isnan(errs)] = np.inf
        rank = np.argsort(np.argsort(dist, axis=0), axis=0)
        errs[rank >= cfg.views_checked] = np.nan
    med = np.full(len(points), np.inf)
    has = (~np.isnan(errs)).any(axis=0)
    if has.any():
        med[has] = np.nanmedian(errs[:, has], axis=0)
    return med


def blind_spot_points(window, lidar_world: np.ndarray, up: np.ndarray, cfg: BlindSpotConfig,
                      rng: np.random.Generator | None = None) -> BlindSpotPoints:
    """Curtain points above the LiDAR returns of ``window``'s source views (see module doc).

    lidar_world: (N,3) background LiDAR in world (after cropping). up: (3,) unit world up.
    Returns an empty set when nothing qualifies (no structures, or no view agrees).
    """
    cfg.validate()
    empty = BlindSpotPoints(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0), np.zeros((0, 3)))
    sources = window.source_keyframes
    if len(lidar_world) == 0 or len(sources) == 0:
        return empty
    up = np.asarray(up, dtype=np.float64) / np.linalg.norm(up)
    ego = np.asarray(window.ego_positions, dtype=np.float64).reshape(-1, 3)
    if len(ego) == 0:
        ego = np.stack([k.camera.center for k in sources])
    ground = GroundModel(lidar_world, ego, up, cfg)
    parts, origin = [], []
    for vi, kf in enumerate(sources):
        c = _curtain_candidates(kf, lidar_world, up, ground, cfg)
        if c is not None:
            parts.append(c)
            origin.append(np.full(len(c[0]), vi))
    if not parts:
        return empty
    means, normals, sigmas, colors = (np.concatenate([p[i] for p in parts]) for i in range(4))
    origin = np.concatenate(origin)
    proposed = len(means)
    if len(sources) > 1:
        err = _consistency_error(means, colors, origin, sources, lidar_world, cfg)
        keep = err <= cfg.max_color_error
    else:  # a single view cannot be checked: keep all
        keep = np.ones(proposed, dtype=bool)
    means, normals, sigmas, colors = means[keep], normals[keep], sigmas[keep], colors[keep]
    if len(means) == 0:
        log.info("blind spots: %d candidates, none consistent across views", proposed)
        return BlindSpotPoints(*(a for a in (empty.means, empty.normals, empty.sigmas, empty.colors)), proposed, 0)
    attrs = np.concatenate([colors, normals, sigmas[:, None]], axis=1)
    size = cfg.voxel_size
    pts, att = voxel_downsample(means, size, attrs)
    while len(pts) > cfg.max_points:
        size *= max(1.05, math.sqrt(len(pts) / cfg.max_points))
        pts, att = voxel_downsample(means, size, attrs)
    nrm = att[:, 3:6] / np.maximum(np.linalg.norm(att[:, 3:6], axis=1, keepdims=True), 1e-9)
    out = BlindSpotPoints(pts, nrm, np.maximum(att[:, 6], 0.5 * size), np.clip(att[:, :3], 0, 1), proposed,
                          int(keep.sum()))
    log.info("blind spots: %d candidates above the LiDAR, %d consistent across views, %d points after a %.2f m "
             "voxel (ground %.2f m below the ego path)", proposed, out.accepted, len(out), size, -ground.offset)
    return out

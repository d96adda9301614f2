"""Initialization of a :class:`~g3r_ros.scene.NeuralScene` from a scene window's LiDAR.

:func:`init_scene`, configured by :class:`InitConfig` (mirrored by ``config/init.yaml``):

- LiDAR (background in world, actors in box-local) is voxel-downsampled to a point budget;
  background points that no source view sees are dropped first (``crop_to_views``);
- scale (metric, the same at any image resolution): the distance to the ``knn_k``-th (3rd)
  nearest neighbour, capped so that the 1-sigma footprint subtends at most
  ``max_footprint_deg`` in the nearest source view that sees the point (uncapped near-field
  points with sparse neighbours blur whole images);
- orientation: with ``orient_to_surface`` each Gaussian is a disc tangent to the local surface
  (PCA normal of ``normal_k`` neighbours): its sigma along the normal is the in-plane sigma
  times ``flat_ratio`` on planar neighbourhoods and stays isotropic on lines and blobs
  (planarity-weighted). Otherwise rotation is the identity and the Gaussian a ball (paper);
- opacity 0.7, latents ~ N(0, latent_std²);
- colour (recorded choice, the paper used random): ``"project"`` samples the colour of
  each point in its nearest unoccluded source keyframe(s). Occlusion uses a coarse
  z-buffer built from the projected points themselves (cells of ``zbuffer_cell_px``
  pixels; a point is visible when its depth is within ``occlusion_tol`` (relative) of
  the nearest depth in its cell). Points seen by no view fall back to the view where
  they are least occluded, then to the mean colour. ``"random"`` draws uniform colours.
- blind spots: points where the LiDAR is blind (above its field of view), proposed from the
  source views by :mod:`g3r_ros.blind_spots` and added to the background;
- distant: a latitude × longitude grid on a sphere centred on the mean ego position, with
  "up" from the config or, by default, estimated from the source cameras (no roll).
  Each Gaussian is a flat disc tangent to the sphere whose in-plane sigmas are
  ``scale_factor`` × the grid spacing; its colour is projected from the source images
  where visible (sky, tree crowns), else the mean visible colour of the nearest latitude
  row with visible points.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.spatial import cKDTree

from .blind_spots import BlindSpotConfig, blind_spot_points
from .gaussians import LATENT_CHANNELS
from .geometry import invert_transform, quat_multiply_torch, rotmat_to_quat, transform_points
from .knn import downsample_to_budget, knn_distance, surface_normals
from .pixels import sample_bilinear
from .progress import progress_bar as tqdm
from .scene import Component, NeuralScene
from .window import ActorTrack, SceneWindow

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------
@dataclass
class DistantConfig:
    """The distant component: a cropped sphere of Gaussians around the ego path.

    radius: metres. The paper used 2048 m; our windows span tens of metres, so 400 m is the
    default. It must lie beyond the scene and inside the renderer's far plane (1e10): it
    is raised to ``min_margin`` × the distance of the farthest LiDAR point from the centre
    when smaller. lat_min_deg / lat_max_deg: band of elevations above the horizontal plane
    (paper: −15° to +30°). n_lat × n_lon: grid (paper: 512 × 2048; CPU default 24 × 256).
    scale_factor: in-plane sigma as a fraction of the grid spacing. thickness: radial sigma
    as a fraction of the smaller in-plane sigma. up: world up vector, or None to estimate it
    from the source cameras' orientation (:func:`estimate_up`; works for z-up and y-down worlds alike).
    """

    enabled: bool = True
    radius: float = 400.0
    min_margin: float = 1.5
    lat_min_deg: float = -15.0
    lat_max_deg: float = 30.0
    n_lat: int = 24
    n_lon: int = 256
    scale_factor: float = 0.8
    thickness: float = 0.05
    opacity: float = 0.7
    up: list[float] | None = None

    def validate(self) -> None:
        if not self.radius > 0:
            raise ValueError(f"distant.radius must be > 0, got {self.radius}")
        if not -90.0 <= self.lat_min_deg < self.lat_max_deg <= 90.0:
            raise ValueError(f"distant latitude band must satisfy -90 <= min < max <= 90, "
                             f"got [{self.lat_min_deg}, {self.lat_max_deg}]")
        if self.n_lat < 1 or self.n_lon < 3:
            raise ValueError(f"distant grid must be at least 1 x 3, got {self.n_lat} x {self.n_lon}")
        if not (0 < self.opacity < 1):
            raise ValueError(f"distant.opacity must be in (0,1), got {self.opacity}")
        if self.up is not None and (len(self.up) != 3 or np.linalg.norm(self.up) < 1e-9):
            raise ValueError(f"distant.up must be a non-zero 3-vector or null, got {self.up}")


@dataclass
class InitConfig:
    """Initialization of a :class:`NeuralScene` from a :class:`SceneWindow` (see module doc).

    max_points: background budget after voxel downsampling (the voxel grows to fit).
    voxel_size: initial background voxel (m). actor_max_points / actor_voxel_size: the same,
    per actor. knn_k: the scale is the distance to the k-th nearest neighbour. opacity:
    initial opacity. latent_std: std of the random latents. min_scale: floor on the scale
    (m). max_footprint_deg: cap of the initial 1-sigma footprint as an angle seen from the
    nearest source view (None or 0 disables; an angle, not pixels, so the init is the same at
    any resolution). orient_to_surface / normal_k / flat_ratio: discs tangent to the local
    surface (see module doc). blind_spots: :class:`~g3r_ros.blind_spots.BlindSpotConfig`.
    min_range: drop background points closer than this to the ego path (m; 0 = off; per-scan
    ego cropping belongs to the window builder).
    crop_actor_boxes: drop background points inside any actor box (grown by
    actor_box_margin m) at any track stamp, so a moving actor leaves no trail.
    crop_to_views: drop background points that no source view sees (in front of the camera
    and inside the image grown by view_margin × its size on each side) *before* downsampling,
    so the point budget is spent where the images constrain it (a 360° LiDAR otherwise puts
    most of it behind a forward camera).
    color_mode: "project" (our choice) or "random" (the paper). color_views: how many of the
    nearest unoccluded views are averaged. zbuffer_cell_px / occlusion_tol: occlusion test.
    seed: RNG seed for latents, random colours and subsampling.
    """

    max_points: int = 60000
    voxel_size: float = 0.1
    actor_max_points: int = 5000
    actor_voxel_size: float = 0.05
    knn_k: int = 3
    opacity: float = 0.7
    latent_std: float = 0.01
    min_scale: float = 0.002
    max_footprint_deg: float | None = 1.2
    orient_to_surface: bool = True
    normal_k: int = 16
    flat_ratio: float = 0.1
    min_range: float = 0.0
    crop_actor_boxes: bool = True
    actor_box_margin: float = 0.2
    crop_to_views: bool = True
    view_margin: float = 0.1
    color_mode: str = "project"
    color_views: int = 1
    zbuffer_cell_px: int = 4
    occlusion_tol: float = 0.1
    seed: int = 0
    distant: DistantConfig = field(default_factory=DistantConfig)
    blind_spots: BlindSpotConfig = field(default_factory=BlindSpotConfig)

    def validate(self) -> None:
        if self.max_points < 1 or self.actor_max_points < 1:
            raise ValueError("max_points and actor_max_points must be >= 1")
        if not (self.voxel_size > 0 and self.actor_voxel_size > 0):
            raise ValueError("voxel sizes must be > 0")
        if self.knn_k < 1:
            raise ValueError(f"knn_k must be >= 1, got {self.knn_k}")
        if not (0 < self.opacity < 1):
            raise ValueError(f"opacity must be in (0,1), got {self.opacity}")
        if self.latent_std < 0 or not self.min_scale > 0:
            raise ValueError("latent_std must be >= 0 and min_scale > 0")
        if self.max_footprint_deg is not None and not 0 <= self.max_footprint_deg < 90:
            raise ValueError(f"max_footprint_deg must be in [0, 90) or null, got {self.max_footprint_deg}")
        if self.normal_k < 3 or not 0 < self.flat_ratio <= 1:
            raise ValueError(f"normal_k must be >= 3 and flat_ratio in (0, 1], got {self.normal_k}, "
                             f"{self.flat_ratio}")
        if self.color_mode not in ("project", "random"):
            raise ValueError(f"color_mode must be 'project' or 'random', got {self.color_mode!r}")
        if self.view_margin < 0:
            raise ValueError(f"view_margin must be >= 0, got {self.view_margin}")
        if self.color_views < 1 or self.zbuffer_cell_px < 1 or self.occlusion_tol < 0:
            raise ValueError("color_views and zbuffer_cell_px must be >= 1, occlusion_tol >= 0")
        from .config import from_dict

        if isinstance(self.distant, dict):
            self.distant = from_dict(DistantConfig, self.distant, where="distant")
        if isinstance(self.blind_spots, dict):
            self.blind_spots = from_dict(BlindSpotConfig, self.blind_spots, where="blind_spots")
        self.distant.validate()
        self.blind_spots.validate()


# ---------------------------------------------------------------------------------------
# Initialization helpers (NumPy, float64)
# ---------------------------------------------------------------------------------------
def _opacity_logit(p: float) -> float:
    return math.log(p / (1.0 - p))


@dataclass
class ViewStats:
    """Per-point results of projecting into the source views (N points).

    colors: (N,3) in [0,1] (NaN where no view contains the point). seen: (N,) visible and
    unoccluded in at least one view. nearest_depth: (N,) min over views containing the point
    of its depth (metres along the optical axis), inf where none.
    """

    colors: np.ndarray
    seen: np.ndarray
    nearest_depth: np.ndarray


def project_to_views(points_at_view: Callable[[int], np.ndarray], n_points: int, keyframes, *,
                     cell_px: int = 4, occlusion_tol: float = 0.1, color_views: int = 1,
                     want_colors: bool = True) -> ViewStats:
    """Project N points into each source keyframe and gather colours and footprint scales.

    points_at_view(v) → (N,3) world positions at keyframe v's stamp (actors move).
    Occlusion: a per-view z-buffer over cells of ``cell_px`` pixels filled with the
    points' own depths. A point's occlusion excess in a view is depth / (cell's nearest
    depth) − 1; it is visible when that is ≤ ``occlusion_tol``. The colour of a point is
    the mean over its ``color_views`` nearest visible views; a point visible in none (e.g.
    far ground at grazing angles, where cells mix depths) takes the colour of the view
    where its excess is smallest.
    """
    V = len(keyframes)
    big = np.inf
    excess = np.full((V, n_points), big)
    depth = np.full((V, n_points), big)
    samples = np.zeros((V, n_points, 3), dtype=np.float32) if want_colors else None
    nearest = np.full(n_points, big)
    for v, kf in enumerate(tqdm(keyframes, desc="init: project", leave=False, disable=V < 4)):
        cam = kf.camera
        uv, z = cam.project(points_at_view(v))
        inside = (np.isfinite(uv).all(axis=1) & (z > 1e-3) & (uv[:, 0] >= 0) & (uv[:, 0] < cam.width)
                  & (uv[:, 1] >= 0) & (uv[:, 1] < cam.height))
        if not inside.any():
            continue
        idx = np.nonzero(inside)[0]
        zi = z[idx]
        nearest[idx] = np.minimum(nearest[idx], zi)
        cw = (cam.width + cell_px - 1) // cell_px
        cell = (uv[idx, 1] // cell_px).astype(np.int64) * cw + (uv[idx, 0] // cell_px).astype(np.int64)
        zbuf = np.full(cw * ((cam.height + cell_px - 1) // cell_px), big)
        np.minimum.at(zbuf, cell, zi)
        excess[v, idx] = zi / zbuf[cell] - 1.0
        depth[v, idx] = zi
        if want_colors:
            samples[v, idx] = sample_bilinear(kf.image, uv[idx, 0], uv[idx, 1])
    visible = excess <= occlusion_tol
    seen = visible.any(axis=0)
    colors = np.full((n_points, 3), np.nan)
    if want_colors and n_points:
        pts = np.arange(n_points)
        k = min(color_views, V)
        vis_depth = np.where(visible, depth, big)
        order = np.argsort(vis_depth, axis=0)[:k]  # (k,N) nearest visible views
        cols = samples[order, pts[None, :]]  # (k,N,3)
        ok = np.isfinite(np.take_along_axis(vis_depth, order, axis=0))[..., None]
        mean = (cols * ok).sum(axis=0) / np.maximum(ok.sum(axis=0), 1)
        colors[seen] = mean[seen]
        least = np.argmin(excess, axis=0)
        fallback = (~seen) & np.isfinite(excess.min(axis=0))
        colors[fallback] = samples[least[fallback], pts[fallback]]
    return ViewStats(colors=colors, seen=seen, nearest_depth=nearest)


def _nearest_center_distance(points: np.ndarray, keyframes) -> np.ndarray:
    """Min over views of the distance to the camera centre (m), for points that no view
    contains (their footprint cap)."""
    out = np.full(len(points), np.inf)
    for kf in keyframes:
        out = np.minimum(out, np.linalg.norm(points - kf.camera.center, axis=1))
    return out


def frames_from_normals(normals: np.ndarray) -> np.ndarray:
    """(N,3) unit normals → (N,4) quaternions (w,x,y,z) of rotations whose local z is ±the normal.

    The shortest rotation taking +z to n is q ∝ (1 + n_z, −n_y, n_x, 0); a disc does not care
    about the sign of its normal, so normals are first flipped to n_z ≥ 0 (no degenerate case)."""
    n = np.asarray(normals, dtype=np.float64).reshape(-1, 3)
    n = np.where(n[:, 2:3] < 0, -n, n)
    q = np.stack([1.0 + n[:, 2], -n[:, 1], n[:, 0], np.zeros(len(n))], axis=1)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def surface_log_scales(sigma: np.ndarray, planarity: np.ndarray, flat_ratio: float) -> np.ndarray:
    """(N,3) log-scales of discs with in-plane sigma ``sigma`` (N,) whose normal sigma shrinks to
    ``flat_ratio`` × sigma on planar neighbourhoods (planarity 1) and stays isotropic on
    lines and blobs (planarity 0)."""
    thin = sigma * (flat_ratio + (1.0 - flat_ratio) * (1.0 - planarity))
    return np.log(np.stack([sigma, sigma, thin], axis=1))


def _up_vector(window: SceneWindow, cfg: DistantConfig) -> np.ndarray:
    if cfg.up is not None:
        up = np.asarray(cfg.up, dtype=np.float64)
    else:
        up = estimate_up([k.camera.T_world_cam for k in window.source_keyframes])
    return up / np.linalg.norm(up)


def estimate_up(poses) -> np.ndarray:
    """World up from optical-frame camera poses ``T_world_cam`` (list of (4,4)).

    Assumes cameras without roll: their x axes are horizontal, so up is the direction most
    orthogonal to all of them (smallest eigenvector of Σ x xᵀ), signed like the mean −y
    (optical y points down). When every camera has the same heading the x axes leave two
    candidate directions; then the mean −y, made orthogonal to the x axes, is used (it then
    carries the cameras' mean pitch).
    """
    R = np.stack([np.asarray(T, dtype=np.float64)[:3, :3] for T in poses])
    xs, minus_y = R[:, :, 0], -R[:, :, 1].mean(axis=0)
    w, v = np.linalg.eigh(xs.T @ xs / len(xs))
    if w[1] > 0.02:  # headings differ enough: the null direction of the x axes is up
        up = v[:, 0]
    else:
        xm = xs.mean(axis=0)
        xm /= max(np.linalg.norm(xm), 1e-12)
        up = minus_y - np.dot(minus_y, xm) * xm
    if np.linalg.norm(up) < 1e-9:
        return np.array([0.0, 0.0, 1.0])
    up = up / np.linalg.norm(up)
    return up if np.dot(up, minus_y) >= 0 else -up


def _axis_angle_quat(axis: int, angles: np.ndarray) -> np.ndarray:
    q = np.zeros((len(angles), 4))
    q[:, 0] = np.cos(angles / 2)
    q[:, 1 + axis] = np.sin(angles / 2)
    return q


def distant_sphere(center: np.ndarray, up: np.ndarray, cfg: DistantConfig, radius: float
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Grid of flat Gaussians on a sphere band, in world.

    center: (3,) world. up: (3,) unit. Returns means (M,3), quats (M,4) w,x,y,z whose local
    z is the outward radial direction and local x the eastward (longitude) tangent,
    log_scales (M,3), and the latitude row index (M,) of each Gaussian (M = n_lat·n_lon).
    """
    e1 = np.cross(up, [1.0, 0.0, 0.0])
    if np.linalg.norm(e1) < 1e-3:
        e1 = np.cross(up, [0.0, 1.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(up, e1)
    B = np.stack([e1, e2, up], axis=1)  # base frame: x, y horizontal, z up
    lat = np.deg2rad(np.linspace(cfg.lat_min_deg, cfg.lat_max_deg, cfg.n_lat))
    lon = 2 * np.pi * np.arange(cfg.n_lon) / cfg.n_lon
    dlat = np.deg2rad(cfg.lat_max_deg - cfg.lat_min_deg) / max(cfg.n_lat - 1, 1)
    dlon = 2 * np.pi / cfg.n_lon
    PHI, LAM = np.meshgrid(lat, lon, indexing="ij")
    phi, lam = PHI.reshape(-1), LAM.reshape(-1)
    rows = np.repeat(np.arange(cfg.n_lat), cfg.n_lon)
    dirs_b = np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], axis=1)
    means = center + radius * dirs_b @ B.T
    # R_world_local = B · Rz(λ) · R0 · Rx(−φ); R0 maps local (x,y,z) to base (y,z,x).
    R0 = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    qB = torch.as_tensor(rotmat_to_quat(B)).expand(len(phi), 4)
    q0 = torch.as_tensor(rotmat_to_quat(R0)).expand(len(phi), 4)
    qz = torch.as_tensor(_axis_angle_quat(2, lam))
    qx = torch.as_tensor(_axis_angle_quat(0, -phi))
    quats = quat_multiply_torch(quat_multiply_torch(quat_multiply_torch(qB, qz), q0), qx).numpy()
    s_lon = cfg.scale_factor * radius * np.maximum(np.cos(phi), 1e-3) * dlon
    s_lat = np.full_like(s_lon, cfg.scale_factor * radius * dlat)
    s_rad = cfg.thickness * np.minimum(s_lon, s_lat)
    log_scales = np.log(np.stack([s_lon, s_lat, s_rad], axis=1))
    return means, quats, log_scales, rows


def in_any_view(points: np.ndarray, keyframes, margin: float = 0.0) -> np.ndarray:
    """(N,) bool: in front of (depth > 0.1 m) and inside the image, grown by ``margin`` × its
    size on each side, of at least one keyframe. points: (N,3) world."""
    keep = np.zeros(len(points), dtype=bool)
    pts = np.asarray(points, dtype=np.float64)
    for kf in keyframes:
        cam = kf.camera
        rest = ~keep
        pc = transform_points(cam.T_cam_world, pts[rest])
        z = pc[:, 2]
        front = z > 0.1
        zf = np.where(front, z, 1.0)
        u = cam.K[0, 0] * pc[:, 0] / zf + cam.K[0, 2]
        v = cam.K[1, 1] * pc[:, 1] / zf + cam.K[1, 2]
        mu, mv = margin * cam.width, margin * cam.height
        ok = front & (u >= -mu) & (u < cam.width + mu) & (v >= -mv) & (v < cam.height + mv)
        keep[np.nonzero(rest)[0][ok]] = True
    return keep


def _crop_actor_boxes(points: np.ndarray, actors: list[ActorTrack], margin: float) -> np.ndarray:
    """Boolean keep-mask (N,): False for points inside any actor box at any track stamp."""
    keep = np.ones(len(points), dtype=bool)
    for a in actors:
        half = 0.5 * np.asarray(a.size, dtype=np.float64) + margin
        for T in a.poses:
            local = transform_points(invert_transform(T), points)
            keep &= ~(np.abs(local) <= half).all(axis=1)
    return keep


def _state(pos, log_scales, quats, rgb, opacity_logit, rng, latent_std) -> np.ndarray:
    n = len(pos)
    op = np.broadcast_to(np.asarray(opacity_logit, dtype=np.float64), (n,)).reshape(n, 1)
    latent = rng.normal(0.0, latent_std, (n, LATENT_CHANNELS)) if latent_std > 0 else np.zeros((n, LATENT_CHANNELS))
    return np.concatenate([pos, log_scales, quats, rgb, op, latent], axis=1)


def _identity_quats(n: int) -> np.ndarray:
    q = np.zeros((n, 4))
    q[:, 0] = 1.0
    return q


def init_scene(window: SceneWindow, config: InitConfig | None = None, device="cpu") -> NeuralScene:
    """Initialize a :class:`NeuralScene` from a window (see the module doc for the recipe).

    Raises ValueError on an empty window, a window without source views or without LiDAR,
    or when cropping removes every point.
    """
    config = config or InitConfig()
    config.validate()
    if not isinstance(window, SceneWindow):
        raise TypeError(f"init_scene needs a SceneWindow, got {type(window).__name__}")
    window.validate()
    rng = np.random.default_rng(config.seed)
    sources = window.source_keyframes

    # --- background LiDAR (world) -------------------------------------------------------
    bg = np.asarray(window.points, dtype=np.float64).reshape(-1, 3)
    n_raw = len(bg)
    if len(bg) and config.min_range > 0:
        ego = np.asarray(window.ego_positions, dtype=np.float64).reshape(-1, 3)
        if len(ego) == 0:
            ego = np.stack([k.camera.center for k in window.keyframes])
        d, _ = cKDTree(ego).query(bg)
        bg = bg[d >= config.min_range]
    if len(bg) and config.crop_actor_boxes and window.actors:
        bg = bg[_crop_actor_boxes(bg, window.actors, config.actor_box_margin)]
    if len(bg) and config.crop_to_views:
        bg = bg[in_any_view(bg, sources, config.view_margin)]
    blind = blind_spot_points(window, bg, _up_vector(window, config.distant), config.blind_spots) \
        if config.blind_spots.enabled and len(bg) else None
    if len(bg):
        bg, _, _ = downsample_to_budget(bg, config.voxel_size, config.max_points, rng=rng)

    # --- actors (box-local) -------------------------------------------------------------
    actors: list[tuple[ActorTrack, np.ndarray]] = []
    for a in window.actors:
        pts = np.asarray(a.points, dtype=np.float64).reshape(-1, 3)
        if len(pts) == 0:
            log.warning("actor %s has no LiDAR points: skipped", a.actor_id)
            continue
        pts, _, _ = downsample_to_budget(pts, config.actor_voxel_size, config.actor_max_points, rng=rng)
        actors.append((a, pts))
    if len(bg) == 0 and not actors:
        raise ValueError(f"window '{window.name}': no LiDAR points left after cropping "
                         f"({n_raw} background points before the min_range / actor-box / view crops)")

    # --- distant sphere (world) ---------------------------------------------------------
    dcfg = config.distant
    dist = None
    if dcfg.enabled:
        ego = np.asarray(window.ego_positions, dtype=np.float64).reshape(-1, 3)
        center = ego.mean(axis=0) if len(ego) else np.mean([k.camera.center for k in sources], axis=0)
        radius = float(dcfg.radius)
        if len(bg):
            far = float(np.linalg.norm(bg - center, axis=1).max())
            if radius < dcfg.min_margin * far:
                log.info("distant radius raised from %.1f to %.1f m (beyond the LiDAR extent)",
                         radius, dcfg.min_margin * far)
                radius = dcfg.min_margin * far
        dist = distant_sphere(center, _up_vector(window, dcfg), dcfg, radius)

    # --- one projection pass over all points (joint z-buffer) ---------------------------
    sizes = [len(bg)] + [len(p) for _, p in actors] + [len(dist[0]) if dist is not None else 0]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    n_all = int(offsets[-1])

    def points_at_view(v: int) -> np.ndarray:
        stamp = sources[v].stamp
        parts = [bg] + [transform_points(a.pose_at(stamp), p) for a, p in actors]
        if dist is not None:
            parts.append(dist[0])
        return np.concatenate(parts, axis=0)

    stats = project_to_views(points_at_view, n_all, sources, cell_px=config.zbuffer_cell_px,
                             occlusion_tol=config.occlusion_tol, color_views=config.color_views,
                             want_colors=config.color_mode == "project")
    if config.color_mode == "random":
        colors = rng.uniform(0.0, 1.0, (n_all, 3))
    else:
        colors = stats.colors.copy()
        if dist is not None:  # distant points nobody sees: mean colour of the nearest row seen
            sl = slice(offsets[-2], offsets[-1])
            dcol, dseen, rows = colors[sl], stats.seen[sl], dist[3]
            seen_rows = np.unique(rows[dseen])
            for r in range(dcfg.n_lat):
                sel = (rows == r) & ~dseen
                if not sel.any():
                    continue
                if len(seen_rows) == 0:
                    dcol[sel] = 0.5
                    continue
                nearest_row = seen_rows[np.argmin(np.abs(seen_rows - r))]
                dcol[sel] = dcol[(rows == nearest_row) & dseen].mean(axis=0)
            colors[sl] = dcol
        missing = ~np.isfinite(colors).all(axis=1)
        if missing.any():
            good = ~missing
            colors[missing] = colors[good].mean(axis=0) if good.any() else 0.5
            log.info("%d of %d points are in no source view: mean colour", int(missing.sum()), n_all)
    colors = np.clip(colors, 0.0, 1.0)

    # --- scales: k-NN distance capped by the footprint angle; discs along the surface ------
    tan_cap = math.tan(math.radians(config.max_footprint_deg)) if config.max_footprint_deg else None

    def lidar_frames(local_pts: np.ndarray, sl: slice, world_pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = knn_distance(local_pts, config.knn_k, fallback=10 * config.min_scale)
        if tan_cap is not None:
            depth = stats.nearest_depth[sl].copy()
            out = ~np.isfinite(depth)
            if out.any():
                depth[out] = _nearest_center_distance(world_pts[out], sources)
            s = np.minimum(s, tan_cap * depth)
        s = np.maximum(s, config.min_scale)
        if not config.orient_to_surface:
            return np.repeat(np.log(s)[:, None], 3, axis=1), _identity_quats(len(s))
        normals, planarity = surface_normals(local_pts, config.normal_k)
        return surface_log_scales(s, planarity, config.flat_ratio), frames_from_normals(normals)

    op_logit = _opacity_logit(config.opacity)
    comps: list[tuple[str, str, np.ndarray, ActorTrack | None]] = []
    if len(bg):
        sl = slice(offsets[0], offsets[1])
        log_s, quats = lidar_frames(bg, sl, bg)
        st = _state(bg, log_s, quats, colors[sl], op_logit, rng, config.latent_std)
        if blind is not None and len(blind):
            thin = np.maximum(blind.sigmas * config.flat_ratio, config.min_scale)
            blind_log_s = np.log(np.stack([blind.sigmas, blind.sigmas, thin], axis=1))
            st = np.concatenate([st, _state(blind.means, blind_log_s, frames_from_normals(blind.normals),
                                            blind.colors, op_logit, rng, config.latent_std)])
        comps.append(("background", "background", st, None))
    mid_stamp = sources[len(sources) // 2].stamp
    for i, (a, pts) in enumerate(actors):
        sl = slice(offsets[1 + i], offsets[2 + i])
        world = transform_points(a.pose_at(mid_stamp), pts)
        log_s, quats = lidar_frames(pts, sl, world)
        st = _state(pts, log_s, quats, colors[sl], op_logit, rng, config.latent_std)
        comps.append((f"actor_{a.actor_id}", "actor", st, a))
    if dist is not None:
        sl = slice(offsets[-2], offsets[-1])
        st = _state(dist[0], dist[2], dist[1], colors[sl], _opacity_logit(dcfg.opacity), rng, config.latent_std)
        comps.append(("distant", "distant", st, None))

    scene = NeuralScene([Component(name, kind, torch.as_tensor(st, dtype=torch.float32, device=device), track)
                         for name, kind, st, track in comps])
    seen_frac = float(stats.seen.mean()) if n_all else 0.0
    log.info("init %s: %s, %.0f%% of points seen unoccluded by a source view", window.name, scene.counts(),
             100 * seen_frac)
    return scene

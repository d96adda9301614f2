"""NeuralScene: the decomposed 3D neural Gaussians of one window, and their initialization.

A scene is a list of :class:`Component`, each a state ``(N,46)`` (layout in
:mod:`g3r_ros.gaussians`) of one kind (G3R decomposition, DESIGN.md §1):

- ``background``: static, in the world frame;
- ``actor``: one per rigid actor track, in *box-local* coordinates; placed per stamp by
  ``track.pose_at(stamp)`` (``T_world_box``), rotating means and quaternions;
- ``distant``: Gaussians on a cropped sphere around the ego path, in the world frame.

All components decode with their kind's decoder and are concatenated into one
:class:`~g3r_ros.render.types.GaussianParams` in the world frame, which renders through
the single ``g3r_ros.render.render`` entry point.

Initialization (:func:`init_scene`, configured by :class:`InitConfig`, mirrored by
``config/init.yaml``):

- LiDAR (background in world, actors in box-local) is voxel-downsampled to a point budget;
  background points that no source view sees are dropped first (``crop_to_views``);
- scale: distance to the ``knn_k``-th (3rd) nearest neighbour (scipy cKDTree), isotropic,
  then capped so that the 1-sigma footprint is at most ``max_footprint_px`` pixels in the
  nearest source view that sees the point (DESIGN.md §5: uncapped near-field points blur
  whole images);
- rotation identity, opacity 0.7, latents ~ N(0, latent_std²);
- colour (recorded choice, the paper used random): ``"project"`` samples the colour of
  each point in its nearest unoccluded source keyframe(s). Occlusion uses a coarse
  z-buffer built from the projected points themselves (cells of ``zbuffer_cell_px``
  pixels; a point is visible when its depth is within ``occlusion_tol`` (relative) of
  the nearest depth in its cell). Points seen by no view fall back to the view where
  they are least occluded, then to the mean colour. ``"random"`` draws uniform colours.
- distant: a latitude × longitude grid on a sphere centred on the mean ego position, with
  "up" from the config or, by default, estimated from the source cameras (no roll).
  Each Gaussian is a flat disc tangent to the sphere whose in-plane sigmas are
  ``scale_factor`` × the grid spacing; its colour is projected from the source images
  where visible (sky, tree crowns), else the mean visible colour of the nearest latitude
  row with visible points.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.spatial import cKDTree

from .gaussians import COMPONENT_KINDS, LATENT_CHANNELS, STATE_CHANNELS
from .geometry import invert_transform, quat_multiply_torch, rotmat_to_quat, transform_points
from .knn import downsample_to_budget, knn_distance
from .progress import progress_bar as tqdm
from .render.types import GaussianParams
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
    (m). max_footprint_px: cap of the initial 1-sigma footprint in pixels in the nearest
    source view (None or 0 disables). min_range: drop background points closer than this
    to the ego path (m; 0 = off; per-scan ego cropping belongs to the window builder).
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
    max_footprint_px: float | None = 2.0
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
        if self.max_footprint_px is not None and self.max_footprint_px < 0:
            raise ValueError(f"max_footprint_px must be >= 0 or null, got {self.max_footprint_px}")
        if self.color_mode not in ("project", "random"):
            raise ValueError(f"color_mode must be 'project' or 'random', got {self.color_mode!r}")
        if self.view_margin < 0:
            raise ValueError(f"view_margin must be >= 0, got {self.view_margin}")
        if self.color_views < 1 or self.zbuffer_cell_px < 1 or self.occlusion_tol < 0:
            raise ValueError("color_views and zbuffer_cell_px must be >= 1, occlusion_tol >= 0")
        if isinstance(self.distant, dict):
            from .config import from_dict

            self.distant = from_dict(DistantConfig, self.distant, where="distant")
        self.distant.validate()


# ---------------------------------------------------------------------------------------
# The scene
# ---------------------------------------------------------------------------------------
@dataclass
class Component:
    """One part of the scene. state: (N,46) in the component frame (world, or box-local
    for actors). track: the actor's track (actors only)."""

    name: str
    kind: str
    state: torch.Tensor
    track: ActorTrack | None = None

    def __post_init__(self):
        if self.kind not in COMPONENT_KINDS:
            raise ValueError(f"component {self.name!r}: kind must be one of {COMPONENT_KINDS}, got {self.kind!r}")
        if self.state.dim() != 2 or self.state.shape[1] != STATE_CHANNELS:
            raise ValueError(f"component {self.name!r}: state must be (N,{STATE_CHANNELS}), "
                             f"got {tuple(self.state.shape)}")
        if self.kind == "actor" and self.track is None:
            raise ValueError(f"actor component {self.name!r} needs a track")

    def __len__(self) -> int:
        return int(self.state.shape[0])


Decoder = Callable[[torch.Tensor], GaussianParams]


def place_params(params: GaussianParams, T_world_local: np.ndarray) -> GaussianParams:
    """Move Gaussians from a local frame to world: means (N,3) local → R·m + t; quats are
    left-multiplied by the rotation's quaternion. Differentiable w.r.t. ``params``."""
    dev, dt = params.means.device, params.means.dtype
    R = torch.as_tensor(T_world_local[:3, :3], dtype=dt, device=dev)
    t = torch.as_tensor(T_world_local[:3, 3], dtype=dt, device=dev)
    q = torch.as_tensor(rotmat_to_quat(T_world_local[:3, :3]), dtype=dt, device=dev)
    return GaussianParams(
        means=params.means @ R.T + t,
        quats=quat_multiply_torch(q.expand_as(params.quats), params.quats),
        log_scales=params.log_scales,
        opacity_logits=params.opacity_logits,
        rgb=params.rgb,
    )


def _empty_params(device=None, dtype=torch.float32) -> GaussianParams:
    def z(*shape):
        return torch.zeros(shape, device=device, dtype=dtype)

    return GaussianParams(z(0, 3), z(0, 4), z(0, 3), z(0), z(0, 3))


class NeuralScene:
    """A decomposed set of neural Gaussian components (see module doc)."""

    def __init__(self, components: list[Component]):
        names = [c.name for c in components]
        if len(set(names)) != len(names):
            raise ValueError(f"component names must be unique, got {names}")
        self.components = list(components)

    def __len__(self) -> int:
        return len(self.components)

    @property
    def num_points(self) -> int:
        return sum(len(c) for c in self.components)

    @property
    def has_actors(self) -> bool:
        """True when some component is an actor (renders then depend on the stamp)."""
        return any(c.kind == "actor" for c in self.components)

    @property
    def device(self) -> torch.device:
        return self.components[0].state.device if self.components else torch.device("cpu")

    def counts(self) -> dict:
        """Number of Gaussians per kind (JSON ready)."""
        out = {k: 0 for k in COMPONENT_KINDS}
        for c in self.components:
            out[c.kind] += len(c)
        out["total"] = self.num_points
        out["actors"] = sum(1 for c in self.components if c.kind == "actor")
        return out

    def states(self) -> list[torch.Tensor]:
        return [c.state for c in self.components]

    def with_states(self, states: list[torch.Tensor]) -> NeuralScene:
        """The same components (names, kinds, tracks) with new states (same point counts)."""
        states = list(states)
        if len(states) != len(self.components):
            raise ValueError(f"expected {len(self.components)} states, got {len(states)}")
        return NeuralScene([dataclasses.replace(c, state=s) for c, s in zip(self.components, states)])

    def to(self, device) -> NeuralScene:
        return self.with_states([s.to(device) for s in self.states()])

    def detach(self) -> NeuralScene:
        return self.with_states([s.detach() for s in self.states()])

    def _active(self, stamp: float | None) -> list[Component]:
        return [c for c in self.components if not (c.kind == "actor" and stamp is None)]

    def layout(self, stamp: float | None) -> list[tuple[str, int, int]]:
        """(name, start, stop) rows of each component in :meth:`params_at`'s output."""
        rows, start = [], 0
        for c in self._active(stamp):
            rows.append((c.name, start, start + len(c)))
            start += len(c)
        return rows

    def params_at(self, decoders: Mapping[str, Decoder], stamp: float | None) -> GaussianParams:
        """Decode every component and place it in the world frame at ``stamp`` (seconds).

        decoders: kind → decoder (e.g. :func:`g3r_ros.gaussians.make_decoders`). Actors are
        decoded in box-local coordinates and placed by ``track.pose_at(stamp)``; with
        ``stamp=None`` actors are left out (a static map). Rows follow :meth:`layout`.
        """
        parts = []
        for c in self._active(stamp):
            if c.kind not in decoders:
                raise ValueError(f"no decoder for component kind {c.kind!r} (have {sorted(decoders)})")
            p = decoders[c.kind](c.state)
            if c.kind == "actor":
                p = place_params(p, c.track.pose_at(float(stamp)))
            parts.append(p)
        if not parts:
            return _empty_params(self.device)
        return GaussianParams.cat(parts) if len(parts) > 1 else parts[0]


# ---------------------------------------------------------------------------------------
# Initialization helpers (NumPy, float64)
# ---------------------------------------------------------------------------------------
def _opacity_logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _bilinear(image: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Sample (H,W,3) uint8 at continuous pixel coords (u,v); pixel (i,j) has its centre at
    (j+0.5, i+0.5) (gsplat convention). Returns (N,3) float in [0,1]."""
    h, w = image.shape[:2]
    x = np.clip(u - 0.5, 0, w - 1)
    y = np.clip(v - 0.5, 0, h - 1)
    x0 = np.clip(np.floor(x).astype(np.int64), 0, max(w - 2, 0))
    y0 = np.clip(np.floor(y).astype(np.int64), 0, max(h - 2, 0))
    x1 = np.minimum(x0 + 1, w - 1)
    y1 = np.minimum(y0 + 1, h - 1)
    fx = (x - x0)[:, None]
    fy = (y - y0)[:, None]
    img = image.astype(np.float64) / 255.0
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bot = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return top * (1 - fy) + bot * fy


@dataclass
class ViewStats:
    """Per-point results of projecting into the source views (N points).

    colors: (N,3) in [0,1] (NaN where no view contains the point). seen: (N,) visible and
    unoccluded in at least one view. depth_over_f: (N,) min over views containing the point
    of depth / focal length (metres per pixel), inf where none.
    """

    colors: np.ndarray
    seen: np.ndarray
    depth_over_f: np.ndarray


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
    dof = np.full(n_points, big)
    for v, kf in enumerate(tqdm(keyframes, desc="init: project", leave=False, disable=V < 4)):
        cam = kf.camera
        uv, z = cam.project(points_at_view(v))
        f = float(0.5 * (cam.K[0, 0] + cam.K[1, 1]))
        inside = (np.isfinite(uv).all(axis=1) & (z > 1e-3) & (uv[:, 0] >= 0) & (uv[:, 0] < cam.width)
                  & (uv[:, 1] >= 0) & (uv[:, 1] < cam.height))
        if not inside.any():
            continue
        idx = np.nonzero(inside)[0]
        zi = z[idx]
        dof[idx] = np.minimum(dof[idx], zi / f)
        cw = (cam.width + cell_px - 1) // cell_px
        cell = (uv[idx, 1] // cell_px).astype(np.int64) * cw + (uv[idx, 0] // cell_px).astype(np.int64)
        zbuf = np.full(cw * ((cam.height + cell_px - 1) // cell_px), big)
        np.minimum.at(zbuf, cell, zi)
        excess[v, idx] = zi / zbuf[cell] - 1.0
        depth[v, idx] = zi
        if want_colors:
            samples[v, idx] = _bilinear(kf.image, uv[idx, 0], uv[idx, 1])
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
    return ViewStats(colors=colors, seen=seen, depth_over_f=dof)


def _nearest_center_over_f(points: np.ndarray, keyframes) -> np.ndarray:
    """Min over views of (distance to the camera centre / focal length), for points that no
    view contains (their footprint cap)."""
    out = np.full(len(points), np.inf)
    for kf in keyframes:
        f = float(0.5 * (kf.camera.K[0, 0] + kf.camera.K[1, 1]))
        out = np.minimum(out, np.linalg.norm(points - kf.camera.center, axis=1) / f)
    return out


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

    # --- scales: k-NN distance capped by the footprint ----------------------------------
    def lidar_log_scales(local_pts: np.ndarray, sl: slice, world_pts: np.ndarray) -> np.ndarray:
        s = knn_distance(local_pts, config.knn_k, fallback=10 * config.min_scale)
        if config.max_footprint_px:
            dof = stats.depth_over_f[sl].copy()
            out = ~np.isfinite(dof)
            if out.any():
                dof[out] = _nearest_center_over_f(world_pts[out], sources)
            s = np.minimum(s, config.max_footprint_px * dof)
        s = np.maximum(s, config.min_scale)
        return np.repeat(np.log(s)[:, None], 3, axis=1)

    op_logit = _opacity_logit(config.opacity)
    comps: list[tuple[str, str, np.ndarray, ActorTrack | None]] = []
    if len(bg):
        sl = slice(offsets[0], offsets[1])
        st = _state(bg, lidar_log_scales(bg, sl, bg), _identity_quats(len(bg)), colors[sl], op_logit,
                    rng, config.latent_std)
        comps.append(("background", "background", st, None))
    mid_stamp = sources[len(sources) // 2].stamp
    for i, (a, pts) in enumerate(actors):
        sl = slice(offsets[1 + i], offsets[2 + i])
        world = transform_points(a.pose_at(mid_stamp), pts)
        st = _state(pts, lidar_log_scales(pts, sl, world), _identity_quats(len(pts)), colors[sl], op_logit,
                    rng, config.latent_std)
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

"""A simulated spinning LiDAR: ranges along beam directions, cast through a Gaussian map (ROS-free).

:func:`simulate_lidar` returns the range at every beam of a :class:`BeamModel` (presets:
:func:`kitti_hdl64`, :func:`synthetic_beams`; any pattern: :func:`generic_beams`);
:func:`cast_rays` does the same for arbitrary directions (the fidelity benchmark casts along
the directions of real returns). Frames: the sensor frame is x forward, y left, z up (REP-103),
azimuth counted from +x towards +y, elevation positive up; ``T_world_lidar`` places it.

How a ray is cast through Gaussians (there is no closed-form ray/splat hit; this is a
render-and-sample approximation, built on :mod:`g3r_ros.surface`):

1. Gaussians whose centres lie beyond ``max_range + range_margin`` of the sensor are left
   out: they cannot return, and they would only blend into partly transparent foreground
   (the distant sky sphere sits at hundreds of metres).
2. ``cameras`` pinhole cameras at the sensor origin, yawed evenly around its z axis and
   pitched to the middle of the rays' elevation band, render the composited *plane
   features* of the map (``surface.plane_features``: per Gaussian the plane it lies on, as a
   vector whose dot product with a ray direction is the inverse distance to that plane) and
   the accumulated opacity. Pixels are as fine as the beam pattern: the azimuth step across,
   half the smallest beam spacing down (``pixel_h_deg``/``pixel_v_deg`` override); non-square
   pixels keep the images small (the HDL-64E pattern: 8 images of 288 x 144).
3. Each ray is projected into the camera whose yaw is nearest. Where the inverse distances
   of the four pixel centres around it agree within ``edge_ratio`` (and all four are opaque
   enough), the features and opacity are interpolated bilinearly; at a depth edge the
   nearest pixel is taken (interpolating would invent a point between two surfaces).
4. The range is 1 / (features . ray) / opacity. A return is kept when the opacity at the ray
   is at least ``min_opacity`` (like a real sensor, a faint echo is no return) and the range
   lies within ``[min_range, max_range]``.

Intensity is not modelled: KITTI ``.bin`` files get reflectance 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .geometry import PinholeCamera, make_transform
from .surface import as_surface_map, render_planes, within

# Velodyne HDL-64E, the sensor of the KITTI car, from the manufacturer's published
# specification (datasheet "HDL-64E"; reproduced e.g. at
# https://github.com/ZahraArj/SLAM-papers/blob/main/15_KITTI.md): 64 channels, vertical field
# of view +2.0 deg to -24.9 deg at ~0.4 deg resolution, horizontal resolution 0.08-0.35 deg
# over 5-20 Hz (0.0864 deg per Hz of spin; KITTI spins at 10 Hz), range up to 120 m. The user
# manual says returns closer than about three feet (0.9 m) should be ignored. The datasheet
# gives the band and the spacing, not per-laser angles (each unit ships its own calibration),
# so the preset spaces the 64 beams evenly over the band.
HDL64_TOP_DEG, HDL64_BOTTOM_DEG, HDL64_BEAMS = 2.0, -24.9, 64
HDL64_AZIMUTH_STEP_DEG = 0.0864 * 2  # 10 Hz
HDL64_MAX_RANGE, HDL64_MIN_RANGE = 120.0, 0.9
HDL64_SOURCE = ("Velodyne HDL-64E datasheet: 64 channels, vertical FOV +2.0..-24.9 deg (~0.4 deg), azimuth "
                "0.08-0.35 deg at 5-20 Hz (10 Hz: 0.1728 deg), range 120 m; min range ~0.9 m (user manual)")
PRESETS = ("kitti64", "synth", "generic")


@dataclass(frozen=True)
class BeamModel:
    """A spinning multi-beam sensor: beams at ``elevations_deg`` (descending; beam 0 = top),
    fired every ``azimuth_step_deg`` over 360 deg, returns kept within ``[min_range, max_range]`` m."""

    name: str
    elevations_deg: tuple
    azimuth_step_deg: float
    max_range: float
    min_range: float = 0.0
    source: str = ""

    def __post_init__(self):
        el = np.asarray(self.elevations_deg, dtype=np.float64)
        if el.ndim != 1 or len(el) == 0 or not np.isfinite(el).all():
            raise ValueError(f"beam model {self.name!r}: elevations must be a non-empty list of finite degrees")
        if len(el) > 1 and np.any(np.diff(el) >= 0):
            raise ValueError(f"beam model {self.name!r}: elevations must be strictly descending (beam 0 = top)")
        if el.max() >= 75.0 or el.min() <= -75.0:
            raise ValueError(f"beam model {self.name!r}: elevations must lie in (-75, 75) deg (pinhole casting)")
        step = float(self.azimuth_step_deg)
        if not (math.isfinite(step) and 0.01 <= step <= 90.0):
            raise ValueError(f"beam model {self.name!r}: azimuth step must be in [0.01, 90] deg, got {step}")
        if not (math.isfinite(self.max_range) and 0.0 <= self.min_range < self.max_range):
            raise ValueError(f"beam model {self.name!r}: need 0 <= min_range < max_range (finite), got "
                             f"{self.min_range}, {self.max_range}")
        object.__setattr__(self, "elevations_deg", tuple(float(v) for v in el))

    @property
    def n_beams(self) -> int:
        return len(self.elevations_deg)

    @property
    def n_azimuth(self) -> int:
        return max(1, int(round(360.0 / self.azimuth_step_deg)))

    @property
    def beam_spacing_deg(self) -> float:
        """Smallest gap between neighbouring beams (1 deg for a single beam)."""
        el = np.asarray(self.elevations_deg)
        return float(np.min(-np.diff(el))) if len(el) > 1 else 1.0

    def directions(self) -> np.ndarray:
        """(B, A, 3) unit directions in the sensor frame: beam b at azimuth j * 360/A deg."""
        el = np.deg2rad(np.asarray(self.elevations_deg))[:, None]
        az = (np.arange(self.n_azimuth) * (2.0 * np.pi / self.n_azimuth))[None, :]
        return np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el) * np.ones_like(az)], -1)

    def to_dict(self) -> dict:
        return {"name": self.name, "beams": self.n_beams, "elevation_top_deg": self.elevations_deg[0],
                "elevation_bottom_deg": self.elevations_deg[-1], "azimuth_step_deg": self.azimuth_step_deg,
                "azimuth_steps": self.n_azimuth, "min_range": self.min_range, "max_range": self.max_range,
                "source": self.source}


def kitti_hdl64() -> BeamModel:
    """The KITTI car's Velodyne HDL-64E at 10 Hz (published specification; see ``HDL64_SOURCE``)."""
    el = np.linspace(HDL64_TOP_DEG, HDL64_BOTTOM_DEG, HDL64_BEAMS)
    return BeamModel("kitti64", tuple(el), HDL64_AZIMUTH_STEP_DEG, HDL64_MAX_RANGE, HDL64_MIN_RANGE, HDL64_SOURCE)


def synthetic_beams(config=None) -> BeamModel:
    """The nominal beam pattern of ``g3r synth`` drives for ``config`` (default ``SynthConfig()``:
    64 beams in KITTI's HDL-64E layout, +2..-24.33 deg, 2000 azimuth steps). The per-drive
    beam bias the generator adds on top is noise, not part of the pattern."""
    from .synthetic import SynthConfig
    from .synthetic.beams import beam_elevations_deg

    cfg = config or SynthConfig()
    el = beam_elevations_deg(cfg.lidar_pattern, cfg.lidar_beams, cfg.lidar_fov_up_deg, cfg.lidar_fov_down_deg)
    return BeamModel("synth", tuple(float(v) for v in el),
                     360.0 / cfg.lidar_azimuth_steps, float(cfg.lidar_max_range), float(cfg.lidar_min_range),
                     "g3r_ros.synthetic (SynthConfig lidar_*)")


def generic_beams(elevations_deg, azimuth_step_deg: float, max_range: float, min_range: float = 0.0,
                  name: str = "generic") -> BeamModel:
    """Any spinning pattern: elevations in degrees (any order; sorted top first), azimuth step, ranges."""
    el = sorted((float(v) for v in elevations_deg), reverse=True)
    if len(set(el)) != len(el):
        raise ValueError("generic beam model: elevations must be distinct")
    return BeamModel(name, tuple(el), float(azimuth_step_deg), float(max_range), float(min_range), "given")


def beam_model(preset: str, *, elevations_deg=(), azimuth_step_deg: float = 0.2, max_range: float = 100.0,
               min_range: float = 0.0) -> BeamModel:
    """``kitti64`` | ``synth`` | ``generic`` (the keyword values) → :class:`BeamModel`."""
    if preset == "kitti64":
        return kitti_hdl64()
    if preset == "synth":
        return synthetic_beams()
    if preset == "generic":
        if len(elevations_deg) == 0:
            raise ValueError("the generic beam model needs elevation angles")
        return generic_beams(elevations_deg, azimuth_step_deg, max_range, min_range)
    raise ValueError(f"unknown LiDAR preset {preset!r}; choose one of {list(PRESETS)}")


# ---------------------------------------------------------------------------------------
# Ray casting
# ---------------------------------------------------------------------------------------
@dataclass
class CastConfig:
    """How rays are cast (module doc). ``pixel_*_deg`` None: derived from the beam pattern."""

    min_opacity: float = 0.5
    cameras: int = 8
    pixel_h_deg: float | None = None
    pixel_v_deg: float | None = None
    edge_ratio: float = 0.05
    range_margin: float = 5.0
    backend: str = "auto"

    def validate(self) -> None:
        if not 0.0 < self.min_opacity <= 1.0:
            raise ValueError(f"min_opacity must be in (0, 1], got {self.min_opacity}")
        if not 3 <= int(self.cameras) <= 64:
            raise ValueError(f"cameras must be in [3, 64], got {self.cameras}")
        for name in ("pixel_h_deg", "pixel_v_deg"):
            v = getattr(self, name)
            if v is not None and not 0.005 <= v <= 10.0:
                raise ValueError(f"{name} must be in [0.005, 10] deg, got {v}")
        if self.edge_ratio < 0 or self.range_margin < 0:
            raise ValueError("edge_ratio and range_margin must be >= 0")


@dataclass
class RayCast:
    """ranges (R,) float32 metres along each ray, NaN where there is no return; opacity (R,)
    float32 accumulated opacity at the ray (0 outside every render)."""

    ranges: np.ndarray
    opacity: np.ndarray


@dataclass
class _Rig:
    """Pinhole cameras around the sensor: rotations ``R_sensor_cam`` (C,3,3), shared K, size."""

    R: np.ndarray
    K: np.ndarray
    width: int
    height: int
    assign: np.ndarray   # (R,) camera index of every ray
    uv: np.ndarray       # (R,2) continuous pixel coordinates (pixel centres at +0.5)
    dz: np.ndarray       # (R,) cosine between the ray and its camera's optical axis


def _camera_rotations(n: int, tilt: float) -> np.ndarray:
    """(n,3,3) ``R_sensor_cam`` of optical frames yawed by k*360/n deg and pitched by ``tilt`` (rad, + up)."""
    yaw = np.arange(n) * (2.0 * np.pi / n)
    cy, sy, ct, st = np.cos(yaw), np.sin(yaw), np.cos(tilt), np.sin(tilt)
    z = np.stack([cy * ct, sy * ct, np.full(n, st)], -1)         # optical axis
    x = np.stack([sy, -cy, np.zeros(n)], -1)                      # right
    y = np.cross(z, x)                                            # down
    return np.stack([x, y, z], -1)


def _ray_rig(dirs: np.ndarray, n_cams: int, pixel_h: float, pixel_v: float, margin: int = 2) -> _Rig:
    """Cameras covering unit ``dirs`` (R,3) (sensor frame) with pixels of ``pixel_h`` x ``pixel_v`` rad."""
    el = np.arcsin(np.clip(dirs[:, 2], -1.0, 1.0))
    tilt = 0.5 * (float(el.max()) + float(el.min())) if len(dirs) else 0.0
    R = _camera_rotations(n_cams, tilt)
    az = np.arctan2(dirs[:, 1], dirs[:, 0])
    assign = np.mod(np.round(az / (2.0 * np.pi / n_cams)).astype(np.int64), n_cams)
    d_cam = np.einsum("rji,rj->ri", R[assign], dirs)  # R^T d
    dz = d_cam[:, 2]
    if len(dirs) and dz.min() < 0.25:
        raise ValueError("rays span too wide an elevation band for pinhole casting (more than ~75 deg off a "
                         "camera axis); use more cameras or a narrower beam model")
    x, y = d_cam[:, 0] / dz, d_cam[:, 1] / dz
    fx, fy = 1.0 / math.tan(pixel_h), 1.0 / math.tan(pixel_v)
    if len(dirs):
        x0, x1, y0, y1 = x.min(), x.max(), y.min(), y.max()
    else:
        x0 = x1 = y0 = y1 = 0.0
    width = int(math.ceil(fx * (x1 - x0))) + 2 * margin + 1
    height = int(math.ceil(fy * (y1 - y0))) + 2 * margin + 1
    cx, cy = margin + 0.5 - fx * x0, margin + 0.5 - fy * y0
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    uv = np.stack([fx * x + cx, fy * y + cy], -1)
    return _Rig(R, K, width, height, assign, uv, dz)


def _pixel_rays(rig: _Rig) -> np.ndarray:
    """(C,H,W,3) unit ray of every pixel centre, sensor frame."""
    u = (np.arange(rig.width) + 0.5 - rig.K[0, 2]) / rig.K[0, 0]
    v = (np.arange(rig.height) + 0.5 - rig.K[1, 2]) / rig.K[1, 1]
    d = np.stack(np.broadcast_arrays(u[None, :], v[:, None], np.ones((1, 1))), -1)
    d = d / np.linalg.norm(d, axis=-1, keepdims=True)
    return np.einsum("cij,hwj->chwi", rig.R, d)


def _sample(feat: np.ndarray, alpha: np.ndarray, rig: _Rig, dirs: np.ndarray, min_opacity: float,
            edge_ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Inverse range and opacity along every ray ``dirs`` (R,3): the composited plane features
    ``feat`` (C,H,W,3) and ``alpha`` (C,H,W) interpolated bilinearly where the four pixels around
    the ray agree (inverse range within ``edge_ratio``, all opaque enough), else the nearest pixel's."""
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_pix = (feat * _pixel_rays(rig)).sum(-1) / alpha
    inv_pix[~((alpha >= min_opacity) & (inv_pix > 0))] = np.nan
    c = rig.assign
    fu, fv = rig.uv[:, 0] - 0.5, rig.uv[:, 1] - 0.5
    i0, j0 = np.floor(fu).astype(np.int64), np.floor(fv).astype(np.int64)
    a, b = (fu - i0)[:, None], (fv - j0)[:, None]
    corners = [(j0, i0), (j0, i0 + 1), (j0 + 1, i0), (j0 + 1, i0 + 1)]
    q = np.stack([inv_pix[c, j, i] for j, i in corners], -1)
    with np.errstate(invalid="ignore"):
        smooth = np.isfinite(q).all(-1) & (q.max(-1) <= q.min(-1) * (1.0 + edge_ratio))
    w = [(1 - a) * (1 - b), a * (1 - b), (1 - a) * b, a * b]
    f_bil = sum(wk * feat[c, j, i] for wk, (j, i) in zip(w, corners))
    a_bil = sum(wk[:, 0] * alpha[c, j, i] for wk, (j, i) in zip(w, corners))
    jn, i_n = np.floor(rig.uv[:, 1]).astype(np.int64), np.floor(rig.uv[:, 0]).astype(np.int64)
    f = np.where(smooth[:, None], f_bil, feat[c, jn, i_n])
    op = np.where(smooth, a_bil, alpha[c, jn, i_n])
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = (f * dirs).sum(-1) / op
    return inv, op


@torch.no_grad()
def cast_rays(map_like, T_world_lidar: np.ndarray, dirs: np.ndarray, *, max_range: float,
              min_range: float = 0.0, pixel_h_deg: float = 0.2, pixel_v_deg: float = 0.2,
              config: CastConfig | None = None) -> RayCast:
    """Range along every unit direction ``dirs`` (R,3) (sensor frame) from the sensor at
    ``T_world_lidar`` (4,4) through a map (anything :func:`g3r_ros.surface.as_surface_map` takes;
    pass a prepared ``SurfaceMap`` to cast many times). ``config.pixel_*_deg`` override the pixel sizes."""
    cfg = config or CastConfig()
    cfg.validate()
    dirs = np.asarray(dirs, dtype=np.float64).reshape(-1, 3)
    T = np.asarray(T_world_lidar, dtype=np.float64)
    if T.shape != (4, 4) or not np.isfinite(T).all():
        raise ValueError(f"T_world_lidar must be a finite (4,4) transform, got shape {T.shape}")
    n = np.linalg.norm(dirs, axis=1)
    if len(dirs) and (not np.isfinite(n).all() or n.min() < 1e-9):
        raise ValueError("ray directions must be finite and non-zero")
    dirs = dirs / n[:, None] if len(dirs) else dirs
    empty = RayCast(np.full(len(dirs), np.nan, np.float32), np.zeros(len(dirs), np.float32))
    if len(dirs) == 0:
        return empty
    ph = math.radians(cfg.pixel_h_deg if cfg.pixel_h_deg is not None else pixel_h_deg)
    pv = math.radians(cfg.pixel_v_deg if cfg.pixel_v_deg is not None else pixel_v_deg)
    rig = _ray_rig(dirs, int(cfg.cameras), ph, pv)
    near = within(as_surface_map(map_like), T[:3, 3], max_range + cfg.range_margin)
    if len(near) == 0:
        return empty
    cams = [PinholeCamera(rig.K, rig.width, rig.height, T @ make_transform(R, None)) for R in rig.R]
    feat, alpha = render_planes(near, cams, T[:3, 3], T[:3, :3], cfg.backend)
    inv, opacity = _sample(feat, alpha, rig, dirs, cfg.min_opacity, cfg.edge_ratio)
    with np.errstate(divide="ignore", invalid="ignore"):
        rng = 1.0 / inv
    ok = np.isfinite(rng) & (rng > 0) & (rng >= min_range) & (rng <= max_range) & (opacity >= cfg.min_opacity)
    return RayCast(np.where(ok, rng, np.nan).astype(np.float32), opacity.astype(np.float32))


# ---------------------------------------------------------------------------------------
# Scans
# ---------------------------------------------------------------------------------------
@dataclass
class SimulatedScan:
    """Returns of one simulated scan, ordered by azimuth step then beam (as a spinning sensor
    reports them). points (N,3) float32 in the sensor frame; ranges (N,) float32 m; ring (N,)
    int16 (0 = top beam); azimuth_index (N,) int32; ``rays`` beams x azimuth steps were cast."""

    points: np.ndarray
    ranges: np.ndarray
    ring: np.ndarray
    azimuth_index: np.ndarray
    beams: BeamModel
    rays: int
    T_world_lidar: np.ndarray = field(default_factory=lambda: np.eye(4))

    def __len__(self) -> int:
        return len(self.points)

    @property
    def drop_fraction(self) -> float:
        """Fraction of cast rays without a return (sky, beyond range, too faint)."""
        return 1.0 - len(self.points) / max(self.rays, 1)


def simulate_lidar(map_like, T_world_lidar: np.ndarray, beams: BeamModel, *, stamp: float | None = None,
                   config: CastConfig | None = None) -> SimulatedScan:
    """Simulate one instantaneous scan of ``beams`` from the sensor pose ``T_world_lidar`` (4,4).

    map_like: a ``SurfaceMap`` (prepared once, cast many times), ``GaussianParams`` (world), or
    anything with ``params_at(stamp)`` (a reconstruction's output: actors placed at ``stamp``).
    Pixel sizes default to the beam pattern (module doc). Raises ``ValueError`` for bad poses or inputs."""
    smap = as_surface_map(map_like, stamp)
    dirs = beams.directions()                                   # (B, A, 3)
    B, A = dirs.shape[:2]
    flat = dirs.transpose(1, 0, 2).reshape(-1, 3)               # azimuth-major, like the sensor
    cast = cast_rays(smap, T_world_lidar, flat, max_range=beams.max_range, min_range=beams.min_range,
                     pixel_h_deg=beams.azimuth_step_deg, pixel_v_deg=0.5 * beams.beam_spacing_deg, config=config)
    hit = np.flatnonzero(np.isfinite(cast.ranges))
    rng = cast.ranges[hit]
    return SimulatedScan((flat[hit] * rng[:, None]).astype(np.float32), rng.astype(np.float32),
                         (hit % B).astype(np.int16), (hit // B).astype(np.int32), beams, B * A,
                         np.asarray(T_world_lidar, dtype=np.float64).copy())


def scan_fields(scan: SimulatedScan) -> np.ndarray:
    """The scan as a structured array for PointCloud2: x, y, z, range (float32), ring (uint16)."""
    out = np.zeros(len(scan), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("range", "<f4"), ("ring", "<u2")])
    out["x"], out["y"], out["z"] = scan.points[:, 0], scan.points[:, 1], scan.points[:, 2]
    out["range"], out["ring"] = scan.ranges, scan.ring.astype(np.uint16)
    return out


def write_kitti_bin(path, points: np.ndarray, intensity: np.ndarray | None = None) -> Path:
    """Write points (N,3) (sensor frame) as a KITTI Velodyne ``.bin``: little-endian float32 rows
    x, y, z, reflectance (0 when ``intensity`` is None: not modelled). Atomic."""
    from .atomic import atomic_write_bytes

    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if not np.isfinite(pts).all():
        raise ValueError("KITTI .bin: points must be finite")
    rows = np.zeros((len(pts), 4), dtype="<f4")
    rows[:, :3] = pts
    if intensity is not None:
        rows[:, 3] = np.asarray(intensity, dtype=np.float32).reshape(-1)
    return atomic_write_bytes(path, rows.tobytes())


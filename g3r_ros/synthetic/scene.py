"""``SyntheticScene``: everything needed to render or scan a synthetic drive at any stamp.

Frames: the scene is built in a *road frame* (x along the street, z up, ground at z=0).
``map`` is the ego's base_link pose at the first frame (as KITTI odometry poses start at
identity), so ``T_map_road = inv(T_road_base(t0))``. base_link is on the ground under the
ego's rear axle, x forward, y left, z up; cameras are optical frames (x right, y down,
z forward); the LiDAR frame is x forward, y left, z up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..geometry import R_BODY_OPTICAL, PinholeCamera, invert_transform, make_transform
from ..window import ActorTrack
from .beams import beam_elevations_deg
from .config import GENERATOR_VERSION, SynthConfig
from .layout import StreetLayout, bend_groups, build_static, make_layout
from .motion import MovingActor, Trajectory, make_actors, make_ego
from .noise import NoiseBank, sub_rng
from .photometric import CameraResponse, make_response
from .primitives import Geometry, GeometryBuilder
from .raycast import PosedGroups, pose_groups
from .sky import Lighting, Sky, make_lighting


def _rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


@dataclass
class CameraMount:
    """A camera of the rig: name (cam0...), optical ``frame_id``, K (3,3), size, T_base_cam."""

    name: str
    frame_id: str
    K: np.ndarray
    width: int
    height: int
    T_base_cam: np.ndarray
    image_topic: str
    info_topic: str


@dataclass
class LidarMount:
    """The spinning LiDAR: T_base_lidar, beam elevations (radians, descending), azimuth steps,
    range limits, range noise (m), per-beam range bias (B,) (m) and base dropout probability."""

    frame_id: str
    T_base_lidar: np.ndarray
    elevations: np.ndarray
    azimuth_steps: int
    min_range: float
    max_range: float
    noise_m: float
    beam_bias: np.ndarray
    dropout: float
    topic: str


@dataclass
class SyntheticScene:
    """A procedural street (geometry, textures, lighting), the ego's and actors' motion and the
    sensor rig. ``stamps`` (F,) are the frame times in seconds."""

    seed: int
    config: SynthConfig
    layout: StreetLayout
    geometry: Geometry
    actors: list[MovingActor]
    lighting: Lighting
    sky: Sky
    noise: NoiseBank
    ego: Trajectory
    T_map_road: np.ndarray
    cameras: list[CameraMount]
    lidar: LidarMount
    stamps: np.ndarray
    response: CameraResponse
    version: str = GENERATOR_VERSION
    _static_posed: PosedGroups | None = field(default=None, repr=False)

    # -- frames and time --------------------------------------------------------------------
    @property
    def T_road_map(self) -> np.ndarray:
        return invert_transform(self.T_map_road)

    @property
    def t0(self) -> float:
        return float(self.stamps[0])

    def tau(self, stamp: float) -> float:
        """Seconds since the first frame, snapped to whole microseconds: a stamp that went
        through a bag (float → int ns → float) maps to exactly the same motion state."""
        stamp = float(stamp)
        if not np.isfinite(stamp):
            raise ValueError(f"stamp must be finite, got {stamp}")
        return round((stamp - self.t0) * 1e6) / 1e6

    def ego_pose(self, stamp: float) -> np.ndarray:
        """T_map_base (4,4) at ``stamp`` (seconds)."""
        return self.T_map_road @ self.ego.pose(self.tau(stamp))

    def camera(self, index: int, stamp: float) -> PinholeCamera:
        """Camera ``index`` of the rig at ``stamp``, posed in ``map``."""
        m = self.cameras[index]
        return PinholeCamera(m.K.copy(), m.width, m.height, self.ego_pose(stamp) @ m.T_base_cam)

    def lidar_pose(self, stamp: float) -> np.ndarray:
        """T_map_lidar (4,4) at ``stamp``."""
        return self.ego_pose(stamp) @ self.lidar.T_base_lidar

    # -- actors ---------------------------------------------------------------------------------
    def actor_pose_road(self, actor_id: int, stamp: float) -> np.ndarray:
        return self.actors[actor_id].traj.pose(self.tau(stamp))

    def actor_pose(self, actor_id: int, stamp: float) -> np.ndarray:
        """T_map_box (4,4) of moving actor ``actor_id`` (box centre, x forward) at ``stamp``."""
        return self.T_map_road @ self.actor_pose_road(actor_id, stamp)

    def actor_tracks(self, stamps=None) -> list[ActorTrack]:
        """Tracks of the moving actors sampled at ``stamps`` (default: the frame stamps)."""
        stamps = self.stamps if stamps is None else np.asarray(stamps, dtype=np.float64)
        return [ActorTrack(a.actor_id, a.size.copy(), stamps.copy(),
                           np.stack([self.actor_pose(a.actor_id, s) for s in stamps]))
                for a in self.actors]

    def street_coords(self, points_map: np.ndarray) -> np.ndarray:
        """(N,3) ``map`` points → (N,3) street coordinates (arc length along the centreline,
        lateral offset to its left, height)."""
        p = np.asarray(points_map, dtype=np.float64).reshape(-1, 3)
        q = p @ self.T_road_map[:3, :3].T + self.T_road_map[:3, 3]
        s, d = self.layout.plan.centre.to_street(q[:, 0], q[:, 1])
        return np.stack([s, d, q[:, 2]], axis=1)

    def posed(self, stamp: float | None) -> PosedGroups:
        """Groups to cast at ``stamp``: the static street plus, unless ``stamp`` is None, the
        moving actors at their poses."""
        if stamp is None:
            if self._static_posed is None:
                self._static_posed = pose_groups(self.geometry, None)
            return self._static_posed
        return pose_groups(self.geometry, {a.actor_id: self.actor_pose_road(a.actor_id, stamp)
                                           for a in self.actors})

    def describe(self) -> dict:
        """A JSON-ready summary of the scene."""
        lay = self.layout
        labels: dict[str, int] = {}
        for g in self.geometry.groups:
            labels[g.label] = labels.get(g.label, 0) + 1
        return {
            "seed": self.seed, "version": self.version, "frames": len(self.stamps),
            "lanes_per_direction": lay.lanes_per_dir, "lane_width_m": round(lay.lane_width, 3),
            "road_width_m": round(lay.y_left - lay.y_right, 3), "ego_speed_mps": round(self.ego.v, 3),
            "objects": labels, "parts": len(self.geometry), "moving_actors": len(self.actors),
            "bends_deg": [round(float(np.degrees(k * (b - a))), 2) for k, a, b in
                          zip(lay.plan.centre.kappa[1:-1], lay.plan.centre.s0[1:-1], lay.plan.centre.s0[2:]) if k != 0],
            "side_streets": [{"s_m": round(c.s, 2), "sides": list(c.sides)} for c in lay.plan.crossings],
            "sun_elevation_deg": round(float(np.degrees(np.arcsin(self.lighting.sun_dir[2]))), 2),
            "colour_temperature_k": round(self.lighting.kelvin, 1),
            "camera_height_m": round(float(self.cameras[0].T_base_cam[2, 3]), 4),
            "camera_pitch_deg": round(float(np.degrees(np.arcsin(-self.cameras[0].T_base_cam[2, 2]))), 4),
            "lidar_beams": len(self.lidar.elevations),
            "exposure_ev": round(self.response.ev, 4), "contrast": round(self.response.contrast, 4),
            "white_balance_rgb": [round(float(g), 4) for g in self.response.wb],
            "vignetting": round(self.response.vignette, 4),
        }


def _camera_rig(cfg: SynthConfig, seed: int) -> list[CameraMount]:
    """The rig of ``seed``: every camera at one height and pitch, drawn from the config's ranges."""
    rng = sub_rng(seed, "rig")
    height = rng.uniform(cfg.camera_height_min, cfg.camera_height_max)
    pitch = rng.uniform(cfg.camera_pitch_min_deg, cfg.camera_pitch_max_deg)
    f = (cfg.width / 2.0) / np.tan(np.deg2rad(cfg.hfov_deg) / 2.0)
    K = np.array([[f, 0.0, cfg.width / 2.0], [0.0, f, cfg.height / 2.0], [0.0, 0.0, 1.0]])
    yaws = [0.0, np.deg2rad(cfg.side_yaw_deg), -np.deg2rad(cfg.side_yaw_deg)]
    lateral = [0.0, 0.25, -0.25]
    rig = []
    for i in range(cfg.cameras):
        R = _rot_z(yaws[i]) @ _rot_y(np.deg2rad(pitch)) @ R_BODY_OPTICAL
        T = make_transform(R, [cfg.camera_forward, lateral[i], height])
        base = f"{cfg.topic_prefix}/cam{i}"
        rig.append(CameraMount(f"cam{i}", f"cam{i}_optical", K.copy(), cfg.width, cfg.height, T,
                               f"{base}/image_raw", f"{base}/camera_info"))
    return rig


def _lidar_mount(cfg: SynthConfig, seed: int) -> LidarMount:
    el = np.deg2rad(beam_elevations_deg(cfg.lidar_pattern, cfg.lidar_beams, cfg.lidar_fov_up_deg,
                                        cfg.lidar_fov_down_deg))
    bias = sub_rng(seed, "beambias").normal(0.0, 1.0, len(el)) * cfg.lidar_beam_bias_m
    return LidarMount("velodyne", make_transform(None, [cfg.lidar_forward, 0.0, cfg.lidar_height]), el,
                      cfg.lidar_azimuth_steps, cfg.lidar_min_range, cfg.lidar_max_range, cfg.lidar_noise_m, bias,
                      cfg.lidar_dropout, f"{cfg.topic_prefix}/velodyne/points")


def make_scene(seed: int, config: SynthConfig | None = None) -> SyntheticScene:
    """Build the scene for ``seed`` (deterministic: the same seed and config give the same scene)."""
    cfg = config or SynthConfig()
    cfg.validate()
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    stamps = cfg.start_stamp + np.arange(cfg.frames) / cfg.rate_hz
    # the street must cover the drive: estimate the ego's travel with the fastest speed
    travel = cfg.ego_speed_max * 1.3 * cfg.duration
    layout = make_layout(seed, -cfg.street_behind_m, travel + cfg.street_ahead_m, cfg.parked_cars, cfg.texture_detail,
                         cfg.curved_roads, cfg.intersections, visible_hi=travel + 100.0)
    ego = make_ego(seed, layout, cfg.ego_speed_min, cfg.ego_speed_max)
    b = GeometryBuilder()
    along = build_static(b, layout, seed)
    actors = make_actors(seed, layout, ego, cfg.actors, cfg.duration, b)
    geometry = b.finish()
    bend_groups(geometry, along, layout.plan.centre)
    lighting, sky = make_lighting(seed)
    T_map_road = invert_transform(ego.pose(0.0))
    return SyntheticScene(seed, cfg, layout, geometry, actors, lighting, sky, NoiseBank(seed), ego, T_map_road,
                          _camera_rig(cfg, seed), _lidar_mount(cfg, seed), stamps, make_response(seed, cfg))

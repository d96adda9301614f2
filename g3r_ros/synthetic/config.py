"""``SynthConfig``: the generator's parameters, mirrored by ``config/synth.yaml``.

Everything that shapes a synthetic drive is here or derived from the seed, so that
``(seed, SynthConfig, GENERATOR_VERSION)`` regenerates a scene exactly. Bags record all three
on ``/synth/scene``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

# Bump whenever a change alters any generated pixel, point or pose for a given (seed, config).
GENERATOR_VERSION = "1.0"


@dataclass
class SynthConfig:
    """Generator defaults (see ``config/synth.yaml`` for the documented copy)."""

    # --- timing / ego ---
    frames: int = 40                    # camera frames (and LiDAR scans), one per 1/rate_hz
    rate_hz: float = 10.0
    start_stamp: float = 1.7e9          # seconds (a realistic epoch)
    ego_speed_min: float = 5.0          # m/s; the speed is drawn per seed in [min, max]
    ego_speed_max: float = 10.0
    # --- cameras ---
    cameras: int = 1                    # 1: front; 2: + front-left; 3: + front-right
    width: int = 320
    height: int = 192
    hfov_deg: float = 80.0              # horizontal field of view of every camera
    side_yaw_deg: float = 40.0          # yaw of the side cameras (left +, right -)
    camera_height: float = 1.6          # m above the ground (base_link is on the ground)
    camera_forward: float = 1.5         # m ahead of base_link
    camera_pitch_deg: float = 2.0       # downward pitch of every camera
    supersample: int = 2                # SxS rays per pixel, averaged (1 = the pixel centre only)
    # --- LiDAR ---
    lidar: bool = True
    lidar_beams: int = 32
    lidar_fov_up_deg: float = 2.0
    lidar_fov_down_deg: float = -24.0
    lidar_azimuth_steps: int = 1800
    lidar_max_range: float = 80.0
    lidar_min_range: float = 1.0
    lidar_height: float = 1.9           # m above the ground
    lidar_forward: float = 0.3          # m ahead of base_link
    lidar_noise_m: float = 0.0          # std of Gaussian range noise (0: exact returns)
    # --- scene ---
    actors: int = 4                     # moving cars (published on the tracks topic)
    parked_cars: bool = True            # parked cars along the far kerb (static background)
    street_behind_m: float = 60.0       # street extent behind the start ...
    street_ahead_m: float = 260.0       # ... and ahead of the end of the drive
    # --- output ---
    storage: str = "mcap"               # rosbag2 storage plugin: mcap or sqlite3
    topic_prefix: str = "/synth"

    def _check_types(self) -> None:
        """Coerce ints given for float fields; raise ``ValueError`` on any other type mismatch."""
        kinds = {"int": int, "float": float, "bool": bool, "str": str}
        for f in fields(self):
            want = kinds[f.type if isinstance(f.type, str) else f.type.__name__]
            value = getattr(self, f.name)
            if want is float and isinstance(value, int) and not isinstance(value, bool):
                setattr(self, f.name, float(value))
            elif not isinstance(value, want) or (want is int and isinstance(value, bool)):
                raise ValueError(f"SynthConfig.{f.name} must be {want.__name__}, got {value!r}")

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        self._check_types()
        checks = [
            (self.frames >= 1, "frames must be >= 1"),
            (self.rate_hz > 0, "rate_hz must be > 0"),
            (self.start_stamp >= 0, "start_stamp must be >= 0"),
            (0 < self.ego_speed_min <= self.ego_speed_max <= 40, "need 0 < ego_speed_min <= ego_speed_max <= 40"),
            (1 <= self.cameras <= 3, "cameras must be 1, 2 or 3"),
            (self.width >= 8 and self.height >= 8, "width and height must be >= 8"),
            (10 <= self.hfov_deg <= 150, "hfov_deg must be in [10, 150]"),
            (0.3 <= self.camera_height <= 4.0, "camera_height must be in [0.3, 4] m"),
            (1 <= self.supersample <= 4, "supersample must be 1..4"),
            (self.lidar_beams >= 1, "lidar_beams must be >= 1"),
            (-90 < self.lidar_fov_down_deg < self.lidar_fov_up_deg < 90,
             "need -90 < lidar_fov_down_deg < lidar_fov_up_deg < 90"),
            (self.lidar_azimuth_steps >= 8, "lidar_azimuth_steps must be >= 8"),
            (0 <= self.lidar_min_range < self.lidar_max_range, "need 0 <= lidar_min_range < lidar_max_range"),
            (0.3 <= self.lidar_height <= 4.0, "lidar_height must be in [0.3, 4] m"),
            (self.lidar_noise_m >= 0, "lidar_noise_m must be >= 0"),
            (0 <= self.actors <= 32, "actors must be in [0, 32]"),
            (self.street_behind_m >= 0 and self.street_ahead_m >= 20, "street extents too small"),
            (self.storage in ("mcap", "sqlite3"), "storage must be 'mcap' or 'sqlite3'"),
            (self.topic_prefix.startswith("/"), "topic_prefix must start with '/'"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"SynthConfig: {msg}")

    @property
    def duration(self) -> float:
        """Seconds from the first to the last frame."""
        return (self.frames - 1) / self.rate_hz

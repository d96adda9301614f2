"""``SynthConfig``: the generator's parameters, mirrored by ``config/synth.yaml``.

Everything that shapes a synthetic drive is here or derived from the seed, so that
``(seed, SynthConfig, GENERATOR_VERSION)`` regenerates a scene exactly. Bags record all three
on ``/synth/scene``.

The realism features of generator 2.0 can each be switched off on their own (``FEATURES``
names the fields of each and their "off" values; ``PRESETS["plain"]`` switches all of them off,
which renders generator 1.0's streets), so that ``g3r bench synth-gap`` can measure what each
one does to the distance from real KITTI frames.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

# Bump whenever a change alters any generated pixel, point or pose for a given (seed, config).
GENERATOR_VERSION = "2.0"

LIDAR_PATTERNS = ("uniform", "hdl64e")


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
    camera_height_min: float = 1.45     # m above the ground, drawn per seed in [min, max] (KITTI: 1.65)
    camera_height_max: float = 1.75
    camera_forward: float = 1.5         # m ahead of base_link
    camera_pitch_min_deg: float = 0.0   # downward pitch of every camera, drawn per seed in [min, max]
    camera_pitch_max_deg: float = 1.5
    supersample: int = 2                # SxS rays per pixel, averaged (1 = the pixel centre only)
    # --- camera response (photometric pipeline; per drive unless said otherwise) ---
    blur_px_min: float = 0.0            # optical blur: std (pixels) of a Gaussian PSF, drawn per drive
    blur_px_max: float = 0.0
    exposure_ev_min: float = -0.2       # exposure offset in stops, drawn per drive in [min, max]
    exposure_ev_max: float = 0.5
    exposure_frame_ev: float = 0.08     # amplitude (stops) of a smooth per-frame exposure drift
    contrast_min: float = 1.2           # tone-curve contrast about mid grey (1: linear), drawn per drive
    contrast_max: float = 1.6
    white_balance: float = 0.08         # max |log gain| of red and blue against green, drawn per drive
    vignetting_min: float = 0.0         # fraction of light lost in the image corners, drawn per drive
    vignetting_max: float = 0.0
    noise_read: float = 1.0             # read noise std (8-bit levels) of recorded images only
    noise_shot: float = 2.5             # shot noise std at full white (8-bit levels), recorded images only
    jpeg_quality_min: int = 0           # JPEG quality drawn per frame in [min, max]; 0: no compression
    jpeg_quality_max: int = 0
    # --- LiDAR ---
    lidar: bool = True
    lidar_pattern: str = "hdl64e"       # uniform: lidar_beams evenly over the fov; hdl64e: KITTI's Velodyne
    lidar_beams: int = 32
    lidar_fov_up_deg: float = 2.0
    lidar_fov_down_deg: float = -24.0
    lidar_azimuth_steps: int = 2000
    lidar_max_range: float = 80.0
    lidar_min_range: float = 1.0
    lidar_height: float = 1.9           # m above the ground
    lidar_forward: float = 0.3          # m ahead of base_link
    lidar_noise_m: float = 0.02         # std of Gaussian range noise per return (0: exact returns)
    lidar_beam_bias_m: float = 0.03     # std of a fixed range offset per beam (calibration), drawn per drive
    lidar_dropout: float = 0.0          # base probability that a return is lost (more on glass, tyres, far away)
    # --- scene ---
    actors: int = 4                     # moving cars (published on the tracks topic)
    parked_cars: bool = True            # parked cars along the far kerb (static background)
    street_behind_m: float = 60.0       # street extent behind the start ...
    street_ahead_m: float = 260.0       # ... and ahead of the end of the drive
    texture_detail: float = 1.0         # strength of multi-scale texture noise (road, facades, vegetation)
    curved_roads: float = 0.6           # probability that a seed's street has bends
    intersections: float = 0.5          # probability of a side street at each eligible straight stretch
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
            (0.3 <= self.camera_height_min <= self.camera_height_max <= 4.0,
             "need 0.3 <= camera_height_min <= camera_height_max <= 4 m"),
            (-30 <= self.camera_pitch_min_deg <= self.camera_pitch_max_deg <= 30,
             "need -30 <= camera_pitch_min_deg <= camera_pitch_max_deg <= 30"),
            (1 <= self.supersample <= 4, "supersample must be 1..4"),
            (0 <= self.blur_px_min <= self.blur_px_max <= 3, "need 0 <= blur_px_min <= blur_px_max <= 3"),
            (-4 <= self.exposure_ev_min <= self.exposure_ev_max <= 4,
             "need -4 <= exposure_ev_min <= exposure_ev_max <= 4"),
            (0 <= self.exposure_frame_ev <= 2, "exposure_frame_ev must be in [0, 2]"),
            (0.3 <= self.contrast_min <= self.contrast_max <= 3, "need 0.3 <= contrast_min <= contrast_max <= 3"),
            (0 <= self.white_balance <= 1, "white_balance must be in [0, 1]"),
            (0 <= self.vignetting_min <= self.vignetting_max < 1, "need 0 <= vignetting_min <= vignetting_max < 1"),
            (0 <= self.noise_read <= 50 and 0 <= self.noise_shot <= 50, "noise_read and noise_shot must be in [0, 50]"),
            ((self.jpeg_quality_min == 0 and self.jpeg_quality_max == 0)
             or 1 <= self.jpeg_quality_min <= self.jpeg_quality_max <= 100,
             "need jpeg_quality_min = jpeg_quality_max = 0 (off) or 1 <= min <= max <= 100"),
            (self.lidar_pattern in LIDAR_PATTERNS, f"lidar_pattern must be one of {LIDAR_PATTERNS}"),
            (self.lidar_beams >= 1, "lidar_beams must be >= 1"),
            (-90 < self.lidar_fov_down_deg < self.lidar_fov_up_deg < 90,
             "need -90 < lidar_fov_down_deg < lidar_fov_up_deg < 90"),
            (self.lidar_azimuth_steps >= 8, "lidar_azimuth_steps must be >= 8"),
            (0 <= self.lidar_min_range < self.lidar_max_range, "need 0 <= lidar_min_range < lidar_max_range"),
            (0.3 <= self.lidar_height <= 4.0, "lidar_height must be in [0.3, 4] m"),
            (self.lidar_noise_m >= 0 and self.lidar_beam_bias_m >= 0,
             "lidar_noise_m and lidar_beam_bias_m must be >= 0"),
            (0 <= self.lidar_dropout <= 1, "lidar_dropout must be in [0, 1]"),
            (0 <= self.texture_detail <= 2, "texture_detail must be in [0, 2]"),
            (0 <= self.curved_roads <= 1, "curved_roads must be in [0, 1]"),
            (0 <= self.intersections <= 1, "intersections must be in [0, 1]"),
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


# The realism features of generator 2.0: name → (fields when off, fields when on). "Off" is
# generator 1.0's behaviour. `g3r bench synth-gap` measures each against real KITTI frames;
# docs/DATA.md records which are on by default and why. OPTIONS are features that change the
# camera's framing rather than its realism (measured, never on by default).
FEATURES: dict[str, tuple[dict, dict]] = {
    "texture": ({"texture_detail": 0.0}, {"texture_detail": 1.0}),
    "blur": ({"blur_px_min": 0.0, "blur_px_max": 0.0}, {"blur_px_min": 0.3, "blur_px_max": 0.6}),
    "exposure": ({"exposure_ev_min": 0.0, "exposure_ev_max": 0.0, "exposure_frame_ev": 0.0},
                 {"exposure_ev_min": -0.2, "exposure_ev_max": 0.5, "exposure_frame_ev": 0.08}),
    "tone_curve": ({"contrast_min": 1.0, "contrast_max": 1.0}, {"contrast_min": 1.2, "contrast_max": 1.6}),
    "white_balance": ({"white_balance": 0.0}, {"white_balance": 0.08}),
    "vignetting": ({"vignetting_min": 0.0, "vignetting_max": 0.0}, {"vignetting_min": 0.1, "vignetting_max": 0.35}),
    "sensor_noise": ({"noise_read": 0.0, "noise_shot": 0.0}, {"noise_read": 1.0, "noise_shot": 2.5}),
    "jpeg": ({"jpeg_quality_min": 0, "jpeg_quality_max": 0}, {"jpeg_quality_min": 75, "jpeg_quality_max": 95}),
    "camera_pose": ({"camera_height_min": 1.6, "camera_height_max": 1.6, "camera_pitch_min_deg": 2.0,
                     "camera_pitch_max_deg": 2.0},
                    {"camera_height_min": 1.45, "camera_height_max": 1.75, "camera_pitch_min_deg": 0.0,
                     "camera_pitch_max_deg": 1.5}),
    "curves": ({"curved_roads": 0.0}, {"curved_roads": 0.6}),
    "intersections": ({"intersections": 0.0}, {"intersections": 0.5}),
    "lidar_pattern": ({"lidar_pattern": "uniform", "lidar_beams": 32, "lidar_azimuth_steps": 1800},
                      {"lidar_pattern": "hdl64e", "lidar_azimuth_steps": 2000}),
    "lidar_dropout": ({"lidar_dropout": 0.0}, {"lidar_dropout": 0.01}),
    "lidar_noise": ({"lidar_noise_m": 0.0, "lidar_beam_bias_m": 0.0},
                    {"lidar_noise_m": 0.02, "lidar_beam_bias_m": 0.03}),
    "kitti_aspect": ({"width": 320, "height": 192, "hfov_deg": 80.0}, {"width": 306, "height": 92, "hfov_deg": 81.8}),
}


OPTIONS = ("kitti_aspect",)


def _all(state: int, names=None) -> dict:
    out: dict = {}
    for name in names or FEATURES:
        out.update(FEATURES[name][state])
    return out


# Named sets of overrides (``g3r synth --preset NAME``):
# - plain: every realism feature off (generator 1.0's streets and sensors);
# - kitti: every feature that brought the frames closer to KITTI's (docs/DATA.md) plus the
#   optical blur that helps at this framing, KITTI's camera (odometry sequences 04-12,
#   1226x370 at quarter scale: 306x92, 81.8 deg horizontal field of view, 1.6-1.7 m high,
#   near level) and its HDL-64E at 1.73 m.
DEFAULT_OFF = ("blur", "vignetting", "jpeg", "lidar_dropout", "kitti_aspect")   # measured: no closer to KITTI

PRESETS: dict[str, dict] = {
    "plain": _all(0),
    "kitti": {**_all(1), **_all(0, ("vignetting", "jpeg", "lidar_dropout")), "cameras": 1,
              "camera_height_min": 1.6, "camera_height_max": 1.7,
              "camera_pitch_min_deg": 0.0, "camera_pitch_max_deg": 1.0, "camera_forward": 1.5,
              "lidar_height": 1.73, "lidar_forward": 1.23},
}


def preset_overrides(name: str) -> dict:
    """The SynthConfig fields a preset sets (a copy)."""
    if name not in PRESETS:
        raise ValueError(f"unknown synth preset {name!r}; known: {sorted(PRESETS)}")
    return dict(PRESETS[name])

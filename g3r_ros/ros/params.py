"""Parameters of ``reconstruct_node``: one table of specs → typed ROS declarations → :class:`NodeConfig`.

The table :data:`PARAMS` is the single source of truth: the node declares every entry with
its type, description, range and read-only flag (``ros2 param describe`` shows them),
``config/reconstruct.yaml`` documents the same names, and :func:`node_config_from_params`
turns values into a validated :class:`NodeConfig`. ``use_sim_time`` is rclpy's own
parameter and is read too.

Read-only parameters (topics, QoS, frames, model, device, builder geometry, output_dir) are
fixed at startup. The others (``runtime=True``) can be set while the node runs: the node
validates a change against the whole configuration and refuses a bad value with the reason
(``SetParametersResult(successful=False, reason=...)``), else applies it from the next
message, window or status.

ROS parameter names are dotted (``window.seconds``); :class:`NodeConfig` fields are the same
names with dots replaced by underscores (``window_seconds``). This module is importable
without rclpy (only :func:`declare_and_load` and :func:`descriptor` touch rclpy types).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..atomic import atomic_write_text

LOG = logging.getLogger(__name__)
SENSOR_QOS = ("sensor_data", "reliable")
IMAGE_TRANSPORTS = ("raw", "compressed")
DEVICES = ("auto", "cpu", "cuda")
POSE_TYPES = ("pose_stamped", "odometry")
LIDAR_PRESETS = ("kitti64", "synth", "generic")
ROS_OWN = ("use_sim_time", "start_type_description_service")  # rclpy declares these itself


@dataclass(frozen=True)
class ParamSpec:
    """One parameter. ``lo``/``hi``: inclusive range (``open_lo``: ``lo`` itself excluded, e.g. > 0);
    ``choices``: accepted strings; ``runtime``: may change while the node runs."""

    name: str          # ROS parameter name (dotted)
    default: object
    description: str
    runtime: bool = False
    lo: float | None = None
    hi: float | None = None
    open_lo: bool = False
    choices: tuple = ()

    @property
    def field(self) -> str:
        return self.name.replace(".", "_")

    def constraints(self) -> str:
        """The rule in words (the descriptor's ``additional_constraints``)."""
        parts = []
        if self.choices:
            parts.append("one of " + ", ".join(self.choices))
        if self.lo is not None:
            parts.append(f"{'>' if self.open_lo else '>='} {self.lo:g}")
        if self.hi is not None:
            parts.append(f"<= {self.hi:g}")
        parts.append("can change at run time" if self.runtime else "read-only (set at startup)")
        return "; ".join(parts)


_p = ParamSpec  # keeps the table below readable


PARAMS: tuple[ParamSpec, ...] = (
    # inputs ---------------------------------------------------------------------------
    _p("cameras", ["/camera/front/image_raw"],
       "image topics; CameraInfo is '<namespace of the image topic>/camera_info' (image_transport "
       "convention); with image_transport 'compressed' the node subscribes '<image topic>/compressed'"),
    _p("image_transport", "raw", "raw | compressed (sensor_msgs/CompressedImage, jpeg or png)",
       choices=IMAGE_TRANSPORTS),
    _p("lidar_topic", "/lidar/points", "sensor_msgs/PointCloud2 topic (any frame with a TF path to world)"),
    _p("tracks_topic", "", "visualization_msgs/MarkerArray of actor boxes (CUBE markers); '' = no actors"),
    _p("world_frame", "map", "fixed frame everything is reconstructed in (map or odom)"),
    _p("qos.sensor", "sensor_data",
       "QoS of camera/LiDAR/tracks subscriptions: sensor_data (best effort; receives from reliable and "
       "best-effort publishers) or reliable (does NOT receive from best-effort publishers)", choices=SENSOR_QOS),
    _p("qos.depth", 5, "history depth of the sensor subscriptions", lo=1, hi=10000),
    # window policy --------------------------------------------------------------------
    _p("window.seconds", 4.0, "a window closes when its keyframes span this long (seconds)", runtime=True,
       lo=0, open_lo=True, hi=3600),
    _p("window.meters", 0.0, "... or after the ego travelled this far (metres; 0 = time only)", runtime=True,
       lo=0, hi=100000),
    _p("window.keyframe_meters", 0.0, "minimum ego travel between keyframes (metres; 0 = off)", lo=0, hi=1000),
    _p("window.keyframe_seconds", 0.5, "minimum time between keyframes of one camera (seconds)", lo=0, hi=60),
    _p("window.held_out_every", 0, "every n-th keyframe is held out (a target view, never a source); 0 = none, "
       "1 is refused", runtime=True, lo=0, hi=1000),
    _p("window.max_points", 30000, "LiDAR points kept per window after voxel downsampling", lo=1, hi=10_000_000),
    _p("window.voxel_size", 0.15, "LiDAR voxel downsampling size (metres)", lo=0, open_lo=True, hi=10),
    _p("window.min_range", 3.0, "drop LiDAR returns closer than this (metres; the ego vehicle)", lo=0, hi=1000),
    _p("window.max_range", 80.0, "drop LiDAR returns farther than this (metres; > window.min_range)",
       lo=0, open_lo=True, hi=10000),
    _p("window.image_scale", 1.0, "keyframe images are resized by this factor", lo=0, open_lo=True, hi=1),
    _p("window.tf_horizon_s", 30.0, "how long dynamic TF is kept (seconds)", lo=0, open_lo=True, hi=3600),
    _p("window.tf_wait_s", 0.5, "a message waits this long (TF stream time) for its transform, then counts as "
       "skipped (reason 'tf')", lo=0, hi=60),
    _p("window.lidar_every", 1, "use every n-th LiDAR scan; the others are counted, not processed", lo=1, hi=1000),
    _p("window.max_lidar_scans", 0, "at most this many scans per window, evenly spread (0 = all)", lo=0, hi=100000),
    _p("window.pending_per_topic", 10, "messages per topic that may wait for their TF or CameraInfo; beyond it the "
       "oldest is skipped (reason 'queue')", lo=1, hi=10000),
    _p("window.track_slop_s", 0.05, "actor track stamps within this many seconds of a scan or the window count",
       lo=0, hi=10),
    _p("window.flush_on_idle_s", 2.0, "when no input arrived for this many seconds (a bag ended, a sensor "
       "stopped), reconstruct the partial window as ~/reconstruct would; 0 = never", runtime=True, lo=0, hi=3600),
    # reconstruction -------------------------------------------------------------------
    _p("reconstruction.model", "", "G3R model file; '' = the shipped models/g3r_net.pt"),
    _p("reconstruction.settings_file", "",
       "optional YAML with 'init' and 'reconstruct' sections (as config/offline_*.yaml); steps/turbo/device "
       "below override it"),
    _p("reconstruction.steps", 24, "G3R steps T (without turbo); applies from the next window", runtime=True,
       lo=1, hi=1000),
    _p("reconstruction.turbo", False, "turbo mode: 12 steps on half the points; applies from the next window",
       runtime=True),
    _p("reconstruction.device", "auto", "auto | cuda | cpu (auto: CUDA when available)", choices=DEVICES),
    _p("reconstruction.threads", 0,
       "torch CPU threads for reconstruction (0 = torch's default, one per core); lower it when other torch "
       "processes share the CPU: OpenMP threads waiting for a descheduled peer slow it 10-100x", lo=0, hi=1024),
    _p("reconstruction.every", 1, "reconstruct every n-th finished window", runtime=True, lo=1, hi=1000),
    _p("reconstruction.queue_limit", 2,
       "finished windows waiting for the busy worker; beyond this the oldest is dropped (warning)", runtime=True,
       lo=1, hi=100),
    _p("reconstruction.implementation", "",
       "advanced: 'module:callable' factory returning a Reconstructor (tests, other methods); '' = G3R"),
    # per-scene refinement after G3R (anytime maps) ----------------------------------
    _p("refine.seconds", 0.0, "refine each G3R map per scene for this many seconds (config/refine.yaml's recipe); "
       "a new window that is ready stops it early, keeping the best state; 0 = off; applies from the next window",
       runtime=True, lo=0, hi=86400),
    _p("refine.publish_every_s", 15.0, "while refining, publish the best state on ~/gaussian_map (and its offset "
       "views) every this many seconds of refinement when it improved; the end result is always published; "
       "0 = only at the end", runtime=True, lo=0, hi=86400),
    # outputs --------------------------------------------------------------------------
    _p("novel_view.lateral_offsets", [-3.0, 3.0],
       "lateral shifts (metres, + = left of the camera, horizontal) rendered for every keyframe of the first "
       "camera after each reconstruction; [] = none", runtime=True),
    _p("novel_view.frame_id", "g3r_novel_view_optical", "frame_id stamped on novel-view images", runtime=True),
    _p("novel_view.max_per_window", 64, "cap on offset views published per reconstruction", runtime=True,
       lo=1, hi=10000),
    _p("novel_view.depth_min_opacity", 0.5, "~/novel_view/depth is NaN where the accumulated opacity is below this",
       runtime=True, lo=0, hi=1),
    # sensor simulation ----------------------------------------------------------------
    _p("sim.pose_topic", "", "pose stream of the base frame (sim.pose_type); for every pose each rig camera's "
       "image, depth and camera_info are published under ~/sim/<camera>/; '' = off"),
    _p("sim.pose_type", "pose_stamped", "message type of sim.pose_topic: pose_stamped (geometry_msgs/PoseStamped) "
       "or odometry (nav_msgs/Odometry, pose of child_frame_id in header.frame_id)", choices=POSE_TYPES),
    _p("sim.rig", "", "'' = the recorded cameras (intrinsics and extrinsics from the map's keyframes) and LiDAR "
       "(mount from TF); or a rig YAML (config/sim_rig_synth.yaml)"),
    _p("sim.base_frame", "base_link", "the frame the pose stream moves; the recorded rig's extrinsics are "
       "relative to it"),
    _p("sim.queue_size", 2, "poses waiting to be rendered; when full the oldest is dropped (counted in ~/status)",
       lo=1, hi=1000),
    _p("sim.depth", True, "also render ~/sim/<camera>/depth", runtime=True),
    _p("sim.lidar", False, "the pose stream also publishes the rig's simulated LiDAR on ~/sim/lidar", runtime=True),
    _p("sim.min_opacity", 0.5, "simulated depth pixels and LiDAR returns need this accumulated opacity",
       runtime=True, lo=0, open_lo=True, hi=1),
    _p("sim.lidar_preset", "kitti64", "LiDAR beam model: kitti64 (Velodyne HDL-64E), synth (g3r synth) or "
       "generic (the sim.lidar_* values)", choices=LIDAR_PRESETS),
    _p("sim.lidar_elevations_deg", [], "generic beam model: beam elevations (degrees)"),
    _p("sim.lidar_azimuth_step_deg", 0.2, "generic beam model: azimuth step (degrees)", lo=0.01, hi=90),
    _p("sim.lidar_max_range", 100.0, "generic beam model: maximum range (m)", lo=0, open_lo=True, hi=10000),
    _p("sim.lidar_min_range", 0.0, "generic beam model: minimum range (m)", lo=0, hi=1000),
    _p("sim.lidar_frame_id", "g3r_sim_lidar", "frame_id of ~/sim/lidar scans answering ~/sim/lidar_pose (the "
       "points are in the requested LiDAR pose's frame)", runtime=True),
    _p("output_dir", "g3r_output", "where ~/save_map and save_on_shutdown write PLY files; a relative path is "
       "resolved once at startup against the node's working directory (logged as an absolute path)"),
    _p("save_on_shutdown", True, "write the last map to output_dir on shutdown (SIGINT or SIGTERM)", runtime=True),
    _p("status_period", 1.0, "seconds between ~/status messages (wall clock)", runtime=True,
       lo=0, open_lo=True, hi=3600),
    _p("inbox_size", 256, "raw messages buffered between the callbacks and the window builder", lo=1, hi=100000),
    _p("log_throttle_s", 5.0, "bad-input warnings of one kind are logged at most once per this period",
       runtime=True, lo=0, hi=3600),
)

SPECS = {p.name: p for p in PARAMS}
RUNTIME = tuple(p.name for p in PARAMS if p.runtime)


@dataclass
class NodeConfig:
    """Validated node settings (field = ROS parameter name with dots → underscores)."""

    cameras: list = field(default_factory=lambda: list(SPECS["cameras"].default))
    image_transport: str = "raw"
    lidar_topic: str = "/lidar/points"
    tracks_topic: str = ""
    world_frame: str = "map"
    qos_sensor: str = "sensor_data"
    qos_depth: int = 5
    window_seconds: float = 4.0
    window_meters: float = 0.0
    window_keyframe_meters: float = 0.0
    window_keyframe_seconds: float = 0.5
    window_held_out_every: int = 0
    window_max_points: int = 30000
    window_voxel_size: float = 0.15
    window_min_range: float = 3.0
    window_max_range: float = 80.0
    window_image_scale: float = 1.0
    window_tf_horizon_s: float = 30.0
    window_tf_wait_s: float = 0.5
    window_lidar_every: int = 1
    window_max_lidar_scans: int = 0
    window_pending_per_topic: int = 10
    window_track_slop_s: float = 0.05
    window_flush_on_idle_s: float = 2.0
    reconstruction_model: str = ""
    reconstruction_settings_file: str = ""
    reconstruction_steps: int = 24
    reconstruction_turbo: bool = False
    reconstruction_device: str = "auto"
    reconstruction_threads: int = 0
    reconstruction_every: int = 1
    reconstruction_queue_limit: int = 2
    reconstruction_implementation: str = ""
    refine_seconds: float = 0.0
    refine_publish_every_s: float = 15.0
    novel_view_lateral_offsets: list = field(default_factory=lambda: list(SPECS["novel_view.lateral_offsets"].default))
    novel_view_frame_id: str = "g3r_novel_view_optical"
    novel_view_max_per_window: int = 64
    novel_view_depth_min_opacity: float = 0.5
    sim_pose_topic: str = ""
    sim_pose_type: str = "pose_stamped"
    sim_rig: str = ""
    sim_base_frame: str = "base_link"
    sim_queue_size: int = 2
    sim_depth: bool = True
    sim_lidar: bool = False
    sim_min_opacity: float = 0.5
    sim_lidar_preset: str = "kitti64"
    sim_lidar_elevations_deg: list = field(default_factory=list)
    sim_lidar_azimuth_step_deg: float = 0.2
    sim_lidar_max_range: float = 100.0
    sim_lidar_min_range: float = 0.0
    sim_lidar_frame_id: str = "g3r_sim_lidar"
    output_dir: str = "g3r_output"
    save_on_shutdown: bool = True
    status_period: float = 1.0
    inbox_size: int = 256
    log_throttle_s: float = 5.0
    use_sim_time: bool = False

    # -- derived ------------------------------------------------------------------------
    def image_subscription_topic(self, image_topic: str) -> str:
        """The topic actually subscribed for ``image_topic`` under the configured transport."""
        return image_topic.rstrip("/") + "/compressed" if self.image_transport == "compressed" else image_topic

    def window_config(self):
        """The ``g3r_ros.window_builder.WindowConfig`` of the subscribed topics."""
        from ..window_builder import WindowConfig

        return WindowConfig(
            camera_topics=[self.image_subscription_topic(t) for t in self.cameras], lidar_topic=self.lidar_topic,
            tracks_topic=self.tracks_topic or None, world_frame=self.world_frame,
            window_seconds=self.window_seconds, window_meters=self.window_meters,
            keyframe_meters=self.window_keyframe_meters, keyframe_seconds=self.window_keyframe_seconds,
            held_out_every=self.window_held_out_every, voxel_size=self.window_voxel_size,
            min_range=self.window_min_range, max_range=self.window_max_range, max_points=self.window_max_points,
            image_scale=self.window_image_scale, track_slop_s=self.window_track_slop_s,
            pending_per_topic=self.window_pending_per_topic, tf_horizon_s=self.window_tf_horizon_s,
            tf_wait_s=self.window_tf_wait_s, lidar_every=self.window_lidar_every,
            max_lidar_scans=self.window_max_lidar_scans or None)

    def stream_config(self):
        """The ``g3r_ros.streaming.StreamConfig`` of the node."""
        from ..streaming import StreamConfig

        return StreamConfig(
            window=self.window_config(), inbox_size=self.inbox_size, reconstruct_every=self.reconstruction_every,
            queue_limit=self.reconstruction_queue_limit, flush_on_idle_s=self.window_flush_on_idle_s,
            status_period=self.status_period, log_throttle_s=self.log_throttle_s, output_dir=self.output_dir,
            save_on_shutdown=self.save_on_shutdown, lateral_offsets=list(self.novel_view_lateral_offsets),
            max_offset_views=self.novel_view_max_per_window, live_stamps=not self.use_sim_time,
            depth_min_opacity=self.novel_view_depth_min_opacity, refine_seconds=self.refine_seconds,
            refine_publish_every_s=self.refine_publish_every_s, refine=self.refine_config())

    def refine_config(self):
        """The refinement recipe (``config/refine.yaml``) on the reconstruction's device; the
        session sets its time budget from ``refine.seconds``."""
        from ..refine import recipe

        return recipe(device=self.reconstruction_device)

    def lidar_beams(self):
        """The ``g3r_ros.lidar_sim.BeamModel`` of ``sim.lidar_preset`` (``ValueError`` naming the parameter)."""
        from ..lidar_sim import beam_model

        try:
            return beam_model(self.sim_lidar_preset, elevations_deg=self.sim_lidar_elevations_deg,
                              azimuth_step_deg=self.sim_lidar_azimuth_step_deg, max_range=self.sim_lidar_max_range,
                              min_range=self.sim_lidar_min_range)
        except ValueError as e:
            raise ValueError(f"parameters 'sim.lidar_*': {e}") from None

    def sim_config(self):
        """The ``g3r_ros.pose_stream.SimConfig`` of the node."""
        from ..lidar_sim import CastConfig
        from ..pose_stream import SimConfig

        return SimConfig(queue_size=self.sim_queue_size, min_opacity=self.sim_min_opacity, depth=self.sim_depth,
                         lidar=self.sim_lidar, cast=CastConfig(min_opacity=self.sim_min_opacity))

    def model_path(self) -> Path:
        """The model file the default reconstructor loads."""
        if self.reconstruction_model:
            return Path(self.reconstruction_model).expanduser()
        from ..config import share_dir

        return share_dir() / "models" / "g3r_net.pt"

    def reconstructor(self):
        """The configured reconstructor (G3R, or ``reconstruction.implementation``)."""
        from ..reconstructors import load_reconstructor

        if self.reconstruction_implementation:
            return load_reconstructor(self.reconstruction_implementation, self)
        return load_reconstructor("", self, model_path=self.model_path(), steps=self.reconstruction_steps,
                                  turbo=self.reconstruction_turbo, device=self.reconstruction_device,
                                  settings_file=self.reconstruction_settings_file or None)

    # -- validation ---------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ``ValueError`` naming the parameter and the accepted values (no file access)."""
        for spec in PARAMS:
            _check_spec(spec, getattr(self, spec.field))
        if not self.cameras:
            raise ValueError("parameter 'cameras' must list at least one image topic")
        for t in self.cameras:
            _check_topic("cameras", t)
        if len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"parameter 'cameras' lists a topic twice: {self.cameras}")
        _check_topic("lidar_topic", self.lidar_topic)
        if self.tracks_topic:
            _check_topic("tracks_topic", self.tracks_topic)
        if not self.world_frame or self.world_frame.startswith("/"):
            raise ValueError(f"parameter 'world_frame' must be a frame id without a leading '/', "
                             f"got {self.world_frame!r}")
        if self.window_held_out_every == 1:
            raise ValueError("parameter 'window.held_out_every' must be 0 (none) or >= 2 (1 would hold out "
                             "every view)")
        if not self.window_max_range > self.window_min_range:
            raise ValueError(f"parameter 'window.max_range' ({self.window_max_range}) must exceed "
                             f"'window.min_range' ({self.window_min_range})")
        if not all(math.isfinite(v) for v in self.novel_view_lateral_offsets):
            raise ValueError(f"parameter 'novel_view.lateral_offsets' must be finite, got "
                             f"{self.novel_view_lateral_offsets}")
        if self.sim_pose_topic:
            _check_topic("sim.pose_topic", self.sim_pose_topic)
        if not all(isinstance(v, float) and math.isfinite(v) for v in self.sim_lidar_elevations_deg):
            raise ValueError(f"parameter 'sim.lidar_elevations_deg' must be finite degrees, got "
                             f"{self.sim_lidar_elevations_deg}")
        self.lidar_beams()
        for name in ("novel_view.frame_id", "output_dir", "sim.lidar_frame_id", "sim.base_frame"):
            if not getattr(self, SPECS[name].field):
                raise ValueError(f"parameter '{name}' must not be empty")
        if self.reconstruction_implementation and ":" not in self.reconstruction_implementation:
            raise ValueError("parameter 'reconstruction.implementation' must be 'module:callable', got "
                             f"{self.reconstruction_implementation!r}")

    def check_files(self) -> None:
        """Raise ``ValueError`` when the settings file or (for G3R) the model file is missing."""
        if self.sim_rig:
            from ..pose_stream import load_rig, rig_path

            path = rig_path(self.sim_rig)
            if path is not None:
                load_rig(path)  # ValueError naming the entry
        if self.reconstruction_settings_file and not Path(self.reconstruction_settings_file).is_file():
            raise ValueError(f"parameter 'reconstruction.settings_file': file not found: "
                             f"{self.reconstruction_settings_file}")
        if not self.reconstruction_implementation:  # the G3R path needs its model file
            path = self.model_path()
            if not path.is_file():
                raise ValueError(f"parameter 'reconstruction.model': model file not found: {path}")

    def with_changes(self, values: dict) -> NodeConfig:
        """A validated copy with ``{ros param name: value}`` applied (``ValueError`` naming the parameter)."""
        unknown = sorted(set(values) - set(SPECS))
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown}")
        out = dataclasses.replace(self, **{SPECS[k].field: _coerce(SPECS[k], v) for k, v in values.items()})
        out.validate()
        return out


def _check_spec(spec: ParamSpec, value) -> None:
    """The per-parameter rule of the table: choices and range."""
    if spec.choices and value not in spec.choices:
        raise ValueError(f"parameter '{spec.name}' must be one of {list(spec.choices)}, got {value!r}")
    if spec.lo is None and spec.hi is None:
        return
    if not (isinstance(value, (int, float)) and math.isfinite(value)):
        raise ValueError(f"parameter '{spec.name}' must be a finite number, got {value!r}")
    if spec.lo is not None and (value <= spec.lo if spec.open_lo else value < spec.lo):
        raise ValueError(f"parameter '{spec.name}' must be {'>' if spec.open_lo else '>='} {spec.lo:g}, "
                         f"got {value!r}")
    if spec.hi is not None and value > spec.hi:
        raise ValueError(f"parameter '{spec.name}' must be <= {spec.hi:g}, got {value!r}")


def _check_topic(name: str, topic) -> None:
    if not isinstance(topic, str) or not topic or topic.endswith("/") or " " in topic or "//" in topic:
        raise ValueError(f"parameter '{name}': invalid topic name {topic!r}")


# ---------------------------------------------------------------------------------------
# Coercion: ROS/YAML values → field types, with messages naming the parameter
# ---------------------------------------------------------------------------------------
def _coerce(spec: ParamSpec, value):
    d = spec.default
    where = f"parameter '{spec.name}'"
    if isinstance(d, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError(f"{where} must be true or false, got {value!r}")
    if isinstance(d, int):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
            raise ValueError(f"{where} must be an integer, got {value!r}")
        return int(value)
    if isinstance(d, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where} must be a number, got {value!r}")  # noqa: TRY004 - bad config is a ValueError
        return float(value)
    if isinstance(d, str):
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a string, got {value!r}")  # noqa: TRY004
        return value
    if isinstance(d, list):
        if value is None or (isinstance(value, bytes) and not value):  # how rclpy reads an empty YAML list
            return []
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise ValueError(f"{where} must be a list, got {value!r}")
        items = list(value)
        if d and isinstance(d[0], str):
            if not all(isinstance(v, str) for v in items):
                raise ValueError(f"{where} must be a list of strings, got {items!r}")
            return items
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
            raise ValueError(f"{where} must be a list of numbers, got {items!r}")
        return [float(v) for v in items]
    raise AssertionError(f"unhandled default type for {spec.name}")


def node_config_from_params(values: dict, *, validate: bool = True) -> NodeConfig:
    """``{ros param name: value}`` (missing names keep defaults) → :class:`NodeConfig`.

    Unknown names raise ``ValueError``; so do wrong types, invalid values and (``validate``)
    a missing model or settings file.
    """
    values = dict(values)
    use_sim_time = values.pop("use_sim_time", False)
    unknown = sorted(set(values) - set(SPECS))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}; known: {sorted(SPECS)}")
    kwargs = {SPECS[k].field: _coerce(SPECS[k], v) for k, v in values.items()}
    cfg = NodeConfig(**kwargs, use_sim_time=bool(use_sim_time))
    if validate:
        cfg.validate()
        cfg.check_files()
    return cfg


def flatten_params(tree: dict, prefix: str = "") -> dict:
    """Nested YAML mapping → dotted names (``{'window': {'seconds': 2}}`` → ``{'window.seconds': 2}``)."""
    out = {}
    for k, v in tree.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten_params(v, name + "."))
        else:
            out[name] = v
    return out


def load_params_file(path, node_name: str = "reconstruct_node") -> dict:
    """Read a ROS 2 parameter file → dotted ``{name: value}`` for ``node_name`` (``/**`` entries first)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"parameter file not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a ROS parameter file is a mapping of node names")  # noqa: TRY004
    out: dict = {}
    for key in ("/**", node_name, f"/{node_name}", f"/**/{node_name}"):
        section = data.get(key)
        if isinstance(section, dict):
            out.update(flatten_params(section.get("ros__parameters", {}) or {}))
    return out


def write_params_file(path, values: dict, node_name: str = "/**") -> Path:
    """Write dotted ``{name: value}`` as a ROS 2 parameter file (atomically); returns the path."""
    tree: dict = {}
    for name, v in values.items():
        d = tree
        parts = name.split(".")
        for p in parts[:-1]:
            d = d.setdefault(p, {})
        d[parts[-1]] = v
    return atomic_write_text(path, yaml.safe_dump({node_name: {"ros__parameters": tree}}, sort_keys=False))


# ---------------------------------------------------------------------------------------
# The ROS side: typed declarations, and run-time changes
# ---------------------------------------------------------------------------------------
def descriptor(spec: ParamSpec):
    """The ``rcl_interfaces/ParameterDescriptor`` of ``spec``: type, description, range, read-only.

    ``novel_view.lateral_offsets`` is dynamically typed (validated by the node): rclpy types an
    empty list as a byte array, so a typed double array could never be set to ``[]``."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

    d = spec.default
    kinds = ((bool, ParameterType.PARAMETER_BOOL), (int, ParameterType.PARAMETER_INTEGER),
             (float, ParameterType.PARAMETER_DOUBLE), (str, ParameterType.PARAMETER_STRING))
    desc = ParameterDescriptor(name=spec.name, description=spec.description, read_only=not spec.runtime,
                               additional_constraints=spec.constraints())
    if isinstance(d, list):
        if d and isinstance(d[0], str):
            desc.type = ParameterType.PARAMETER_STRING_ARRAY
        else:
            desc.dynamic_typing = True
        return desc
    desc.type = next(t for cls, t in kinds if isinstance(d, cls))
    if spec.lo is not None or spec.hi is not None:
        big = 1e300 if isinstance(d, float) else 2**62
        lo = spec.lo if spec.lo is not None else -big
        hi = spec.hi if spec.hi is not None else big
        if isinstance(d, float):
            desc.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
        else:
            desc.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=1)]
    return desc


def declare_and_load(node) -> NodeConfig:
    """Validate the node's parameter overrides (file and ``-p``), then declare every parameter of
    :data:`PARAMS` typed, with its descriptor and the validated value; returns the config.

    Raises ``ValueError`` naming the offending parameter (before anything is declared). An int
    given for a double parameter is accepted; names the node does not know are logged and ignored.
    """
    # rclpy keeps the overrides in a private dict until a parameter is declared; read it to
    # validate and coerce values (e.g. 4 for 4.0) before the typed declaration would refuse them.
    overrides = {name: p.value for name, p in dict(getattr(node, "_parameter_overrides", {}) or {}).items()}
    unknown = sorted(n for n in overrides if n not in SPECS and n not in ROS_OWN and not n.startswith("qos_overrides"))
    if unknown:
        node.get_logger().warning(f"ignoring unknown parameter(s) {unknown} (see config/reconstruct.yaml)")
    values = {name: v for name, v in overrides.items() if name in SPECS}
    values["use_sim_time"] = bool(node.get_parameter("use_sim_time").value)
    cfg = node_config_from_params(values)
    for spec in PARAMS:
        node.declare_parameter(spec.name, getattr(cfg, spec.field), descriptor(spec), ignore_override=True)
    return cfg


def watch_parameters(node, current, apply, refuse=None) -> None:
    """Run-time changes: an int for a double parameter is converted first; every change is
    validated against the whole configuration (``current()`` → NodeConfig) and refused with the
    reason, or ``refuse(names)`` may refuse it (a reason, or None); accepted changes reach
    ``apply(new NodeConfig, changed names)`` after rclpy stored them. Read-only parameters and
    wrong types are refused by rclpy itself, with its reason."""
    from rcl_interfaces.msg import SetParametersResult
    from rclpy.parameter import Parameter

    pending: dict = {}

    def pre_set(params):
        out = []
        for p in params:
            spec = SPECS.get(p.name)
            if spec is not None and isinstance(spec.default, float) and p.type_ == Parameter.Type.INTEGER:
                p = Parameter(p.name, Parameter.Type.DOUBLE, float(p.value))
            out.append(p)
        return out

    def on_set(params):
        changes = {p.name: p.value for p in params if p.name in SPECS}
        if not changes:
            return SetParametersResult(successful=True)
        try:
            new = current().with_changes(changes)
        except ValueError as e:
            return SetParametersResult(successful=False, reason=str(e))
        reason = refuse(set(changes)) if refuse is not None else None
        if reason:
            return SetParametersResult(successful=False, reason=reason)
        pending["cfg"], pending["names"] = new, set(changes)
        return SetParametersResult(successful=True)

    def post_set(params):
        if "cfg" in pending:
            apply(pending.pop("cfg"), pending.pop("names"))

    node.add_pre_set_parameters_callback(pre_set)
    node.add_on_set_parameters_callback(on_set)
    node.add_post_set_parameters_callback(post_set)


def defaults() -> dict:
    """``{ros param name: default}`` of every parameter (for docs and config files)."""
    return {p.name: p.default for p in PARAMS}



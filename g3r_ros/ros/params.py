"""Parameters of ``reconstruct_node``: one table of specs → ROS declarations → :class:`NodeConfig`.

The table :data:`PARAMS` is the single source of truth: the node declares every entry with
its description (visible with ``ros2 param describe``), ``config/reconstruct.yaml``
documents the same names, and :func:`node_config_from_params` turns the values into a
validated :class:`NodeConfig`. ``use_sim_time`` is rclpy's own parameter and is read too.

ROS parameter names are dotted (``window.seconds``); :class:`NodeConfig` fields are the same
names with dots replaced by underscores (``window_seconds``). This module is importable
without rclpy (only :func:`declare_and_load` touches a node).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..atomic import atomic_write_text

SENSOR_QOS = ("sensor_data", "reliable")
IMAGE_TRANSPORTS = ("raw", "compressed")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class ParamSpec:
    name: str          # ROS parameter name (dotted)
    default: object
    description: str

    @property
    def field(self) -> str:
        return self.name.replace(".", "_")


PARAMS: tuple[ParamSpec, ...] = (
    # inputs ---------------------------------------------------------------------------
    ParamSpec("cameras", ["/camera/front/image_raw"],
              "image topics; CameraInfo is '<namespace of the image topic>/camera_info' (image_transport "
              "convention); with image_transport 'compressed' the node subscribes '<image topic>/compressed'"),
    ParamSpec("image_transport", "raw", "raw | compressed (sensor_msgs/CompressedImage, jpeg or png)"),
    ParamSpec("lidar_topic", "/lidar/points", "sensor_msgs/PointCloud2 topic (any frame with a TF path to world)"),
    ParamSpec("tracks_topic", "", "visualization_msgs/MarkerArray of actor boxes (CUBE markers); '' = no actors"),
    ParamSpec("world_frame", "map", "fixed frame everything is reconstructed in (map or odom)"),
    ParamSpec("qos.sensor", "sensor_data",
              "QoS of camera/LiDAR/tracks subscriptions: sensor_data (best effort, depth 5; receives from "
              "reliable and best-effort publishers) or reliable (does NOT receive from best-effort publishers)"),
    ParamSpec("qos.depth", 5, "history depth of the sensor subscriptions"),
    ParamSpec("sync.queue_size", 10, "approximate-time synchronizer queue per topic (messages)"),
    ParamSpec("sync.slop", 0.05, "approximate-time synchronizer slop (seconds)"),
    # window policy --------------------------------------------------------------------
    ParamSpec("window.seconds", 4.0, "a window closes after this much time (seconds, > 0)"),
    ParamSpec("window.meters", 0.0, "... or after the ego travelled this far (metres; 0 = time only)"),
    ParamSpec("window.keyframe_meters", 0.0, "minimum ego travel between keyframes (metres; 0 = off)"),
    ParamSpec("window.keyframe_seconds", 0.5, "minimum time between keyframes of one camera (seconds)"),
    ParamSpec("window.held_out_every", 0, "every n-th keyframe is held out (target view, not a source); 0 = none"),
    ParamSpec("window.max_points", 30000, "LiDAR points kept per window after voxel downsampling"),
    ParamSpec("window.voxel_size", 0.15, "LiDAR voxel downsampling size (metres)"),
    ParamSpec("window.min_range", 3.0, "drop LiDAR returns closer than this (metres; the ego vehicle)"),
    ParamSpec("window.max_range", 80.0, "drop LiDAR returns farther than this (metres)"),
    ParamSpec("window.image_scale", 1.0, "keyframe images are resized by this factor (0 < s <= 1)"),
    ParamSpec("window.tf_horizon_s", 30.0, "how long dynamic TF is kept (seconds)"),
    ParamSpec("window.tf_wait_s", 0.5, "a message waits this long (TF stream time) for its transform, then "
              "counts as skipped (reason 'tf')"),
    ParamSpec("window.lidar_every", 1, "use every n-th LiDAR scan (>= 1); the others are counted, not processed"),
    ParamSpec("window.max_lidar_scans", 0, "at most this many scans per window, evenly spread (0 = all)"),
    # reconstruction -------------------------------------------------------------------
    ParamSpec("reconstruction.model", "", "G3R model file; '' = the shipped models/g3r_net.pt"),
    ParamSpec("reconstruction.settings_file", "",
              "optional YAML with 'init' and 'reconstruct' sections (as config/offline_*.yaml); "
              "steps/turbo/device below override it"),
    ParamSpec("reconstruction.steps", 24, "G3R steps T (>= 1)"),
    ParamSpec("reconstruction.turbo", False, "turbo mode: fewer steps on half the points"),
    ParamSpec("reconstruction.device", "auto", "auto | cuda | cpu (auto: CUDA when available)"),
    ParamSpec("reconstruction.threads", 0,
              "torch CPU threads for reconstruction (0 = torch's default, one per core); lower it when other "
              "torch processes share the CPU: OpenMP threads waiting for a descheduled peer slow it 10-100x"),
    ParamSpec("reconstruction.every", 1, "reconstruct every n-th finished window (>= 1)"),
    ParamSpec("reconstruction.queue_limit", 2,
              "finished windows waiting for the busy worker; beyond this the oldest is dropped (warning)"),
    ParamSpec("reconstruction.implementation", "",
              "advanced: 'module:callable' factory returning a Reconstructor (tests, other methods); '' = G3R"),
    # outputs --------------------------------------------------------------------------
    ParamSpec("novel_view.lateral_offsets", [-3.0, 3.0],
              "lateral shifts (metres, + = left of the camera, horizontal) rendered for every keyframe "
              "of the first camera after each reconstruction; [] = none"),
    ParamSpec("novel_view.frame_id", "g3r_novel_view_optical", "frame_id stamped on novel-view images"),
    ParamSpec("novel_view.max_per_window", 64, "cap on offset views published per reconstruction"),
    ParamSpec("output_dir", "g3r_output", "where ~/save_map and save_on_shutdown write PLY files"),
    ParamSpec("save_on_shutdown", True, "write the last map to output_dir on shutdown"),
    ParamSpec("status_period", 1.0, "seconds between ~/status messages"),
    ParamSpec("inbox_size", 256, "raw messages buffered between the callbacks and the window builder"),
    ParamSpec("log_throttle_s", 5.0, "bad-input warnings of one kind are logged at most once per this period"),
)

SPECS = {p.name: p for p in PARAMS}


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
    sync_queue_size: int = 10
    sync_slop: float = 0.05
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
    reconstruction_model: str = ""
    reconstruction_settings_file: str = ""
    reconstruction_steps: int = 24
    reconstruction_turbo: bool = False
    reconstruction_device: str = "auto"
    reconstruction_threads: int = 0
    reconstruction_every: int = 1
    reconstruction_queue_limit: int = 2
    reconstruction_implementation: str = ""
    novel_view_lateral_offsets: list = field(default_factory=lambda: list(SPECS["novel_view.lateral_offsets"].default))
    novel_view_frame_id: str = "g3r_novel_view_optical"
    novel_view_max_per_window: int = 64
    output_dir: str = "g3r_output"
    save_on_shutdown: bool = True
    status_period: float = 1.0
    inbox_size: int = 256
    log_throttle_s: float = 5.0
    use_sim_time: bool = False

    # -- derived ------------------------------------------------------------------------
    def camera_info_topic(self, image_topic: str) -> str:
        """image_transport convention: CameraInfo lives beside the image, ``<ns>/camera_info``."""
        return camera_info_topic(image_topic)

    def image_subscription_topic(self, image_topic: str) -> str:
        """The topic actually subscribed for ``image_topic`` under the configured transport."""
        return image_topic.rstrip("/") + "/compressed" if self.image_transport == "compressed" else image_topic

    def window_config_dict(self) -> dict:
        """Values for ``g3r_ros.window_builder.WindowConfig`` (its field names)."""
        return {
            "camera_topics": [self.image_subscription_topic(t) for t in self.cameras],
            "lidar_topic": self.lidar_topic,
            "tracks_topic": self.tracks_topic or None,
            "world_frame": self.world_frame,
            "window_seconds": self.window_seconds,
            "window_meters": self.window_meters,
            "keyframe_meters": self.window_keyframe_meters,
            "keyframe_seconds": self.window_keyframe_seconds,
            "held_out_every": self.window_held_out_every,
            "voxel_size": self.window_voxel_size,
            "min_range": self.window_min_range,
            "max_range": self.window_max_range,
            "max_points": self.window_max_points,
            "image_scale": self.window_image_scale,
            "sync_slop": self.sync_slop,
            "sync_queue_size": self.sync_queue_size,
            "tf_horizon_s": self.window_tf_horizon_s,
            "tf_wait_s": self.window_tf_wait_s,
            "lidar_every": self.window_lidar_every,
            "max_lidar_scans": self.window_max_lidar_scans or None,
        }

    def model_path(self) -> Path:
        """The model file the default reconstructor loads."""
        if self.reconstruction_model:
            return Path(self.reconstruction_model).expanduser()
        from ..config import share_dir

        return share_dir() / "models" / "g3r_net.pt"

    # -- validation ---------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ``ValueError`` naming the parameter and the accepted values."""
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
        _one_of("image_transport", self.image_transport, IMAGE_TRANSPORTS)
        _one_of("qos.sensor", self.qos_sensor, SENSOR_QOS)
        _one_of("reconstruction.device", self.reconstruction_device, DEVICES)
        _positive("qos.depth", self.qos_depth)
        _positive("sync.queue_size", self.sync_queue_size)
        _positive("sync.slop", self.sync_slop)
        _positive("window.seconds", self.window_seconds)
        for name in ("window.meters", "window.keyframe_meters", "window.keyframe_seconds",
                     "window.min_range", "window.tf_wait_s", "window.max_lidar_scans"):
            _non_negative(name, getattr(self, SPECS[name].field))
        if self.window_held_out_every < 0 or self.window_held_out_every == 1:
            raise ValueError("parameter 'window.held_out_every' must be 0 (none) or >= 2 (1 would hold out "
                             f"every view), got {self.window_held_out_every}")
        _positive("window.lidar_every", self.window_lidar_every)
        _positive("window.max_points", self.window_max_points)
        _positive("window.voxel_size", self.window_voxel_size)
        _positive("window.tf_horizon_s", self.window_tf_horizon_s)
        if not self.window_max_range > self.window_min_range:
            raise ValueError(f"parameter 'window.max_range' ({self.window_max_range}) must exceed "
                             f"'window.min_range' ({self.window_min_range})")
        if not 0 < self.window_image_scale <= 1:
            raise ValueError(f"parameter 'window.image_scale' must be in (0, 1], got {self.window_image_scale}")
        _positive("reconstruction.steps", self.reconstruction_steps)
        _non_negative("reconstruction.threads", self.reconstruction_threads)
        _positive("reconstruction.every", self.reconstruction_every)
        _positive("reconstruction.queue_limit", self.reconstruction_queue_limit)
        _positive("novel_view.max_per_window", self.novel_view_max_per_window)
        _positive("status_period", self.status_period)
        _positive("inbox_size", self.inbox_size)
        _non_negative("log_throttle_s", self.log_throttle_s)
        if not all(math.isfinite(v) for v in self.novel_view_lateral_offsets):
            raise ValueError(f"parameter 'novel_view.lateral_offsets' must be finite, got "
                             f"{self.novel_view_lateral_offsets}")
        if not self.novel_view_frame_id:
            raise ValueError("parameter 'novel_view.frame_id' must not be empty")
        if not self.output_dir:
            raise ValueError("parameter 'output_dir' must not be empty")
        if self.reconstruction_implementation and ":" not in self.reconstruction_implementation:
            raise ValueError("parameter 'reconstruction.implementation' must be 'module:callable', got "
                             f"{self.reconstruction_implementation!r}")
        if self.reconstruction_settings_file and not Path(self.reconstruction_settings_file).is_file():
            raise ValueError(f"parameter 'reconstruction.settings_file': file not found: "
                             f"{self.reconstruction_settings_file}")
        if not self.reconstruction_implementation:  # the G3R path needs its model file
            path = self.model_path()
            if not path.is_file():
                raise ValueError(f"parameter 'reconstruction.model': model file not found: {path}")


def camera_info_topic(image_topic: str) -> str:
    """image_transport convention (the core's rule): ``/ns/image_raw[/compressed]`` → ``/ns/camera_info``."""
    from ..window_builder import camera_info_topic as core_rule

    return core_rule(image_topic)


def _check_topic(name: str, topic) -> None:
    if not isinstance(topic, str) or not topic or topic.endswith("/") or " " in topic or "//" in topic:
        raise ValueError(f"parameter '{name}': invalid topic name {topic!r}")


def _one_of(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"parameter '{name}' must be one of {list(allowed)}, got {value!r}")


def _positive(name: str, value) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"parameter '{name}' must be > 0, got {value!r}")


def _non_negative(name: str, value) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"parameter '{name}' must be >= 0, got {value!r}")


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

    Unknown names raise ``ValueError``; so do wrong types and invalid values.
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


def declare_and_load(node) -> NodeConfig:
    """Declare every parameter of :data:`PARAMS` on ``node`` (dynamic typing, with descriptions),
    read them back and validate. Raises ``ValueError`` with the offending parameter."""
    from rcl_interfaces.msg import ParameterDescriptor

    for spec in PARAMS:
        node.declare_parameter(spec.name, spec.default,
                               ParameterDescriptor(description=spec.description, dynamic_typing=True))
    values = {spec.name: node.get_parameter(spec.name).value for spec in PARAMS}
    values["use_sim_time"] = bool(node.get_parameter("use_sim_time").value)
    # An empty YAML list arrives as an empty byte array; a list default keeps its meaning.
    for spec in PARAMS:
        if isinstance(spec.default, list) and values[spec.name] in (None, b"", []):
            values[spec.name] = []
    return node_config_from_params(values)


def defaults() -> dict:
    """``{ros param name: default}`` of every parameter (for docs and config files)."""
    return {p.name: p.default for p in PARAMS}



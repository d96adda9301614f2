"""``reconstruct_node``: sensors in, Gaussian maps and rendered novel views out.

A thin adapter over the ROS-free core. Data flow and threads::

    DDS ──raw CDR──▶ callbacks (count, timestamp, put_nowait) ──▶ inbox (bounded)
        ──▶ builder thread: rosbags deserialize → WindowBuilder.add_message → ready()? build()
        ──▶ finished windows (bounded; oldest dropped with a warning)
        ──▶ worker thread: Reconstructor(window, cancel) → map → ~/gaussian_map, offset views
    ~/render_pose ──▶ render queue ──▶ render thread → ~/novel_view/{image,camera_info}
    status thread ──▶ ~/status (DiagnosticArray, wall-clock period)

Callbacks never decode or block: sensor subscriptions are *raw* (the CDR bytes), so a live
stream and a bag go through the same core decoders (``g3r_ros.messages``). Before queueing,
callbacks shed what cannot matter (images closer than the keyframe spacing, CameraInfo
repeats, decimated scans; all counted). Bad input never raises out of a callback; it is
counted (``~/status``) and logged, throttled.

Novel-view pose convention: a ``~/render_pose`` PoseStamped is the pose of the *camera optical
frame* (x right, y down, z forward; REP-103 optical) in ``header.frame_id``, at
``header.stamp`` (zero stamp: the latest transform). The image uses the first camera's
intrinsics (as in the keyframes, after ``window.image_scale``) and carries the request's
header stamp, with ``frame_id = novel_view.frame_id``.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rclpy.node import Node

from ..window import Keyframe, SceneWindow
from .params import camera_info_topic
from .reconstructor import Reconstructor, load_reconstructor, torch_threads

LOG = logging.getLogger(__name__)

NODE_NAME = "reconstruct_node"
# Message types whose CDR starts with std_msgs/Header (stamp readable without deserializing).
_HEADER_FIRST = {"sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/CameraInfo",
                 "sensor_msgs/msg/PointCloud2"}
LATENCY_PLAUSIBLE_S = 10.0  # stamp-to-callback latency samples beyond this are replayed stamps, not latency
MAX_EVAL_VIEWS = 4  # source / held-out views rendered per reconstruction for the PSNR in ~/status


# ---------------------------------------------------------------------------------------
# Small helpers (pure)
# ---------------------------------------------------------------------------------------
def header_stamp_from_cdr(raw: bytes) -> float | None:
    """Header stamp (s) of a CDR message whose first field is std_msgs/Header; None if unreadable."""
    if len(raw) < 12:
        return None
    order = "<" if raw[1] & 1 else ">"  # encapsulation id 0x0001 = CDR little endian
    sec, nsec = struct.unpack_from(order + "iI", raw, 4)
    return sec + nsec * 1e-9


def _msg_stamp(msg) -> float | None:
    """Header stamp (s) of a deserialized message, or None when it has none / a bad one."""
    try:
        return float(msg.header.stamp.sec) + float(msg.header.stamp.nanosec) * 1e-9
    except (AttributeError, TypeError, ValueError):
        return None


def percentile_ms(samples, q: float) -> float:
    """q-th percentile of seconds ``samples`` in milliseconds (NaN when empty)."""
    a = np.fromiter(samples, dtype=np.float64)
    return float(np.percentile(a, q) * 1e3) if a.size else float("nan")


def lateral_views(keyframes: list[Keyframe], offsets: list[float], limit: int) -> list[tuple[Keyframe, float, object]]:
    """(keyframe, offset m, shifted PinholeCamera) for every keyframe x offset, at most ``limit``.

    A shift moves the camera sideways in the horizontal plane, + = left (see
    ``g3r_ros.synthetic.truth.lane_shifted_camera``, the rule ground truth uses too)."""
    from ..synthetic.truth import lane_shifted_camera

    out = []
    for kf in keyframes:
        for d in offsets:
            if len(out) >= limit:
                return out
            out.append((kf, float(d), lane_shifted_camera(kf.camera, d)))
    return out


class _Throttle:
    """Log one warning per key at most every ``period`` s, saying how many were suppressed."""

    def __init__(self, logger, period: float):
        self.logger, self.period = logger, period
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = collections.defaultdict(int)
        self._lock = threading.Lock()

    def warn(self, key: str, msg: str, *args) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(key, -1e18) < self.period:
                self._suppressed[key] += 1
                return
            n, self._suppressed[key] = self._suppressed[key], 0
            self._last[key] = now
        text = msg % args if args else msg
        self.logger.warning(text + (f" ({n} similar suppressed)" if n else ""))


@dataclass
class MapState:
    """The latest reconstruction: output, its window and the novel-view camera model."""

    index: int
    output: object
    window: SceneWindow
    stamp: float
    view_camera: object  # PinholeCamera: intrinsics/size for novel views
    metrics: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------
# The node
# ---------------------------------------------------------------------------------------
class ReconstructNode(Node):
    """The reconstruct node. ``reconstructor`` overrides the configured one (tests, embedding).

    Raises ``ValueError`` at construction for invalid parameters, a missing model or an
    unavailable device (``main`` turns that into a non-zero exit with the message).
    """

    def __init__(self, *, reconstructor: Reconstructor | None = None, node_name: str = NODE_NAME, **kwargs):
        super().__init__(node_name, **kwargs)
        from ..bag import typestore
        from ..window_builder import WindowBuilder, WindowConfig
        from .params import declare_and_load

        self.cfg = cfg = declare_and_load(self)
        # LiDAR decimation (window.lidar_every) happens in the callback, before the queue
        self.window_config = WindowConfig(**{**cfg.window_config_dict(), "lidar_every": 1})
        self.window_config.validate()
        if cfg.reconstruction_threads:
            import torch

            torch.set_num_threads(cfg.reconstruction_threads)  # process-wide: reconstruction and renders
        self.reconstructor = reconstructor or load_reconstructor(cfg)
        self._typestore = typestore()
        self._builder = WindowBuilder(self.window_config, name=node_name)
        self.tf = self._builder.tf  # thread-safe TransformTree, fed by the builder thread
        self._throttle = _Throttle(self.get_logger(), cfg.log_throttle_s)

        # shared state (counters are plain ints/dicts updated under the GIL or self._lock)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._cancel = threading.Event()
        self._inbox: queue.Queue = queue.Queue(maxsize=cfg.inbox_size)
        self._control: queue.SimpleQueue = queue.SimpleQueue()
        self._windows: collections.deque = collections.deque()
        self._windows_cv = threading.Condition(self._lock)
        self._render_requests: queue.Queue = queue.Queue(maxsize=4)
        self._received: dict[str, int] = collections.defaultdict(int)
        self._inbox_dropped: dict[str, int] = collections.defaultdict(int)
        self._latency = collections.deque(maxlen=20000)  # publish (header stamp) → callback, s
        self._queue_wait = collections.deque(maxlen=4096)  # callback → builder, s
        self._skipped_total: dict[str, int] = collections.defaultdict(int)  # closed windows + node-level
        self._notes_total: dict[str, int] = collections.defaultdict(int)
        self._builder_stats: dict = {}
        self._window_span = [None, None]  # camera header stamps since the last build
        self._first_camera_frame: str | None = None
        self._window_start: float | None = None  # last keyframe stamp of the last built window
        self._last_stamp: dict[str, float] = {}
        self._time_jump_s = max(10.0, 2.0 * cfg.window_seconds)
        # images shed in the callback (time-only keyframe policy, see _shed_image); a little under the
        # builder's spacing so that stamp jitter never sheds an image the builder would have kept
        self._keyframe_gap = 0.9 * cfg.window_keyframe_seconds
        shed = cfg.window_keyframe_meters == 0 and self._keyframe_gap > 0
        self._prefilter: dict[str, float | None] = \
            {cfg.image_subscription_topic(t): None for t in cfg.cameras} if shed else {}
        self._image_shed = 0
        self._lidar_seen = 0
        self._last_info: dict[str, bytes] = {}
        self._info_repeated = 0
        self._map: MapState | None = None
        self._counts = collections.Counter()
        self._last_saved: str = ""
        self._busy_since: float | None = None

        self._make_interfaces()
        self._threads = [threading.Thread(target=self._guard(self._builder_loop), name="g3r-builder", daemon=True),
                         threading.Thread(target=self._guard(self._worker_loop), name="g3r-worker", daemon=True),
                         threading.Thread(target=self._guard(self._render_loop), name="g3r-render", daemon=True),
                         threading.Thread(target=self._guard(self._status_loop), name="g3r-status", daemon=True)]
        for t in self._threads:
            t.start()
        self.get_logger().info(
            f"reconstructing windows of {cfg.window_seconds:g} s from cameras {cfg.cameras} "
            f"({cfg.image_transport}), LiDAR {cfg.lidar_topic}, world frame '{cfg.world_frame}'; "
            f"reconstruction every {cfg.reconstruction_every} window(s), outputs in {cfg.output_dir}")

    # ------------------------------------------------------------------ ROS interfaces
    def _make_interfaces(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseStamped
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
        from std_srvs.srv import Trigger
        from visualization_msgs.msg import MarkerArray

        cfg = self.cfg
        if cfg.qos_sensor == "sensor_data":
            sensor_qos = QoSProfile(depth=cfg.qos_depth, reliability=qos_profile_sensor_data.reliability,
                                    durability=qos_profile_sensor_data.durability)
        else:
            sensor_qos = QoSProfile(depth=cfg.qos_depth, reliability=ReliabilityPolicy.RELIABLE)
        tf_qos = QoSProfile(depth=100)
        tf_static_qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                                   durability=DurabilityPolicy.TRANSIENT_LOCAL)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)

        def raw_sub(cls, topic, qos):
            msgtype = f"{cls.__module__.split('.')[0]}/msg/{cls.__name__}"
            has_header = msgtype in _HEADER_FIRST
            self.create_subscription(cls, topic, lambda raw: self._on_raw(raw, topic, msgtype, has_header), qos,
                                     raw=True)

        image_cls = CompressedImage if cfg.image_transport == "compressed" else Image
        info_topics = []
        for image_topic in cfg.cameras:
            raw_sub(image_cls, cfg.image_subscription_topic(image_topic), sensor_qos)
            info = camera_info_topic(cfg.image_subscription_topic(image_topic))
            if info not in info_topics:
                info_topics.append(info)
                raw_sub(CameraInfo, info, sensor_qos)
        raw_sub(PointCloud2, cfg.lidar_topic, sensor_qos)
        from tf2_msgs.msg import TFMessage

        raw_sub(TFMessage, "/tf", tf_qos)
        raw_sub(TFMessage, "/tf_static", tf_static_qos)
        if cfg.tracks_topic:
            raw_sub(MarkerArray, cfg.tracks_topic, sensor_qos)
        self._first_camera_topic = cfg.image_subscription_topic(cfg.cameras[0])

        self.map_pub = self.create_publisher(PointCloud2, "~/gaussian_map", latched)
        self.view_pub = self.create_publisher(Image, "~/novel_view/image", QoSProfile(depth=10))
        self.view_info_pub = self.create_publisher(CameraInfo, "~/novel_view/camera_info", QoSProfile(depth=10))
        self.status_pub = self.create_publisher(DiagnosticArray, "~/status", QoSProfile(depth=5))
        self.create_subscription(PoseStamped, "~/render_pose", self._on_render_pose, QoSProfile(depth=10))
        self.create_service(Trigger, "~/reconstruct", self._srv_reconstruct)
        self.create_service(Trigger, "~/save_map", self._srv_save_map)

    # ------------------------------------------------------------------ callbacks (never block)
    def _on_raw(self, raw: bytes, topic: str, msgtype: str, has_header: bool) -> None:
        now = time.time()
        self._received[topic] += 1
        stamp = header_stamp_from_cdr(raw) if has_header else None
        if stamp is not None and not self.cfg.use_sim_time and -1.0 < now - stamp < LATENCY_PLAUSIBLE_S:
            self._latency.append(now - stamp)  # live stamps only, not a replay
        if stamp is not None and topic in self._prefilter and self._shed_image(topic, stamp):
            return
        if msgtype == "sensor_msgs/msg/CameraInfo" and self._same_info(topic, raw):
            return
        if topic == self.cfg.lidar_topic and self.cfg.window_lidar_every > 1:
            self._lidar_seen += 1
            if (self._lidar_seen - 1) % self.cfg.window_lidar_every:
                return  # decimated here rather than after queueing 1-2 MB clouds (note:lidar_decimated)
        try:
            self._inbox.put_nowait((topic, msgtype, raw, now))
        except queue.Full:
            self._inbox_dropped[topic] += 1
            self._throttle.warn("inbox", "input queue full (%d): dropping %s messages; the builder cannot keep up",
                                self.cfg.inbox_size, topic)

    def _same_info(self, topic: str, raw: bytes) -> bool:
        """True for a CameraInfo equal to the last queued one of its topic except for the stamp
        (the usual case: a fixed calibration re-sent with every image); counted, not queued.
        The builder keeps the newest calibration per camera, so nothing is lost."""
        body = bytes(raw[12:])  # after the encapsulation header and header.stamp
        if self._last_info.get(topic) == body:
            self._info_repeated += 1
            return True
        self._last_info[topic] = body
        return False

    def _shed_image(self, topic: str, stamp: float) -> bool:
        """Load shedding before the queue: with a time-only keyframe policy, an image newer than
        this camera's last queued image by less than ``keyframe_seconds`` cannot become a
        keyframe, so it is counted (``note:image_shed``) instead of queued. A stamp that went
        back passes (the builder decides)."""
        last = self._prefilter[topic]
        if last is not None and 0.0 <= stamp - last < self._keyframe_gap:
            self._image_shed += 1
            return True
        self._prefilter[topic] = stamp
        return False

    def _on_render_pose(self, msg) -> None:
        try:
            self._render_requests.put_nowait(msg)
        except queue.Full:
            try:
                self._render_requests.get_nowait()
            except queue.Empty:
                pass
            self._count_skip("render_request", "dropped: render queue full")
            self._render_requests.put_nowait(msg)

    def _srv_reconstruct(self, request, response):
        """Ask the builder thread to close the current window now and queue it (does not wait:
        the executor thread must not block). Refused when the window has no keyframe yet."""
        keyframes = int(self._builder_stats.get("keyframes", 0))
        if keyframes == 0:
            response.success = False
            response.message = "nothing to reconstruct: the current window has no keyframe yet"
            return response
        self._control.put("reconstruct")
        response.success = True
        response.message = (f"reconstruction of the current window ({keyframes} keyframes) requested; "
                            "watch ~/status and ~/gaussian_map")
        return response

    def _srv_save_map(self, request, response):
        try:
            path = self.save_map()
            response.success, response.message = True, str(path)
        except (ValueError, OSError) as e:
            response.success, response.message = False, str(e)
        return response

    # ------------------------------------------------------------------ bookkeeping
    def _count_skip(self, key: str, detail: str) -> None:
        with self._lock:
            self._skipped_total[key] += 1
        self._throttle.warn(key, "skipped input (%s): %s", key, detail)

    def _guard(self, fn):
        def run():
            try:
                fn()
            except Exception:  # noqa: BLE001 - a dead thread must be loud, not silent
                self.get_logger().error(f"thread {threading.current_thread().name} died:\n"
                                        + __import__("traceback").format_exc())
        return run

    # ------------------------------------------------------------------ builder thread
    def _builder_loop(self) -> None:
        last_snapshot = 0.0
        while not self._stop.is_set():
            self._serve_control()
            try:
                topic, msgtype, raw, t_recv = self._inbox.get(timeout=0.05)
            except queue.Empty:
                continue
            self._queue_wait.append(time.time() - t_recv)
            try:
                self._ingest(topic, msgtype, raw)
                now = time.monotonic()
                if now - last_snapshot > 0.1:
                    self._snapshot_builder()
                    last_snapshot = now
                if self._builder.ready():
                    self._close_window(forced=False)
            except Exception as e:  # noqa: BLE001 - the builder never raises on data; this is a bug guard
                self._count_skip("error", f"{topic}: {type(e).__name__}: {e}")

    def _ingest(self, topic: str, msgtype: str, raw: bytes) -> None:
        try:
            msg = self._typestore.deserialize_cdr(raw, msgtype)
        except Exception as e:  # noqa: BLE001 - corrupt CDR: the builder records a 'deserialize' skip
            self._throttle.warn("deserialize", "cannot deserialize a %s message on %s: %s", msgtype, topic, e)
            msg = None
        if msg is not None and msgtype in _HEADER_FIRST:
            stamp = _msg_stamp(msg)
            if not self._check_order(topic, stamp):
                return
            if topic in self.window_config.camera_topics and stamp is not None:
                self._track_camera(topic, stamp, msg)
        self._builder.add_message(topic, msg, self._now_s())

    def _check_order(self, topic: str, stamp: float | None) -> bool:
        """Stamp bookkeeping before decoding; False drops the message.

        - older than the start of the current window by more than ``window.tf_wait_s`` (it
          belongs to a window already closed): dropped, counted as skipped ``out_of_order``;
        - older than the previous message on its topic, within the window: kept (the
          builder orders by stamp), counted as ``note:out_of_order``;
        - a jump back by more than ``time_jump_s`` (a looped bag, a restarted log):
          the window, its TF and its stamp history are reset, with a warning.
        """
        if stamp is None:
            return True
        start = self._window_start
        if start is not None and stamp < start - self.cfg.window_tf_wait_s:
            if stamp < start - self._time_jump_s:
                self.get_logger().warning(f"time jumped back {start - stamp:.1f} s on {topic} (looped bag?): "
                                          "resetting the window and the TF buffer")
                self._reset_builder()
            else:
                self._count_skip("out_of_order", f"{topic} stamp {stamp:.3f} is older than the current window "
                                                 f"(starts {start:.3f})")
                return False
        last = self._last_stamp.get(topic)
        if last is not None and stamp < last:
            with self._lock:
                self._notes_total["out_of_order"] += 1
            self._throttle.warn("order", "%s: stamp %.3f is older than the previous one (%.3f)", topic, stamp, last)
        self._last_stamp[topic] = stamp if last is None else max(last, stamp)
        return True

    def _reset_builder(self) -> None:
        from ..window_builder import WindowBuilder

        self._builder = WindowBuilder(self.window_config, name=self.get_name())
        self.tf = self._builder.tf
        self._window_start = None
        self._last_stamp.clear()
        self._last_info.clear()  # the new builder needs the calibrations again
        self._window_span = [None, None]
        with self._lock:
            self._counts["time_resets"] += 1

    def _now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _track_camera(self, topic: str, stamp: float, msg) -> None:
        lo, hi = self._window_span
        self._window_span = [stamp if lo is None else min(lo, stamp), stamp if hi is None else max(hi, stamp)]
        if topic == self._first_camera_topic and self._first_camera_frame is None:
            self._first_camera_frame = str(msg.header.frame_id).lstrip("/")

    def _snapshot_builder(self) -> None:
        self._builder_stats = self._builder.stats()

    def _serve_control(self) -> None:
        while True:
            try:
                kind = self._control.get_nowait()
            except queue.Empty:
                return
            if kind == "reconstruct":
                ok, message = self._close_window(forced=True)
                (self.get_logger().info if ok else self.get_logger().warning)(f"~/reconstruct: {message}")

    def _close_window(self, forced: bool) -> tuple[bool, str]:
        """Build the current window; queue it for reconstruction (every n-th, or ``forced``)."""
        stats = self._builder.stats()
        try:
            window = self._builder.build(reset=True, flush_pending=False)
        except ValueError as e:
            return False, f"nothing to reconstruct: {e}"
        with self._lock:
            for k, v in stats.get("skipped_by_reason", {}).items():
                self._skipped_total[k] += v
            for k, v in stats.items():
                if k not in ("messages", "keyframes", "lidar_scans", "points", "actors", "pending", "skipped",
                             "skipped_by_reason") and isinstance(v, int):
                    self._notes_total[k] += v
            self._counts["windows_built"] += 1
            n = self._counts["windows_built"]
        self._window_span = [None, None]
        self._window_start = window.keyframes[-1].stamp
        self._snapshot_builder()
        if not forced and n % self.cfg.reconstruction_every:
            with self._lock:
                self._counts["windows_skipped_by_policy"] += 1
            return True, f"window {window.name} built; not reconstructed (reconstruction.every)"
        try:
            window.validate()
        except ValueError as e:
            self._count_skip("window", str(e))
            return False, f"window {window.name} cannot be reconstructed: {e}"
        self._submit(window)
        return True, f"window {window.name} queued: {len(window.keyframes)} keyframes, {len(window.points)} points"

    def _submit(self, window: SceneWindow) -> None:
        with self._windows_cv:
            if len(self._windows) >= self.cfg.reconstruction_queue_limit:
                old = self._windows.popleft()
                self._counts["windows_dropped"] += 1
                self.get_logger().warning(
                    f"reconstruction is busy and {len(self._windows) + 1} windows are waiting: dropping the oldest "
                    f"({old.name}); raise reconstruction.every or reconstruction.queue_limit")
            self._windows.append(window)
            self._windows_cv.notify()

    # ------------------------------------------------------------------ worker thread
    def _worker_loop(self) -> None:
        try:
            from ..reconstruct import Cancelled
        except ImportError:  # a custom reconstructor does not need the G3R module
            Cancelled = RuntimeError

        while True:
            with self._windows_cv:
                while not self._windows and not self._stop.is_set():
                    self._windows_cv.wait(timeout=0.5)
                if self._stop.is_set():
                    return
                window = self._windows.popleft()
                self._busy_since = time.monotonic()
            t0 = time.perf_counter()
            try:
                output = self.reconstructor(window, self._cancel)
            except Cancelled:
                with self._lock:
                    self._counts["reconstructions_cancelled"] += 1
                return
            except Exception as e:  # noqa: BLE001 - a failed window must not stop the node
                if self._cancel.is_set():
                    with self._lock:
                        self._counts["reconstructions_cancelled"] += 1
                    return
                with self._lock:
                    self._counts["reconstructions_failed"] += 1
                self.get_logger().error(f"reconstruction of {window.name} failed: {type(e).__name__}: {e}")
                continue
            finally:
                self._busy_since = None
            wall = time.perf_counter() - t0
            try:
                self._install_map(window, output, wall)
            except Exception as e:  # noqa: BLE001
                self.get_logger().error(f"publishing the map of {window.name} failed: {type(e).__name__}: {e}")
                with self._lock:
                    self._counts["reconstructions_failed"] += 1

    def _view_camera(self, window: SceneWindow):
        first = [k for k in window.keyframes if k.camera_name == self._first_camera_frame]
        return (first or window.keyframes)[0].camera

    def _install_map(self, window: SceneWindow, output, wall_s: float) -> None:
        from ..evaluate import evaluate_keyframes, mean_psnr

        metrics = {"wall_s": wall_s, **dict(getattr(output, "metrics", {}) or {})}
        t0 = time.perf_counter()
        for name, kfs in (("psnr_source", window.source_keyframes), ("psnr_held_out", window.target_keyframes)):
            if kfs:
                pick = np.unique(np.linspace(0, len(kfs) - 1, min(MAX_EVAL_VIEWS, len(kfs))).round().astype(int))
                scores = evaluate_keyframes(output.params_at, [kfs[i] for i in pick], keep_renders=False)
                metrics[name] = mean_psnr(scores)
        metrics["eval_s"] = time.perf_counter() - t0
        stamp = window.keyframes[-1].stamp
        with self._lock:
            self._counts["reconstructions"] += 1
            index = self._counts["reconstructions"]
        state = MapState(index, output, window, stamp, self._view_camera(window), metrics)
        self._map = state
        self.get_logger().info(
            f"map {index} from {window.name}: {metrics.get('gaussians', '?')} Gaussians in {wall_s:.1f} s "
            f"({metrics.get('device', '?')}), source PSNR {metrics.get('psnr_source', float('nan')):.2f} dB")
        self._publish_map(state)
        self._publish_offset_views(state)

    def _publish_map(self, state: MapState) -> None:
        from ..export import pointcloud_fields
        from .convert import structured_to_pointcloud2

        params = state.output.params_at(state.stamp)
        self.map_pub.publish(structured_to_pointcloud2(pointcloud_fields(params), state.stamp, self.cfg.world_frame))

    def _publish_offset_views(self, state: MapState) -> None:
        cfg = self.cfg
        if not cfg.novel_view_lateral_offsets:
            return
        kfs = [k for k in state.window.keyframes if k.camera_name == self._first_camera_frame] or \
            state.window.keyframes
        for kf, _, camera in lateral_views(kfs, cfg.novel_view_lateral_offsets, cfg.novel_view_max_per_window):
            if self._stop.is_set():
                return
            self._publish_view(state, camera, kf.stamp, kf.stamp)
            with self._lock:
                self._counts["offset_views_published"] += 1

    def _publish_view(self, state: MapState, camera, stamp, render_t: float) -> None:
        """Render ``camera`` (PinholeCamera, world) with the map (actors at ``render_t`` s) and
        publish image + camera info stamped ``stamp`` (float s, or a builtin_interfaces/Time
        copied verbatim)."""
        from ..evaluate import render_camera
        from ..metrics import to_uint8
        from .convert import camera_info_to_msg, image_to_msg

        rgb = to_uint8(render_camera(state.output.params_at(render_t), camera))
        frame = self.cfg.novel_view_frame_id
        self.view_pub.publish(image_to_msg(rgb, stamp, frame))
        self.view_info_pub.publish(camera_info_to_msg(camera.K, camera.width, camera.height, stamp, frame))

    # ------------------------------------------------------------------ render thread
    def _render_loop(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self._render_requests.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                self.render_request(msg)
            except ValueError as e:
                self._count_skip("render_request", str(e))
            except Exception as e:  # noqa: BLE001 - e.g. a render error: one request fails, not the thread
                self._count_skip("render_request", f"{type(e).__name__}: {e}")

    def render_request(self, msg) -> None:
        """Serve one PoseStamped (optical-frame pose, see the module doc). ``ValueError`` when it
        cannot be served (no map yet, unknown frame / missing TF, bad pose)."""
        from ..geometry import PinholeCamera
        from ..tf_tree import TransformError
        from .convert import pose_to_matrix, sec_from_time

        state = self._map
        if state is None:
            raise ValueError("no map yet")
        T_frame_cam = pose_to_matrix(msg.pose)
        frame = str(msg.header.frame_id).lstrip("/") or self.cfg.world_frame
        t = sec_from_time(msg.header.stamp)
        if frame == self.cfg.world_frame:
            T_world_frame = np.eye(4)
        else:
            try:
                T_world_frame = self.tf.lookup(self.cfg.world_frame, frame, t if t > 0 else None)
            except TransformError as e:
                raise ValueError(f"tf: {e}") from None
        vc = state.view_camera
        camera = PinholeCamera(vc.K, vc.width, vc.height, T_world_frame @ T_frame_cam)
        self._publish_view(state, camera, msg.header.stamp, t if t > 0 else state.stamp)
        with self._lock:
            self._counts["render_requests_served"] += 1

    # ------------------------------------------------------------------ maps on disk
    def save_map(self, name: str | None = None) -> Path:
        """Write the current map as a graphdeco 3DGS PLY into ``output_dir`` (atomically)."""
        from ..export import write_ply

        state = self._map
        if state is None:
            raise ValueError("no map yet: nothing has been reconstructed")
        out = Path(self.cfg.output_dir).expanduser()
        path = out / (name or f"map_{state.index:04d}.ply")
        write_ply(path, state.output.params_at(state.stamp))
        self._last_saved = str(path.resolve())
        self.get_logger().info(f"saved map {state.index} ({state.window.name}) to {path}")
        return path.resolve()

    # ------------------------------------------------------------------ status
    def status_values(self) -> dict[str, dict]:
        """``{status name: {key: value}}`` as published on ``~/status``."""
        cfg = self.cfg
        b = dict(self._builder_stats)
        with self._lock:
            skipped = dict(self._skipped_total)
            notes = dict(self._notes_total)
            counts = dict(self._counts)
        for k, v in (b.get("skipped_by_reason") or {}).items():
            skipped[k] = skipped.get(k, 0) + v
        for k, v in b.items():
            if k not in ("messages", "keyframes", "lidar_scans", "points", "actors", "pending", "skipped",
                         "skipped_by_reason") and isinstance(v, int):
                notes[k] = notes.get(k, 0) + v
        if self._image_shed:
            notes["image_shed"] = self._image_shed
        if self._info_repeated:
            notes["camera_info_repeated"] = self._info_repeated
        if cfg.window_lidar_every > 1 and self._lidar_seen:
            kept = (self._lidar_seen + cfg.window_lidar_every - 1) // cfg.window_lidar_every
            notes["lidar_decimated"] = self._lidar_seen - kept
        lo, hi = self._window_span
        fill = 0.0 if lo is None else min(1.0, (hi - lo) / cfg.window_seconds)
        inputs = {"inbox_depth": self._inbox.qsize(), "inbox_capacity": cfg.inbox_size,
                  "inbox_dropped": sum(self._inbox_dropped.values()),
                  "latency_p50_ms": percentile_ms(list(self._latency), 50),
                  "latency_p95_ms": percentile_ms(list(self._latency), 95),
                  "queue_wait_p95_ms": percentile_ms(list(self._queue_wait), 95)}
        inputs.update({f"received:{t}": n for t, n in sorted(self._received.items())})
        inputs.update({f"dropped:{t}": n for t, n in sorted(self._inbox_dropped.items())})
        window = {"fill": fill, "keyframes": b.get("keyframes", 0), "lidar_scans": b.get("lidar_scans", 0),
                  "points": b.get("points", 0), "pending": b.get("pending", 0),
                  "windows_built": counts.get("windows_built", 0), "time_resets": counts.get("time_resets", 0),
                  "skipped_total": sum(skipped.values())}
        window.update({f"skipped:{k}": v for k, v in sorted(skipped.items())})
        window.update({f"note:{k}": v for k, v in sorted(notes.items())})
        state = self._map
        m = state.metrics if state else {}
        busy = self._busy_since
        recon = {"busy": busy is not None, "busy_s": 0.0 if busy is None else time.monotonic() - busy,
                 "queued_windows": len(self._windows), "queue_limit": cfg.reconstruction_queue_limit,
                 "windows_dropped": counts.get("windows_dropped", 0),
                 "windows_skipped_by_policy": counts.get("windows_skipped_by_policy", 0),
                 "reconstructions": counts.get("reconstructions", 0),
                 "failed": counts.get("reconstructions_failed", 0),
                 "cancelled": counts.get("reconstructions_cancelled", 0),
                 "last_window": state.window.name if state else "",
                 "last_time_s": m.get("time_s", m.get("wall_s", float("nan"))),
                 "last_wall_s": m.get("wall_s", float("nan")),
                 "psnr_source": m.get("psnr_source", float("nan")),
                 "psnr_held_out": m.get("psnr_held_out", float("nan")),
                 "device": m.get("device", cfg.reconstruction_device),
                 "torch_threads": torch_threads(),
                 "gaussians": m.get("gaussians", 0)}
        outputs = {"offset_views_published": counts.get("offset_views_published", 0),
                   "render_requests_served": counts.get("render_requests_served", 0),
                   "last_saved_map": self._last_saved}
        return {"g3r_ros: input": inputs, "g3r_ros: window": window, "g3r_ros: reconstruction": recon,
                "g3r_ros: outputs": outputs}

    def _status_loop(self) -> None:
        from .convert import diagnostic_array, diagnostic_status

        while not self._stop.wait(self.cfg.status_period):
            try:
                values = self.status_values()
                statuses = []
                for name, vals in values.items():
                    level = "ok"
                    if name.endswith("input") and vals["inbox_dropped"]:
                        level = "warn"
                    if name.endswith("reconstruction") and (vals["failed"] or vals["windows_dropped"]):
                        level = "warn"
                    statuses.append(diagnostic_status(name, vals, level=level, hardware_id=self.get_name()))
                self.status_pub.publish(diagnostic_array(statuses, max(self._now_s(), 0.0)))
            except Exception as e:  # noqa: BLE001 - e.g. the context is shutting down
                if self._stop.is_set():
                    return
                self._throttle.warn("status", "cannot publish status: %s", e)

    # ------------------------------------------------------------------ shutdown
    def shutdown(self, timeout: float = 10.0) -> Path | None:
        """Stop the threads (cancelling a running reconstruction) and save the last map when
        ``save_on_shutdown``; returns the saved path (None if nothing was saved)."""
        self._cancel.set()
        self._stop.set()
        with self._windows_cv:
            self._windows_cv.notify_all()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            self.get_logger().warning(f"threads still running at shutdown: {alive}")
        if self.cfg.save_on_shutdown and self._map is not None:
            try:
                return self.save_map(f"map_{self._map.index:04d}_shutdown.ply")
            except (ValueError, OSError) as e:
                self.get_logger().error(f"could not save the map on shutdown: {e}")
        return None


# ---------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------
def main(args=None) -> int:
    """``ros2 run g3r_ros reconstruct_node`` / ``python -m g3r_ros.ros.node [--ros-args ...]``."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    if "ROS_AUTOMATIC_DISCOVERY_RANGE" not in os.environ and "ROS_LOCALHOST_ONLY" not in os.environ:
        LOG.info("ROS_AUTOMATIC_DISCOVERY_RANGE is not set: DDS discovery uses the default range")
    from .player import apply_large_data_profile

    if (profile := apply_large_data_profile()) is not None:  # maps of many Gaussians are MBs
        LOG.info("Fast DDS profile with a large shared-memory segment: %s (G3R_DDS_PROFILE=0 to disable)", profile)
    rclpy.init(args=args)
    node = None
    try:
        try:
            node = ReconstructNode()
        except ValueError as e:  # invalid parameters, missing model, unavailable device
            print(f"reconstruct_node: invalid configuration: {e}", file=sys.stderr, flush=True)
            return 2
        # One thread: callbacks only enqueue, and rclpy's multi-threaded executor can reorder a topic's messages.
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        try:
            executor.spin()
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        saved = node.shutdown()
        if saved is not None:
            print(f"reconstruct_node: saved the last map to {saved}", flush=True)
        return 0
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())

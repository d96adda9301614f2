"""Streaming reconstruction: serialized sensor messages in, Gaussian maps and views out (ROS-free).

:class:`StreamingSession` is the engine of ``reconstruct_node`` (the node only subscribes,
converts and publishes); ``g3r bench node --transport inprocess`` drives it without DDS, and
the demo asks :func:`preview_window` which window the node will build. Messages arrive as CDR
bytes with their type name and are deserialized with the rosbags typestore, exactly like bag
messages, so a live stream and a bag go through the same decoders (``g3r_ros.messages``).

Threads and data flow::

    offer(topic, type, cdr) ──▶ inbox (bounded; when full: dropped, counted, warned)
        ──▶ builder thread: deserialize → stamp checks → WindowBuilder.add_message → ready()? build()
            (also: request_reconstruct(), and the idle flush after flush_on_idle_s without input)
        ──▶ windows (bounded by queue_limit; the oldest is dropped with a warning)
        ──▶ worker thread: reconstructor(window, cancel) → PSNR on a few views → on_map(MapState)
            → lane-shifted views of the keyframes → on_view(...)
            → (refine_seconds > 0) per-scene refinement of that map (g3r_ros.refine): its best state
              is published the same way every refine_publish_every_s of refinement and at the end;
              a new window that is ready pre-empts it (the best state so far is kept)
    request_view(ViewRequest) ──▶ render queue (4; the oldest is dropped) ──▶ render thread → on_view(...)
    status thread ──▶ on_status(values) every status_period seconds (wall clock)

:meth:`StreamingSession.offer` never blocks and never decodes: it counts, timestamps, sheds
what cannot matter (images closer than the keyframe spacing, repeated CameraInfo, decimated
scans; all counted) and queues. Bad input never raises out of the session: it is counted in
the status and logged (throttled). Log lines go to the ``g3r_ros.streaming`` logger (the node
routes them to its ROS logger). Cancellation (:meth:`close`) stops a running reconstruction
and is logged with its reason.

Anytime maps: the worker's stage (``g3r``, ``refine``, ``idle``) is in the status, and every
stage change publishes a status at once. Each published map replaces :attr:`StreamingSession.map`
under the session lock, so novel views, the sensor simulator and ``save_map`` always use the
newest one. Refinement keeps no history: only the current best state and a few scalars.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import queue
import struct
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from .window import Keyframe, SceneWindow
from .window_builder import WindowBuilder, WindowConfig

LOG = logging.getLogger(__name__)

# Message types whose CDR starts with std_msgs/Header (stamp readable without deserializing).
HEADER_FIRST = frozenset({"sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/CameraInfo",
                          "sensor_msgs/msg/PointCloud2"})
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
TF_MESSAGE = "tf2_msgs/msg/TFMessage"
LATENCY_PLAUSIBLE_S = 10.0  # stamp-to-offer latency samples beyond this are replayed stamps, not latency
MAX_EVAL_VIEWS = 4  # source / held-out views rendered per reconstruction for the PSNR in the status
RENDER_QUEUE = 4
_BUILDER_COUNTS = ("messages", "keyframes", "lidar_scans", "points", "actors", "pending", "skipped",
                   "skipped_by_reason")


# ---------------------------------------------------------------------------------------
# What the worker runs, and what it produces
# ---------------------------------------------------------------------------------------
class ReconstructionOutput(Protocol):
    """Renderable Gaussians (world) at a stamp, and JSON-ready metrics (``time_s``, ``device``...).

    An output that per-scene refinement can continue from also has ``refinable() ->
    (NeuralScene, decoders or None)`` (the scene and the decoders of its states; None when the
    states are explicit)."""

    metrics: dict

    def params_at(self, stamp: float | None): ...


class Reconstructor(Protocol):
    """Reconstruct ``window``; return early (raise) when ``cancel`` is set. Optionally
    ``configure(steps=, turbo=)`` applies run-time changes to the next window."""

    def __call__(self, window: SceneWindow, cancel: threading.Event) -> ReconstructionOutput: ...


class RefinedOutput:
    """A refined scene (explicit states, ``g3r_ros.refine.EXPLICIT_DECODERS``) as a reconstruction output."""

    def __init__(self, scene, metrics: dict):
        self.scene, self.metrics = scene, metrics

    def params_at(self, stamp: float | None):
        import torch

        from .refine import EXPLICIT_DECODERS

        with torch.no_grad():
            return self.scene.params_at(EXPLICIT_DECODERS, stamp).detach()


@dataclass
class MapState:
    """The latest map: its output, window, render stamp and novel-view camera model. ``index``
    counts reconstructed windows; ``revision`` the maps published for that window (0 = G3R's,
    then each refined one)."""

    index: int
    output: ReconstructionOutput
    window: SceneWindow
    stamp: float  # the window's last keyframe stamp: the map is published (and saved) at it
    view_camera: object  # PinholeCamera of the first camera: intrinsics and size of novel views
    metrics: dict = field(default_factory=dict)
    revision: int = 0
    _surface: object = field(default=None, repr=False)

    def surface(self):
        """The map at its stamp with surface normals (``g3r_ros.surface.SurfaceMap``), computed once."""
        if self._surface is None:
            from .surface import surface_map

            self._surface = surface_map(self.output.params_at(self.stamp))
        return self._surface

    def surface_at(self, stamp: float):
        """The surface map with actors at ``stamp`` (the map's own, without decoding, when the
        window has no actors: every stamp renders the same Gaussians)."""
        if self.window is None or not self.window.actors:
            return self.surface()
        return self.surface().at(self.output.params_at(stamp))


@dataclass
class ViewRequest:
    """Render the map from the camera optical-frame pose ``T_frame_cam`` (4x4) given in ``frame``
    at ``stamp`` (s; <= 0: the latest transform). ``reply_stamp`` is handed back untouched with
    the image (the node copies the request's header stamp)."""

    frame: str
    T_frame_cam: np.ndarray
    stamp: float
    reply_stamp: object


@dataclass
class StreamConfig:
    """Settings of a session. ``window.camera_topics`` are the topics as offered (e.g.
    ``.../compressed``); ``window.lidar_every`` is applied in :meth:`StreamingSession.offer`.
    Fields in :data:`RUNTIME_FIELDS` may change while the session runs (:meth:`~StreamingSession.reconfigure`)."""

    window: WindowConfig
    inbox_size: int = 256
    reconstruct_every: int = 1
    queue_limit: int = 2
    flush_on_idle_s: float = 0.0
    status_period: float = 1.0
    log_throttle_s: float = 5.0
    output_dir: str | Path = "g3r_output"
    save_on_shutdown: bool = True
    lateral_offsets: list[float] = field(default_factory=list)
    max_offset_views: int = 64
    live_stamps: bool = True  # header stamps are wall-clock times (no replay clock): latency is measured
    depth_min_opacity: float = 0.5  # novel-view depth is NaN where the accumulated opacity is below this
    refine_seconds: float = 0.0  # per-scene refinement of each map for this many seconds (0 = off)
    refine_publish_every_s: float = 15.0  # publish the best refined state this often (s of refinement; 0 = at the end)
    refine: object = None  # g3r_ros.refine.RefineConfig recipe (None: config/refine.yaml); its budget is replaced

    @property
    def time_jump_s(self) -> float:
        """A stamp this far behind the current window means the stream restarted (a looped bag)."""
        return max(10.0, 2.0 * float(self.window.window_seconds or 0.0))


RUNTIME_FIELDS = ("reconstruct_every", "queue_limit", "flush_on_idle_s", "status_period", "log_throttle_s",
                  "save_on_shutdown", "lateral_offsets", "max_offset_views", "depth_min_opacity",
                  "refine_seconds", "refine_publish_every_s")
RUNTIME_WINDOW_FIELDS = ("window_seconds", "window_meters", "held_out_every")


# ---------------------------------------------------------------------------------------
# Small pure helpers
# ---------------------------------------------------------------------------------------
def header_stamp_from_cdr(raw: bytes) -> float | None:
    """Header stamp (s) of a CDR message whose first field is std_msgs/Header; None if unreadable."""
    if len(raw) < 12:
        return None
    order = "<" if raw[1] & 1 else ">"  # encapsulation id 0x0001 = CDR little endian
    sec, nsec = struct.unpack_from(order + "iI", raw, 4)
    return sec + nsec * 1e-9


def percentile_ms(samples, q: float) -> float:
    """q-th percentile of seconds ``samples`` in milliseconds (NaN when empty)."""
    a = np.fromiter(samples, dtype=np.float64)
    return float(np.percentile(a, q) * 1e3) if a.size else float("nan")


def lateral_views(keyframes: list[Keyframe], offsets: list[float], limit: int) -> list[tuple[Keyframe, float, object]]:
    """(keyframe, offset m, shifted PinholeCamera) for every keyframe x offset, at most ``limit``.

    A shift moves the camera sideways in the horizontal plane, + = left (the rule of
    ``g3r_ros.synthetic.truth.lane_shifted_camera``, which ground truth uses too)."""
    from .synthetic.truth import lane_shifted_camera

    out = []
    for kf in keyframes:
        for d in offsets:
            if len(out) >= limit:
                return out
            out.append((kf, float(d), lane_shifted_camera(kf.camera, d)))
    return out


def status_levels(values: dict[str, dict]) -> dict[str, str]:
    """``ok`` or ``warn`` per status group: input dropped in the inbox, windows dropped or failed."""
    levels = {}
    for name, vals in values.items():
        warn = (name.endswith("input") and vals.get("inbox_dropped")) or \
            (name.endswith("reconstruction") and (vals.get("failed") or vals.get("windows_dropped"))) or \
            (name.endswith("sim") and (vals.get("poses_dropped") or vals.get("poses_failed")))
        levels[name] = "warn" if warn else "ok"
    return levels


def torch_threads() -> int:
    """torch's CPU thread count, or 0 when torch is not loaded (a custom reconstructor)."""
    import sys

    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else 0


class Throttle:
    """Log one warning per key at most every ``period`` s, saying how many were suppressed."""

    def __init__(self, logger: logging.Logger, period: float):
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


# ---------------------------------------------------------------------------------------
# The session
# ---------------------------------------------------------------------------------------
class StreamingSession:
    """Windows from a message stream, reconstructed one after another (see the module doc).

    ``now``: the stream clock in seconds (ROS time; for messages without a header and the
    status stamp). Callbacks run on the session's threads: ``on_map(MapState)``,
    ``on_view(camera, rgb (H,W,3) uint8, reply_stamp, depth (H,W) float32 metres with NaN where
    invalid)``, ``on_status(values)``. Call :meth:`start`, then :meth:`offer` for every message,
    and :meth:`close` at the end.
    """

    def __init__(self, config: StreamConfig, reconstructor: Reconstructor, *, now: Callable[[], float] = time.time,
                 on_map=None, on_view=None, on_status=None):
        from .bag import typestore

        self.config = config
        self.reconstructor = reconstructor
        self.output_dir = Path(config.output_dir).expanduser().resolve()  # resolved once
        self._now, self._on_map, self._on_view, self._on_status = now, on_map, on_view, on_status
        self._typestore = typestore()
        win = config.window
        self._builder = WindowBuilder(dataclasses.replace(win, lidar_every=1))  # decimation happens in offer()
        self._first_camera_topic = win.camera_topics[0]
        self._throttle = Throttle(LOG, config.log_throttle_s)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._cancel = threading.Event()
        self._cancel_reason = ""
        self._inbox: queue.Queue = queue.Queue(maxsize=config.inbox_size)
        self._control: queue.SimpleQueue = queue.SimpleQueue()
        self._windows: collections.deque = collections.deque()
        self._windows_cv = threading.Condition(self._lock)
        self._render_requests: queue.Queue = queue.Queue(maxsize=RENDER_QUEUE)
        self._received: dict[str, int] = collections.defaultdict(int)
        self._inbox_dropped: dict[str, int] = collections.defaultdict(int)
        self._latency = collections.deque(maxlen=20000)  # header stamp → offer, s
        self._queue_wait = collections.deque(maxlen=4096)  # offer → builder, s
        self._skipped_total: dict[str, int] = collections.defaultdict(int)  # closed windows + session-level
        self._notes_total: dict[str, int] = collections.defaultdict(int)
        self._builder_stats: dict = {}
        self._window_span = [None, None]  # camera header stamps since the last build
        self._first_camera_frame: str | None = None
        self._camera_frames: dict[str, str] = {}  # camera topic → optical frame id (as received)
        self._lidar_frame: str | None = None
        self._window_start: float | None = None  # last keyframe stamp of the last built window
        self._last_stamp: dict[str, float] = {}
        self._first_tf_stamp: float | None = None  # since the last restart: a /tf stamp back at it is a replay loop
        # images shed in offer() (time-only keyframe policy); a little under the builder's spacing
        # so that stamp jitter never sheds an image the builder would have kept
        self._keyframe_gap = 0.9 * win.keyframe_seconds
        shed = win.keyframe_meters == 0 and self._keyframe_gap > 0
        self._prefilter: dict[str, float | None] = {t: None for t in win.camera_topics} if shed else {}
        self._image_shed = 0
        self._lidar_seen = 0
        self._last_info: dict[str, bytes] = {}
        self._info_repeated = 0
        self._map: MapState | None = None
        self._counts = collections.Counter()
        self._last_saved = ""
        self._busy_since: float | None = None
        self._stage = "idle"  # the worker's: g3r, refine or idle
        self._refining = False  # guarded by the lock: a window submitted meanwhile sets _refine_cancel
        self._refine_cancel = threading.Event()
        self._emit_lock = threading.Lock()
        self._refine = {}  # the current / last refinement: seconds, psnr_start, psnr_best, stop
        self._threads = [threading.Thread(target=self._guard(fn), name=f"g3r-{name}", daemon=True)
                         for name, fn in (("builder", self._builder_loop), ("worker", self._worker_loop),
                                          ("render", self._render_loop), ("status", self._status_loop))]

    @property
    def tf(self):
        """The stream's transform tree (thread-safe; replaced when the stream restarts)."""
        return self._builder.tf

    @property
    def map(self) -> MapState | None:
        return self._map

    @property
    def camera_frames(self) -> dict[str, str]:
        """``{camera topic: frame id}`` of the camera topics seen so far (in ``camera_topics`` order)."""
        return {t: self._camera_frames[t] for t in self.config.window.camera_topics if t in self._camera_frames}

    @property
    def lidar_frame(self) -> str | None:
        """frame_id of the LiDAR scans seen so far (None before the first)."""
        return self._lidar_frame

    def start(self) -> StreamingSession:
        for t in self._threads:
            t.start()
        return self

    def reconfigure(self, config: StreamConfig) -> None:
        """Apply the run-time fields (:data:`RUNTIME_FIELDS`, :data:`RUNTIME_WINDOW_FIELDS`) of ``config``;
        they take effect at the next message, window or status."""
        for name in RUNTIME_FIELDS:
            setattr(self.config, name, getattr(config, name))
        for name in RUNTIME_WINDOW_FIELDS:
            setattr(self._builder.config, name, getattr(config.window, name))
            setattr(self.config.window, name, getattr(config.window, name))
        self._throttle.period = config.log_throttle_s

    # ------------------------------------------------------------------ input (never blocks)
    def offer(self, topic: str, msgtype: str, raw: bytes, received: float | None = None) -> None:
        """Queue one serialized message (``msgtype`` like ``sensor_msgs/msg/Image``); ``received``:
        wall-clock arrival time (default now)."""
        now = time.time() if received is None else received
        self._received[topic] += 1
        stamp = header_stamp_from_cdr(raw) if msgtype in HEADER_FIRST else None
        if stamp is not None and self.config.live_stamps and -1.0 < now - stamp < LATENCY_PLAUSIBLE_S:
            self._latency.append(now - stamp)
        if stamp is not None and topic in self._prefilter and self._shed_image(topic, stamp):
            return
        if msgtype == CAMERA_INFO and self._same_info(topic, raw):
            return
        every = self.config.window.lidar_every
        if topic == self.config.window.lidar_topic and every > 1:
            self._lidar_seen += 1
            if (self._lidar_seen - 1) % every:
                return  # decimated here rather than after queueing 1-2 MB clouds (note:lidar_decimated)
        try:
            self._inbox.put_nowait((topic, msgtype, raw, now))
        except queue.Full:
            self._inbox_dropped[topic] += 1
            self._throttle.warn("inbox", "input queue full (%d): dropping %s messages; the builder cannot keep up",
                                self.config.inbox_size, topic)

    def _same_info(self, topic: str, raw: bytes) -> bool:
        """True for a CameraInfo equal to the last queued one of its topic except for the stamp
        (a fixed calibration re-sent with every image): counted, not queued. The builder keeps
        the newest calibration per camera, so nothing is lost."""
        body = bytes(raw[12:])  # after the encapsulation header and header.stamp
        if self._last_info.get(topic) == body:
            self._info_repeated += 1
            return True
        self._last_info[topic] = body
        return False

    def _shed_image(self, topic: str, stamp: float) -> bool:
        """With a time-only keyframe policy, an image newer than this camera's last queued one by
        less than the keyframe spacing cannot become a keyframe: counted (``note:image_shed``),
        not queued. A stamp that went back passes (the builder decides)."""
        last = self._prefilter[topic]
        if last is not None and 0.0 <= stamp - last < self._keyframe_gap:
            self._image_shed += 1
            return True
        self._prefilter[topic] = stamp
        return False

    def request_reconstruct(self) -> tuple[bool, str]:
        """Close the current window now and queue it (answered at once; the builder thread does
        the work). Refused when the window has no keyframe yet."""
        keyframes = int(self._builder_stats.get("keyframes", 0))
        if keyframes == 0:
            return False, "nothing to reconstruct: the current window has no keyframe yet"
        self._control.put("reconstruct")
        return True, (f"reconstruction of the current window ({keyframes} keyframes) requested; "
                      "watch ~/status and ~/gaussian_map")

    def request_view(self, request: ViewRequest) -> None:
        """Queue a novel-view request; when the queue is full the oldest request is dropped (counted)."""
        try:
            self._render_requests.put_nowait(request)
        except queue.Full:
            try:
                self._render_requests.get_nowait()
            except queue.Empty:
                pass
            self.count_skip("render_request", "dropped: render queue full")
            self._render_requests.put_nowait(request)

    # ------------------------------------------------------------------ bookkeeping
    def count_skip(self, key: str, detail: str) -> None:
        """Count a skipped input of kind ``key`` (status ``skipped:<key>``) and warn, throttled."""
        with self._lock:
            self._skipped_total[key] += 1
        self._throttle.warn(key, "skipped input (%s): %s", key, detail)

    def _guard(self, fn):
        def run():
            try:
                fn()
            except Exception:  # noqa: BLE001 - a dead thread must be loud, not silent
                LOG.error("thread %s died:\n%s", threading.current_thread().name, traceback.format_exc())
        return run

    # ------------------------------------------------------------------ builder thread
    def _builder_loop(self) -> None:
        last_snapshot, last_input, flushed, stale = 0.0, time.monotonic(), True, False
        while not self._stop.is_set():
            self._serve_control()
            try:
                topic, msgtype, raw, t_recv = self._inbox.get(timeout=0.05)
            except queue.Empty:
                if stale:  # the burst is over: the status (and ~/reconstruct) see the whole window
                    self._builder_stats, stale = self._builder.stats(), False
                idle = self.config.flush_on_idle_s
                if idle > 0 and not flushed and time.monotonic() - last_input >= idle:
                    flushed = True
                    self._flush_idle(idle)
                continue
            last_input, flushed, stale = time.monotonic(), False, True
            self._queue_wait.append(time.time() - t_recv)
            try:
                self._ingest(topic, msgtype, raw)
                if last_input - last_snapshot > 0.1:
                    self._builder_stats, stale = self._builder.stats(), False
                    last_snapshot = last_input
                if self._builder.ready():
                    self._close_window(forced=False)
            except Exception as e:  # noqa: BLE001 - the builder never raises on data; this is a bug guard
                self.count_skip("error", f"{topic}: {type(e).__name__}: {e}")

    def _ingest(self, topic: str, msgtype: str, raw: bytes) -> None:
        try:
            msg = self._typestore.deserialize_cdr(raw, msgtype)
        except Exception as e:  # noqa: BLE001 - corrupt CDR: the builder records a 'deserialize' skip
            self._throttle.warn("deserialize", "cannot deserialize a %s message on %s: %s", msgtype, topic, e)
            msg = None
        if msg is not None and msgtype == TF_MESSAGE and topic == "/tf" and msg.transforms:
            stamp = _msg_stamp(msg.transforms[0])
            self._check_time_jump(topic, stamp)  # before its samples go in
            if self._first_tf_stamp is None:
                self._first_tf_stamp = stamp
        if msg is not None and msgtype in HEADER_FIRST:
            stamp = _msg_stamp(msg)
            if not self._check_order(topic, stamp):
                return
            if topic in self.config.window.camera_topics and stamp is not None:
                self._track_camera(topic, stamp, msg)
            elif topic == self.config.window.lidar_topic and self._lidar_frame is None:
                self._lidar_frame = str(getattr(msg.header, "frame_id", "")).lstrip("/") or None
        self._builder.add_message(topic, msg, self._now())

    def _check_order(self, topic: str, stamp: float | None) -> bool:
        """Stamp bookkeeping before decoding; False drops the message.

        - older than the start of the current window by more than ``window.tf_wait_s`` (it
          belongs to a window already closed): dropped, counted as skipped ``out_of_order``;
        - older than the previous message on its topic, within the window: kept (the builder
          orders by stamp), counted as ``note:out_of_order``;
        - a jump back by more than ``time_jump_s`` (a looped bag, a restarted log): the
          window, its TF and its stamp history are reset, with a warning.
        """
        if stamp is None:
            return True
        start = self._window_start
        if start is not None and stamp < start - self.config.window.tf_wait_s:
            if not self._check_time_jump(topic, stamp):
                self.count_skip("out_of_order", f"{topic} stamp {stamp:.3f} is older than the current window "
                                                 f"(starts {start:.3f})")
                return False
        last = self._last_stamp.get(topic)
        if last is not None and stamp < last:
            with self._lock:
                self._notes_total["out_of_order"] += 1
            self._throttle.warn("order", "%s: stamp %.3f is older than the previous one (%.3f)", topic, stamp, last)
        self._last_stamp[topic] = stamp if last is None else max(last, stamp)
        return True

    def _check_time_jump(self, topic: str, stamp: float | None) -> bool:
        """True (after restarting the stream, with a warning) when ``stamp`` jumped back by more
        than ``time_jump_s`` from the current window's start, or when a ``/tf`` stamp went back to
        (or before) the first ``/tf`` stamp of the stream while a later window is open: a bag
        shorter than ``time_jump_s`` played in a loop starts over."""
        start = self._window_start
        if stamp is None or start is None:
            return False
        first = self._first_tf_stamp
        looped = topic == "/tf" and first is not None and stamp <= first < start - self.config.window.tf_wait_s
        if stamp >= start - self.config.time_jump_s and not looped:
            return False
        LOG.warning("time jumped back %.1f s on %s (looped bag?): resetting the window and the dynamic TF",
                    start - stamp, topic)
        self._restart_stream()
        return True

    def _restart_stream(self) -> None:
        self._builder.restart()
        self._window_start = None
        self._last_stamp.clear()
        self._window_span = [None, None]
        self._first_tf_stamp = None
        with self._lock:
            self._counts["time_resets"] += 1

    def _track_camera(self, topic: str, stamp: float, msg) -> None:
        lo, hi = self._window_span
        self._window_span = [stamp if lo is None else min(lo, stamp), stamp if hi is None else max(hi, stamp)]
        if topic not in self._camera_frames:
            self._camera_frames[topic] = str(msg.header.frame_id).lstrip("/")
        if topic == self._first_camera_topic and self._first_camera_frame is None:
            self._first_camera_frame = self._camera_frames[topic]

    def _serve_control(self) -> None:
        while True:
            try:
                kind = self._control.get_nowait()
            except queue.Empty:
                return
            if kind == "reconstruct":
                ok, message = self._close_window(forced=True)
                (LOG.info if ok else LOG.warning)("~/reconstruct: %s", message)

    def _flush_idle(self, idle_s: float) -> None:
        if not self._builder.stats()["keyframes"]:
            return
        ok, message = self._close_window(forced=True, final=True)
        (LOG.info if ok else LOG.warning)("no input for %.1f s (window.flush_on_idle_s): %s", idle_s, message)

    def _close_window(self, forced: bool, final: bool = False) -> tuple[bool, str]:
        """Build the current window and queue it for reconstruction (every n-th, or ``forced``).
        ``final``: messages still waiting for TF are resolved now or skipped (the stream paused)."""
        stats = self._builder.stats()
        try:
            window = self._builder.build(reset=True, flush_pending=final)
        except ValueError as e:
            return False, f"nothing to reconstruct: {e}"
        with self._lock:
            for s in window.skipped:
                self._skipped_total[s.reason.split(":")[0]] += 1
            for k, v in stats.items():
                if k not in _BUILDER_COUNTS and isinstance(v, int):
                    self._notes_total[k] += v
            self._counts["windows_built"] += 1
            n = self._counts["windows_built"]
        self._window_span = [None, None]
        self._window_start = window.keyframes[-1].stamp
        self._builder_stats = self._builder.stats()
        if not forced and n % self.config.reconstruct_every:
            with self._lock:
                self._counts["windows_skipped_by_policy"] += 1
            return True, f"window {window.name} built; not reconstructed (reconstruction.every)"
        try:
            window.validate()
        except ValueError as e:
            self.count_skip("window", str(e))
            return False, f"window {window.name} cannot be reconstructed: {e}"
        self._submit(window)
        return True, f"window {window.name} queued: {len(window.keyframes)} keyframes, {len(window.points)} points"

    def _submit(self, window: SceneWindow) -> None:
        with self._windows_cv:
            if len(self._windows) >= self.config.queue_limit:
                old = self._windows.popleft()
                self._counts["windows_dropped"] += 1
                LOG.warning("reconstruction is busy and %d windows are waiting: dropping the oldest (%s); raise "
                            "reconstruction.every or reconstruction.queue_limit", len(self._windows) + 1, old.name)
            self._windows.append(window)
            if self._refining and not self._refine_cancel.is_set():
                self._refine_cancel.set()
                LOG.info("window %s is ready: stopping the refinement of the current map", window.name)
            self._windows_cv.notify()

    # ------------------------------------------------------------------ worker thread
    def _worker_loop(self) -> None:
        while True:
            with self._windows_cv:
                while not self._windows and not self._stop.is_set():
                    self._windows_cv.wait(timeout=0.5)
                if self._stop.is_set():
                    return
                window = self._windows.popleft()
                self._busy_since = time.monotonic()
            self._set_stage("g3r")
            try:
                self._reconstruct_and_refine(window)
            finally:
                self._busy_since = None
                if not self._stop.is_set():
                    self._set_stage("idle")
            if self._stop.is_set():
                return

    def _reconstruct_and_refine(self, window: SceneWindow) -> None:
        t0 = time.perf_counter()
        try:
            output = self.reconstructor(window, self._cancel)
        except Exception as e:  # noqa: BLE001 - a failed window must not stop the session
            if self._cancel.is_set():
                with self._lock:
                    self._counts["reconstructions_cancelled"] += 1
                LOG.warning("reconstruction of %s cancelled after %.1f s: %s", window.name,
                            time.perf_counter() - t0, self._cancel_reason or "cancelled")
                return
            with self._lock:
                self._counts["reconstructions_failed"] += 1
            LOG.error("reconstruction of %s failed: %s: %s", window.name, type(e).__name__, e)
            return
        try:
            state = self._install_map(window, output, time.perf_counter() - t0)
        except Exception as e:  # noqa: BLE001
            LOG.error("publishing the map of %s failed: %s: %s", window.name, type(e).__name__, e)
            with self._lock:
                self._counts["reconstructions_failed"] += 1
            return
        if self.config.refine_seconds > 0 and not self._stop.is_set():
            self._refine_map(state)

    def _first_camera_keyframes(self, window: SceneWindow) -> list[Keyframe]:
        return [k for k in window.keyframes if k.camera_name == self._first_camera_frame] or window.keyframes

    def _set_stage(self, stage: str) -> None:
        """The worker's stage; a change publishes a status at once (so no stage goes unseen)."""
        with self._lock:
            changed, self._stage = self._stage != stage, stage
        if changed:
            self._emit_status()

    def _evaluate(self, window: SceneWindow, output) -> dict:
        """PSNR (dB) of ``output`` on up to :data:`MAX_EVAL_VIEWS` source and held-out keyframes."""
        from .evaluate import evaluate_keyframes, mean_psnr

        metrics = {}
        t0 = time.perf_counter()
        for name, kfs in (("psnr_source", window.source_keyframes), ("psnr_held_out", window.target_keyframes)):
            if kfs:
                pick = np.unique(np.linspace(0, len(kfs) - 1, min(MAX_EVAL_VIEWS, len(kfs))).round().astype(int))
                metrics[name] = mean_psnr(evaluate_keyframes(output.params_at, [kfs[i] for i in pick],
                                                             keep_renders=False))
        metrics["eval_s"] = time.perf_counter() - t0
        return metrics

    def _install_map(self, window: SceneWindow, output, wall_s: float) -> MapState:
        metrics = {"wall_s": wall_s, **dict(getattr(output, "metrics", {}) or {})}
        metrics.update(self._evaluate(window, output))
        with self._lock:
            self._counts["reconstructions"] += 1
            index = self._counts["reconstructions"]
        state = MapState(index, output, window, window.keyframes[-1].stamp,
                         self._first_camera_keyframes(window)[0].camera, metrics)
        LOG.info("map %d from window %s: %s Gaussians in %.1f s (%s), PSNR source %.2f dB, held-out %.2f dB",
                 index, window.name, metrics.get("gaussians", "?"), wall_s, metrics.get("device", "?"),
                 metrics.get("psnr_source", float("nan")), metrics.get("psnr_held_out", float("nan")))
        self._publish_state(state)
        return state

    def _publish_state(self, state: MapState) -> None:
        """Make ``state`` the current map (atomically, under the lock), hand it to ``on_map`` and
        render the lane-shifted views of its first-camera keyframes."""
        with self._lock:
            self._map = state
        if self._on_map is not None:
            self._on_map(state)
        cfg = self.config
        for kf, _, camera in lateral_views(self._first_camera_keyframes(state.window), list(cfg.lateral_offsets),
                                           cfg.max_offset_views):
            if self._stop.is_set():
                return
            self._deliver_view(state, camera, kf.stamp, kf.stamp)
            with self._lock:
                self._counts["offset_views_published"] += 1

    # ------------------------------------------------------------------ refinement (worker thread)
    def _refine_config(self):
        """The recipe with this session's time budget (``refine_seconds``, no iteration budget)."""
        from .refine import recipe

        base = self.config.refine if self.config.refine is not None else recipe()
        return dataclasses.replace(base, seconds=float(self.config.refine_seconds), iters=None)

    def _refine_map(self, state: MapState) -> None:
        """Refine ``state``'s map until the budget is spent, a new window is ready or the session
        closes; publish its best state every ``refine_publish_every_s`` s of refinement (when it
        improved) and at the end. A failure keeps the map as it was."""
        from .refine import refine

        refinable = getattr(state.output, "refinable", None)
        start = refinable() if callable(refinable) else None
        if start is None:
            self._throttle.warn("refine_unsupported", "refinement is on but the output of %s cannot be refined",
                                type(self.reconstructor).__name__)
            return
        scene, decoders = start
        with self._windows_cv:
            if self._windows:  # a newer window is waiting: it comes first
                self._counts["refinements_preempted"] += 1
                return
            self._refine_cancel.clear()
            self._refining = True
            self._refine = {"seconds": 0.0, "psnr_start": float("nan"), "psnr_best": float("nan"), "stop": ""}
        self._set_stage("refine")
        tracker = _BestTracker(self.config.refine_publish_every_s)

        def on_epoch(it, current, entry):
            with self._lock:
                self._refine["seconds"] = entry["elapsed_s"]
            if tracker.offer(current, entry) and not self._refine_cancel.is_set():
                self._publish_refined(state, tracker.best, tracker.best_psnr, entry["elapsed_s"], final=False)
            with self._lock:
                if it == 0:
                    self._refine["psnr_start"] = entry["psnr_source"]
                self._refine["psnr_best"] = tracker.best_psnr

        try:
            result = refine(scene, state.window, self._refine_config(), decoders=decoders, on_epoch=on_epoch,
                            cancel=self._refine_cancel, progress=False)
        except Exception as e:  # noqa: BLE001 - the G3R map stays
            with self._lock:
                self._counts["refinements_failed"] += 1
                self._refine["stop"] = "failed"
            LOG.error("refinement of map %d (window %s) failed: %s: %s; keeping the map as it was",
                      state.index, state.window.name, type(e).__name__, e)
            return
        finally:
            with self._windows_cv:
                self._refining = False
        stop = "shutdown" if self._stop.is_set() else ("preempted" if result.stop_reason == "cancelled"
                                                       else result.stop_reason)
        with self._lock:
            self._counts["refinements"] += 1
            self._counts["refinements_preempted"] += stop == "preempted"
            self._refine.update(seconds=result.total_s, psnr_start=result.start_psnr, psnr_best=result.best_psnr,
                                stop=stop)
        LOG.info("map %d (window %s) refined for %.1f s (%d iterations, stop: %s): source PSNR %.2f -> %.2f dB",
                 state.index, state.window.name, result.total_s, result.iterations, stop, result.start_psnr,
                 result.best_psnr)
        self._publish_refined(state, result.scene, result.best_psnr, result.total_s, final=True)

    def _publish_refined(self, state: MapState, scene, psnr_best: float, seconds: float, final: bool) -> None:
        """Publish ``scene`` (explicit) as the newest map of ``state``'s window. While the session
        closes, it only becomes the current map (saved on shutdown), without evaluation or publication."""
        current = self._map
        revision = (current.revision if current is not None and current.index == state.index else 0) + 1
        metrics = {**state.metrics, "refine_s": seconds, "refine_psnr_best": psnr_best, "refined": final,
                   "gaussians": scene.num_points}
        output = RefinedOutput(scene, metrics)
        if self._stop.is_set():
            with self._lock:
                self._map = dataclasses.replace(state, output=output, metrics=metrics, revision=revision,
                                                _surface=None)
            return
        metrics.update(self._evaluate(state.window, output))
        new = dataclasses.replace(state, output=output, metrics=metrics, revision=revision, _surface=None)
        LOG.info("map %d revision %d (%s, after %.1f s of refinement): source PSNR %.2f dB (refinement's), "
                 "held-out %.2f dB", state.index, revision, "final" if final else "best so far", seconds, psnr_best,
                 metrics.get("psnr_held_out", float("nan")))
        self._publish_state(new)
        with self._lock:
            self._counts["refine_publishes"] += 1

    def _deliver_view(self, state: MapState, camera, reply_stamp, render_t: float) -> None:
        """Render colour and depth of ``camera`` (PinholeCamera, world) with actors at ``render_t`` s
        → ``on_view``."""
        from .depth import render_rgbd
        from .metrics import to_uint8

        view = render_rgbd(state.surface_at(render_t), [camera], min_opacity=self.config.depth_min_opacity)[0]
        if self._on_view is not None:
            self._on_view(camera, np.asarray(to_uint8(view.rgb)), reply_stamp, view.depth)

    # ------------------------------------------------------------------ render thread
    def _render_loop(self) -> None:
        while not self._stop.is_set():
            try:
                request = self._render_requests.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                self.serve_view(request)
            except ValueError as e:
                self.count_skip("render_request", str(e))
            except Exception as e:  # noqa: BLE001 - e.g. a render error: one request fails, not the thread
                self.count_skip("render_request", f"{type(e).__name__}: {e}")

    def resolve(self, frame: str, T_frame_x: np.ndarray, stamp: float) -> np.ndarray:
        """``T_world_x`` of a pose ``T_frame_x`` (4,4) given in TF frame ``frame`` ('' = the world) at
        ``stamp`` s (<= 0: the latest transform). ``ValueError`` when TF cannot place it."""
        from .tf_tree import TransformError

        world = self.config.window.world_frame
        frame = frame.lstrip("/") or world
        if frame == world:
            return np.asarray(T_frame_x, dtype=np.float64)
        try:
            return self.tf.lookup(world, frame, stamp if stamp > 0 else None) @ T_frame_x
        except TransformError as e:
            raise ValueError(f"tf: {e}") from None

    def serve_view(self, request: ViewRequest) -> None:
        """Render one request now. ``ValueError`` when it cannot be served (no map yet, unknown
        frame or missing TF, bad pose)."""
        from .geometry import PinholeCamera

        state = self._map
        if state is None:
            raise ValueError("no map yet")
        t = request.stamp
        vc = state.view_camera
        camera = PinholeCamera(vc.K, vc.width, vc.height, self.resolve(request.frame, request.T_frame_cam, t))
        self._deliver_view(state, camera, request.reply_stamp, t if t > 0 else state.stamp)
        with self._lock:
            self._counts["render_requests_served"] += 1

    # ------------------------------------------------------------------ maps on disk
    def save_map(self, name: str | None = None) -> Path:
        """Write the current map as a graphdeco 3DGS PLY into the output directory (atomically,
        mode 0666 minus the umask); returns its absolute path."""
        from .export import write_ply

        state = self._map
        if state is None:
            raise ValueError("no map yet: nothing has been reconstructed")
        path = self.output_dir / (name or f"map_{state.index:04d}.ply")
        write_ply(path, state.output.params_at(state.stamp))
        self._last_saved = str(path)
        LOG.info("saved map %d revision %d (window %s) to %s", state.index, state.revision, state.window.name, path)
        return path

    # ------------------------------------------------------------------ status
    def status_values(self) -> dict[str, dict]:
        """``{group: {key: value}}``: what ``~/status`` publishes (docs/ROS.md lists the keys)."""
        cfg = self.config
        b = dict(self._builder_stats)
        with self._lock:
            skipped = dict(self._skipped_total)
            notes = dict(self._notes_total)
            counts = dict(self._counts)
            stage = self._stage
            refine = {"seconds": 0.0, "psnr_start": float("nan"), "psnr_best": float("nan"), "stop": "", **self._refine}
        for k, v in (b.get("skipped_by_reason") or {}).items():
            skipped[k] = skipped.get(k, 0) + v
        for k, v in b.items():
            if k not in _BUILDER_COUNTS and isinstance(v, int):
                notes[k] = notes.get(k, 0) + v
        if self._image_shed:
            notes["image_shed"] = self._image_shed
        if self._info_repeated:
            notes["camera_info_repeated"] = self._info_repeated
        every = cfg.window.lidar_every
        if every > 1 and self._lidar_seen:
            notes["lidar_decimated"] = self._lidar_seen - (self._lidar_seen + every - 1) // every
        lo, hi = self._window_span
        seconds = cfg.window.window_seconds
        fill = 0.0 if lo is None or not seconds else min(1.0, (hi - lo) / seconds)
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
        nan = float("nan")
        recon = {"busy": busy is not None, "busy_s": 0.0 if busy is None else time.monotonic() - busy,
                 "queued_windows": len(self._windows), "queue_limit": cfg.queue_limit,
                 "windows_dropped": counts.get("windows_dropped", 0),
                 "windows_skipped_by_policy": counts.get("windows_skipped_by_policy", 0),
                 "reconstructions": counts.get("reconstructions", 0),
                 "failed": counts.get("reconstructions_failed", 0),
                 "cancelled": counts.get("reconstructions_cancelled", 0),
                 "last_window": state.window.name if state else "",
                 "last_time_s": m.get("time_s", m.get("wall_s", nan)), "last_wall_s": m.get("wall_s", nan),
                 "psnr_source": m.get("psnr_source", nan), "psnr_held_out": m.get("psnr_held_out", nan),
                 "device": m.get("device", str(getattr(self.reconstructor, "device", ""))),
                 "torch_threads": torch_threads(), "gaussians": m.get("gaussians", 0),
                 "stage": stage, "map_revision": state.revision if state else 0,
                 "refine_s": refine["seconds"],
                 "refine_psnr_start": refine["psnr_start"], "refine_psnr_best": refine["psnr_best"],
                 "refine_stop": refine["stop"], "refinements": counts.get("refinements", 0),
                 "refinements_preempted": counts.get("refinements_preempted", 0),
                 "refinements_failed": counts.get("refinements_failed", 0),
                 "refine_publishes": counts.get("refine_publishes", 0)}
        outputs = {"offset_views_published": counts.get("offset_views_published", 0),
                   "render_requests_served": counts.get("render_requests_served", 0),
                   "last_saved_map": self._last_saved}
        return {"g3r_ros: input": inputs, "g3r_ros: window": window, "g3r_ros: reconstruction": recon,
                "g3r_ros: outputs": outputs}

    def _status_loop(self) -> None:
        while not self._stop.wait(self.config.status_period):
            self._emit_status()

    def _emit_status(self) -> None:
        """Hand the status to ``on_status`` (from the status thread, or the worker on a stage change)."""
        if self._on_status is None or self._stop.is_set():
            return
        try:
            with self._emit_lock:  # one at a time, so that statuses leave in the order they were taken
                self._on_status(self.status_values())
        except Exception as e:  # noqa: BLE001 - e.g. the transport is shutting down
            if not self._stop.is_set():
                self._throttle.warn("status", "cannot publish status: %s", e)

    # ------------------------------------------------------------------ shutdown
    def close(self, reason: str = "shutdown", timeout: float = 10.0) -> Path | None:
        """Stop the threads, cancelling a running reconstruction (logged with ``reason``), and save
        the last map when ``save_on_shutdown``; returns the saved path (None if nothing was saved)."""
        self._cancel_reason = reason
        self._stop.set()
        self._cancel.set()
        self._refine_cancel.set()
        with self._windows_cv:
            self._windows_cv.notify_all()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            if t.is_alive():
                t.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            LOG.warning("threads still running at shutdown: %s", alive)
        if self.config.save_on_shutdown and self._map is not None:
            try:
                return self.save_map(f"map_{self._map.index:04d}_shutdown.ply")
            except (ValueError, OSError) as e:
                LOG.error("could not save the map on shutdown: %s", e)
        return None


class _BestTracker:
    """The best refined state so far, and whether it is due for publication: it improved since the
    last publication and ``every_s`` seconds of refinement passed (``every_s`` 0: never due; the
    caller publishes the end result). Holds one scene: no history."""

    def __init__(self, every_s: float):
        self.every_s = float(every_s)
        self.best, self.best_psnr = None, -math.inf
        self._last_s, self._fresh = 0.0, False

    def offer(self, scene, entry: dict) -> bool:
        psnr = float(entry["psnr_source"])
        if math.isfinite(psnr) and psnr >= self.best_psnr:
            self.best, self.best_psnr = scene, psnr
            self._fresh = entry["iter"] > 0  # the start is G3R's map, already published
        due = self.every_s > 0 and self._fresh and entry["elapsed_s"] - self._last_s >= self.every_s
        if due:
            self._last_s, self._fresh = entry["elapsed_s"], False
        return due


def _msg_stamp(msg) -> float | None:
    """Header stamp (s) of a deserialized message, or None when it has none / a bad one."""
    try:
        return float(msg.header.stamp.sec) + float(msg.header.stamp.nanosec) * 1e-9
    except (AttributeError, TypeError, ValueError):
        return None


def preview_window(bag, config: StreamConfig) -> SceneWindow:
    """The first window a session with ``config`` builds from ``bag`` when the whole bag is one
    window (no window length): the same topics, shedding and builder settings as the node, fed
    straight from the bag without threads. Raises ``ValueError`` when it has no keyframe."""
    from .bag import iter_bag_messages
    from .window_builder import camera_info_topic

    win = config.window
    session = StreamingSession(dataclasses.replace(config, window=dataclasses.replace(
        win, window_seconds=None, window_meters=None)), reconstructor=None)
    topics = {"/tf", "/tf_static", *win.camera_topics, *(camera_info_topic(t) for t in win.camera_topics)}
    topics.update(t for t in (win.lidar_topic, win.tracks_topic) if t)
    from .bag import bag_topics

    present = [t for t in sorted(topics) if t in bag_topics(bag)]
    for m in iter_bag_messages(bag, present, deserialize=False):
        session.offer(m.topic, m.msgtype, m.rawdata, received=m.stamp)
        while not session._inbox.empty():
            session._ingest(*session._inbox.get_nowait()[:3])
    return session._builder.build(reset=False, flush_pending=True)

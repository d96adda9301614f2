"""Sensors that follow a pose stream: a camera rig (and a LiDAR) rendered at every pose (ROS-free).

:class:`SensorSimulator` is the engine behind ``reconstruct_node``'s ``~/sim/...`` topics and
``g3r bench sim``'s speed figures (both run :meth:`SensorSimulator.render_pose`):

- :meth:`~SensorSimulator.offer_pose`: a pose of the *base frame* (``T_frame_base`` in any TF
  frame, at a stamp) → for every rig camera the image, the depth (``g3r_ros.depth``) and the
  intrinsics, and with ``lidar`` a simulated scan of the rig's LiDAR, all stamped with the pose;
- :meth:`~SensorSimulator.request_lidar`: a pose of a LiDAR frame → one simulated scan.

Both go through bounded queues served by one worker thread: when rendering cannot keep up,
the *oldest* waiting pose is dropped and counted (``poses_dropped``), so the output never lags
by more than ``queue_size`` poses and nothing queues without bound. LiDAR requests are served
first (each is an explicit request), with their own bounded queue.

The rig (:class:`Rig`) is the recorded cameras by default (:func:`recorded_rig`: intrinsics
and ``T_base_cam`` of each camera's keyframes in the map's window, the LiDAR's mount from
TF), or a YAML file (:func:`load_rig`, ``config/sim_rig_synth.yaml``).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .geometry import PinholeCamera, invert_transform, pose_to_transform
from .lidar_sim import BeamModel, CastConfig, SimulatedScan, beam_model, simulate_lidar

LOG = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------
# The rig
# ---------------------------------------------------------------------------------------
@dataclass
class RigCamera:
    """One camera: ``name`` (topics ``~/sim/<name>/...``), ``frame_id`` of its optical frame, and
    ``mount``: its intrinsics and size, posed at ``T_base_cam`` (the optical frame in the base frame)."""

    name: str
    frame_id: str
    mount: PinholeCamera

    @property
    def K(self) -> np.ndarray:
        return self.mount.K

    @property
    def width(self) -> int:
        return self.mount.width

    @property
    def height(self) -> int:
        return self.mount.height

    @property
    def T_base_cam(self) -> np.ndarray:
        return self.mount.T_world_cam

    def camera(self, T_world_base: np.ndarray) -> PinholeCamera:
        return self.mount.with_pose(T_world_base @ self.mount.T_world_cam)


@dataclass
class RigLidar:
    """The rig's LiDAR: ``frame_id``, mount ``T_base_lidar`` (4,4) and beam pattern."""

    frame_id: str
    T_base_lidar: np.ndarray
    beams: BeamModel


@dataclass
class Rig:
    cameras: list[RigCamera]
    lidar: RigLidar | None = None

    def describe(self) -> dict:
        return {"cameras": [f"{c.name} {c.width}x{c.height} ({c.frame_id})" for c in self.cameras],
                "lidar": f"{self.lidar.beams.name} ({self.lidar.frame_id})" if self.lidar else ""}


def camera_name(image_topic: str) -> str:
    """The rig name of a recorded camera: its image topic's namespace without the leading slash
    (``/kitti/camera_color_left/image_raw`` → ``kitti/camera_color_left``; ``/image`` → ``camera``;
    a trailing ``/compressed`` of image_transport is ignored)."""
    parts = [p for p in image_topic.strip("/").split("/") if p]
    if len(parts) > 1 and parts[-1] == "compressed":
        parts = parts[:-1]
    return "/".join(parts[:-1]) or "camera"


def _pose7(values, where: str) -> np.ndarray:
    v = [float(x) for x in values]
    if len(v) != 7 or not np.isfinite(v).all():
        raise ValueError(f"{where}: expected [x, y, z, qw, qx, qy, qz], got {values!r}")
    if np.linalg.norm(v[3:]) < 1e-9:
        raise ValueError(f"{where}: the quaternion is zero")
    return pose_to_transform(v[:3], np.asarray(v[3:]) / np.linalg.norm(v[3:]))


def load_rig(path) -> Rig:
    """A rig YAML (``config/sim_rig_synth.yaml`` documents the format) → :class:`Rig`; ``ValueError``
    naming the entry on a bad value."""
    from .config import load_yaml

    data = load_yaml(path)
    unknown = sorted(set(data) - {"cameras", "lidar"})
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; expected cameras, lidar")
    cams = []
    for i, c in enumerate(data.get("cameras") or []):
        where = f"{path}: cameras[{i}]"
        try:
            fx, fy, cx, cy = (float(x) for x in c["intrinsics"])
            w, h = int(c["width"]), int(c["height"])
            if w <= 0 or h <= 0 or fx <= 0 or fy <= 0:
                raise ValueError(f"{where}: size and focal lengths must be positive")
            cam = RigCamera(str(c["name"]).strip("/"), str(c.get("frame_id") or c["name"]),
                            PinholeCamera(np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]]), w, h,
                                          _pose7(c["T_base_cam"], where + ".T_base_cam")))
        except (KeyError, TypeError) as e:
            raise ValueError(f"{where}: needs name, width, height, intrinsics [fx,fy,cx,cy] and "
                             f"T_base_cam [x,y,z,qw,qx,qy,qz] ({e})") from None
        if not cam.name:
            raise ValueError(f"{where}: the name must not be empty")
        cams.append(cam)
    if not cams:
        raise ValueError(f"{path}: a rig needs at least one camera")
    if len({c.name for c in cams}) != len(cams):
        raise ValueError(f"{path}: camera names must be unique")
    lidar = None
    if data.get("lidar"):
        L = data["lidar"]
        where = f"{path}: lidar"
        try:
            beams = beam_model(str(L.get("preset", "kitti64")), elevations_deg=L.get("elevations_deg", ()),
                               azimuth_step_deg=float(L.get("azimuth_step_deg", 0.2)),
                               max_range=float(L.get("max_range", 100.0)), min_range=float(L.get("min_range", 0.0)))
            lidar = RigLidar(str(L["frame_id"]), _pose7(L["T_base_lidar"], where + ".T_base_lidar"), beams)
        except (KeyError, TypeError) as e:
            raise ValueError(f"{where}: needs frame_id and T_base_lidar [x,y,z,qw,qx,qy,qz] ({e})") from None
    return Rig(cams, lidar)


def recorded_rig(keyframes, camera_topics: dict[str, str], T_world_base_at: Callable[[float], np.ndarray],
                 lidar: tuple[str, np.ndarray] | None = None, beams: BeamModel | None = None) -> Rig:
    """The recorded cameras as a rig: for each ``{image topic: optical frame id}`` the first
    keyframe of that frame gives K, size and ``T_base_cam = T_world_base(stamp)^-1 T_world_cam``.
    lidar: (frame_id, T_base_lidar) of the recorded LiDAR, simulated with ``beams``. Cameras
    without a keyframe are left out; ``ValueError`` when none is left."""
    cams = []
    for topic, frame in camera_topics.items():
        kf = next((k for k in keyframes if k.camera_name == frame), None)
        if kf is None:
            continue
        T_base_cam = invert_transform(T_world_base_at(kf.stamp)) @ kf.camera.T_world_cam
        cams.append(RigCamera(camera_name(topic), frame, kf.camera.with_pose(T_base_cam)))
    if not cams:
        raise ValueError("no recorded camera has a keyframe in the map's window")
    rl = RigLidar(lidar[0], np.asarray(lidar[1], dtype=np.float64), beams) if lidar and beams else None
    return Rig(cams, rl)


class StaticMap:
    """A fixed map (``GaussianParams``, world) as a reconstruction output: the same Gaussians at
    every stamp (a PLY, or a window without actors)."""

    def __init__(self, params, metrics: dict | None = None):
        self._params, self.metrics = params, dict(metrics or {})

    def params_at(self, stamp):
        return self._params


# ---------------------------------------------------------------------------------------
# Requests, outputs and the bounded queue
# ---------------------------------------------------------------------------------------
@dataclass
class PoseSample:
    """A pose of a frame (the base frame for the pose stream, a LiDAR frame for a LiDAR
    request): ``T_frame_x`` (4,4) in TF frame ``frame`` at ``stamp`` s (<= 0: latest TF).
    ``reply_stamp`` is handed back untouched with the outputs (the node copies the header stamp)."""

    frame: str
    T_frame_x: np.ndarray
    stamp: float
    reply_stamp: object = None


@dataclass
class CameraView:
    """One rig camera's output: rgb (H,W,3) uint8, depth (H,W) float32 metres (NaN = invalid)."""

    rig_camera: RigCamera
    camera: PinholeCamera
    rgb: np.ndarray
    depth: np.ndarray | None


@dataclass
class SimFrame:
    """Everything rendered for one pose."""

    reply_stamp: object
    T_world_base: np.ndarray
    views: list[CameraView]
    scan: SimulatedScan | None = None
    lidar_frame: str = ""
    render_s: float = 0.0


class DropOldestQueue:
    """A thread-safe FIFO of at most ``capacity`` items: ``put`` on a full queue drops (and
    counts) the oldest item. ``get`` waits up to ``timeout`` s (None when empty)."""

    def __init__(self, capacity: int):
        if int(capacity) < 1:
            raise ValueError(f"queue capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self._items: collections.deque = collections.deque()
        self._cv = threading.Condition()
        self.dropped = 0
        self.received = 0
        self.high_water = 0

    def put(self, item) -> bool:
        """Queue ``item``; False when an older item had to be dropped for it."""
        with self._cv:
            self.received += 1
            dropped = len(self._items) >= self.capacity
            if dropped:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self.high_water = max(self.high_water, len(self._items))
            self._cv.notify()
        return not dropped

    def get_nowait(self):
        with self._cv:
            return self._items.popleft() if self._items else None

    def wait(self, timeout: float) -> None:
        with self._cv:
            if not self._items:
                self._cv.wait(timeout)

    def __len__(self) -> int:
        with self._cv:
            return len(self._items)


@dataclass
class SimConfig:
    """queue_size: poses waiting (the oldest is dropped beyond it). min_opacity: depth pixels
    and LiDAR returns need this accumulated opacity. depth: render depth images. lidar: the
    pose stream also simulates the rig's LiDAR. cast: how LiDAR rays are cast."""

    queue_size: int = 2
    lidar_queue_size: int = 4
    min_opacity: float = 0.5
    depth: bool = True
    lidar: bool = False
    cast: CastConfig = field(default_factory=CastConfig)

    def validate(self) -> None:
        if self.queue_size < 1 or self.lidar_queue_size < 1:
            raise ValueError("queue sizes must be >= 1")
        if not 0.0 < self.min_opacity <= 1.0:
            raise ValueError(f"min_opacity must be in (0, 1], got {self.min_opacity}")
        self.cast.validate()


# ---------------------------------------------------------------------------------------
# The simulator
# ---------------------------------------------------------------------------------------
class SensorSimulator:
    """Render rig cameras and LiDAR scans from the current map (module doc).

    current_map() → the current ``streaming.MapState`` or None; resolve(frame, T_frame_x, stamp)
    → T_world_x (4,4), ``ValueError`` when TF cannot place it; rig_for(map_state) → Rig
    (``ValueError`` when it cannot be built yet). Callbacks (on the worker thread):
    ``on_frame(SimFrame)``, ``on_lidar(SimulatedScan, reply_stamp)``.
    """

    def __init__(self, config: SimConfig, *, current_map: Callable, resolve: Callable, rig_for: Callable,
                 lidar_beams: BeamModel | None = None, on_frame=None, on_lidar=None):
        config.validate()
        self.config = config
        self._current_map, self._resolve, self._rig_for = current_map, resolve, rig_for
        self.lidar_beams = lidar_beams
        self._on_frame, self._on_lidar = on_frame, on_lidar
        self.poses = DropOldestQueue(config.queue_size)
        self.lidar_requests = DropOldestQueue(config.lidar_queue_size)
        self._lock = threading.Lock()
        self._counts: collections.Counter = collections.Counter()
        self._render_s: collections.deque = collections.deque(maxlen=200)
        self._done_at: collections.deque = collections.deque(maxlen=50)
        self._last_error = ""
        self._rig_cache: tuple[int, Rig] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="g3r-sim", daemon=True)

    def start(self) -> SensorSimulator:
        self._thread.start()
        return self

    def reconfigure(self, config: SimConfig) -> None:
        """Apply ``depth``, ``lidar``, ``min_opacity`` and ``cast`` from the next pose (queue sizes stay)."""
        config.validate()
        for name in ("depth", "lidar", "min_opacity", "cast"):
            setattr(self.config, name, getattr(config, name))

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # ------------------------------------------------------------------ input (never blocks)
    def offer_pose(self, sample: PoseSample) -> None:
        """Queue a base-frame pose (the oldest waiting pose is dropped when the queue is full)."""
        if not self.poses.put(sample):
            LOG.debug("pose queue full: dropped the oldest pose")

    def request_lidar(self, sample: PoseSample) -> None:
        """Queue a LiDAR-frame pose for one scan (the oldest request is dropped when full)."""
        self.lidar_requests.put(sample)

    # ------------------------------------------------------------------ work
    def rig(self, state) -> Rig:
        """The rig for ``state`` (cached per map)."""
        cached = self._rig_cache
        if cached is not None and cached[0] == state.index:
            return cached[1]
        rig = self._rig_for(state)
        self._rig_cache = (state.index, rig)
        LOG.info("sensor rig for map %d: %s", state.index, rig.describe())
        return rig

    def _map_at(self, state, stamp: float):
        return state.surface_at(stamp if stamp > 0 else state.stamp)

    def render_pose(self, state, sample: PoseSample) -> SimFrame:
        """Render every rig camera (and the LiDAR when configured) at a base-frame pose. ``ValueError``
        when TF cannot place the pose or the rig cannot be built."""
        from .depth import render_rgbd
        from .metrics import to_uint8

        t0 = time.perf_counter()
        cfg = self.config
        T_world_base = self._resolve(sample.frame, sample.T_frame_x, sample.stamp)
        rig = self.rig(state)
        smap = self._map_at(state, sample.stamp)
        cams = [rc.camera(T_world_base) for rc in rig.cameras]
        views = [CameraView(rc, cam, np.asarray(to_uint8(v.rgb)), v.depth) for rc, cam, v in
                 zip(rig.cameras, cams, render_rgbd(smap, cams, min_opacity=cfg.min_opacity, depth=cfg.depth))]
        scan, frame = None, ""
        if cfg.lidar and rig.lidar is not None:
            scan = simulate_lidar(smap, T_world_base @ rig.lidar.T_base_lidar, rig.lidar.beams, config=cfg.cast)
            frame = rig.lidar.frame_id
        return SimFrame(sample.reply_stamp, T_world_base, views, scan, frame, time.perf_counter() - t0)

    def scan_at(self, state, sample: PoseSample) -> SimulatedScan:
        """One scan of ``lidar_beams`` from a LiDAR-frame pose (``ValueError`` when TF cannot place it)."""
        if self.lidar_beams is None:
            raise ValueError("no LiDAR beam model configured")
        T_world_lidar = self._resolve(sample.frame, sample.T_frame_x, sample.stamp)
        return simulate_lidar(self._map_at(state, sample.stamp), T_world_lidar, self.lidar_beams,
                              config=self.config.cast)

    def _loop(self) -> None:
        while not self._stop.is_set():
            lidar = self.lidar_requests.get_nowait()
            pose = None if lidar is not None else self.poses.get_nowait()
            if lidar is None and pose is None:
                self.poses.wait(0.05)
                continue
            state = self._current_map()
            kind = "lidar_requests" if lidar is not None else "poses"
            if state is None:
                self._fail(kind, "no map yet")
                continue
            try:
                if lidar is not None:
                    scan = self.scan_at(state, lidar)
                    if self._on_lidar is not None:
                        self._on_lidar(scan, lidar.reply_stamp)
                else:
                    frame = self.render_pose(state, pose)
                    with self._lock:
                        self._render_s.append(frame.render_s)
                        self._done_at.append(time.monotonic())
                    if self._on_frame is not None:
                        self._on_frame(frame)
            except ValueError as e:
                self._fail(kind, str(e))
                continue
            except Exception as e:  # noqa: BLE001 - one bad pose must not stop the thread
                self._fail(kind, f"{type(e).__name__}: {e}")
                continue
            with self._lock:
                self._counts[f"{kind}_served"] += 1

    def _fail(self, kind: str, reason: str) -> None:
        with self._lock:
            self._counts[f"{kind}_failed"] += 1
            self._last_error = f"{kind}: {reason}"
        LOG.debug("simulation %s failed: %s", kind, reason)

    # ------------------------------------------------------------------ status
    def status_values(self) -> dict:
        """The ``g3r_ros: sim`` status group (docs/ROS.md lists the keys)."""
        from .streaming import percentile_ms

        with self._lock:
            counts, render_s, done = dict(self._counts), list(self._render_s), list(self._done_at)
            last_error = self._last_error
        rate = (len(done) - 1) / (done[-1] - done[0]) if len(done) >= 2 and done[-1] > done[0] else 0.0
        rig = self._rig_cache[1].describe() if self._rig_cache else {"cameras": [], "lidar": ""}
        return {"poses_received": self.poses.received, "poses_rendered": counts.get("poses_served", 0),
                "poses_dropped": self.poses.dropped, "poses_failed": counts.get("poses_failed", 0),
                "pose_queue": len(self.poses), "pose_queue_capacity": self.poses.capacity,
                "pose_queue_high_water": self.poses.high_water,
                "lidar_requests_served": counts.get("lidar_requests_served", 0),
                "lidar_requests_dropped": self.lidar_requests.dropped,
                "lidar_requests_failed": counts.get("lidar_requests_failed", 0),
                "render_ms_p50": percentile_ms(render_s, 50), "render_ms_p95": percentile_ms(render_s, 95),
                "rate_hz": rate, "rig_cameras": ", ".join(rig["cameras"]), "rig_lidar": rig["lidar"],
                "lidar_beams": self.lidar_beams.name if self.lidar_beams else "", "last_error": last_error}


class SessionRig:
    """``sim.rig`` of a streaming session, called with a ``MapState``: the rig file when one is
    given, else :func:`recorded_rig` of the session's cameras (topic → frame id as received) and
    LiDAR (its frame's mount in ``base_frame`` from TF), simulated with ``beams``."""

    def __init__(self, session, rig: str, base_frame: str, beams: BeamModel):
        path = rig_path(rig)
        self.fixed = load_rig(path) if path is not None else None
        self.session, self.base_frame, self.beams = session, base_frame, beams

    def camera_names(self, camera_topics: list[str]) -> list[str]:
        """The rig's camera names (topics ``~/sim/<name>/...``), known before any map."""
        if self.fixed is not None:
            return [c.name for c in self.fixed.cameras]
        return [camera_name(t) for t in camera_topics]

    def _lookup(self, target: str, source: str, stamp: float | None) -> np.ndarray:
        from .tf_tree import TransformError

        try:
            return self.session.tf.lookup(target, source, stamp)
        except TransformError as e:
            raise ValueError(f"recorded rig: tf: {e}") from None

    def __call__(self, state) -> Rig:
        if self.fixed is not None:
            return self.fixed
        world = self.session.config.window.world_frame
        lidar = None
        frame = self.session.lidar_frame
        if frame:
            try:
                lidar = (frame, self._lookup(self.base_frame, frame, state.stamp))
            except ValueError as e:
                LOG.warning("the recorded rig has no LiDAR: %s", e)
        return recorded_rig(state.window.keyframes, self.session.camera_frames,
                            lambda t: self._lookup(world, self.base_frame, t), lidar, self.beams)


def rig_for_session(session, rig: str, base_frame: str, beams: BeamModel) -> SessionRig:
    """The ``rig_for`` of a :class:`SensorSimulator` serving a streaming session (``ValueError``
    for a bad rig file)."""
    return SessionRig(session, rig, base_frame, beams)


def rig_path(value: str) -> Path | None:
    """``sim.rig`` → a rig file path, or None for the recorded rig (``''`` or ``recorded``)."""
    if value in ("", "recorded"):
        return None
    p = Path(value).expanduser()
    if not p.is_file():
        raise ValueError(f"parameter 'sim.rig': rig file not found: {p}")
    return p

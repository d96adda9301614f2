"""Scene windows from a time-ordered message stream (a rosbag2 or the ROS node's callbacks).

:class:`WindowBuilder` receives messages one at a time (``add_message(topic, msg)``) and
accumulates a :class:`~g3r_ros.window.SceneWindow`:

- **Keyframes.** Each image is posed through the TF tree *at its own header stamp*
  (``T_world_cam = lookup(world_frame, image.frame_id, stamp)``, interpolated), so no
  image ↔ LiDAR synchronization is needed: every sensor is placed at its own time. The
  intrinsics come from the newest CameraInfo of that camera (image_transport naming:
  ``.../image_raw`` → ``.../camera_info``; ``.../image_raw/compressed`` → the same info).
  An image becomes a keyframe when it is its camera's first, or the camera moved at least
  ``keyframe_meters`` or ``keyframe_seconds`` passed since that camera's last keyframe
  (either criterion; with both 0 every image is a keyframe). Distorted images are undistorted
  on ingest; images are resized by ``image_scale``. Every ``held_out_every``-th keyframe of a
  camera (the k-th, 2k-th, ...) is a held-out target view.
- **LiDAR.** Every ``lidar_every``-th scan is range-filtered in the sensor frame
  (``min_range``..``max_range``), transformed into the world at its stamp and
  voxel-downsampled (``voxel_size``, centroid per voxel). At :meth:`build`, points inside an
  actor box (CUBE markers on ``tracks_topic``, interpolated to the scan stamp) move to that
  actor's cloud in box-local coordinates; the rest is the background, voxel-downsampled again
  and capped at ``max_points``. ``ego_positions`` are the LiDAR origins in the world.
- **Robustness.** Messages whose transform is not available yet wait in a bounded queue
  (``pending_per_topic`` per topic) and are retried as TF arrives; they fail for good once the
  TF stream is ``tf_wait_s`` past their stamp (or at :meth:`build`). Every message that could
  not be used is a :class:`~g3r_ros.window.SkipRecord` with a reason ``"<key>: <detail>"``,
  key one of ``deserialize``, ``decode``, ``camera_info``, ``tf``, ``queue``. Nothing raises on
  bad data. Images that are simply not keyframes and decimated scans are counted in
  :meth:`stats`, not recorded as skipped.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .geometry import PinholeCamera, invert_transform, transform_points
from .knn import voxel_downsample
from .messages import (
    MessageDecodeError,
    decode_camera_info,
    decode_compressed_image,
    decode_image,
    decode_marker_array,
    decode_tf_message,
    header_stamp,
    pointcloud_xyz,
)
from .tf_tree import TransformError, TransformTree
from .undistort import undistort_image
from .window import ActorTrack, Keyframe, SceneWindow, SkipRecord

log = logging.getLogger(__name__)

TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"


# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------
@dataclass
class WindowConfig:
    """How to cut a message stream into scene windows (mirrored by ``config/window_*.yaml``).

    Empty ``camera_topics`` / ``None`` ``lidar_topic`` are auto-detected by
    :func:`window_from_bag`. Lengths in metres, times in seconds.
    """

    camera_topics: list[str] = field(default_factory=list)
    lidar_topic: str | None = None
    tracks_topic: str | None = None
    world_frame: str = "map"
    window_seconds: float | None = None
    window_meters: float | None = None
    keyframe_meters: float = 0.0
    keyframe_seconds: float = 0.0
    held_out_every: int = 0
    voxel_size: float = 0.1
    min_range: float = 3.0
    max_range: float = 80.0
    max_points: int = 300_000
    image_scale: float = 1.0
    track_slop_s: float = 0.05
    pending_per_topic: int = 10
    tf_horizon_s: float = 60.0
    tf_wait_s: float = 0.5
    lidar_every: int = 1
    max_lidar_scans: int | None = None
    actor_margin: float = 0.05
    seed: int = 0

    def validate(self) -> None:
        def positive(name, allow_zero=False, allow_none=False):
            v = getattr(self, name)
            if v is None and allow_none:
                return
            if v is None or isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or v < 0 or (v == 0 and not allow_zero):
                raise ValueError(f"WindowConfig.{name} must be {'>= 0' if allow_zero else '> 0'}, got {v!r}")

        for name in ("window_seconds", "window_meters"):  # None or 0: no limit
            positive(name, allow_zero=True, allow_none=True)
        for name in ("keyframe_meters", "keyframe_seconds", "min_range", "track_slop_s", "tf_wait_s", "actor_margin"):
            positive(name, allow_zero=True)
        for name in ("voxel_size", "max_range", "image_scale", "tf_horizon_s"):
            positive(name)
        if self.max_range <= self.min_range:
            raise ValueError(f"WindowConfig.max_range ({self.max_range}) must exceed min_range ({self.min_range})")
        if self.image_scale > 1.0:
            raise ValueError(f"WindowConfig.image_scale must be in (0, 1], got {self.image_scale}")
        for name in ("max_points", "pending_per_topic", "lidar_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"WindowConfig.{name} must be an integer >= 1, got {v!r}")
        if self.max_lidar_scans is not None and (not isinstance(self.max_lidar_scans, int)
                                                 or self.max_lidar_scans < 1):
            raise ValueError(f"WindowConfig.max_lidar_scans must be None or an integer >= 1, "
                             f"got {self.max_lidar_scans!r}")
        if not isinstance(self.held_out_every, int) or self.held_out_every < 0 or self.held_out_every == 1:
            raise ValueError(f"WindowConfig.held_out_every must be 0 (none) or an integer >= 2 "
                             f"(1 would hold out every view), got {self.held_out_every!r}")
        if not isinstance(self.camera_topics, (list, tuple)) or not all(isinstance(t, str) and t
                                                                       for t in self.camera_topics):
            raise ValueError(f"WindowConfig.camera_topics must be a list of topic names, got {self.camera_topics!r}")
        if len(set(self.camera_topics)) != len(self.camera_topics):
            raise ValueError(f"WindowConfig.camera_topics has duplicates: {self.camera_topics}")
        if not self.world_frame or not isinstance(self.world_frame, str):
            raise ValueError("WindowConfig.world_frame must be a non-empty frame id")


def camera_info_topic(image_topic: str) -> str:
    """image_transport convention: ``/ns/image_raw[/compressed]`` → ``/ns/camera_info``."""
    base = image_topic.removesuffix("/compressed")
    head, _, _ = base.rpartition("/")
    return f"{head}/camera_info"


def window_name(prefix: str, index: int, start: float | None) -> str:
    """Name of the ``index``-th window (from 0) of a stream starting at ``start`` (s, the first
    keyframe's stamp): ``[prefix_]w<index>_t<start>``, e.g. ``w002_t1000.25``. Unique within a
    stream and safe in file names."""
    head = f"{prefix}_" if prefix else ""
    return f"{head}w{index:03d}" + ("" if start is None else f"_t{start:.2f}")


# ---------------------------------------------------------------------------------------
# Pure point-cloud helpers
# ---------------------------------------------------------------------------------------


def range_filter(points: np.ndarray, min_range: float, max_range: float) -> np.ndarray:
    """Keep (N,3) sensor-frame points with ``min_range <= |p| <= max_range``."""
    r2 = np.einsum("ij,ij->i", points, points)
    return points[(r2 >= min_range * min_range) & (r2 <= max_range * max_range)]


def _voxel_centroids(points: np.ndarray, voxel_size: float) -> np.ndarray:
    """(N,3) points → (M,3) float32 voxel centroids (``g3r_ros.knn.voxel_downsample``)."""
    return voxel_downsample(points, voxel_size)[0].astype(np.float32)


def points_in_box(points_world: np.ndarray, T_world_box: np.ndarray, size: np.ndarray,
                  margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Which (N,3) world points lie inside a box (full ``size`` (3,), pose ``T_world_box``).

    Returns (mask (N,) bool, the points in box-local coordinates (N,3) float32).
    """
    local = transform_points(invert_transform(T_world_box), np.asarray(points_world, dtype=np.float64))
    half = np.asarray(size, dtype=np.float64) / 2.0 + margin
    mask = (np.abs(local) <= half).all(axis=1)
    return mask, local.astype(np.float32)


def resize_image(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H,W,3) uint8 → (height,width,3) uint8 by area averaging (Pillow BOX filter)."""
    if rgb.shape[1] == width and rgb.shape[0] == height:
        return rgb
    from PIL import Image as PILImage

    return np.asarray(PILImage.fromarray(rgb).resize((width, height), PILImage.BOX))


# ---------------------------------------------------------------------------------------
# Builder
# ---------------------------------------------------------------------------------------
@dataclass
class _Pending:
    """A message waiting for its transform (or camera info)."""

    kind: str  # "image" | "lidar" | "markers"
    topic: str
    stamp: float
    frame_id: str
    msg: object
    last_error: str = ""


@dataclass
class _Scan:
    stamp: float
    points: np.ndarray  # (N,3) float32 world, voxel-downsampled
    origin: np.ndarray  # (3,) world


@dataclass
class _CameraState:
    last_key_stamp: float | None = None
    last_key_center: np.ndarray | None = None


class WindowBuilder:
    """Incremental scene-window builder (see the module docstring for the rules).

    Use :meth:`add_message` for every message (rosbags or rclpy objects), :meth:`ready` to
    know when the window is long enough and :meth:`build` to get it. Not thread-safe: call it
    from one thread (e.g. a single-threaded executor or behind a lock).
    """

    def __init__(self, config: WindowConfig | None = None, name: str = ""):
        self.config = config or WindowConfig()
        self.config.validate()
        self.name = name  # prefix of the window names (e.g. the bag's name), see window_name
        self._window_index = 0
        self.restart()

    def restart(self) -> None:
        """Forget the stream's motion (dynamic TF, actor observations, the current window and what
        waits for TF) but keep what does not depend on time (static transforms, camera calibrations)
        and the window count: after a time jump (a looped bag), the next window gets the next
        index, so names stay unique."""
        old = getattr(self, "tf", None)
        self.tf = old.static_only() if old is not None else TransformTree(horizon_s=self.config.tf_horizon_s)
        if old is None:
            self._info: dict[str, object] = {}  # camera topic → CameraInfoData
            self._info_topics = {camera_info_topic(t) for t in self.config.camera_topics}
        self._actor_obs: dict[int, dict[float, tuple[np.ndarray, np.ndarray]]] = defaultdict(dict)
        self._tf_latest = -math.inf
        self._pending: list[_Pending] = []
        self._reset()

    # ------------------------------------------------------------------ state
    def _reset(self) -> None:
        self._keyframes: list[tuple[str, Keyframe]] = []  # (image topic, keyframe)
        self._scans: list[_Scan] = []
        self._travelled = 0.0  # ego path length (m) over the scans / keyframes so far, in arrival order
        self._last_ego: np.ndarray | None = None
        self._skipped: list[SkipRecord] = []
        self._cameras: dict[str, _CameraState] = defaultdict(_CameraState)
        self._scan_counter = 0
        self._counts: dict[str, int] = defaultdict(int)
        self._notes: dict[str, int] = defaultdict(int)

    def _skip(self, topic: str, stamp: float, reason: str) -> None:
        self._skipped.append(SkipRecord(topic=topic, stamp=float(stamp), reason=reason))
        log.debug("skip %s @ %.6f: %s", topic, stamp, reason)

    # ------------------------------------------------------------------ input
    def add_message(self, topic: str, msg, stamp: float | None = None) -> None:
        """Feed one message. ``stamp`` (s) is the receive/log time, used when a message carries
        none it can be read from; geometry always uses the header stamps. Never raises on bad data."""
        self._counts[topic] += 1
        fallback = float(stamp) if stamp is not None else math.nan
        if msg is None:
            self._skip(topic, fallback, "deserialize: message could not be deserialized")
            return
        try:
            self._dispatch(topic, msg, fallback)
        except MessageDecodeError as e:
            self._skip(topic, _safe_stamp(msg, fallback), f"decode: {e}")
        except Exception as e:
            log.exception("unexpected error on %s", topic)
            self._skip(topic, _safe_stamp(msg, fallback), f"error: {type(e).__name__}: {e}")

    def _dispatch(self, topic: str, msg, fallback: float) -> None:
        if topic in (TF_TOPIC, TF_STATIC_TOPIC):
            self._on_tf(topic, msg, fallback)
        elif topic in self._info_topics:
            self._on_camera_info(topic, msg)
        elif topic in self.config.camera_topics:
            self._enqueue(_Pending("image", topic, header_stamp(msg), _frame(msg), msg))
        elif topic == self.config.lidar_topic:
            self._scan_counter += 1
            if (self._scan_counter - 1) % self.config.lidar_every:
                self._notes["lidar_decimated"] += 1
                return
            self._enqueue(_Pending("lidar", topic, header_stamp(msg), _frame(msg), msg))
        elif topic == self.config.tracks_topic:
            self._on_markers(topic, msg, fallback)
        else:
            self._notes["ignored_topic"] += 1

    def _on_tf(self, topic: str, msg, fallback: float) -> None:
        static = topic == TF_STATIC_TOPIC
        records = decode_tf_message(msg)
        for r in records:
            try:
                self.tf.add(r, static=static)
            except ValueError as e:
                self._skip(topic, r.stamp, f"tf: {e}")
                continue
            if not static:
                self._tf_latest = max(self._tf_latest, r.stamp)
        self._process_pending(final=False)

    def _on_camera_info(self, topic: str, msg) -> None:
        info = decode_camera_info(msg)
        # every image topic sharing this info topic (raw + compressed) gets it
        for cam_topic in self.config.camera_topics:
            if camera_info_topic(cam_topic) == topic:
                self._info[cam_topic] = info
        self._process_pending(final=False)

    def _on_markers(self, topic: str, msg, fallback: float) -> None:
        for obs in decode_marker_array(msg):
            if obs.action != 0:
                continue
            if not (np.asarray(obs.size) > 0).all():
                self._skip(topic, obs.stamp, f"decode: actor {obs.actor_id} has a degenerate box {obs.size}")
                continue
            self._enqueue(_Pending("markers", topic, obs.stamp, obs.frame_id, obs))

    def _enqueue(self, item: _Pending) -> None:
        if not item.frame_id and item.kind != "markers":
            self._skip(item.topic, item.stamp, "tf: message has an empty header.frame_id")
            return
        if self._try(item):
            return
        self._pending.append(item)
        same = [p for p in self._pending if p.topic == item.topic]
        limit = self.config.pending_per_topic * (64 if item.kind == "markers" else 1)
        if len(same) > limit:
            oldest = min(same, key=lambda p: p.stamp)
            self._pending.remove(oldest)
            self._skip(oldest.topic, oldest.stamp, f"queue: dropped while waiting ({oldest.last_error})")

    def _process_pending(self, final: bool) -> None:
        if not self._pending:
            return
        keep = []
        for item in sorted(self._pending, key=lambda p: p.stamp):
            if self._try(item):
                continue
            if final or self._tf_latest > item.stamp + self.config.tf_wait_s:
                self._skip(item.topic, item.stamp, item.last_error)
            else:
                keep.append(item)
        self._pending = keep

    # ------------------------------------------------------------------ processing
    def _try(self, item: _Pending) -> bool:
        """Process ``item``; True when done (used or skipped), False to keep waiting."""
        try:
            T_world_frame = self.tf.lookup(self.config.world_frame, item.frame_id, item.stamp)
        except TransformError as e:
            item.last_error = f"tf: {e}"
            return False
        try:
            if item.kind == "image":
                return self._use_image(item, T_world_frame)
            if item.kind == "lidar":
                self._use_scan(item, T_world_frame)
            else:
                obs = item.msg
                self._actor_obs[obs.actor_id][item.stamp] = (T_world_frame @ obs.T_frame_box,
                                                             np.asarray(obs.size, np.float64))
        except MessageDecodeError as e:
            self._skip(item.topic, item.stamp, f"decode: {e}")
        return True

    def _use_image(self, item: _Pending, T_world_cam: np.ndarray) -> bool:
        cfg = self.config
        info = self._info.get(item.topic)
        if info is None:
            item.last_error = f"camera_info: none received on {camera_info_topic(item.topic)}"
            return False
        state = self._cameras[item.topic]
        center = T_world_cam[:3, 3]
        if state.last_key_stamp is not None:
            if item.stamp <= state.last_key_stamp:
                self._notes["image_out_of_order"] += 1
                return True
            moved = float(np.linalg.norm(center - state.last_key_center))
            waited = item.stamp - state.last_key_stamp
            by_motion = cfg.keyframe_meters > 0 and moved >= cfg.keyframe_meters
            by_time = cfg.keyframe_seconds > 0 and waited >= cfg.keyframe_seconds
            every = cfg.keyframe_meters == 0 and cfg.keyframe_seconds == 0
            if not (by_motion or by_time or every):
                self._notes["image_not_keyframe"] += 1
                return True
        compressed = hasattr(item.msg, "format") and not hasattr(item.msg, "encoding")
        rgb = decode_compressed_image(item.msg) if compressed else decode_image(item.msg)
        if rgb.shape[:2] != (info.height, info.width):
            self._skip(item.topic, item.stamp, f"camera_info: image is {rgb.shape[1]}x{rgb.shape[0]} but "
                                               f"camera_info says {info.width}x{info.height}")
            return True
        rgb, K = undistort_image(rgb, info) if info.is_distorted else (rgb, info.K)
        camera = PinholeCamera(K, info.width, info.height, T_world_cam)
        if cfg.image_scale != 1.0:
            camera = camera.scaled(cfg.image_scale)
            rgb = resize_image(rgb, camera.width, camera.height)
        name = item.frame_id or item.topic
        self._keyframes.append((item.topic, Keyframe(image=np.ascontiguousarray(rgb), camera=camera,
                                                     stamp=item.stamp, camera_name=name)))
        state.last_key_stamp, state.last_key_center = item.stamp, center.copy()
        if not cfg.lidar_topic and item.topic == cfg.camera_topics[0]:
            self._advance_ego(center)  # no LiDAR: the first camera stands in for the ego
        return True

    def _use_scan(self, item: _Pending, T_world_lidar: np.ndarray) -> None:
        cfg = self.config
        pts = pointcloud_xyz(item.msg)
        if len(pts) == 0:
            n = int(getattr(item.msg, "width", 0)) * int(getattr(item.msg, "height", 0))
            what = f"all {n} points non-finite" if n else "empty scan"
            self._skip(item.topic, item.stamp, f"lidar: {what}")
            return
        pts = range_filter(pts, cfg.min_range, cfg.max_range)
        world = transform_points(T_world_lidar, np.asarray(pts, dtype=np.float64))
        world = _voxel_centroids(world, cfg.voxel_size)
        self._scans.append(_Scan(item.stamp, world, T_world_lidar[:3, 3].copy()))
        self._advance_ego(T_world_lidar[:3, 3])

    def _advance_ego(self, position: np.ndarray) -> None:
        if self._last_ego is not None:
            self._travelled += float(np.linalg.norm(position - self._last_ego))
        self._last_ego = position.copy()

    # ------------------------------------------------------------------ output
    def _ego_positions(self) -> np.ndarray:
        if self._scans:
            order = np.argsort([s.stamp for s in self._scans], kind="stable")
            return np.stack([self._scans[i].origin for i in order])
        if self._keyframes:
            kfs = sorted((k for _, k in self._keyframes), key=lambda k: k.stamp)
            return np.stack([k.camera.center for k in kfs])
        return np.zeros((0, 3))

    def ready(self) -> bool:
        """True when the window reached ``window_seconds`` or ``window_meters`` (None/0: no limit)."""
        cfg = self.config
        if not self._keyframes or not (cfg.window_seconds or cfg.window_meters):
            return False
        if cfg.window_seconds:
            stamps = [k.stamp for _, k in self._keyframes]
            if max(stamps) - min(stamps) >= cfg.window_seconds:
                return True
        return bool(cfg.window_meters and self._travelled >= cfg.window_meters)

    def _selected_scans(self) -> list[_Scan]:
        scans = sorted(self._scans, key=lambda s: s.stamp)
        m = self.config.max_lidar_scans
        if m is not None and len(scans) > m:
            idx = np.unique(np.round(np.linspace(0, len(scans) - 1, m)).astype(int))
            scans = [scans[i] for i in idx]
        return scans

    def _actor_tracks(self, t0: float, t1: float) -> list[ActorTrack]:
        """Tracks with observations within [t0 - slop, t1 + slop] (plus one neighbour each side)."""
        slop = self.config.track_slop_s
        tracks = []
        for actor_id in sorted(self._actor_obs):
            obs = self._actor_obs[actor_id]
            stamps = np.array(sorted(obs))
            inside = np.nonzero((stamps >= t0 - slop) & (stamps <= t1 + slop))[0]
            if len(inside) == 0:
                continue
            lo, hi = max(inside[0] - 1, 0), min(inside[-1] + 1, len(stamps) - 1)
            sel = stamps[lo:hi + 1]
            poses = np.stack([obs[s][0] for s in sel])
            size = np.median(np.stack([obs[s][1] for s in sel]), axis=0)
            tracks.append(ActorTrack(actor_id=int(actor_id), size=size, stamps=sel, poses=poses))
        return tracks

    def _separate_actors(self, scans: list[_Scan], tracks: list[ActorTrack]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Split the scans' world points into background and per-actor box-local clouds."""
        slop, margin = self.config.track_slop_s, self.config.actor_margin
        background, local = [], [[] for _ in tracks]
        for scan in scans:
            pts = scan.points
            keep = np.ones(len(pts), bool)
            for j, tr in enumerate(tracks):
                if not (tr.stamps[0] - slop <= scan.stamp <= tr.stamps[-1] + slop) or not len(pts):
                    continue
                mask, loc = points_in_box(pts, tr.pose_at(scan.stamp), tr.size, margin)
                mask &= keep
                if mask.any():
                    local[j].append(loc[mask])
                    keep &= ~mask
            background.append(pts[keep])
        bg = np.concatenate(background) if background else np.zeros((0, 3), np.float32)
        actor_pts = [np.concatenate(lst) if lst else np.zeros((0, 3), np.float32) for lst in local]
        return bg, actor_pts

    def _cap(self, points: np.ndarray, n: int) -> np.ndarray:
        if len(points) <= n:
            return points
        rng = np.random.default_rng(self.config.seed)
        return points[np.sort(rng.choice(len(points), n, replace=False))]

    def build(self, reset: bool = True, flush_pending: bool = True) -> SceneWindow:
        """The accumulated :class:`SceneWindow`. Raises ``ValueError`` if there is no keyframe.

        ``flush_pending``: messages still waiting for TF or camera info are recorded as skipped
        (at the end of a stream); otherwise they stay queued for the next window. ``reset``
        starts a new window (TF, camera infos and actor observations are kept)."""
        if flush_pending:
            self._process_pending(final=True)
        cfg = self.config
        if not self._keyframes:
            reasons = sorted({s.reason.split(":")[0] for s in self._skipped})
            name = window_name(self.name, self._window_index, None)
            raise ValueError(f"window {name} is empty: no keyframe from cameras {cfg.camera_topics} "
                             f"({len(self._skipped)} messages skipped, reasons: {reasons or 'none'})")
        ordered = sorted(self._keyframes, key=lambda tk: (tk[1].stamp, tk[0]))
        keyframes = [k for _, k in ordered]
        per_camera: dict[str, int] = defaultdict(int)
        for i, (topic, k) in enumerate(ordered):
            j = per_camera[topic]
            per_camera[topic] += 1
            k.index = i
            k.held_out = cfg.held_out_every > 0 and (j + 1) % cfg.held_out_every == 0
        t0, t1 = keyframes[0].stamp, keyframes[-1].stamp
        scans = self._selected_scans()
        if scans:
            t0, t1 = min(t0, scans[0].stamp), max(t1, scans[-1].stamp)
        tracks = self._actor_tracks(t0, t1)
        bg, actor_pts = self._separate_actors(scans, tracks)
        bg = self._cap(_voxel_centroids(bg, cfg.voxel_size), cfg.max_points)
        for tr, pts in zip(tracks, actor_pts):
            tr.points = _voxel_centroids(pts, cfg.voxel_size) if len(pts) else pts
        window = SceneWindow(keyframes=keyframes, points=bg, actors=tracks, ego_positions=self._ego_positions(),
                             world_frame=cfg.world_frame, skipped=list(self._skipped),
                             name=window_name(self.name, self._window_index, keyframes[0].stamp))
        log.info("window %s: %d keyframes (%d held out), %d background points, %d actors, %d skipped",
                 window.name, len(keyframes), len(window.target_keyframes), len(bg), len(tracks),
                 len(self._skipped))
        if reset:
            self._window_index += 1
            self._reset()
            self._prune_actor_obs(t1)
        return window

    def _prune_actor_obs(self, now: float) -> None:
        horizon = self.config.tf_horizon_s
        for actor_id in list(self._actor_obs):
            obs = self._actor_obs[actor_id]
            for s in [s for s in obs if s < now - horizon]:
                del obs[s]
            if not obs:
                del self._actor_obs[actor_id]

    def flush(self) -> None:
        """End of stream: resolve or skip every message still waiting for TF / camera info."""
        self._process_pending(final=True)

    def stats(self) -> dict:
        """Counts so far: messages by topic, keyframes, scans, points, pending, skipped by reason."""
        reasons: dict[str, int] = defaultdict(int)
        for s in self._skipped:
            reasons[s.reason.split(":")[0]] += 1
        return {
            "messages": dict(self._counts),
            "keyframes": len(self._keyframes),
            "lidar_scans": len(self._scans),
            "points": int(sum(len(s.points) for s in self._scans)),
            "actors": len(self._actor_obs),
            "pending": len(self._pending),
            "skipped": len(self._skipped),
            "skipped_by_reason": dict(reasons),
            **{k: v for k, v in self._notes.items()},
        }


def _frame(msg) -> str:
    try:
        fid = msg.header.frame_id
    except AttributeError as e:
        raise MessageDecodeError(f"message has no header.frame_id: {e}") from e
    if not isinstance(fid, str):
        raise MessageDecodeError("header.frame_id is not a string")
    return fid.lstrip("/")


def _safe_stamp(msg, fallback: float) -> float:
    try:
        return header_stamp(msg)
    except (MessageDecodeError, AttributeError):
        return fallback


# ---------------------------------------------------------------------------------------
# From bags
# ---------------------------------------------------------------------------------------
def detect_topics(topics: dict[str, str]) -> dict:
    """Guess ``camera_topics``, ``lidar_topic`` and ``tracks_topic`` from ``{topic: msgtype}``.

    Cameras: Image topics with a sibling ``camera_info``; a CompressedImage topic only when its
    raw Image topic is absent. LiDAR: the PointCloud2 topic (preferring names with
    velo/lidar/points when several). Tracks: the MarkerArray topic.
    """
    from .bag import CAMERA_INFO, COMPRESSED_IMAGE, IMAGE, MARKER_ARRAY, POINTCLOUD2

    cams = []
    for t, ty in sorted(topics.items()):
        if topics.get(camera_info_topic(t)) != CAMERA_INFO:
            continue
        if ty == IMAGE or (ty == COMPRESSED_IMAGE and topics.get(t[: -len("/compressed")]) != IMAGE):
            cams.append(t)
    clouds = sorted(t for t, ty in topics.items() if ty == POINTCLOUD2)
    preferred = [t for t in clouds if any(k in t.lower() for k in ("velo", "lidar", "points"))]
    lidar = (preferred or clouds or [None])[0]
    if len(clouds) > 1:
        log.info("several PointCloud2 topics %s; using %s", clouds, lidar)
    markers = sorted(t for t, ty in topics.items() if ty == MARKER_ARRAY)
    return {"camera_topics": cams, "lidar_topic": lidar, "tracks_topic": markers[0] if markers else None}


def resolve_config(path, config: WindowConfig | None) -> WindowConfig:
    """``config`` (or defaults) with missing topics filled in from the bag; raises if no camera.

    Empty ``camera_topics`` and ``None`` ``lidar_topic`` / ``tracks_topic`` are auto-detected;
    an empty string ``""`` means "none" (e.g. ignore the tracks a bag carries).
    """
    import dataclasses

    from .bag import bag_topics

    topics = bag_topics(path)
    cfg = dataclasses.replace(config) if config is not None else WindowConfig()
    found = detect_topics(topics)
    if not cfg.camera_topics:
        cfg.camera_topics = found["camera_topics"]
    for key in ("lidar_topic", "tracks_topic"):  # None: auto-detect; "": explicitly none
        value = getattr(cfg, key)
        setattr(cfg, key, found[key] if value is None else (value or None))
    if not cfg.camera_topics:
        raise ValueError(f"no camera topic in {path} (need an Image/CompressedImage topic with a sibling "
                         f"camera_info; topics: {sorted(topics)})")
    missing = [t for t in cfg.camera_topics + [cfg.lidar_topic, cfg.tracks_topic] if t and t not in topics]
    if missing:
        raise ValueError(f"topic(s) {missing} not in bag {path} (topics: {sorted(topics)})")
    cfg.validate()
    return cfg


def _stream_topics(cfg: WindowConfig) -> list[str]:
    topics = {TF_TOPIC, TF_STATIC_TOPIC, *cfg.camera_topics, *(camera_info_topic(t) for t in cfg.camera_topics)}
    topics.update(t for t in (cfg.lidar_topic, cfg.tracks_topic) if t)
    return sorted(topics)


def windows_from_bag(path, config: WindowConfig | None = None, progress: bool = False) -> Iterator[SceneWindow]:
    """Consecutive, non-overlapping windows of a rosbag2 (the last one may be shorter).

    Topics missing from ``config`` (or all, with ``config=None``) are auto-detected, see
    :func:`resolve_config`.
    """
    from .bag import bag_message_count, iter_bag_messages
    from .progress import progress_bar

    cfg = resolve_config(path, config)
    builder = WindowBuilder(cfg, name=Path(path).name)
    topics = _stream_topics(cfg)
    total = bag_message_count(path, topics)
    produced = 0
    for m in progress_bar(iter_bag_messages(path, topics), total=total, desc="window", unit="msg", disable=not progress,
                  leave=False):
        builder.add_message(m.topic, m.msg, m.stamp)
        if builder.ready():
            produced += 1
            yield builder.build(reset=True, flush_pending=False)
    builder.flush()
    if builder.stats()["keyframes"] or not produced:
        yield builder.build(reset=True)  # raises ValueError (with the skip reasons) if nothing was usable


def window_from_bag(path, config: WindowConfig | None = None, progress: bool = False) -> SceneWindow:
    """The first window of a rosbag2 (mcap or sqlite3); the whole bag if no window length is set."""
    gen = windows_from_bag(path, config, progress=progress)
    try:
        return next(gen)
    except StopIteration:
        raise ValueError(f"bag {path} produced no keyframe (check camera topics, camera_info and TF)") from None
    finally:
        gen.close()

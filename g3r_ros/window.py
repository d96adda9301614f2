"""Scene windows: the unit of reconstruction.

A :class:`SceneWindow` holds keyframes (image, intrinsics, camera pose, stamp), the LiDAR
accumulated in the world frame (background) and per-actor clouds in box-local coordinates
with their tracks. It is built from a time-ordered message stream by
``g3r_ros.window_builder.WindowBuilder`` (``window_from_bag`` reads one from a rosbag2). This
module is the data model only: it imports nothing of the builder.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .geometry import PinholeCamera, interpolate_transform


@dataclass
class Keyframe:
    """One camera image with its calibration and pose.

    image: (H,W,3) uint8 RGB. camera: intrinsics + ``T_world_cam`` (optical frame).
    stamp: seconds. camera_name: the image topic or frame id. held_out: target view
    (evaluation only, never a source).
    """

    image: np.ndarray
    camera: PinholeCamera
    stamp: float
    camera_name: str = "camera"
    held_out: bool = False
    index: int = 0


@dataclass
class ActorTrack:
    """A rigid actor: box size and a time-stamped pose track.

    size: (3,) box extent (x,y,z) in metres. stamps: (M,) seconds, increasing.
    poses: (M,4,4) ``T_world_box`` at each stamp. points: (P,3) LiDAR points in box-local
    coordinates accumulated over the window.
    """

    actor_id: int
    size: np.ndarray
    stamps: np.ndarray
    poses: np.ndarray
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float32))
    colors: np.ndarray | None = None

    def pose_at(self, stamp: float) -> np.ndarray:
        """``T_world_box`` at ``stamp``: interpolated inside the track, clamped outside."""
        s = self.stamps
        if len(s) == 0:
            raise ValueError(f"actor {self.actor_id} has an empty track")
        if stamp <= s[0]:
            return self.poses[0].copy()
        if stamp >= s[-1]:
            return self.poses[-1].copy()
        i = int(np.searchsorted(s, stamp)) - 1
        u = (stamp - s[i]) / max(s[i + 1] - s[i], 1e-12)
        return interpolate_transform(self.poses[i], self.poses[i + 1], float(u))


@dataclass
class SkipRecord:
    """A message that was not used, and why."""

    topic: str
    stamp: float
    reason: str


@dataclass
class SceneWindow:
    """A scene window ready for reconstruction.

    keyframes: time-ordered. points: (N,3) float32 background LiDAR in world.
    colors: optional (N,3) float32 in [0,1]. actors: rigid actor tracks. ego_positions:
    (M,3) world positions of the ego (base) frame over the window, for the distant region.
    world_frame: the frame everything is expressed in. skipped: messages left out.
    """

    keyframes: list[Keyframe]
    points: np.ndarray
    actors: list[ActorTrack] = field(default_factory=list)
    ego_positions: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    world_frame: str = "map"
    skipped: list[SkipRecord] = field(default_factory=list)
    name: str = "window"

    @property
    def source_keyframes(self) -> list[Keyframe]:
        return [k for k in self.keyframes if not k.held_out]

    @property
    def target_keyframes(self) -> list[Keyframe]:
        return [k for k in self.keyframes if k.held_out]

    def validate(self) -> None:
        """Raise ``ValueError`` with a clear reason if the window cannot be reconstructed."""
        if not self.keyframes:
            raise ValueError(f"window '{self.name}' has no keyframes")
        if not self.source_keyframes:
            raise ValueError(f"window '{self.name}' has no source keyframes (all held out)")
        n_actor = sum(len(a.points) for a in self.actors)
        if len(self.points) + n_actor == 0:
            raise ValueError(f"window '{self.name}' has no LiDAR points to initialize from")
        if len(self.points) and not np.isfinite(self.points).all():
            raise ValueError(f"window '{self.name}' has non-finite LiDAR points")

    def summary(self) -> dict:
        """A JSON-ready description: keyframes, points, actors and skipped counts by reason."""
        reasons: dict[str, int] = {}
        for s in self.skipped:
            key = s.reason.split(":")[0]
            reasons[key] = reasons.get(key, 0) + 1
        return {
            "name": self.name,
            "world_frame": self.world_frame,
            "keyframes": len(self.keyframes),
            "source_views": len(self.source_keyframes),
            "held_out_views": len(self.target_keyframes),
            "image_size": [self.keyframes[0].camera.width, self.keyframes[0].camera.height]
            if self.keyframes else None,
            "cameras": sorted({k.camera_name for k in self.keyframes}),
            "time_span_s": (self.keyframes[-1].stamp - self.keyframes[0].stamp) if self.keyframes else 0.0,
            "background_points": int(len(self.points)),
            "actors": len(self.actors),
            "actor_points": int(sum(len(a.points) for a in self.actors)),
            "skipped": len(self.skipped),
            "skipped_by_reason": reasons,
        }

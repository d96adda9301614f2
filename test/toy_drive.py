"""A toy drive for the node and streaming-session tests, and a stand-in reconstructor.

The drive: 1 camera (64x48) + LiDAR at 10 Hz, ego along +x at 1 m/s, a textured wall at
x = 10 m, written as a rosbag2 with (optionally) one bad message of each kind. The stand-in
(``make_stand_in``, loaded by node processes through ``reconstruction.implementation``) is a
TEST DOUBLE, not G3R: one Gaussian per window LiDAR point, coloured from the images.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from g3r_ros.geometry import R_BODY_OPTICAL, invert_transform, make_transform
from g3r_ros.render.types import GaussianParams

# The drive: 1 camera (64x48) + LiDAR at 10 Hz, ego along +x at 1 m/s, a textured wall at x = 10 m.
FRAMES, RATE, SPEED = 36, 10.0, 1.0
T0 = 1000.0
W, H = 64, 48
K = np.array([[40.0, 0.0, 32.0], [0.0, 40.0, 24.0], [0.0, 0.0, 1.0]])
T_BASE_CAM = make_transform(R_BODY_OPTICAL, [0.0, 0.0, 1.5])
T_BASE_LIDAR = make_transform(None, [0.0, 0.0, 2.0])
WALL_X = 10.0


def wall_points() -> np.ndarray:
    y, z = np.meshgrid(np.arange(-6.0, 6.01, 0.3), np.arange(0.0, 4.01, 0.3))
    return np.stack([np.full(y.size, WALL_X), y.ravel(), z.ravel()], axis=1)


def T_map_base(t: float) -> np.ndarray:
    return make_transform(None, [SPEED * (t - T0), 0.0, 0.0])


# ---------------------------------------------------------------------------------------
# The test double (imported by the node process through reconstruction.implementation)
# ---------------------------------------------------------------------------------------
class _StandInOutput:
    def __init__(self, params: GaussianParams, metrics: dict):
        self._params, self.metrics = params, metrics

    def params_at(self, stamp):
        return self._params


class LidarColourStandIn:
    """TEST DOUBLE, not G3R: one isotropic Gaussian (sigma 0.25 m, opacity 0.95) per window LiDAR
    point, coloured from the first source keyframe that sees it (grey if none)."""

    def __init__(self, config=None):
        self.config = config

    def __call__(self, window, cancel):
        t0 = time.perf_counter()
        pts = np.asarray(window.points, dtype=np.float64)
        rgb = np.full((len(pts), 3), 0.5)
        todo = np.ones(len(pts), bool)
        for kf in window.source_keyframes:
            if cancel.is_set():
                raise RuntimeError("cancelled")
            uv, z = kf.camera.project(pts)
            u, v = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
            ok = todo & (z > 0.1) & (u >= 0) & (v >= 0) & (u < kf.camera.width) & (v < kf.camera.height)
            rgb[ok] = kf.image[v[ok], u[ok]] / 255.0
            todo &= ~ok
        n = len(pts)
        params = GaussianParams(
            means=torch.as_tensor(pts, dtype=torch.float32),
            quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1),
            log_scales=torch.full((n, 3), float(np.log(0.25))),
            opacity_logits=torch.full((n,), 3.0),
            rgb=torch.as_tensor(rgb, dtype=torch.float32))
        return _StandInOutput(params, {"time_s": time.perf_counter() - t0, "device": "cpu", "gaussians": n})


def make_stand_in(config):
    return LidarColourStandIn(config)


class _RefinableOutput(_StandInOutput):
    def refinable(self):
        """The stand-in's Gaussians as one background component with explicit states (no decoders)."""
        from g3r_ros.gaussians import state_from_params
        from g3r_ros.scene import Component, NeuralScene

        return NeuralScene([Component("background", "background", state_from_params(self._params))]), None


class RefinableStandIn(LidarColourStandIn):
    """TEST DOUBLE: the stand-in whose output per-scene refinement can continue from."""

    def __call__(self, window, cancel):
        out = super().__call__(window, cancel)
        return _RefinableOutput(out._params, out.metrics)


def make_refinable_stand_in(config):
    return RefinableStandIn(config)


# ---------------------------------------------------------------------------------------
# Fixtures: a bag with good windows and bad input on the wire
# ---------------------------------------------------------------------------------------
def _camera_image(i: int) -> np.ndarray:
    u = np.linspace(0, 255, W)[None, :, None]
    v = np.linspace(0, 255, H)[:, None, None]
    img = np.concatenate([np.broadcast_to(u, (H, W, 1)), np.broadcast_to(v, (H, W, 1)),
                          np.full((H, W, 1), 40.0 + i)], axis=2)
    return img.astype(np.uint8)


def write_drive_bag(path: Path, frames: int = FRAMES, bad_input: bool = True, t0: float = T0) -> dict:
    """``frames`` frames (36: windows of ~1 s); with ``bad_input``, one bad message of each kind
    inside the second window; ``t0``: the first stamp. Returns the expected skip counts by reason."""
    from g3r_ros.bag import DriveBagWriter, make_image, make_pointcloud

    wall = wall_points()
    bad = {}
    with DriveBagWriter(path) as w:
        w.write_tf(t0, [("base_link", "cam", T_BASE_CAM), ("base_link", "lidar", T_BASE_LIDAR)], static=True)
        for i in range(frames):
            t = t0 + i / RATE
            w.write_tf(t, [("map", "base_link", T_map_base(t))])
            w.write_camera_info("/cam/camera_info", t, "cam", K, W, H)
            w.write_image("/cam/image_raw", t, "cam", _camera_image(i))
            T_lidar_map = invert_transform(T_map_base(t) @ T_BASE_LIDAR)
            w.write_pointcloud("/lidar/points", t, "lidar", (wall @ T_lidar_map[:3, :3].T + T_lidar_map[:3, 3]))
            if bad_input and i == 14:  # ---- bad input on the wire, all in window 2 ----
                trunc = make_image(t + 0.01, "cam", _camera_image(i))
                trunc.data = trunc.data[: len(trunc.data) // 2].copy()            # truncated image
                w.write_raw("/cam/image_raw", "sensor_msgs/msg/Image", t + 0.01, trunc)
                wrong = make_image(t + 0.02, "cam", _camera_image(i))
                wrong.encoding = "yuv422"                                         # unknown encoding
                w.write_raw("/cam/image_raw", "sensor_msgs/msg/Image", t + 0.02, wrong)
                w.write_serialized("/cam/image_raw", "sensor_msgs/msg/Image", t + 0.03, b"\x00\x01\x00\x00garbage")
                nan_cloud = make_pointcloud(t + 0.04, "lidar", np.zeros((50, 3), np.float32))
                nan_cloud.data = np.full(50 * 3, np.nan, "<f4").view(np.uint8).copy()  # NaN cloud
                nan_cloud.is_dense = False
                w.write_raw("/lidar/points", "sensor_msgs/msg/PointCloud2", t + 0.04, nan_cloud)
                # a camera whose CameraInfo never arrives
                w.write_image("/cam2/image_raw", t + 0.05, "cam", _camera_image(i))
                # TF gap: a frame with no transform at all
                w.write_image("/cam/image_raw", t + 0.06, "cam_without_tf", _camera_image(i))
                # out of order: arrives now, stamped in the first window (closed already)
                w.write_raw("/cam/image_raw", "sensor_msgs/msg/Image", t + 0.07,
                            make_image(t - 1.0, "cam", _camera_image(i)))
                bad = {"decode": 2, "deserialize": 1, "camera_info": 1, "tf": 1, "out_of_order": 1}
    return bad

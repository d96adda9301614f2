"""Procedural drive scenes with exact ground truth, written as rosbag2.

Public API:

- :class:`SynthConfig` (``config/synth.yaml``; ``PRESETS``, ``FEATURES``), :func:`make_scene` →
  :class:`SyntheticScene` (street plan with bends and side streets: ``road``; camera response:
  ``photometric``; LiDAR beam layouts: ``beams``);
- :func:`render_truth` / :func:`render_truth_depth`: the exact image / depth of any camera pose
  (clean, or as the camera records it: ``recorded=True``); :func:`render_radiance` before the
  camera response;
- :func:`lane_shifted_camera`: a camera moved sideways (lane-shift evaluation);
- :func:`lidar_scan`: a spinning LiDAR scan at any stamp;
- :func:`generate_drive`: the whole drive into a bag; :func:`scene_from_bag`: the scene back.
"""

from .bagout import scene_from_bag
from .config import FEATURES, GENERATOR_VERSION, PRESETS, SynthConfig, preset_overrides
from .drive import generate_drive
from .lidar import LidarScan, lidar_scan
from .scene import SyntheticScene, make_scene
from .truth import lane_shifted_camera, render_radiance, render_truth, render_truth_depth, render_truth_labels

__all__ = [
    "FEATURES", "GENERATOR_VERSION", "PRESETS", "LidarScan", "SynthConfig", "SyntheticScene", "generate_drive",
    "lane_shifted_camera", "lidar_scan", "make_scene", "preset_overrides", "render_radiance", "render_truth",
    "render_truth_depth", "render_truth_labels", "scene_from_bag",
]

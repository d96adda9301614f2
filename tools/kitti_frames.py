"""A scene window of a converted KITTI drive restricted to a range of frames.

``g3r convert kitti-odometry`` writes the whole drive; experiments need windows of given
frames (tuning windows must not overlap the benchmark's frames 0-11). This feeds the
window builder only the camera, camera-info and LiDAR messages whose stamps fall in the
frames' span, and every TF message.

    from tools.kitti_frames import kitti_window
    w = kitti_window("runs/kitti04_all", 14, 25)          # frames 14..25 inclusive
"""

from __future__ import annotations

from pathlib import Path

from g3r_ros.bag import iter_bag_messages
from g3r_ros.config import config_path, load_config
from g3r_ros.window import SceneWindow
from g3r_ros.window_builder import WindowBuilder, WindowConfig, _stream_topics, resolve_config

TF_TOPICS = ("/tf", "/tf_static")


def frame_stamps(bag, camera_topic: str) -> list[float]:
    """Stamps of the camera's images in bag order (frame i = the i-th image)."""
    return [m.stamp for m in iter_bag_messages(bag, [camera_topic], deserialize=False)]


def kitti_window(bag, first: int, last: int, config: WindowConfig | None = None) -> SceneWindow:
    """The window of frames ``first..last`` (inclusive) of a converted KITTI bag.

    config: defaults to ``config/window_kitti.yaml`` with no length limit (the frame range is
    the window)."""
    cfg = config or load_config(WindowConfig, config_path("window_kitti.yaml"))
    cfg.window_meters = None
    cfg.window_seconds = None
    cfg = resolve_config(bag, cfg)
    stamps = frame_stamps(bag, cfg.camera_topics[0])
    if not 0 <= first <= last < len(stamps):
        raise ValueError(f"frames {first}..{last} outside 0..{len(stamps) - 1}")
    half = 0.5 * min(b - a for a, b in zip(stamps, stamps[1:])) if len(stamps) > 1 else 0.05
    lo, hi = stamps[first] - half, stamps[last] + half
    builder = WindowBuilder(cfg, name=f"{Path(bag).name}-{first}-{last}")
    for m in iter_bag_messages(bag, _stream_topics(cfg)):
        if m.topic in TF_TOPICS or lo <= m.stamp <= hi:
            builder.add_message(m.topic, m.msg, m.stamp)
    builder.flush()
    return builder.build(reset=True)

"""Writing a synthetic drive as rosbag2 messages, and recovering the scene from a bag.

Topics (prefix ``/synth`` by default):

- ``/tf``: ``map`` → ``base_link`` at every frame stamp; ``/tf_static``: ``base_link`` →
  ``velodyne`` and ``base_link`` → ``cam{i}_optical``;
- ``{prefix}/cam{i}/image_raw`` (rgb8) and ``{prefix}/cam{i}/camera_info`` (no distortion);
- ``{prefix}/velodyne/points`` (PointCloud2 x, y, z, intensity in ``velodyne``);
- ``{prefix}/tracks`` (MarkerArray: a CUBE per moving actor in ``map``, id = actor id,
  pose = box centre, scale = box size);
- ``{prefix}/scene`` (std_msgs/String JSON: generator, version, seed and the full config),
  written once at the first stamp, so :func:`scene_from_bag` regenerates the exact scene.
"""

from __future__ import annotations

import dataclasses
import json

from ..bag import DriveBagWriter, bag_topics, iter_bag_messages, make_message
from ..config import from_dict
from .config import GENERATOR_VERSION, SynthConfig
from .lidar import LidarScan
from .scene import SyntheticScene, make_scene

GENERATOR = "g3r_ros.synthetic"
STRING = "std_msgs/msg/String"


def scene_json(scene: SyntheticScene) -> str:
    """The JSON document of the ``/scene`` topic (sorted keys: byte-stable)."""
    return json.dumps({"generator": GENERATOR, "version": scene.version, "seed": scene.seed,
                       "config": dataclasses.asdict(scene.config)}, sort_keys=True)


def scene_from_json(text: str) -> SyntheticScene:
    """Regenerate the scene described by a ``/scene`` JSON document."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"scene description is not JSON: {e}") from e
    if not isinstance(doc, dict) or doc.get("generator") != GENERATOR:
        raise ValueError(f"not a {GENERATOR} scene description")
    if doc.get("version") != GENERATOR_VERSION:
        raise ValueError(f"bag was made by generator version {doc.get('version')!r}, this is "
                         f"{GENERATOR_VERSION!r}: its ground truth cannot be regenerated exactly")
    return make_scene(int(doc["seed"]), from_dict(SynthConfig, doc.get("config") or {}, where="/scene config"))


def scene_from_bag(path, topic: str | None = None) -> SyntheticScene:
    """The exact scene of a synthetic bag, from its ``/synth/scene`` message (or ``topic``)."""
    topics = [t for t, typ in bag_topics(path).items()
              if typ == STRING and (t == topic if topic else t.endswith("/scene"))]
    for m in iter_bag_messages(path, topics=topics[:1]):
        if m.msg is None:
            raise ValueError(f"{path}: cannot decode {m.topic}")
        return scene_from_json(m.msg.data)
    raise ValueError(f"{path}: no synthetic scene description topic ({topic or '…/scene'}, {STRING}) in this bag")


def write_static(w: DriveBagWriter, scene: SyntheticScene) -> None:
    """The scene description and the static transforms, at the first stamp."""
    t0 = scene.t0
    w.write_raw(f"{scene.config.topic_prefix}/scene", STRING, t0, make_message(STRING, data=scene_json(scene)))
    tfs = [("base_link", scene.lidar.frame_id, scene.lidar.T_base_lidar)]
    tfs += [("base_link", m.frame_id, m.T_base_cam) for m in scene.cameras]
    w.write_tf(t0, tfs, static=True)


def write_frame(w: DriveBagWriter, scene: SyntheticScene, stamp: float, images: list, scan: LidarScan | None) -> None:
    """One frame: the ego TF, every camera's image + info, the LiDAR scan and the actor tracks."""
    w.write_tf(stamp, [("map", "base_link", scene.ego_pose(stamp))])
    for m, img in zip(scene.cameras, images):
        w.write_image(m.image_topic, stamp, m.frame_id, img)
        w.write_camera_info(m.info_topic, stamp, m.frame_id, m.K, m.width, m.height)
    if scan is not None:
        w.write_pointcloud(scene.lidar.topic, stamp, scene.lidar.frame_id, scan.points, scan.intensity)
    if scene.actors:
        w.write_markers(f"{scene.config.topic_prefix}/tracks", stamp, "map",
                        [(a.actor_id, scene.actor_pose(a.actor_id, stamp), a.size) for a in scene.actors])

"""g3r_ros.bag: DriveBagWriter round trips (mcap + sqlite3), reading order, QoS, an independent mcap reader."""

from __future__ import annotations

import numpy as np
import pytest

from g3r_ros import bag, messages
from g3r_ros.geometry import look_at, make_transform

STORAGES = ["mcap", "sqlite3"]


def _rot_z(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


@pytest.fixture(scope="module", params=STORAGES)
def written(request, tmp_path_factory):
    """A bag with one of everything, written partly out of time order."""
    rng = np.random.default_rng(1)
    path = tmp_path_factory.mktemp(request.param) / "drive"
    data = {
        "rgb": rng.integers(0, 256, (6, 9, 3), dtype=np.uint8),
        "K": np.array([[20.0, 0, 4.5], [0, 21.0, 3.0], [0, 0, 1]]),
        "points": rng.normal(size=(50, 3)).astype(np.float32),
        "intensity": rng.random(50).astype(np.float32),
        "T_map_base": make_transform(_rot_z(0.3), [1.0, -2.0, 0.5]),
        "T_base_cam": look_at([0.5, 0.0, 1.4], [10.0, 1.0, 1.0]),
        "T_map_box": make_transform(_rot_z(-0.7), [8.0, 3.0, 0.8]),
        "size": np.array([4.0, 2.0, 1.6]),
    }
    with bag.DriveBagWriter(path, storage=request.param) as w:
        w.write_tf(10.0, [("map", "base_link", data["T_map_base"])])
        w.write_tf(9.5, [("base_link", "camera", data["T_base_cam"])], static=True)  # earlier stamp, later write
        w.write_image("/cam/image_raw", 10.0, "camera", data["rgb"])
        w.write_image("/cam_bgr/image_raw", 10.0, "camera", data["rgb"], encoding="bgr8")
        w.write_compressed_image("/cam/image_raw/compressed", 10.0, "camera", data["rgb"], fmt="png")
        w.write_compressed_image("/cam/jpeg/compressed", 10.0, "camera", data["rgb"], fmt="jpeg")
        w.write_camera_info("/cam/camera_info", 10.0, "camera", data["K"], 9, 6, D=[0.1, 0, 0, 0, 0])
        w.write_pointcloud("/lidar/points", 9.9, "lidar", data["points"], data["intensity"])
        w.write_pointcloud("/lidar/xyz", 9.9, "lidar", data["points"])
        w.write_markers("/tracks", 10.0, "map", [(7, data["T_map_box"], data["size"])])
        w.write_raw("/note", "std_msgs/msg/String", 10.2, bag.make_message("std_msgs/msg/String", data="hello"))
        counts = dict(w.counts)
    return path, request.param, data, counts


def test_topics_types_and_counts(written):
    path, _, _, counts = written
    topics = bag.bag_topics(path)
    assert topics["/tf"] == topics["/tf_static"] == "tf2_msgs/msg/TFMessage"
    assert topics["/cam/image_raw"] == "sensor_msgs/msg/Image"
    assert topics["/cam/image_raw/compressed"] == "sensor_msgs/msg/CompressedImage"
    assert topics["/cam/camera_info"] == "sensor_msgs/msg/CameraInfo"
    assert topics["/lidar/points"] == "sensor_msgs/msg/PointCloud2"
    assert topics["/tracks"] == "visualization_msgs/msg/MarkerArray"
    assert topics["/note"] == "std_msgs/msg/String"
    assert bag.bag_message_count(path) == sum(counts.values()) == 11
    assert bag.bag_message_count(path, ["/tf", "/tf_static"]) == 2


def test_offered_qos(written):
    from rosbags.interfaces import QosDurability

    qos = bag.topic_qos(written[0])
    assert qos["/tf_static"][0].durability == QosDurability.TRANSIENT_LOCAL
    assert qos["/tf"][0].durability == QosDurability.VOLATILE
    assert qos["/cam/image_raw"][0].durability == QosDurability.VOLATILE


def test_messages_come_in_log_time_order_and_filter(written):
    msgs = list(bag.iter_bag_messages(written[0]))
    stamps = [m.stamp for m in msgs]
    assert stamps == sorted(stamps)
    assert msgs[0].topic == "/tf_static" and msgs[0].stamp == pytest.approx(9.5)
    assert msgs[-1].topic == "/note" and msgs[-1].msg.data == "hello"
    only = list(bag.iter_bag_messages(written[0], topics=["/tracks"]))
    assert [m.topic for m in only] == ["/tracks"]
    assert only[0].msgtype == "visualization_msgs/msg/MarkerArray" and len(only[0].rawdata) > 0


def test_round_trip_through_the_core_decoders(written):
    path, _, data, _ = written
    got = {m.topic: m.msg for m in bag.iter_bag_messages(path)}
    np.testing.assert_array_equal(messages.decode_image(got["/cam/image_raw"]), data["rgb"])
    np.testing.assert_array_equal(messages.decode_image(got["/cam_bgr/image_raw"]), data["rgb"])
    assert got["/cam_bgr/image_raw"].encoding == "bgr8"
    np.testing.assert_array_equal(messages.decode_compressed_image(got["/cam/image_raw/compressed"]), data["rgb"])
    jpeg = messages.decode_compressed_image(got["/cam/jpeg/compressed"])
    assert jpeg.shape == data["rgb"].shape  # lossy: shape only
    assert messages.header_stamp(got["/cam/image_raw"]) == pytest.approx(10.0)
    assert got["/cam/image_raw"].header.frame_id == "camera"

    info = messages.decode_camera_info(got["/cam/camera_info"])
    np.testing.assert_allclose(info.K, data["K"])
    assert (info.width, info.height, info.distortion_model) == (9, 6, "plumb_bob")
    np.testing.assert_allclose(info.D, [0.1, 0, 0, 0, 0])
    np.testing.assert_allclose(info.P[:, :3], data["K"])
    np.testing.assert_allclose(info.P[:, 3], 0)

    xyzi = messages.pointcloud_xyz(got["/lidar/points"], with_intensity=True)
    np.testing.assert_array_equal(xyzi[:, :3], data["points"])
    np.testing.assert_array_equal(xyzi[:, 3], data["intensity"])
    cloud = got["/lidar/xyz"]
    assert [f.name for f in cloud.fields] == ["x", "y", "z"] and cloud.is_dense and cloud.point_step == 12
    np.testing.assert_array_equal(messages.pointcloud_xyz(cloud), data["points"])

    (tf,) = messages.decode_tf_message(got["/tf"])
    assert (tf.parent, tf.child, tf.stamp) == ("map", "base_link", pytest.approx(10.0))
    np.testing.assert_allclose(tf.T, data["T_map_base"], atol=1e-12)
    (tfs,) = messages.decode_tf_message(got["/tf_static"])
    np.testing.assert_allclose(tfs.T, data["T_base_cam"], atol=1e-12)

    (obs,) = messages.decode_marker_array(got["/tracks"])
    assert obs.actor_id == 7 and obs.frame_id == "map" and obs.ns == "actors" and obs.action == 0
    np.testing.assert_allclose(obs.T_frame_box, data["T_map_box"], atol=1e-12)
    np.testing.assert_allclose(obs.size, data["size"])


def test_independent_mcap_reader(written):
    """The mcap bags decode with mcap + mcap_ros2 (no rosbags involved)."""
    path, storage, data, counts = written
    if storage != "mcap":
        pytest.skip("mcap-only check")
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    (file,) = list(path.glob("*.mcap"))
    seen = {}
    with open(file, "rb") as f:
        for schema, channel, message, decoded in make_reader(f, decoder_factories=[DecoderFactory()]) \
                .iter_decoded_messages():
            seen[channel.topic] = (schema.name, message.log_time, decoded)
    assert {t: 1 for t in seen} == {t: 1 for t in counts}
    name, log_time, img = seen["/cam/image_raw"]
    assert name == "sensor_msgs/msg/Image" and log_time == 10_000_000_000
    np.testing.assert_array_equal(np.frombuffer(bytes(img.data), np.uint8).reshape(6, 9, 3), data["rgb"])
    tf = seen["/tf"][2].transforms[0]
    assert tf.header.frame_id == "map" and tf.child_frame_id == "base_link"
    assert tf.transform.translation.x == pytest.approx(1.0)


def test_writer_refuses_existing_path_and_bad_input(tmp_path):
    (tmp_path / "exists").mkdir()
    with pytest.raises(FileExistsError, match="already exists"):
        bag.DriveBagWriter(tmp_path / "exists")
    with pytest.raises(ValueError, match="already exists"):  # also a ValueError, for the CLI
        bag.DriveBagWriter(tmp_path / "exists")
    with pytest.raises(ValueError, match="storage"):
        bag.DriveBagWriter(tmp_path / "x", storage="rosbag1")
    with bag.DriveBagWriter(tmp_path / "b") as w:
        with pytest.raises(ValueError, match="uint8"):
            w.write_image("/i", 1.0, "c", np.zeros((4, 4, 3), np.float32))
        with pytest.raises(ValueError, match="encoding"):
            w.write_image("/i", 1.0, "c", np.zeros((4, 4, 3), np.uint8), encoding="yuv422")
        with pytest.raises(ValueError, match="N,3"):
            w.write_pointcloud("/p", 1.0, "l", np.zeros((4, 2), np.float32))
        with pytest.raises(ValueError, match="intensity"):
            w.write_pointcloud("/p", 1.0, "l", np.zeros((4, 3), np.float32), np.zeros(3))
        with pytest.raises(ValueError, match="stamp"):
            w.write_tf(-1.0, [("a", "b", np.eye(4))])
        with pytest.raises(ValueError, match="size"):
            w.write_markers("/m", 1.0, "map", [(1, np.eye(4), [1.0, 0.0, 1.0])])
        w.write_image("/i", 1.0, "c", np.zeros((4, 4, 3), np.uint8))
        with pytest.raises(ValueError, match="already carries"):
            w.write_pointcloud("/i", 1.0, "l", np.zeros((4, 3), np.float32))
    assert bag.bag_topics(tmp_path / "b") == {"/i": "sensor_msgs/msg/Image"}
    with pytest.raises(FileNotFoundError):
        bag.bag_topics(tmp_path / "missing")


def test_make_message_defaults_and_errors():
    m = bag.make_message("visualization_msgs/msg/Marker", id=3)
    assert m.id == 3 and m.ns == "" and m.points == [] and m.pose.orientation.w == 0.0
    with pytest.raises(ValueError, match="no field"):
        bag.make_message("std_msgs/msg/String", text="x")
    with pytest.raises(ValueError, match="typestore"):
        bag.make_message("nope_msgs/msg/Nope")
    assert bag.sec_to_ns(12.5) == 12_500_000_000
    # float64 seconds near 1e9 resolve ~0.12 us: conversion adds no error beyond that
    assert abs(bag.sec_to_ns(1.0e9 + 0.1041284) - 1_000_000_000_104_128_400) < 200

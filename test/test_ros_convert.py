"""g3r_ros.ros.convert and g3r_ros.ros.params: round trips, fuzzing of the message → numpy paths."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy (ros-rclpy wheels) is not installed")
pytest.importorskip("sensor_msgs.msg", reason="sensor_msgs is not installed")

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image, PointCloud2, PointField

from g3r_ros import messages
from g3r_ros.geometry import look_at
from g3r_ros.ros import convert, params

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("encoding", ["rgb8", "bgr8"])
def test_image_round_trip_through_cdr(encoding):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    msg = convert.image_to_msg(img, 12.25, "cam_optical", encoding)
    back = deserialize_message(serialize_message(msg), Image)
    assert back.encoding == encoding and back.step == 21 and back.header.frame_id == "cam_optical"
    assert convert.sec_from_time(back.header.stamp) == pytest.approx(12.25)
    np.testing.assert_array_equal(convert.image_msg_to_array(back), img)
    # the core decoder (used for live streams and bags) reads our messages identically
    np.testing.assert_array_equal(messages.decode_image(back), img)


@pytest.mark.parametrize("encoding,dtype", [("mono8", np.uint8), ("mono16", np.uint16), ("32FC1", np.float32)])
def test_single_channel_round_trip(encoding, dtype):
    img = (np.arange(12).reshape(3, 4) * 7).astype(dtype)
    back = convert.image_msg_to_array(convert.image_to_msg(img, 1.0, "f", encoding))
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, img)


def test_image_step_padding_and_big_endian():
    img = np.arange(6, dtype=np.uint16).reshape(2, 3) * 1000
    rows = img.astype(">u2").view(np.uint8).reshape(2, 6)
    padded = np.concatenate([rows, np.full((2, 2), 255, np.uint8)], axis=1)
    msg = Image(height=2, width=3, encoding="mono16", is_bigendian=1, step=8, data=padded.tobytes())
    np.testing.assert_array_equal(convert.image_msg_to_array(msg), img)


def test_image_rejects_mismatches():
    with pytest.raises(ValueError, match="rgb8 needs"):
        convert.image_to_msg(np.zeros((4, 4), np.uint8), 0.0, "f", "rgb8")
    with pytest.raises(ValueError, match="unsupported encoding"):
        convert.image_to_msg(np.zeros((4, 4, 3), np.uint8), 0.0, "f", "yuv422")
    truncated = convert.image_to_msg(np.zeros((4, 4, 3), np.uint8), 0.0, "f")
    truncated.data = truncated.data[:-5]
    with pytest.raises(ValueError, match="bytes"):
        convert.image_msg_to_array(truncated)
    with pytest.raises(ValueError, match="stamp"):
        convert.image_to_msg(np.zeros((4, 4, 3), np.uint8), float("nan"), "f")


def test_camera_info_round_trip():
    K = np.array([[100.0, 0, 31.5], [0, 101.0, 23.5], [0, 0, 1]])
    msg = convert.camera_info_to_msg(K, 64, 48, 3.0, "cam")
    K2, w, h = convert.camera_info_to_intrinsics(msg)
    np.testing.assert_allclose(K2, K)
    assert (w, h) == (64, 48)
    info = messages.decode_camera_info(msg)  # the core accepts it as rectified
    assert not info.is_distorted
    np.testing.assert_allclose(info.P[:, :3], K)
    msg.width = 0
    with pytest.raises(ValueError, match="empty size"):
        convert.camera_info_to_intrinsics(msg)


def _gaussian_fields(n: int, rng) -> np.ndarray:
    names = ["x", "y", "z", "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    dt = np.dtype([(n_, "<f4") for n_ in names] + [("rgb", "<u4")])
    a = np.zeros(n, dt)
    for n_ in names:
        a[n_] = rng.normal(size=n).astype(np.float32)
    a["rgb"] = rng.integers(0, 2**24, n)
    return a


def test_pointcloud2_round_trip_structured():
    rng = np.random.default_rng(1)
    a = _gaussian_fields(50, rng)
    msg = convert.structured_to_pointcloud2(a, 5.5, "map")
    assert msg.is_dense and msg.point_step == 48 and msg.width == 50
    back = deserialize_message(serialize_message(msg), PointCloud2)
    b = convert.pointcloud2_to_structured(back)
    assert b.dtype.names == a.dtype.names
    for n in a.dtype.names:
        np.testing.assert_array_equal(b[n], a[n])
    # the core decoder agrees on x,y,z
    np.testing.assert_array_equal(messages.pointcloud_xyz(back), np.stack([a["x"], a["y"], a["z"]], 1))


def test_pointcloud2_padding_subarrays_nan():
    dt = np.dtype({"names": ["x", "y", "z", "f"], "formats": ["<f4", "<f4", "<f4", ("<f8", (2,))],
                   "offsets": [0, 4, 8, 16], "itemsize": 40})
    a = np.zeros(3, dt)
    a["x"] = [1, np.nan, 3]
    a["f"] = [[1, 2], [3, 4], [5, 6]]
    msg = convert.structured_to_pointcloud2(a, 0.0, "lidar")
    assert not msg.is_dense
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields][-1] == ("f", 16, PointField.FLOAT64, 2)
    b = convert.pointcloud2_to_structured(msg)
    np.testing.assert_array_equal(b["f"], a["f"])
    np.testing.assert_array_equal(np.isnan(b["x"]), [False, True, False])
    assert convert.pointcloud2_xyz(msg).shape == (3, 3)


def test_pointcloud2_rejects_unsupported():
    with pytest.raises(ValueError, match="structured"):
        convert.structured_to_pointcloud2(np.zeros((4, 3), np.float32), 0.0, "m")
    with pytest.raises(ValueError, match="cannot carry"):
        convert.structured_to_pointcloud2(np.zeros(2, [("x", "<i8")]), 0.0, "m")
    msg = PointCloud2(height=1, width=2, point_step=4, row_step=8, data=bytes(8),
                      fields=[PointField(name="x", offset=2, datatype=PointField.FLOAT32, count=1)])
    with pytest.raises(ValueError, match="does not fit"):
        convert.pointcloud2_to_structured(msg)


def test_pose_round_trip_and_nan():
    T = look_at([1.0, 2.0, 3.0], [10.0, -2.0, 1.0])
    np.testing.assert_allclose(convert.pose_to_matrix(convert.matrix_to_pose(T)), T, atol=1e-12)
    ts = convert.matrix_to_transform_stamped(T, 2.0, "map", "cam")
    np.testing.assert_allclose(convert.transform_to_matrix(ts.transform), T, atol=1e-12)
    rec = messages.decode_tf_message(type("TF", (), {"transforms": [ts]})())[0]
    assert (rec.parent, rec.child) == ("map", "cam")
    np.testing.assert_allclose(rec.T, T, atol=1e-12)
    p = convert.matrix_to_pose(T)
    p.orientation.w = math.nan
    with pytest.raises(ValueError, match="NaN"):
        convert.pose_to_matrix(p)


def test_diagnostics_round_trip():
    st_ = convert.diagnostic_status("g3r/window", {"fill": 0.5, "ok": True, "n": 3}, level="warn", message="m")
    arr = convert.diagnostic_array([st_], 1.0)
    assert convert.diagnostic_values(arr) == {"g3r/window": {"fill": "0.5", "ok": "true", "n": "3"}}
    assert arr.status[0].level == st_.WARN
    with pytest.raises(ValueError, match="level"):
        convert.diagnostic_status("x", {}, level="fatal")


# ---------------------------------------------------------------------------------------
# Fuzz: message → numpy paths return a correct array or raise ValueError, nothing else
# ---------------------------------------------------------------------------------------
@FUZZ
@given(encoding=st.sampled_from(sorted(convert.IMAGE_ENCODINGS) + ["yuv422", "", "8UC3"]),
       height=st.integers(0, 6), width=st.integers(0, 6), step_extra=st.integers(-3, 4),
       nbytes_delta=st.integers(-10, 10), big=st.booleans())
def test_fuzz_image_msg_to_array(encoding, height, width, step_extra, nbytes_delta, big):
    channels, dtype = convert.IMAGE_ENCODINGS.get(encoding, (3, np.dtype("u1")))
    step = max(0, width * channels * dtype.itemsize + step_extra)
    n = max(0, height * step + nbytes_delta)
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=int(big), step=step,
                data=bytes(np.arange(n) % 251))
    try:
        out = convert.image_msg_to_array(msg)
    except ValueError:
        return
    assert out.shape[:2] == (height, width)
    assert out.ndim == (3 if channels >= 3 else 2)


_FIELD = st.builds(lambda name, off, dt, cnt: PointField(name=name, offset=off, datatype=dt, count=cnt),
                   st.sampled_from(["x", "y", "z", "intensity", "rgb", ""]), st.integers(0, 40),
                   st.integers(0, 9), st.integers(0, 3))


@FUZZ
@given(fields=st.lists(_FIELD, max_size=5), height=st.integers(0, 3), width=st.integers(0, 5),
       point_step=st.integers(0, 48), row_extra=st.integers(-4, 8), nbytes_delta=st.integers(-8, 8),
       big=st.booleans())
def test_fuzz_pointcloud2_to_structured(fields, height, width, point_step, row_extra, nbytes_delta, big):
    row_step = max(0, width * point_step + row_extra)
    n = max(0, row_step * height + nbytes_delta)
    msg = PointCloud2(height=height, width=width, fields=fields, is_bigendian=big, point_step=point_step,
                      row_step=row_step, data=bytes(np.arange(n) % 253), is_dense=False)
    try:
        out = convert.pointcloud2_to_structured(msg)
    except ValueError:
        return
    assert out.shape == (height * width,)
    assert set(out.dtype.names) == {f.name for f in fields}


@FUZZ
@given(vals=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=7, max_size=7))
def test_fuzz_pose_to_matrix(vals):
    pose = convert.matrix_to_pose(np.eye(4))
    (pose.position.x, pose.position.y, pose.position.z, pose.orientation.x, pose.orientation.y,
     pose.orientation.z, pose.orientation.w) = vals
    try:
        T = convert.pose_to_matrix(pose)
    except ValueError:
        return
    assert np.isfinite(T).all()
    np.testing.assert_allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-6)


# ---------------------------------------------------------------------------------------
# Parameters (pure part; the node-level startup check is in test_node.py)
# ---------------------------------------------------------------------------------------
def test_param_table_matches_node_config():
    fields = {f.name for f in dataclasses.fields(params.NodeConfig)}
    assert fields == {p.field for p in params.PARAMS} | {"use_sim_time"}
    cfg = params.NodeConfig()
    for p in params.PARAMS:  # dataclass defaults equal the declared defaults
        assert getattr(cfg, p.field) == p.default, p.name


@pytest.mark.parametrize("name,value,match", [
    ("window.seconds", -1.0, "window.seconds' must be > 0"),
    ("reconstruction.device", "tpu", "must be one of"),
    ("qos.sensor", "fast", "must be one of"),
    ("cameras", [], "at least one"),
    ("reconstruction.steps", 2.5, "integer"),
    ("reconstruction.threads", -1, "reconstruction.threads' must be >= 0"),
    ("window.held_out_every", 1, "0 \\(none\\) or >= 2"),
    ("window.min_range", 90.0, "must exceed 'window.min_range'"),
    ("reconstruction.every", 5000, "must be <= 1000"),
    ("window.image_scale", 2.0, "'window.image_scale' must be <= 1"),
    ("window.image_scale", 0.0, "'window.image_scale' must be > 0"),
    ("bogus.name", 1, "unknown parameter"),
    ("reconstruction.model", "/nonexistent/model.pt", "model file not found"),
])
def test_invalid_params_are_rejected(name, value, match):
    with pytest.raises(ValueError, match=match):
        params.node_config_from_params({name: value, "reconstruction.implementation": "" if
                                        name == "reconstruction.model" else "x:y"})


def test_params_file_round_trip(tmp_path):
    values = {"cameras": ["/a/image", "/b/image"], "window.seconds": 2, "novel_view.lateral_offsets": [-2, 0.5],
              "reconstruction.implementation": "mod:fn"}
    path = params.write_params_file(tmp_path / "p.yaml", values)
    loaded = params.load_params_file(path)
    assert loaded == values
    cfg = params.node_config_from_params(loaded)
    assert cfg.window_seconds == 2.0 and isinstance(cfg.window_seconds, float)
    assert cfg.novel_view_lateral_offsets == [-2.0, 0.5]
    cfg.image_transport = "compressed"
    assert cfg.image_subscription_topic("/a/image") == "/a/image/compressed"


@pytest.mark.parametrize("name", ["reconstruct.yaml", "kitti.yaml"])
def test_shipped_node_configs_are_valid(name):
    from g3r_ros.config import config_path
    values = params.load_params_file(config_path(name))
    assert set(values) == set(params.SPECS), "a shipped config lists every parameter, no unknown one"
    values["reconstruction.implementation"] = "stand:in"  # the model file is checked by test_node
    cfg = params.node_config_from_params(values)
    cfg.window_config().validate()
    assert cfg.stream_config().flush_on_idle_s == cfg.window_flush_on_idle_s > 0
    assert cfg.qos_sensor == "sensor_data" and cfg.reconstruction_device == "auto"

"""Message decoders: roundtrips through rosbags and rclpy message classes, errors, fuzzing."""

from __future__ import annotations

import io
import math
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage
from rosbags.typesys import Stores, get_typestore

from g3r_ros.geometry import invert_transform
from g3r_ros.messages import (
    CameraInfoData,
    MessageDecodeError,
    decode_camera_info,
    decode_compressed_image,
    decode_image,
    decode_marker_array,
    decode_pointcloud2,
    decode_tf_message,
    pointcloud_xyz,
    sec_to_stamp_fields,
    stamp_to_sec,
)
from g3r_ros.undistort import distort_normalized, undistort_image, undistort_points

TS = get_typestore(Stores.ROS2_KILTED)
RB = TS.types

try:  # real ROS 2 message classes (PyPI wheels); tests that need them skip otherwise
    import builtin_interfaces.msg as rcl_builtin
    import geometry_msgs.msg as rcl_geometry
    import sensor_msgs.msg as rcl_sensor
    import std_msgs.msg as rcl_std
    from rclpy.serialization import serialize_message

    HAVE_RCLPY = True
except ImportError:  # pragma: no cover - depends on the environment
    HAVE_RCLPY = False
try:
    import tf2_msgs.msg as rcl_tf2
except ImportError:  # pragma: no cover
    rcl_tf2 = None

needs_rclpy = pytest.mark.skipif(not HAVE_RCLPY, reason="rclpy / ROS 2 message packages are not importable")
BACKENDS = ["rosbags", pytest.param("rclpy", marks=needs_rclpy)]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------------------
# Message builders for both backends
# ---------------------------------------------------------------------------------------
def header(backend, stamp=(12, 500_000_000), frame="cam"):
    if backend == "rosbags":
        return RB["std_msgs/msg/Header"](stamp=RB["builtin_interfaces/msg/Time"](sec=stamp[0], nanosec=stamp[1]),
                                         frame_id=frame)
    return rcl_std.Header(stamp=rcl_builtin.Time(sec=stamp[0], nanosec=stamp[1]), frame_id=frame)


def make_image(backend, h, w, encoding, step, data: bytes, big=0):
    if backend == "rosbags":
        return RB["sensor_msgs/msg/Image"](header=header(backend), height=h, width=w, encoding=encoding,
                                           is_bigendian=big, step=step, data=np.frombuffer(data, np.uint8).copy())
    return rcl_sensor.Image(header=header(backend), height=h, width=w, encoding=encoding, is_bigendian=big,
                            step=step, data=data)


def make_compressed(backend, fmt, data: bytes):
    if backend == "rosbags":
        return RB["sensor_msgs/msg/CompressedImage"](header=header(backend), format=fmt,
                                                     data=np.frombuffer(data, np.uint8).copy())
    return rcl_sensor.CompressedImage(header=header(backend), format=fmt, data=data)


def make_camera_info(backend, K, D, model="plumb_bob", w=64, h=48):
    P = np.zeros((3, 4))
    P[:3, :3] = K
    kw = {"header": header(backend), "height": h, "width": w, "distortion_model": model}
    if backend == "rosbags":
        roi = RB["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
        return RB["sensor_msgs/msg/CameraInfo"](**kw, d=np.asarray(D, float), k=np.asarray(K, float).reshape(-1),
                                                r=np.eye(3).reshape(-1), p=P.reshape(-1), binning_x=0, binning_y=0,
                                                roi=roi)
    return rcl_sensor.CameraInfo(**kw, d=list(map(float, D)), k=np.asarray(K, float).reshape(-1).tolist(),
                                 r=np.eye(3).reshape(-1).tolist(), p=P.reshape(-1).tolist())


def make_cloud(backend, fields, h, w, point_step, row_step, data: bytes, big=False, dense=False):
    if backend == "rosbags":
        PF = RB["sensor_msgs/msg/PointField"]
        return RB["sensor_msgs/msg/PointCloud2"](
            header=header(backend, frame="velodyne"), height=h, width=w,
            fields=[PF(name=n, offset=o, datatype=d, count=c) for n, o, d, c in fields], is_bigendian=big,
            point_step=point_step, row_step=row_step, data=np.frombuffer(data, np.uint8).copy(), is_dense=dense)
    return rcl_sensor.PointCloud2(
        header=header(backend, frame="velodyne"), height=h, width=w,
        fields=[rcl_sensor.PointField(name=n, offset=o, datatype=d, count=c) for n, o, d, c in fields],
        is_bigendian=big, point_step=point_step, row_step=row_step, data=data, is_dense=dense)


def quat_z(yaw):
    """ROS (x,y,z,w) quaternion of a rotation by ``yaw`` about z."""
    return (0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2))


def make_tf(backend, items):
    """items: (parent, child, (sec, nanosec), translation, quaternion xyzw)."""
    out = []
    for parent, child, stamp, t, q in items:
        if backend == "rosbags":
            tr = RB["geometry_msgs/msg/Transform"](translation=RB["geometry_msgs/msg/Vector3"](x=t[0], y=t[1], z=t[2]),
                                                   rotation=RB["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2],
                                                                                               w=q[3]))
            out.append(RB["geometry_msgs/msg/TransformStamped"](header=header(backend, stamp, parent),
                                                                child_frame_id=child, transform=tr))
        else:
            tr = rcl_geometry.Transform(translation=rcl_geometry.Vector3(x=t[0], y=t[1], z=t[2]),
                                        rotation=rcl_geometry.Quaternion(x=q[0], y=q[1], z=q[2], w=q[3]))
            out.append(rcl_geometry.TransformStamped(header=header(backend, stamp, parent), child_frame_id=child,
                                                     transform=tr))
    if backend == "rosbags":
        return RB["tf2_msgs/msg/TFMessage"](transforms=out)
    if rcl_tf2 is None:
        pytest.skip("tf2_msgs is not importable")
    return rcl_tf2.TFMessage(transforms=out)


def rgb_pattern(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------------------
# Stamps
# ---------------------------------------------------------------------------------------
def test_stamp_to_sec_on_both_backends():
    assert stamp_to_sec(RB["builtin_interfaces/msg/Time"](sec=3, nanosec=250_000_000)) == 3.25
    assert stamp_to_sec(SimpleNamespace(sec=-2, nanosec=500_000_000)) == -1.5
    assert stamp_to_sec(7.5) == 7.5
    if HAVE_RCLPY:
        assert stamp_to_sec(rcl_builtin.Time(sec=1, nanosec=1)) == pytest.approx(1.000000001, abs=1e-12)
    with pytest.raises(MessageDecodeError, match="nanosec"):
        stamp_to_sec(SimpleNamespace(sec=1, nanosec=2_000_000_000))
    with pytest.raises(MessageDecodeError):
        stamp_to_sec("12")
    with pytest.raises(MessageDecodeError, match="non-finite"):
        stamp_to_sec(float("nan"))


@given(st.floats(min_value=-2e9, max_value=4e9, allow_nan=False))
@FUZZ
def test_sec_to_stamp_fields_roundtrip(t):
    sec, nsec = sec_to_stamp_fields(t)
    assert 0 <= nsec < 1_000_000_000
    assert abs(stamp_to_sec(SimpleNamespace(sec=sec, nanosec=nsec)) - t) <= 1e-9 + abs(t) * 4e-16


def test_sec_to_stamp_fields_edges():
    assert sec_to_stamp_fields(1.9999999999) == (2, 0)
    assert sec_to_stamp_fields(-0.25) == (-1, 750_000_000)
    assert sec_to_stamp_fields(1_700_000_000.123456) == (1_700_000_000, 123456001)  # float64 at 1.7e9
    with pytest.raises(ValueError):
        sec_to_stamp_fields(float("inf"))


# ---------------------------------------------------------------------------------------
# sensor_msgs/Image
# ---------------------------------------------------------------------------------------
def encode_raw(rgb, encoding, big=False):
    """(H,W,3) uint8 → (pixel bytes per row (H, W*bpp), expected decoded RGB)."""
    h, w, _ = rgb.shape
    if encoding == "rgb8":
        return rgb.reshape(h, -1), rgb
    if encoding == "bgr8":
        return rgb[:, :, ::-1].reshape(h, -1), rgb
    if encoding in ("rgba8", "bgra8"):
        c = rgb if encoding == "rgba8" else rgb[:, :, ::-1]
        alpha = np.full((h, w, 1), 77, np.uint8)
        return np.concatenate([c, alpha], 2).reshape(h, -1), rgb
    gray = rgb[:, :, 0]
    if encoding == "mono8":
        return gray.reshape(h, -1), np.repeat(gray[:, :, None], 3, 2)
    g16 = gray.astype(np.uint16) * 256 + rgb[:, :, 1]  # low byte must be discarded
    raw = g16.astype(">u2" if big else "<u2").view(np.uint8).reshape(h, -1)
    return raw, np.repeat(gray[:, :, None], 3, 2)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("encoding,big", [("rgb8", 0), ("bgr8", 0), ("rgba8", 0), ("bgra8", 0), ("mono8", 0),
                                          ("mono16", 0), ("mono16", 1)])
@pytest.mark.parametrize("pad", [0, 5])
def test_decode_image_roundtrip(backend, encoding, big, pad):
    rgb = rgb_pattern(5, 7)
    rows, expected = encode_raw(rgb, encoding, big)
    step = rows.shape[1] + pad
    padded = np.full((5, step), 0xEE, np.uint8)
    padded[:, : rows.shape[1]] = rows
    msg = make_image(backend, 5, 7, encoding, step, padded.tobytes(), big)
    out = decode_image(msg)
    assert out.shape == (5, 7, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, expected)


def test_decode_image_after_cdr_roundtrip():
    """A message serialized and read back by rosbags (as from a bag) decodes identically."""
    rgb = rgb_pattern(4, 6, seed=3)
    msg = make_image("rosbags", 4, 6, "bgr8", 18, rgb[:, :, ::-1].tobytes())
    back = TS.deserialize_cdr(TS.serialize_cdr(msg, "sensor_msgs/msg/Image"), "sensor_msgs/msg/Image")
    np.testing.assert_array_equal(decode_image(back), rgb)


@needs_rclpy
def test_decode_image_rclpy_serialized_read_by_rosbags():
    rgb = rgb_pattern(3, 4, seed=4)
    msg = make_image("rclpy", 3, 4, "rgb8", 12, rgb.tobytes())
    back = TS.deserialize_cdr(bytes(serialize_message(msg)), "sensor_msgs/msg/Image")
    np.testing.assert_array_equal(decode_image(back), rgb)


@pytest.mark.parametrize("kwargs,match", [
    ({"encoding": "yuv422"}, "unsupported image encoding"),
    ({"encoding": "32FC1"}, "unsupported image encoding"),
    ({"data": bytes(5 * 21 - 1)}, "expected step\\*height"),
    ({"data": bytes(5 * 21 + 1)}, "expected step\\*height"),
    ({"step": 20}, "step 20 < width"),
    ({"height": 0, "data": b""}, "empty image"),
])
def test_decode_image_errors(kwargs, match):
    base = {"height": 5, "width": 7, "encoding": "rgb8", "is_bigendian": 0, "step": 21, "data": bytes(5 * 21)}
    base.update(kwargs)
    with pytest.raises(MessageDecodeError, match=match):
        decode_image(SimpleNamespace(**base))
    with pytest.raises(MessageDecodeError, match="no field 'encoding'"):
        decode_image(SimpleNamespace(height=1, width=1, step=3, is_bigendian=0, data=b"abc"))


# --- fuzzing helpers: fields that are plausible, junk, or missing -------------------------
JUNK = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=8),
                 st.binary(max_size=16), st.lists(st.integers(-3, 300), max_size=8), st.just(object()))
MISSING = object()


@st.composite
def msg_like(draw, **fields):
    """Strategy of SimpleNamespace messages: plausible fields, then up to two corrupted
    (replaced by junk of any type) or removed."""
    d = {k: draw(v) for k, v in fields.items()}
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        name = draw(st.sampled_from(sorted(fields)))
        d[name] = draw(st.one_of(JUNK, st.just(MISSING)))
    return SimpleNamespace(**{k: v for k, v in d.items() if v is not MISSING})


STAMP = msg_like(sec=st.integers(-5, 2**31), nanosec=st.integers(-5, 10**9 + 5))
HEADER = msg_like(stamp=STAMP, frame_id=st.sampled_from(["", "/map", "base_link", "a/b"]))
SMALL = st.integers(0, 12)


@st.composite
def image_fields(draw):
    """Image sizes that mostly agree with the data length (so decoding often succeeds)."""
    enc = draw(st.sampled_from(["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "RGB8", "bayer_rggb8"]))
    h, w = draw(SMALL), draw(SMALL)
    bpp = {"rgba8": 4, "bgra8": 4, "mono8": 1, "mono16": 2}.get(enc.lower(), 3)
    step = max(0, w * bpp + draw(st.integers(-2, 4)))
    n = max(0, step * h + draw(st.sampled_from([0, 0, 0, -1, 1, 7])))
    return {"height": st.just(h), "width": st.just(w), "encoding": st.just(enc), "step": st.just(step),
            "is_bigendian": st.integers(0, 1), "data": st.binary(min_size=n, max_size=n)}


@given(image_fields().flatmap(lambda f: msg_like(**f)))
@FUZZ
def test_fuzz_decode_image(msg):
    try:
        out = decode_image(msg)
    except MessageDecodeError:
        return
    assert out.dtype == np.uint8 and out.shape == (msg.height, msg.width, 3)


# ---------------------------------------------------------------------------------------
# sensor_msgs/CompressedImage
# ---------------------------------------------------------------------------------------
def encode_pil(arr, fmt, **kw):
    buf = io.BytesIO()
    PILImage.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


def smooth_image(h=24, w=32):
    v, u = np.mgrid[0:h, 0:w]
    return np.stack([u * 255 // (w - 1), v * 255 // (h - 1), (u + v) * 255 // (w + h - 2)], 2).astype(np.uint8)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fmt", ["png", "bgr8; png compressed bgr8", ""])
def test_decode_compressed_png_exact(backend, fmt):
    rgb = rgb_pattern(9, 13, seed=5)
    np.testing.assert_array_equal(decode_compressed_image(make_compressed(backend, fmt, encode_pil(rgb, "PNG"))), rgb)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fmt", ["jpeg", "rgb8; jpeg compressed bgr8", "JPG"])
def test_decode_compressed_jpeg(backend, fmt):
    rgb = smooth_image()
    out = decode_compressed_image(make_compressed(backend, fmt, encode_pil(rgb, "JPEG", quality=95)))
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - rgb).mean() < 3.0


def test_decode_compressed_gray_and_16bit():
    gray = rgb_pattern(6, 5)[:, :, 0]
    out = decode_compressed_image(SimpleNamespace(format="png", data=encode_pil(gray, "PNG")))
    np.testing.assert_array_equal(out, np.repeat(gray[:, :, None], 3, 2))
    g16 = gray.astype(np.uint16) * 256 + 200
    out16 = decode_compressed_image(SimpleNamespace(format="png", data=encode_pil(g16, "PNG")))
    np.testing.assert_array_equal(out16, np.repeat(gray[:, :, None], 3, 2))


def test_decode_compressed_errors():
    png = encode_pil(rgb_pattern(4, 4), "PNG")
    with pytest.raises(MessageDecodeError, match="format says JPEG but data is PNG"):
        decode_compressed_image(SimpleNamespace(format="jpeg", data=png))
    with pytest.raises(MessageDecodeError, match="compressedDepth"):
        decode_compressed_image(SimpleNamespace(format="16UC1; compressedDepth png", data=png))
    with pytest.raises(MessageDecodeError, match="unsupported compressed image format"):
        decode_compressed_image(SimpleNamespace(format="webp", data=png))
    with pytest.raises(MessageDecodeError, match="cannot decode"):
        decode_compressed_image(SimpleNamespace(format="png", data=png[: len(png) // 2]))
    with pytest.raises(MessageDecodeError, match="no data"):
        decode_compressed_image(SimpleNamespace(format="png", data=b""))
    with pytest.raises(MessageDecodeError, match="not JPEG/PNG"):
        decode_compressed_image(SimpleNamespace(format="", data=encode_pil(rgb_pattern(4, 4), "BMP")))


_VALID_PNG = encode_pil(rgb_pattern(5, 6), "PNG")
_VALID_JPG = encode_pil(smooth_image(8, 8), "JPEG")


@given(st.sampled_from([_VALID_PNG, _VALID_JPG, b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b""]),
       st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=6), st.integers(0, 3000),
       st.sampled_from(["png", "jpeg", "", "rgb8; jpeg compressed bgr8", "tiff"]), st.binary(max_size=64))
@FUZZ
def test_fuzz_decode_compressed(base, flips, cut, fmt, tail):
    data = bytearray(base + tail)
    for pos, val in flips:
        if data:
            data[pos % len(data)] = val
    try:
        out = decode_compressed_image(SimpleNamespace(format=fmt, data=bytes(data[: cut or None])))
    except MessageDecodeError:
        return
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3


@given(msg_like(format=st.sampled_from(["png", "jpeg"]), data=st.binary(max_size=64)))
@FUZZ
def test_fuzz_decode_compressed_fields(msg):
    try:
        decode_compressed_image(msg)
    except MessageDecodeError:
        pass


# ---------------------------------------------------------------------------------------
# sensor_msgs/CameraInfo and undistortion
# ---------------------------------------------------------------------------------------
K0 = np.array([[60.0, 0.0, 31.5], [0.0, 58.0, 23.5], [0.0, 0.0, 1.0]])


@pytest.mark.parametrize("backend", BACKENDS)
def test_decode_camera_info(backend):
    info = decode_camera_info(make_camera_info(backend, K0, [-0.2, 0.05, 0.001, -0.002, 0.0]))
    assert isinstance(info, CameraInfoData)
    np.testing.assert_array_equal(info.K, K0)
    assert (info.width, info.height, info.distortion_model) == (64, 48, "plumb_bob")
    assert info.D.dtype == np.float64 and info.D.shape == (5,) and info.is_distorted
    np.testing.assert_array_equal(info.P[:, :3], K0)
    assert not decode_camera_info(make_camera_info(backend, K0, [0.0] * 5)).is_distorted
    assert not decode_camera_info(make_camera_info(backend, K0, [], model="")).is_distorted


def test_decode_camera_info_errors():
    good = make_camera_info("rosbags", K0, [0.0] * 5)
    for bad_k, match in [(np.zeros(9), "not a calibrated pinhole"), (np.r_[K0.reshape(-1)[:8], np.nan], "NaN"),
                         (np.ones(8), "must have 9 values")]:
        good.k = bad_k
        with pytest.raises(MessageDecodeError, match=match):
            decode_camera_info(good)
    with pytest.raises(MessageDecodeError, match="empty size"):
        decode_camera_info(SimpleNamespace(width=0, height=4, k=K0.reshape(-1), d=[], distortion_model=""))


def truth(u, v):
    """A smooth analytic test picture as a function of ideal (undistorted) pixel coords."""
    r = 127.5 + 120 * np.sin(u / 5.0) * np.cos(v / 7.0)
    g = 127.5 + 120 * np.cos((u + v) / 9.0)
    b = 2.0 * u + 1.5 * v
    return np.clip(np.stack([r, g, b], -1), 0, 255)


@pytest.mark.parametrize("model,D", [("plumb_bob", [-0.25, 0.08, 0.002, -0.001, -0.01]),
                                     ("plumb_bob", [0.15, -0.03, 0.0, 0.0]),
                                     ("rational_polynomial", [-0.2, 0.05, 0.001, 0.001, 0.0, 0.1, 0.01, 0.0])])
def test_undistort_image_recovers_pinhole_picture(model, D):
    w, h = 64, 48
    info = CameraInfoData(K=K0, width=w, height=h, distortion_model=model, D=np.array(D))
    # The raw (distorted) image: each raw pixel shows the ideal picture at its undistorted position.
    vd, ud = np.mgrid[0:h, 0:w].astype(float)
    ideal = undistort_points(np.stack([ud.ravel(), vd.ravel()], 1), info).reshape(h, w, 2)
    raw = np.rint(truth(ideal[..., 0], ideal[..., 1])).astype(np.uint8)
    out, K = undistort_image(raw, info)
    np.testing.assert_array_equal(K, K0)
    v, u = np.mgrid[0:h, 0:w].astype(float)
    expect = truth(u, v)
    # Compare where the source pixel lies well inside the raw image.
    x, y = (u - K0[0, 2]) / K0[0, 0], (v - K0[1, 2]) / K0[1, 1]
    xd, yd = distort_normalized(x, y, model, np.array(D))
    us, vs = K0[0, 0] * xd + K0[0, 2], K0[1, 1] * yd + K0[1, 2]
    inside = (us > 1) & (us < w - 2) & (vs > 1) & (vs < h - 2)
    assert inside.mean() > 0.6
    err = np.abs(out.astype(float) - expect)[inside]
    assert err.mean() < 2.0 and err.max() < 20
    # Ideal pixels whose source lies outside the raw image are black.
    outside = (us <= -1) | (us >= w) | (vs <= -1) | (vs >= h)
    assert (out[outside] == 0).all()
    if D[0] > 0:  # pincushion: the corners see beyond the raw image
        assert outside.sum() > 10
    # Undistortion changed the picture (the check above is not trivially satisfied).
    assert np.abs(raw.astype(float) - expect)[inside].mean() > 5 * err.mean()


def test_distortion_model_values_and_inverse():
    # k1 only, on the x axis: xd = x (1 + k1 x^2)
    xd, yd = distort_normalized(np.array([0.1]), np.array([0.0]), "plumb_bob", np.array([0.5, 0, 0, 0, 0]))
    assert xd[0] == pytest.approx(0.1 * (1 + 0.5 * 0.01)) and yd[0] == 0.0
    # tangential p1: yd = y + p1 (r^2 + 2 y^2) + ...
    xd, yd = distort_normalized(np.array([0.0]), np.array([0.2]), "plumb_bob", np.array([0, 0, 0.01, 0, 0]))
    assert yd[0] == pytest.approx(0.2 + 0.01 * (0.04 + 2 * 0.04))
    # Every coefficient, against the OpenCV formulas written out term by term.
    rng = np.random.default_rng(1)
    x, y = rng.uniform(-0.6, 0.6, 50), rng.uniform(-0.5, 0.5, 50)
    k1, k2, p1, p2, k3, k4, k5, k6 = rng.uniform(-0.1, 0.1, 8)
    r2 = x**2 + y**2
    for model, D, rad in [
        ("plumb_bob", [k1, k2, p1, p2, k3], 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3),
        ("rational_polynomial", [k1, k2, p1, p2, k3, k4, k5, k6],
         (1 + k1 * r2 + k2 * r2**2 + k3 * r2**3) / (1 + k4 * r2 + k5 * r2**2 + k6 * r2**3)),
    ]:
        xd, yd = distort_normalized(x, y, model, np.array(D))
        np.testing.assert_allclose(xd, x * rad + 2 * p1 * x * y + p2 * (r2 + 2 * x**2), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(yd, y * rad + p1 * (r2 + 2 * y**2) + 2 * p2 * x * y, rtol=1e-12, atol=1e-15)
    info = CameraInfoData(K=K0, width=64, height=48, distortion_model="plumb_bob",
                          D=np.array([-0.25, 0.08, 0.002, -0.001, -0.01]))
    uv = np.random.default_rng(0).uniform([0, 0], [64, 48], size=(200, 2))
    ideal = undistort_points(uv, info)
    x, y = (ideal[:, 0] - K0[0, 2]) / K0[0, 0], (ideal[:, 1] - K0[1, 2]) / K0[1, 1]
    xd, yd = distort_normalized(x, y, "plumb_bob", info.D)
    np.testing.assert_allclose(np.stack([K0[0, 0] * xd + K0[0, 2], K0[1, 1] * yd + K0[1, 2]], 1), uv, atol=1e-6)


def test_undistort_refuses_and_passes_through():
    img = rgb_pattern(48, 64)
    info = CameraInfoData(K=K0, width=64, height=48, distortion_model="equidistant", D=np.array([0.1, 0, 0, 0]))
    with pytest.raises(MessageDecodeError, match="unsupported distortion model 'equidistant'"):
        undistort_image(img, info)
    with pytest.raises(MessageDecodeError, match="at most 5"):
        undistort_image(img, CameraInfoData(K0, 64, 48, "plumb_bob", np.ones(6) * 0.01))
    with pytest.raises(MessageDecodeError, match="camera info says 64x48"):
        undistort_image(rgb_pattern(10, 10), CameraInfoData(K0, 64, 48, "plumb_bob", np.array([0.1])))
    same, K = undistort_image(img, CameraInfoData(K0, 64, 48, "equidistant", np.zeros(4)))
    np.testing.assert_array_equal(same, img)
    np.testing.assert_array_equal(K, K0)


@given(msg_like(width=SMALL, height=SMALL, k=st.lists(st.floats(-10, 100), min_size=8, max_size=10),
                d=st.lists(st.floats(), max_size=9),
                distortion_model=st.sampled_from(["plumb_bob", "rational_polynomial", "equidistant", ""])))
@FUZZ
def test_fuzz_decode_camera_info(msg):
    try:
        decode_camera_info(msg)
    except MessageDecodeError:
        pass


# ---------------------------------------------------------------------------------------
# sensor_msgs/PointCloud2
# ---------------------------------------------------------------------------------------
LIDAR_FIELDS = [("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1), ("intensity", 16, 7, 1), ("ring", 20, 4, 1),
                ("t", 24, 8, 1)]  # bytes 12..16 and 22..24 are padding


def lidar_cloud_bytes(h, w, big=False, row_pad=6, seed=0):
    """Pack a cloud with padding fields and row padding; returns (bytes, columns, point_step, row_step)."""
    rng = np.random.default_rng(seed)
    n = h * w
    cols = {"x": rng.normal(size=n).astype(np.float32), "y": rng.normal(size=n).astype(np.float32),
            "z": rng.normal(size=n).astype(np.float32), "intensity": rng.uniform(0, 1, n).astype(np.float32),
            "ring": rng.integers(0, 64, n).astype(np.uint16), "t": rng.uniform(0, 0.1, n)}
    cols["x"][1] = np.nan  # an invalid return (is_dense=False)
    e = ">" if big else "<"
    dt = np.dtype({"names": ["x", "y", "z", "intensity", "ring", "t"],
                   "formats": [e + "f4", e + "f4", e + "f4", e + "f4", e + "u2", e + "f8"],
                   "offsets": [0, 4, 8, 16, 20, 24], "itemsize": 32})
    pts = np.zeros(n, dt)
    pts.view(np.uint8)[:] = 0xAB  # garbage in the padding bytes
    for k, v in cols.items():
        pts[k] = v
    rows = pts.view(np.uint8).reshape(h, w * 32)
    row_step = w * 32 + row_pad
    buf = np.full((h, row_step), 0xCD, np.uint8)
    buf[:, : w * 32] = rows
    return buf.tobytes(), cols, 32, row_step


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("big", [False, True])
def test_decode_pointcloud2_roundtrip(backend, big):
    data, cols, ps, rs = lidar_cloud_bytes(3, 4, big=big)
    msg = make_cloud(backend, LIDAR_FIELDS, 3, 4, ps, rs, data, big=big)
    out = decode_pointcloud2(msg)
    assert list(out) == ["x", "y", "z", "intensity", "ring", "t"]
    for k, v in cols.items():
        assert out[k].dtype == v.dtype.newbyteorder("=") and out[k].shape == (12,)
        np.testing.assert_array_equal(out[k], v)
    xyz = pointcloud_xyz(msg)
    assert xyz.dtype == np.float32 and xyz.shape == (11, 3)  # the NaN point is dropped
    keep = np.arange(12) != 1
    np.testing.assert_array_equal(xyz, np.stack([cols["x"], cols["y"], cols["z"]], 1)[keep])
    xyzi = pointcloud_xyz(msg, with_intensity=True)
    np.testing.assert_array_equal(xyzi[:, 3], cols["intensity"][keep])


@pytest.mark.parametrize("datatype,np_type", [(1, "i1"), (2, "u1"), (3, "i2"), (4, "u2"), (5, "i4"), (6, "u4"),
                                              (7, "f4"), (8, "f8")])
def test_decode_pointcloud2_every_datatype_and_count(datatype, np_type):
    rng = np.random.default_rng(datatype)
    info = np.iinfo(np_type) if np_type[0] in "iu" else None
    vals = (rng.integers(info.min, info.max, size=(5, 3), endpoint=True).astype(np_type) if info
            else rng.normal(size=(5, 3)).astype(np_type))
    size = np.dtype(np_type).itemsize
    point_step = 1 + 3 * size + 2  # unaligned offset 1, trailing padding
    buf = np.zeros((5, point_step), np.uint8)
    buf[:, 1: 1 + 3 * size] = vals.astype(np.dtype(np_type).newbyteorder("<")).view(np.uint8).reshape(5, -1)
    msg = make_cloud("rosbags", [("v", 1, datatype, 3)], 1, 5, point_step, 5 * point_step, buf.tobytes())
    out = decode_pointcloud2(msg)["v"]
    assert out.shape == (5, 3)
    np.testing.assert_array_equal(out, vals)


@needs_rclpy
def test_pointcloud_rclpy_serialized_read_by_rosbags():
    data, cols, ps, rs = lidar_cloud_bytes(2, 5, row_pad=0)
    msg = make_cloud("rclpy", LIDAR_FIELDS, 2, 5, ps, rs, data)
    back = TS.deserialize_cdr(bytes(serialize_message(msg)), "sensor_msgs/msg/PointCloud2")
    for m in (msg, back):
        np.testing.assert_array_equal(decode_pointcloud2(m)["ring"], cols["ring"])


def test_empty_pointcloud_is_valid():
    msg = make_cloud("rosbags", LIDAR_FIELDS, 1, 0, 32, 0, b"")
    assert decode_pointcloud2(msg)["x"].shape == (0,)
    assert pointcloud_xyz(msg).shape == (0, 3)


@pytest.mark.parametrize("change,match", [
    ({"fields": [("x", 0, 9, 1)]}, "unknown datatype 9"),
    ({"fields": [("x", 30, 7, 1)]}, "overruns point_step"),
    ({"fields": [("x", 0, 7, 0)]}, "count 0"),
    ({"fields": [("x", 0, 7, 1), ("x", 4, 7, 1)]}, "duplicate point field"),
    ({"trunc": 1}, "expected row_step\\*height"),
    ({"row_step": 100}, "row_step 100 < width\\*point_step"),
    ({"point_step": 0, "fields": []}, "point_step is 0"),
])
def test_decode_pointcloud2_errors(change, match):
    data, _, ps, rs = lidar_cloud_bytes(2, 4)
    fields = change.get("fields", LIDAR_FIELDS)
    if "trunc" in change:
        data = data[:-change["trunc"]]
    msg = make_cloud("rosbags", fields, 2, 4, change.get("point_step", ps), change.get("row_step", rs), data)
    with pytest.raises(MessageDecodeError, match=match):
        decode_pointcloud2(msg)


def test_pointcloud_xyz_needs_fields():
    data, _, ps, rs = lidar_cloud_bytes(1, 4, row_pad=0)
    msg = make_cloud("rosbags", [f for f in LIDAR_FIELDS if f[0] != "intensity"], 1, 4, ps, rs, data)
    pointcloud_xyz(msg)
    with pytest.raises(MessageDecodeError, match="no field\\(s\\) \\['intensity'\\]"):
        pointcloud_xyz(msg, with_intensity=True)


FIELD = msg_like(name=st.sampled_from(["x", "y", "z", "intensity", "", "x"]), offset=st.integers(0, 16),
                 datatype=st.integers(0, 9), count=st.integers(0, 3))


XYZI_FIELDS = [SimpleNamespace(name=n, offset=4 * i, datatype=7, count=1) for i, n in enumerate("xyz")] + [
    SimpleNamespace(name="intensity", offset=12, datatype=2, count=1)]


@st.composite
def cloud_fields(draw):
    """Cloud layouts that mostly agree with the data length (so decoding often succeeds)."""
    h, w = draw(st.integers(0, 4)), draw(st.integers(0, 6))
    point_step = draw(st.integers(0, 40))
    row_step = max(0, w * point_step + draw(st.sampled_from([0, 0, 3, -1])))
    n = max(0, row_step * h + draw(st.sampled_from([0, 0, 0, -1, 2])))
    return {"height": st.just(h), "width": st.just(w), "point_step": st.just(point_step),
            "row_step": st.just(row_step), "is_bigendian": st.booleans(),
            "fields": st.one_of(st.lists(FIELD, max_size=5), st.just(XYZI_FIELDS)),
            "data": st.binary(min_size=n, max_size=n)}


@given(cloud_fields().flatmap(lambda f: msg_like(**f)), st.booleans())
@FUZZ
def test_fuzz_decode_pointcloud2(msg, with_intensity):
    for fn in (decode_pointcloud2, lambda m: pointcloud_xyz(m, with_intensity=with_intensity)):
        try:
            fn(msg)
        except MessageDecodeError:
            pass


# ---------------------------------------------------------------------------------------
# tf2_msgs/TFMessage
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_decode_tf_message(backend, caplog):
    msg = make_tf(backend, [("/map", "/base_link", (5, 250_000_000), (1.0, 2.0, 3.0), quat_z(math.pi / 2)),
                            ("base_link", "velodyne", (5, 0), (0.5, 0.0, 1.8), (0.0, 0.0, 0.0, 2.0)),
                            ("map", "bad", (5, 0), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.0))])
    recs = decode_tf_message(msg)
    assert [(r.parent, r.child, r.stamp) for r in recs] == [("map", "base_link", 5.25), ("base_link", "velodyne", 5.0)]
    T = recs[0].T
    np.testing.assert_allclose(T @ [1, 0, 0, 1], [1, 3, 3, 1], atol=1e-12)  # x axis → y, then translate
    np.testing.assert_allclose(recs[1].T[:3, :3], np.eye(3), atol=1e-12)  # w=2 normalized
    np.testing.assert_allclose(recs[0].T_child_parent, invert_transform(T))
    assert "zero-norm quaternion" in caplog.text
    with pytest.raises(MessageDecodeError, match="zero-norm quaternion"):
        decode_tf_message(msg, strict=True)


def test_decode_tf_message_rejects_nonfinite_and_self_loops():
    msg = make_tf("rosbags", [("map", "a", (0, 0), (np.nan, 0.0, 0.0), (0, 0, 0, 1)),
                              ("map", "map", (0, 0), (0.0, 0.0, 0.0), (0, 0, 0, 1)),
                              ("", "b", (0, 0), (0.0, 0.0, 0.0), (0, 0, 0, 1)),
                              ("map", "c", (0, 0), (0.0, 0.0, 0.0), (0, 0, 1e300, 1e300))])
    assert decode_tf_message(msg) == []
    with pytest.raises(MessageDecodeError, match="non-finite"):
        decode_tf_message(msg, strict=True)


VEC = msg_like(x=st.floats(), y=st.floats(), z=st.floats())
QUAT = msg_like(x=st.floats(-2, 2), y=st.floats(-2, 2), z=st.floats(-2, 2), w=st.floats())
TSTAMPED = msg_like(header=HEADER, child_frame_id=st.sampled_from(["", "/a", "b", "map"]),
                    transform=msg_like(translation=VEC, rotation=QUAT))


@given(msg_like(transforms=st.lists(TSTAMPED, max_size=4)), st.booleans())
@FUZZ
def test_fuzz_decode_tf_message(msg, strict):
    try:
        recs = decode_tf_message(msg, strict=strict)
    except MessageDecodeError:
        return
    for r in recs:
        assert r.T.shape == (4, 4) and np.isfinite(r.T).all() and not r.parent.startswith("/")


# ---------------------------------------------------------------------------------------
# visualization_msgs/MarkerArray
# ---------------------------------------------------------------------------------------
def make_marker(mid, mtype, action=0, pos=(1.0, 2.0, 0.5), q=(0.0, 0.0, 0.0, 1.0), scale=(4.0, 2.0, 1.5)):
    M = RB["visualization_msgs/msg/Marker"]
    G = RB
    return M(header=header("rosbags", (3, 0), "/map"), ns="cars", id=mid, type=mtype, action=action,
             pose=G["geometry_msgs/msg/Pose"](position=G["geometry_msgs/msg/Point"](x=pos[0], y=pos[1], z=pos[2]),
                                              orientation=G["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2],
                                                                                            w=q[3])),
             scale=G["geometry_msgs/msg/Vector3"](x=scale[0], y=scale[1], z=scale[2]),
             color=G["std_msgs/msg/ColorRGBA"](r=1.0, g=0.0, b=0.0, a=1.0),
             lifetime=G["builtin_interfaces/msg/Duration"](sec=0, nanosec=0), frame_locked=False, points=[],
             colors=[], texture_resource="",
             texture=RB["sensor_msgs/msg/CompressedImage"](header=header("rosbags"), format="",
                                                           data=np.zeros(0, np.uint8)),
             uv_coordinates=[], text="", mesh_resource="",
             mesh_file=G["visualization_msgs/msg/MeshFile"](filename="", data=np.zeros(0, np.uint8)),
             mesh_use_embedded_materials=False)


def test_decode_marker_array():
    msg = RB["visualization_msgs/msg/MarkerArray"](markers=[
        make_marker(7, 1, q=quat_z(math.pi)), make_marker(8, 2), make_marker(9, 1, action=2, q=(0, 0, 0, 0)),
        make_marker(10, 1, q=(0, 0, 0, 0))])
    back = TS.deserialize_cdr(TS.serialize_cdr(msg, "visualization_msgs/msg/MarkerArray"),
                              "visualization_msgs/msg/MarkerArray")
    obs = decode_marker_array(back)
    assert [(o.actor_id, o.action) for o in obs] == [(7, 0), (9, 2)]  # sphere ignored, bad ADD skipped
    o = obs[0]
    assert o.frame_id == "map" and o.stamp == 3.0 and o.ns == "cars"
    np.testing.assert_allclose(o.size, [4.0, 2.0, 1.5])
    np.testing.assert_allclose(o.T_frame_box @ [1, 0, 0, 1], [0, 2, 0.5, 1], atol=1e-12)
    np.testing.assert_array_equal(obs[1].T_frame_box, np.eye(4))
    with pytest.raises(MessageDecodeError, match="zero-norm"):
        decode_marker_array(back, strict=True)


MARKER = msg_like(header=HEADER, ns=st.text(max_size=3), id=st.integers(-3, 3), type=st.integers(0, 3),
                  action=st.integers(0, 3), pose=msg_like(position=VEC, orientation=QUAT), scale=VEC)


@given(msg_like(markers=st.lists(MARKER, max_size=4)), st.booleans())
@FUZZ
def test_fuzz_decode_marker_array(msg, strict):
    try:
        obs = decode_marker_array(msg, strict=strict)
    except MessageDecodeError:
        return
    for o in obs:
        assert np.isfinite(o.T_frame_box).all() and (o.size >= 0).all()


@given(msg_like(sec=st.integers(-(2**64), 2**64), nanosec=st.integers(-(2**40), 2**40)))
@FUZZ
def test_fuzz_stamp(stamp):
    try:
        assert math.isfinite(stamp_to_sec(stamp))
    except MessageDecodeError:
        pass

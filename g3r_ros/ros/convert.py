"""NumPy/core ↔ rclpy message conversion (the adapter's boundary; imports only message packages).

Outgoing (core → ROS): :func:`image_to_msg`, :func:`camera_info_to_msg`,
:func:`structured_to_pointcloud2`, :func:`diagnostic_array`, :func:`matrix_to_pose`,
:func:`matrix_to_transform_stamped`. Incoming helpers that only the adapter needs (render
requests, reading our own outputs back in tests and tools): :func:`image_msg_to_array`,
:func:`pointcloud2_to_structured`, :func:`pose_to_matrix`, :func:`diagnostic_values`.

Sensor streams (images, clouds, TF) are *not* decoded here: the node receives them as raw
CDR and hands them to the ROS-free core (``g3r_ros.messages`` / ``window_builder``), so a
live stream and a bag go through the same decoder.

All message → NumPy functions raise ``ValueError`` with a reason on malformed input; none
of them trusts sizes written in a message.
"""

from __future__ import annotations

import array

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Pose, TransformStamped
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from ..geometry import make_transform, quat_to_rotmat, quat_wxyz_to_xyzw, quat_xyzw_to_wxyz, rotmat_to_quat

# PointField datatype ↔ NumPy dtype (little endian; is_bigendian flips the byte order).
POINTFIELD_DTYPES = {
    PointField.INT8: np.dtype("i1"), PointField.UINT8: np.dtype("u1"),
    PointField.INT16: np.dtype("<i2"), PointField.UINT16: np.dtype("<u2"),
    PointField.INT32: np.dtype("<i4"), PointField.UINT32: np.dtype("<u4"),
    PointField.FLOAT32: np.dtype("<f4"), PointField.FLOAT64: np.dtype("<f8"),
}
_DTYPE_TO_POINTFIELD = {(dt.kind, dt.itemsize): code for code, dt in POINTFIELD_DTYPES.items()}

# Image encodings the adapter reads/writes: encoding → (channels, dtype).
IMAGE_ENCODINGS = {
    "rgb8": (3, np.dtype("u1")), "bgr8": (3, np.dtype("u1")), "rgba8": (4, np.dtype("u1")),
    "bgra8": (4, np.dtype("u1")), "mono8": (1, np.dtype("u1")), "mono16": (1, np.dtype("<u2")),
    "16UC1": (1, np.dtype("<u2")), "32FC1": (1, np.dtype("<f4")),
}


def _bytes_field(buf: np.ndarray) -> array.array:
    """A ``uint8[]`` message field from a contiguous array, without per-element checks."""
    out = array.array("B")
    out.frombytes(np.ascontiguousarray(buf).tobytes())
    return out


def _as_uint8(data) -> np.ndarray:
    """A message's ``uint8[]`` payload (array.array, bytes, list or ndarray) as a uint8 view."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype.itemsize == 1 else data.astype(np.uint8)
    if isinstance(data, (bytes, bytearray, memoryview, array.array)):
        return np.frombuffer(data, dtype=np.uint8)
    return np.asarray(list(data), dtype=np.uint8)


# ---------------------------------------------------------------------------------------
# Stamps and headers
# ---------------------------------------------------------------------------------------
def time_from_sec(stamp: float) -> Time:
    """Float seconds (finite, >= 0) → builtin_interfaces/Time."""
    stamp = float(stamp)
    if not np.isfinite(stamp) or stamp < 0:
        raise ValueError(f"stamp must be finite and non-negative, got {stamp}")
    ns = round(stamp * 1e9)
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def sec_from_time(t) -> float:
    """builtin_interfaces/Time (rclpy or rosbags) → float seconds."""
    return float(t.sec) + float(t.nanosec) * 1e-9


def make_header(stamp, frame_id: str) -> Header:
    """std_msgs/Header; ``stamp`` is float seconds or a builtin_interfaces/Time (copied)."""
    t = stamp if isinstance(stamp, Time) else time_from_sec(stamp)
    return Header(stamp=Time(sec=t.sec, nanosec=t.nanosec), frame_id=str(frame_id))


# ---------------------------------------------------------------------------------------
# Images and camera info
# ---------------------------------------------------------------------------------------
def image_to_msg(image: np.ndarray, stamp, frame_id: str, encoding: str = "rgb8") -> Image:
    """(H,W,3) uint8 RGB → Image (``rgb8`` or ``bgr8``); (H,W) arrays → ``mono8``/``mono16``/``32FC1``.

    The encoding must match the array: rgb8/bgr8 take (H,W,3) uint8, mono8 (H,W) uint8,
    mono16/16UC1 (H,W) uint16, 32FC1 (H,W) float32.
    """
    image = np.asarray(image)
    if encoding not in IMAGE_ENCODINGS:
        raise ValueError(f"unsupported encoding {encoding!r}; supported: {sorted(IMAGE_ENCODINGS)}")
    channels, dtype = IMAGE_ENCODINGS[encoding]
    if encoding in ("rgba8", "bgra8"):
        raise ValueError(f"image_to_msg writes rgb8/bgr8/mono encodings, not {encoding}")
    if channels == 3:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"{encoding} needs an (H,W,3) uint8 image, got {image.dtype} {image.shape}")
        if encoding == "bgr8":
            image = image[:, :, ::-1]
    elif image.ndim != 2 or image.dtype.kind != dtype.kind or image.dtype.itemsize != dtype.itemsize:
        raise ValueError(f"{encoding} needs an (H,W) {dtype} image, got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    if h == 0 or w == 0:
        raise ValueError(f"image must not be empty, got {image.shape}")
    data = np.ascontiguousarray(image, dtype=dtype.newbyteorder("<") if dtype.itemsize > 1 else dtype)
    msg = Image(header=make_header(stamp, frame_id), height=h, width=w, encoding=encoding, is_bigendian=0,
                step=w * channels * dtype.itemsize)
    msg.data = _bytes_field(data)
    return msg


def image_msg_to_array(msg) -> np.ndarray:
    """Image → array: rgb8/bgr8/rgba8/bgra8 → (H,W,3) uint8 RGB (alpha dropped); mono8 → (H,W) uint8;
    mono16/16UC1 → (H,W) uint16; 32FC1 → (H,W) float32. Row padding (``step``) and big-endian
    data are handled. Raises ``ValueError`` for an unknown encoding or an inconsistent size."""
    enc = str(msg.encoding)
    if enc not in IMAGE_ENCODINGS:
        raise ValueError(f"unsupported image encoding {enc!r}")
    channels, dtype = IMAGE_ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise ValueError(f"image has an empty size {w}x{h}")
    row = w * channels * dtype.itemsize
    if step < row:
        raise ValueError(f"image step {step} is smaller than a row ({w} px x {channels * dtype.itemsize} B)")
    data = _as_uint8(msg.data)
    if data.size < step * (h - 1) + row:
        raise ValueError(f"image data has {data.size} bytes, {enc} {w}x{h} step {step} needs {step * h}")
    if data.size > step * h:
        raise ValueError(f"image data has {data.size} bytes, more than height x step = {step * h}")
    if data.size < step * h:  # last row not padded: pad so that rows can be strided uniformly
        data = np.concatenate([data, np.zeros(step * h - data.size, np.uint8)])
    rows = data.reshape(h, step)[:, :row]
    dt = dtype.newbyteorder(">") if (msg.is_bigendian and dtype.itemsize > 1) else dtype
    px = np.ascontiguousarray(rows).view(dt).reshape(h, w, channels).astype(dtype.newbyteorder("="))
    if channels == 1:
        return px[:, :, 0]
    if enc.startswith("bgr"):
        px = px[:, :, 2::-1]
    return np.ascontiguousarray(px[:, :, :3])


def camera_info_to_msg(K: np.ndarray, width: int, height: int, stamp, frame_id: str) -> CameraInfo:
    """Rectified pinhole intrinsics K (3,3) pixels → CameraInfo (plumb_bob, D = 0, R = I, P = [K|0])."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3) or not np.isfinite(K).all():
        raise ValueError(f"K must be a finite (3,3) matrix, got shape {K.shape}")
    if int(width) <= 0 or int(height) <= 0:
        raise ValueError(f"camera size must be positive, got {width}x{height}")
    P = np.zeros((3, 4))
    P[:, :3] = K
    return CameraInfo(header=make_header(stamp, frame_id), width=int(width), height=int(height),
                      distortion_model="plumb_bob", d=[0.0] * 5, k=K.reshape(-1).tolist(),
                      r=np.eye(3).reshape(-1).tolist(), p=P.reshape(-1).tolist())


def camera_info_to_intrinsics(msg) -> tuple[np.ndarray, int, int]:
    """CameraInfo → (K (3,3), width, height); rejects zero sizes and non-finite or singular K."""
    K = np.asarray(msg.k, dtype=np.float64)
    if K.size != 9:
        raise ValueError(f"CameraInfo.k must have 9 values, got {K.size}")
    K = K.reshape(3, 3)
    w, h = int(msg.width), int(msg.height)
    if w <= 0 or h <= 0:
        raise ValueError(f"CameraInfo has an empty size {w}x{h}")
    if not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"CameraInfo K is not a valid pinhole matrix: {K.tolist()}")
    return K, w, h


# ---------------------------------------------------------------------------------------
# PointCloud2
# ---------------------------------------------------------------------------------------
def structured_to_pointcloud2(points: np.ndarray, stamp, frame_id: str) -> PointCloud2:
    """A 1-D structured array (one record per point) → unorganized PointCloud2 (height 1).

    Every field must be a scalar (or fixed sub-array, written with ``count``) of a PointField
    type: int8/16/32, uint8/16/32, float32/64. Field offsets and padding follow the dtype.
    ``is_dense`` is True when all floating fields are finite.
    """
    points = np.asarray(points)
    if points.dtype.names is None or points.ndim != 1:
        raise ValueError(f"expected a 1-D structured array, got dtype {points.dtype} shape {points.shape}")
    fields = []
    dense = True
    for name in points.dtype.names:
        ft, offset = points.dtype.fields[name][:2]
        base, count = (ft.base, int(np.prod(ft.shape))) if ft.shape else (ft, 1)
        code = _DTYPE_TO_POINTFIELD.get((base.kind, base.itemsize))
        if code is None:
            raise ValueError(f"field {name!r} has dtype {ft}, which PointCloud2 cannot carry")
        if base.itemsize > 1 and base.byteorder == ">":
            raise ValueError(f"field {name!r} is big endian; convert to little endian first")
        fields.append(PointField(name=name, offset=int(offset), datatype=code, count=count))
        if base.kind == "f" and len(points) and not np.isfinite(points[name]).all():
            dense = False
    step = points.dtype.itemsize
    msg = PointCloud2(header=make_header(stamp, frame_id), height=1, width=len(points), fields=fields,
                      is_bigendian=False, point_step=step, row_step=step * len(points), is_dense=dense)
    msg.data = _bytes_field(np.ascontiguousarray(points).view(np.uint8))
    return msg


def pointcloud2_dtype(fields, point_step: int, bigendian: bool = False) -> np.dtype:
    """The structured dtype of one point from PointField descriptions (offsets, padding kept)."""
    names, formats, offsets = [], [], []
    for f in fields:
        name = str(f.name)
        dt = POINTFIELD_DTYPES.get(int(f.datatype))
        if dt is None:
            raise ValueError(f"PointField {name!r} has unknown datatype {f.datatype}")
        if not name or name in names:
            raise ValueError(f"PointField names must be unique and non-empty, got {name!r}")
        count = int(f.count)
        if count < 1:
            raise ValueError(f"PointField {name!r} has count {count} < 1")
        if bigendian and dt.itemsize > 1:
            dt = dt.newbyteorder(">")
        offset = int(f.offset)
        if offset < 0 or offset + dt.itemsize * count > point_step:
            raise ValueError(f"PointField {name!r} (offset {offset}, {count} x {dt.itemsize} B) "
                             f"does not fit point_step {point_step}")
        names.append(name)
        formats.append(dt if count == 1 else (dt, (count,)))
        offsets.append(offset)
    if not names:
        raise ValueError("PointCloud2 has no fields")
    try:
        return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": int(point_step)})
    except ValueError as e:  # overlapping fields with object types cannot happen; keep the message clear
        raise ValueError(f"invalid PointCloud2 layout: {e}") from None


def pointcloud2_to_structured(msg) -> np.ndarray:
    """PointCloud2 → 1-D structured array of its ``height * width`` points (row padding dropped),
    in native byte order. Raises ``ValueError`` if the layout does not fit the data."""
    h, w = int(msg.height), int(msg.width)
    step, row_step = int(msg.point_step), int(msg.row_step)
    if h < 0 or w < 0 or step <= 0:
        raise ValueError(f"PointCloud2 has an invalid size: height {h}, width {w}, point_step {step}")
    dtype = pointcloud2_dtype(msg.fields, step, bool(msg.is_bigendian))
    n = h * w
    data = _as_uint8(msg.data)
    if n == 0:
        return np.zeros(0, dtype=_native(dtype))
    if row_step < w * step:
        raise ValueError(f"PointCloud2 row_step {row_step} < width {w} x point_step {step}")
    if data.size < row_step * (h - 1) + w * step:
        raise ValueError(f"PointCloud2 data has {data.size} bytes, {h}x{w} points need {row_step * h}")
    if data.size < row_step * h:
        data = np.concatenate([data, np.zeros(row_step * h - data.size, np.uint8)])
    rows = data[: row_step * h].reshape(h, row_step)[:, : w * step]
    out = np.ascontiguousarray(rows).reshape(-1).view(dtype)
    return out.astype(_native(dtype))


def _native(dtype: np.dtype) -> np.dtype:
    return np.dtype({"names": list(dtype.names),
                     "formats": [dtype.fields[n][0].newbyteorder("=") for n in dtype.names],
                     "offsets": [dtype.fields[n][1] for n in dtype.names], "itemsize": dtype.itemsize})


def pointcloud2_xyz(msg) -> np.ndarray:
    """(N,3) float32 x,y,z of a PointCloud2 (any field datatype), finite or not."""
    pts = pointcloud2_to_structured(msg)
    missing = [c for c in "xyz" if c not in (pts.dtype.names or ())]
    if missing:
        raise ValueError(f"PointCloud2 lacks field(s) {missing}")
    return np.stack([pts[c].astype(np.float32) for c in "xyz"], axis=1)


# ---------------------------------------------------------------------------------------
# Poses and transforms
# ---------------------------------------------------------------------------------------
def _translation_quat_to_matrix(v, q, what: str) -> np.ndarray:
    """A message's translation ``v`` (x, y, z) and quaternion ``q`` (x, y, z, w) → (4,4)."""
    t = np.array([v.x, v.y, v.z], dtype=np.float64)
    quat = np.array([q.x, q.y, q.z, q.w], dtype=np.float64)
    if not (np.isfinite(t).all() and np.isfinite(quat).all()):
        raise ValueError(f"{what} contains NaN or Inf")
    return make_transform(quat_to_rotmat(quat_xyzw_to_wxyz(quat)), t)


def pose_to_matrix(pose) -> np.ndarray:
    """geometry_msgs/Pose → (4,4) transform ``T_frame_pose``. Raises on NaN or a zero quaternion."""
    return _translation_quat_to_matrix(pose.position, pose.orientation, "pose")


def transform_to_matrix(tf) -> np.ndarray:
    """geometry_msgs/Transform → (4,4). Raises on NaN or a zero quaternion."""
    return _translation_quat_to_matrix(tf.translation, tf.rotation, "transform")


def matrix_to_pose(T: np.ndarray) -> Pose:
    """(4,4) rigid transform → geometry_msgs/Pose."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4) or not np.isfinite(T).all():
        raise ValueError(f"expected a finite (4,4) transform, got shape {T.shape}")
    q = quat_wxyz_to_xyzw(rotmat_to_quat(T[:3, :3]))
    p = Pose()
    p.position.x, p.position.y, p.position.z = (float(v) for v in T[:3, 3])
    p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = (float(v) for v in q)
    return p


def matrix_to_transform_stamped(T_parent_child: np.ndarray, stamp, parent: str, child: str) -> TransformStamped:
    """(4,4) ``T_parent_child`` → TransformStamped (header.frame_id = parent)."""
    pose = matrix_to_pose(T_parent_child)
    msg = TransformStamped(header=make_header(stamp, parent), child_frame_id=str(child))
    msg.transform.translation.x = pose.position.x
    msg.transform.translation.y = pose.position.y
    msg.transform.translation.z = pose.position.z
    msg.transform.rotation = pose.orientation
    return msg


# ---------------------------------------------------------------------------------------
# Diagnostics
# ---------------------------------------------------------------------------------------
_LEVELS = {"ok": DiagnosticStatus.OK, "warn": DiagnosticStatus.WARN, "error": DiagnosticStatus.ERROR,
           "stale": DiagnosticStatus.STALE}


def _value_str(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def diagnostic_status(name: str, values: dict, *, level: str = "ok", message: str = "",
                      hardware_id: str = "") -> DiagnosticStatus:
    """One DiagnosticStatus; ``values`` (flat mapping) become KeyValue strings in insertion order."""
    if level not in _LEVELS:
        raise ValueError(f"diagnostic level must be one of {sorted(_LEVELS)}, got {level!r}")
    return DiagnosticStatus(level=_LEVELS[level], name=str(name), message=str(message), hardware_id=str(hardware_id),
                            values=[KeyValue(key=str(k), value=_value_str(v)) for k, v in values.items()])


def diagnostic_array(statuses: list[DiagnosticStatus], stamp) -> DiagnosticArray:
    """DiagnosticArray of ``statuses`` stamped ``stamp``."""
    return DiagnosticArray(header=make_header(stamp, ""), status=list(statuses))


def diagnostic_values(msg: DiagnosticArray) -> dict[str, dict[str, str]]:
    """DiagnosticArray → ``{status name: {key: value}}`` (for tests, the benchmark and tools)."""
    return {s.name: {kv.key: kv.value for kv in s.values} for s in msg.status}

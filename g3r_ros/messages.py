"""ROS messages → numpy, with no rclpy import.

Every decoder is duck-typed by field names, so it accepts rclpy message objects
(``array.array`` data), rosbags-deserialized messages (``numpy`` data) and plain
namespaces alike. Any malformed input raises :class:`MessageDecodeError` (a
``ValueError``) with the reason; callers turn it into a logged skip. Nothing else
escapes a decoder: this is fuzzed in ``test/test_messages.py``.

Conventions: stamps are float seconds; transforms are 4x4 ``T_parent_child``
(``p_parent = T @ p_child``); ROS quaternions are (x,y,z,w) on the wire and are
converted at this boundary; frame ids lose any leading '/'.
"""

from __future__ import annotations

import array
import functools
import io
import logging
import math
from dataclasses import dataclass, field

import numpy as np

from .geometry import invert_transform, pose_to_transform, quat_xyzw_to_wxyz

log = logging.getLogger(__name__)


class MessageDecodeError(ValueError):
    """A message that cannot be decoded: unknown encoding, truncated data, bad sizes..."""


# Largest image / cloud we agree to allocate for (guards against absurd header sizes).
MAX_PIXELS = 200_000_000


def _decoder(kind: str):
    """Turn stray low-level errors from malformed (e.g. wrongly typed) fields into
    :class:`MessageDecodeError`. Explicit checks below give the precise reasons; this is
    the safety net that keeps the "nothing but MessageDecodeError" promise."""

    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except MessageDecodeError:
                raise
            except (AttributeError, TypeError, ValueError, OverflowError, IndexError, KeyError,
                    MemoryError) as e:
                raise MessageDecodeError(f"malformed {kind} message: {type(e).__name__}: {e}") from e

        return inner

    return wrap


# ---------------------------------------------------------------------------------------
# Field helpers
# ---------------------------------------------------------------------------------------
def _get(msg, *names):
    """First present attribute among ``names`` (ROS 2 lowercase first, ROS 1 spelling after)."""
    for n in names:
        if hasattr(msg, n):
            return getattr(msg, n)
    raise MessageDecodeError(f"message {type(msg).__name__} has no field '{names[0]}'")


def _int(msg, name, lo=0, hi=2**32 - 1) -> int:
    v = _get(msg, name)
    if isinstance(v, (bool, np.bool_)):
        v = int(v)
    if not isinstance(v, (int, np.integer)):
        raise MessageDecodeError(f"field '{name}' must be an integer, got {type(v).__name__}")
    v = int(v)
    if not lo <= v <= hi:
        raise MessageDecodeError(f"field '{name}'={v} out of range [{lo}, {hi}]")
    return v


def _str(msg, name) -> str:
    v = _get(msg, name)
    if isinstance(v, bytes):
        try:
            v = v.decode()
        except UnicodeDecodeError as e:
            raise MessageDecodeError(f"field '{name}' is not valid UTF-8") from e
    if not isinstance(v, str):
        raise MessageDecodeError(f"field '{name}' must be a string, got {type(v).__name__}")
    return v


def _float(obj, name) -> float:
    v = _get(obj, name)
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise MessageDecodeError(f"field '{name}' must be a number, got {type(v).__name__}")
    return float(v)


def _bytes(data, name="data") -> np.ndarray:
    """A message byte payload (bytes, array.array, numpy uint8, list of ints) → (N,) uint8 view."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(data, dtype=np.uint8)
    if isinstance(data, array.array):
        if data.typecode not in ("B", "b"):
            raise MessageDecodeError(f"'{name}' array has typecode {data.typecode!r}, expected bytes")
        return np.frombuffer(data, dtype=np.uint8)
    if isinstance(data, np.ndarray):
        if data.dtype not in (np.uint8, np.int8) or data.ndim != 1:
            raise MessageDecodeError(f"'{name}' must be a 1-D uint8 array, got {data.dtype} {data.shape}")
        return data.view(np.uint8)
    if isinstance(data, (list, tuple)):
        if not all(isinstance(b, (int, np.integer)) and not isinstance(b, bool) and 0 <= b <= 255 for b in data):
            raise MessageDecodeError(f"'{name}' list must hold integers in [0, 255]")
        return np.asarray(data, dtype=np.uint8).reshape(-1)
    raise MessageDecodeError(f"'{name}' has unsupported type {type(data).__name__}")


def _float_array(v, name, size=None) -> np.ndarray:
    try:
        a = np.asarray(v if not isinstance(v, array.array) else v.tolist(), dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise MessageDecodeError(f"field '{name}' is not a numeric array") from e
    if size is not None and a.size != size:
        raise MessageDecodeError(f"field '{name}' must have {size} values, got {a.size}")
    if not np.isfinite(a).all():
        raise MessageDecodeError(f"field '{name}' contains NaN or Inf")
    return a


def _frame_id(v, name="frame_id") -> str:
    if not isinstance(v, str):
        raise MessageDecodeError(f"'{name}' must be a string, got {type(v).__name__}")
    return v.lstrip("/")


# ---------------------------------------------------------------------------------------
# Stamps
# ---------------------------------------------------------------------------------------
@_decoder("stamp")
def stamp_to_sec(stamp) -> float:
    """builtin_interfaces/Time (``sec``, ``nanosec``) → float seconds.

    Also accepts a plain number, ROS 1 style ``secs``/``nsecs`` and objects with
    ``nanoseconds`` (rclpy ``Time``).
    """
    if isinstance(stamp, (int, float, np.integer, np.floating)) and not isinstance(stamp, bool):
        t = float(stamp)
    elif hasattr(stamp, "sec") or hasattr(stamp, "secs"):
        sec = _int(stamp, "sec" if hasattr(stamp, "sec") else "secs", -(2**63), 2**63 - 1)
        nsec = _int(stamp, "nanosec" if hasattr(stamp, "nanosec") else "nsecs", 0, 999_999_999)
        t = sec + nsec * 1e-9
    elif hasattr(stamp, "nanoseconds"):
        ns = stamp.nanoseconds
        if not isinstance(ns, (int, np.integer)):
            raise MessageDecodeError("'nanoseconds' must be an integer")
        t = int(ns) * 1e-9
    else:
        raise MessageDecodeError(f"cannot read a time stamp from {type(stamp).__name__}")
    if not math.isfinite(t):
        raise MessageDecodeError(f"non-finite stamp {t}")
    return t


def sec_to_stamp_fields(t: float) -> tuple[int, int]:
    """Float seconds → (sec, nanosec) with 0 <= nanosec < 1e9 (sec may be negative)."""
    t = float(t)
    if not math.isfinite(t):
        raise ValueError(f"cannot convert non-finite time {t} to a stamp")
    sec = math.floor(t)
    nsec = round((t - sec) * 1e9)  # t - floor(t) is exact in floating point
    if nsec >= 1_000_000_000:
        sec, nsec = sec + 1, nsec - 1_000_000_000
    return int(sec), nsec


def header_stamp(msg) -> float:
    """``msg.header.stamp`` in seconds."""
    return stamp_to_sec(_get(_get(msg, "header"), "stamp"))


# ---------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------
# encoding → (bytes per pixel, channel order to reach RGB or None for mono)
_IMAGE_ENCODINGS = {
    "rgb8": (3, [0, 1, 2]),
    "bgr8": (3, [2, 1, 0]),
    "rgba8": (4, [0, 1, 2]),
    "bgra8": (4, [2, 1, 0]),
    "mono8": (1, None),
    "mono16": (2, None),
}


@_decoder("sensor_msgs/Image")
def decode_image(msg) -> np.ndarray:
    """sensor_msgs/Image → (H,W,3) uint8 RGB (a fresh array).

    Encodings rgb8, bgr8, rgba8, bgra8 (alpha dropped), mono8 and mono16 (replicated to
    3 channels; mono16 scaled to 8 bit by ``>> 8``). Honours row ``step`` padding and, for
    mono16, ``is_bigendian``. Requires ``len(data) == step * height`` exactly.
    """
    height, width = _int(msg, "height"), _int(msg, "width")
    step = _int(msg, "step")
    encoding = _str(msg, "encoding").strip().lower()
    big = bool(_int(msg, "is_bigendian", 0, 255))
    if encoding not in _IMAGE_ENCODINGS:
        raise MessageDecodeError(f"unsupported image encoding '{encoding}' (supported: {sorted(_IMAGE_ENCODINGS)})")
    if height == 0 or width == 0:
        raise MessageDecodeError(f"empty image {width}x{height}")
    if height * width > MAX_PIXELS:
        raise MessageDecodeError(f"image {width}x{height} exceeds {MAX_PIXELS} pixels")
    bpp, order = _IMAGE_ENCODINGS[encoding]
    if step < width * bpp:
        raise MessageDecodeError(f"step {step} < width*{bpp} = {width * bpp} for {encoding}")
    data = _bytes(_get(msg, "data"))
    if data.size != step * height:
        raise MessageDecodeError(f"image data has {data.size} bytes, expected step*height = {step}*{height}"
                                 f" = {step * height}")
    rows = data.reshape(height, step)[:, : width * bpp]
    if encoding == "mono16":
        px = rows.copy().view(">u2" if big else "<u2").reshape(height, width)
        gray = (px >> 8).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if order is None:
        return np.repeat(rows.reshape(height, width, 1), 3, axis=2)
    return np.ascontiguousarray(rows.reshape(height, width, bpp)[:, :, order])


_COMPRESSED_KINDS = {"JPEG": ("jpeg", "jpg"), "PNG": ("png",)}


@_decoder("sensor_msgs/CompressedImage")
def decode_compressed_image(msg) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg or png, via Pillow) → (H,W,3) uint8 RGB.

    ``format`` may be "jpeg", "png", or image_transport's "rgb8; jpeg compressed bgr8"
    (the file itself is a standard JPEG/PNG either way). An empty format lets Pillow
    detect JPEG/PNG. compressedDepth and other codecs are refused. 16-bit grey PNGs are
    scaled to 8 bit by ``>> 8``, like mono16.
    """
    from PIL import Image  # local: Pillow is only needed for compressed images

    fmt = _str(msg, "format").strip().lower()
    if "compresseddepth" in fmt:
        raise MessageDecodeError(f"compressedDepth images are not supported (format '{fmt}')")
    codec = fmt.split(";")[-1]
    expected = None
    for name, keys in _COMPRESSED_KINDS.items():
        if any(k in codec for k in keys):
            expected = name
    if fmt and expected is None:
        raise MessageDecodeError(f"unsupported compressed image format '{fmt}' (jpeg or png)")
    data = _bytes(_get(msg, "data"))
    if data.size == 0:
        raise MessageDecodeError("compressed image has no data")
    try:
        img = Image.open(io.BytesIO(data.tobytes()))
        if img.format not in _COMPRESSED_KINDS:
            raise MessageDecodeError(f"compressed data is {img.format}, not JPEG/PNG")
        if expected is not None and img.format != expected:
            raise MessageDecodeError(f"format says {expected} but data is {img.format}")
        w, h = img.size
        if w * h == 0 or w * h > MAX_PIXELS:
            raise MessageDecodeError(f"compressed image has bad size {w}x{h}")
        img.load()
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            gray = (np.clip(np.asarray(img, dtype=np.int64), 0, 65535) >> 8).astype(np.uint8)
            out = np.repeat(gray.reshape(h, w, 1), 3, axis=2)
        else:
            out = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except MessageDecodeError:
        raise
    except Exception as e:
        raise MessageDecodeError(f"cannot decode compressed image ({fmt or 'auto'}): {type(e).__name__}: {e}") from e
    if out.shape != (h, w, 3):
        raise MessageDecodeError(f"decoded image has shape {out.shape}, expected {(h, w, 3)}")
    return np.ascontiguousarray(out)


# ---------------------------------------------------------------------------------------
# Camera calibration (undistortion: g3r_ros.undistort)
# ---------------------------------------------------------------------------------------
@dataclass
class CameraInfoData:
    """Decoded sensor_msgs/CameraInfo.

    K: (3,3) float64 intrinsics of the raw image. width, height: pixels.
    distortion_model: e.g. "plumb_bob". D: (k,) float64 coefficients.
    R: (3,3) rectification rotation, P: (3,4) projection (both informational here).
    """

    K: np.ndarray
    width: int
    height: int
    distortion_model: str
    D: np.ndarray
    R: np.ndarray = field(default_factory=lambda: np.eye(3))
    P: np.ndarray = field(default_factory=lambda: np.zeros((3, 4)))

    @property
    def is_distorted(self) -> bool:
        """True when any distortion coefficient is non-zero."""
        return bool(np.any(self.D != 0.0))


@_decoder("sensor_msgs/CameraInfo")
def decode_camera_info(msg) -> CameraInfoData:
    """sensor_msgs/CameraInfo → :class:`CameraInfoData`; refuses an uncalibrated (zero) K."""
    width, height = _int(msg, "width"), _int(msg, "height")
    if width == 0 or height == 0:
        raise MessageDecodeError(f"camera info has empty size {width}x{height}")
    K = _float_array(_get(msg, "k", "K"), "k", 9).reshape(3, 3)
    if K[0, 0] <= 0 or K[1, 1] <= 0 or K[2, 2] != 1.0 or np.any(K[2, :2] != 0) or K[1, 0] != 0:
        raise MessageDecodeError(f"camera info K is not a calibrated pinhole matrix: {K.reshape(-1).tolist()}")
    D = _float_array(_get(msg, "d", "D"), "d")
    model = _str(msg, "distortion_model").strip()
    R = np.eye(3)
    P = np.zeros((3, 4))
    if hasattr(msg, "r") or hasattr(msg, "R"):
        r = _float_array(_get(msg, "r", "R"), "r", 9).reshape(3, 3)
        R = r if np.any(r != 0) else R
    if hasattr(msg, "p") or hasattr(msg, "P"):
        P = _float_array(_get(msg, "p", "P"), "p", 12).reshape(3, 4)
    return CameraInfoData(K=K, width=width, height=height, distortion_model=model, D=D, R=R, P=P)



# ---------------------------------------------------------------------------------------
# PointCloud2
# ---------------------------------------------------------------------------------------
POINTFIELD_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}


def _pointcloud_layout(msg):
    height, width = _int(msg, "height"), _int(msg, "width")
    point_step, row_step = _int(msg, "point_step"), _int(msg, "row_step")
    big = bool(_int(msg, "is_bigendian", 0, 255))
    fields = _get(msg, "fields")
    if not isinstance(fields, (list, tuple)):
        raise MessageDecodeError(f"'fields' must be a list, got {type(fields).__name__}")
    layout = {}
    for f in fields:
        name = _str(f, "name")
        offset, datatype, count = _int(f, "offset"), _int(f, "datatype", 0, 255), _int(f, "count")
        if datatype not in POINTFIELD_DTYPES:
            raise MessageDecodeError(f"field '{name}' has unknown datatype {datatype}")
        if count < 1:
            raise MessageDecodeError(f"field '{name}' has count {count}")
        dt = np.dtype(POINTFIELD_DTYPES[datatype]).newbyteorder(">" if big else "<")
        if offset + dt.itemsize * count > point_step:
            raise MessageDecodeError(f"field '{name}' (offset {offset}, {count}x{dt.itemsize} bytes) overruns "
                                     f"point_step {point_step}")
        if name in layout:
            raise MessageDecodeError(f"duplicate point field '{name}'")
        layout[name] = (offset, dt, count)
    n = height * width
    if n > MAX_PIXELS:
        raise MessageDecodeError(f"point cloud {width}x{height} is too large")
    if n and point_step == 0:
        raise MessageDecodeError("point_step is 0")
    if height and row_step < width * point_step:
        raise MessageDecodeError(f"row_step {row_step} < width*point_step = {width * point_step}")
    data = _bytes(_get(msg, "data"))
    if data.size != row_step * height:
        raise MessageDecodeError(f"point cloud data has {data.size} bytes, expected row_step*height = "
                                 f"{row_step}*{height} = {row_step * height}")
    return height, width, point_step, row_step, layout, data


def _read_field(data, height, width, point_step, row_step, offset, dt, count) -> np.ndarray:
    n = height * width
    if n == 0:
        return np.zeros((0,) if count == 1 else (0, count), dt.newbyteorder("="))
    view = np.ndarray((height, width, count), dtype=dt, buffer=data, offset=offset,
                      strides=(row_step, point_step, dt.itemsize))
    out = view.astype(dt.newbyteorder("="), copy=True).reshape(n, count)
    return out[:, 0] if count == 1 else out


@_decoder("sensor_msgs/PointCloud2")
def decode_pointcloud2(msg, names=None) -> dict[str, np.ndarray]:
    """sensor_msgs/PointCloud2 → {field name: (N,) array} (``(N,count)`` when count > 1).

    N = height*width, in row-major order; NaN points are kept (see :func:`pointcloud_xyz`).
    Fields are read by offset/datatype/count with the message's endianness, stepping
    ``point_step`` per point and ``row_step`` per row; padding bytes are ignored. Arrays
    are native-endian copies. ``names`` restricts decoding to those fields (all must exist).
    """
    height, width, point_step, row_step, layout, data = _pointcloud_layout(msg)
    if names is not None:
        missing = [n for n in names if n not in layout]
        if missing:
            raise MessageDecodeError(f"point cloud has no field(s) {missing} (fields: {list(layout)})")
        layout = {n: layout[n] for n in names}
    return {name: _read_field(data, height, width, point_step, row_step, *spec) for name, spec in layout.items()}


def pointcloud_xyz(msg, with_intensity: bool = False) -> np.ndarray:
    """sensor_msgs/PointCloud2 → (N,3) float32 xyz (or (N,4) with intensity), finite rows only.

    Points with any non-finite value (``is_dense=False`` clouds mark invalid returns with
    NaN) are dropped. Requires single-valued x, y, z (and intensity) fields.
    """
    names = ["x", "y", "z"] + (["intensity"] if with_intensity else [])
    cols = decode_pointcloud2(msg, names=names)
    for n in names:
        if cols[n].ndim != 1:
            raise MessageDecodeError(f"point field '{n}' has count {cols[n].shape[1]}, expected 1")
    pts = np.stack([cols[n].astype(np.float32) for n in names], axis=1)
    return np.ascontiguousarray(pts[np.isfinite(pts).all(axis=1)])


# ---------------------------------------------------------------------------------------
# TF and actor markers
# ---------------------------------------------------------------------------------------
@dataclass
class TransformRecord:
    """One edge sample of the TF tree: T (4,4) float64 is ``T_parent_child`` at ``stamp`` (s)."""

    parent: str
    child: str
    stamp: float
    T: np.ndarray

    @property
    def T_child_parent(self) -> np.ndarray:
        return invert_transform(self.T)


def _pose_matrix(position, orientation, what: str) -> np.ndarray:
    """geometry_msgs position/translation (x,y,z) + orientation (x,y,z,w) → (4,4)."""
    t = np.array([_float(position, a) for a in ("x", "y", "z")])
    q = np.array([_float(orientation, a) for a in ("x", "y", "z", "w")])
    if not (np.isfinite(t).all() and np.isfinite(q).all()):
        raise MessageDecodeError(f"{what}: non-finite translation or rotation")
    with np.errstate(over="ignore"):
        n = float(np.linalg.norm(q))
    if n < 1e-6:
        raise MessageDecodeError(f"{what}: zero-norm quaternion")
    if not math.isfinite(n):
        raise MessageDecodeError(f"{what}: quaternion norm overflows")
    return pose_to_transform(t, quat_xyzw_to_wxyz(q / n))


@_decoder("tf2_msgs/TFMessage")
def decode_tf_message(msg, strict: bool = False) -> list[TransformRecord]:
    """tf2_msgs/TFMessage → list of :class:`TransformRecord` (``T_parent_child``).

    Transforms with non-finite values, a zero quaternion, empty frame ids or
    parent == child are skipped with a warning (``strict=True`` raises instead);
    quaternions are normalized. A structurally malformed message raises.
    """
    transforms = _get(msg, "transforms")
    if not isinstance(transforms, (list, tuple)):
        raise MessageDecodeError(f"'transforms' must be a list, got {type(transforms).__name__}")
    out = []
    for i, ts in enumerate(transforms):
        header = _get(ts, "header")
        parent = _frame_id(_get(header, "frame_id"), "header.frame_id")
        child = _frame_id(_get(ts, "child_frame_id"), "child_frame_id")
        stamp = stamp_to_sec(_get(header, "stamp"))
        tf = _get(ts, "transform")
        what = f"transform {i} ({parent or '?'} -> {child or '?'})"
        try:
            if not parent or not child:
                raise MessageDecodeError(f"{what}: empty frame id")
            if parent == child:
                raise MessageDecodeError(f"{what}: parent equals child")
            T = _pose_matrix(_get(tf, "translation"), _get(tf, "rotation"), what)
        except MessageDecodeError as e:
            if strict:
                raise
            log.warning("skipping %s", e)
            continue
        out.append(TransformRecord(parent=parent, child=child, stamp=stamp, T=T))
    return out


MARKER_CUBE = 1


@dataclass
class ActorObservation:
    """One CUBE marker: actor ``actor_id`` seen at ``stamp`` (s).

    T_frame_box: (4,4) pose of the box centre in ``frame_id`` (box x,y,z axes); size: (3,)
    full box extent in metres; action: the marker action (0 ADD/MODIFY, 2 DELETE,
    3 DELETEALL); ns: the marker namespace.
    """

    actor_id: int
    frame_id: str
    stamp: float
    T_frame_box: np.ndarray
    size: np.ndarray
    action: int = 0
    ns: str = ""


@_decoder("visualization_msgs/MarkerArray")
def decode_marker_array(msg, strict: bool = False) -> list[ActorObservation]:
    """visualization_msgs/MarkerArray → :class:`ActorObservation` for CUBE markers (type 1).

    Other marker types are ignored. CUBE markers with an invalid pose or size are skipped
    with a warning (``strict=True`` raises), except DELETE markers, whose pose is not
    meaningful: an invalid one becomes the identity.
    """
    markers = _get(msg, "markers")
    if not isinstance(markers, (list, tuple)):
        raise MessageDecodeError(f"'markers' must be a list, got {type(markers).__name__}")
    out = []
    for m in markers:
        if _int(m, "type", -(2**31), 2**31 - 1) != MARKER_CUBE:
            continue
        actor_id = _int(m, "id", -(2**31), 2**31 - 1)
        action = _int(m, "action", -(2**31), 2**31 - 1)
        header = _get(m, "header")
        frame = _frame_id(_get(header, "frame_id"), "header.frame_id")
        stamp = stamp_to_sec(_get(header, "stamp"))
        pose = _get(m, "pose")
        scale = _get(m, "scale")
        what = f"marker {actor_id}"
        try:
            size = np.array([_float(scale, a) for a in ("x", "y", "z")])
            if not np.isfinite(size).all() or (size < 0).any():
                raise MessageDecodeError(f"{what}: bad scale {size.tolist()}")
            try:
                T = _pose_matrix(_get(pose, "position"), _get(pose, "orientation"), what)
            except MessageDecodeError:
                if action != 2:
                    raise
                T = np.eye(4)
            if not frame:
                raise MessageDecodeError(f"{what}: empty frame id")
        except MessageDecodeError as e:
            if strict:
                raise
            log.warning("skipping %s", e)
            continue
        ns = _get(m, "ns") if hasattr(m, "ns") else ""
        out.append(ActorObservation(actor_id=actor_id, frame_id=frame, stamp=stamp, T_frame_box=T, size=size,
                                    action=action, ns=ns if isinstance(ns, str) else ""))
    return out

"""rosbag2 writing and reading (mcap or sqlite3) through ``rosbags``, with a pinned typestore.

Writing: :class:`DriveBagWriter` turns numpy data into ROS 2 messages (Image, CompressedImage,
CameraInfo, PointCloud2, TFMessage, MarkerArray) and registers each topic lazily with its
type and offered QoS (``/tf_static`` transient-local, everything else volatile).

Reading: :func:`iter_bag_messages` yields :class:`BagMessage` in log-time order;
:func:`bag_topics` and :func:`topic_qos` describe a bag without reading its messages.

Stamps are float seconds at this API; the bag stores int nanoseconds (log time = header stamp
for everything this writer produces).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np

from .geometry import quat_wxyz_to_xyzw, rotmat_to_quat

log = logging.getLogger(__name__)

TYPESTORE_NAME = "ROS2_KILTED"

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
POINTCLOUD2 = "sensor_msgs/msg/PointCloud2"
TF_MESSAGE = "tf2_msgs/msg/TFMessage"
MARKER_ARRAY = "visualization_msgs/msg/MarkerArray"

_NUMERIC = {
    "bool": np.bool_, "byte": np.uint8, "char": np.uint8, "int8": np.int8, "uint8": np.uint8,
    "int16": np.int16, "uint16": np.uint16, "int32": np.int32, "uint32": np.uint32,
    "int64": np.int64, "uint64": np.uint64, "float32": np.float32, "float64": np.float64,
}

_TYPESTORE = None


class BagExistsError(FileExistsError, ValueError):
    """The output bag path exists already (rosbag2 writers never overwrite)."""


def typestore():
    """The pinned rosbags typestore (ROS 2 Kilted), created once."""
    global _TYPESTORE
    if _TYPESTORE is None:
        from rosbags.typesys import Stores, get_typestore

        _TYPESTORE = get_typestore(getattr(Stores, TYPESTORE_NAME))
    return _TYPESTORE


# ---------------------------------------------------------------------------------------
# Building rosbags message objects
# ---------------------------------------------------------------------------------------
def _default_value(ts, desc):
    """Default value for a rosbags field descriptor ``(Nodetype, spec)``."""
    from rosbags.typesys.base import Nodetype

    kind, spec = desc
    if kind == Nodetype.BASE:
        name = spec[0]
        if name == "string" or name == "wstring":
            return ""
        if name == "bool":
            return False
        return 0.0 if name.startswith("float") else 0
    if kind == Nodetype.NAME:
        return make_message(spec)
    if kind in (Nodetype.ARRAY, Nodetype.SEQUENCE):
        inner, count = spec
        n = count if kind == Nodetype.ARRAY else 0
        if inner[0] == Nodetype.BASE and inner[1][0] in _NUMERIC:
            return np.zeros(n, dtype=_NUMERIC[inner[1][0]])
        return [_default_value(ts, inner) for _ in range(n)]
    raise ValueError(f"unsupported field descriptor {desc!r}")


def make_message(typename: str, **fields):
    """A rosbags message of ``typename`` with ``fields`` set and every other field defaulted."""
    ts = typestore()
    if typename not in ts.fielddefs:
        raise ValueError(f"message type {typename!r} is not in the {TYPESTORE_NAME} typestore")
    _, fielddefs = ts.fielddefs[typename]
    names = {n for n, _ in fielddefs}
    unknown = sorted(set(fields) - names)
    if unknown:
        raise ValueError(f"{typename} has no field(s) {unknown}")
    values = {n: fields[n] if n in fields else _default_value(ts, d) for n, d in fielddefs}
    return ts.types[typename](**values)


def sec_to_ns(stamp: float) -> int:
    """Float seconds → integer nanoseconds (rounded)."""
    if not np.isfinite(stamp) or stamp < 0:
        raise ValueError(f"stamp must be finite and non-negative, got {stamp}")
    return round(float(stamp) * 1e9)


def make_time(stamp: float):
    """builtin_interfaces/Time from float seconds."""
    ns = sec_to_ns(stamp)
    return make_message("builtin_interfaces/msg/Time", sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def make_header(stamp: float, frame_id: str):
    return make_message("std_msgs/msg/Header", stamp=make_time(stamp), frame_id=str(frame_id))


def _pose_fields(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4) or not np.isfinite(T).all():
        raise ValueError(f"expected a finite (4,4) transform, got shape {T.shape}")
    return T[:3, 3], quat_wxyz_to_xyzw(rotmat_to_quat(T[:3, :3]))


def make_transform_stamped(stamp: float, parent: str, child: str, T_parent_child: np.ndarray):
    """geometry_msgs/TransformStamped for ``T_parent_child`` (header.frame_id = parent)."""
    t, q = _pose_fields(T_parent_child)
    tf = make_message(
        "geometry_msgs/msg/Transform",
        translation=make_message("geometry_msgs/msg/Vector3", x=float(t[0]), y=float(t[1]), z=float(t[2])),
        rotation=make_message("geometry_msgs/msg/Quaternion", x=float(q[0]), y=float(q[1]), z=float(q[2]),
                              w=float(q[3])),
    )
    return make_message("geometry_msgs/msg/TransformStamped", header=make_header(stamp, parent),
                        child_frame_id=str(child), transform=tf)


def make_pose(T: np.ndarray):
    t, q = _pose_fields(T)
    return make_message(
        "geometry_msgs/msg/Pose",
        position=make_message("geometry_msgs/msg/Point", x=float(t[0]), y=float(t[1]), z=float(t[2])),
        orientation=make_message("geometry_msgs/msg/Quaternion", x=float(q[0]), y=float(q[1]), z=float(q[2]),
                                 w=float(q[3])),
    )


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"expected an (H,W,3) uint8 RGB image, got {rgb.dtype} {rgb.shape}")
    return np.ascontiguousarray(rgb)


def make_image(stamp: float, frame_id: str, rgb: np.ndarray, encoding: str = "rgb8"):
    """sensor_msgs/Image from (H,W,3) uint8 RGB; ``encoding`` rgb8 or bgr8 (channels swapped)."""
    rgb = _check_rgb(rgb)
    if encoding == "bgr8":
        rgb = np.ascontiguousarray(rgb[:, :, ::-1])
    elif encoding != "rgb8":
        raise ValueError(f"write_image supports encodings rgb8 and bgr8, got {encoding!r}")
    h, w, _ = rgb.shape
    return make_message(IMAGE, header=make_header(stamp, frame_id), height=h, width=w, encoding=encoding,
                        is_bigendian=0, step=w * 3, data=rgb.reshape(-1).copy())


def make_compressed_image(stamp: float, frame_id: str, rgb: np.ndarray, fmt: str = "jpeg", quality: int = 95):
    """sensor_msgs/CompressedImage (jpeg or png) from (H,W,3) uint8 RGB, encoded with Pillow."""
    from PIL import Image as PILImage

    rgb = _check_rgb(rgb)
    fmt = fmt.lower()
    if fmt not in ("jpeg", "png"):
        raise ValueError(f"compressed format must be 'jpeg' or 'png', got {fmt!r}")
    buf = io.BytesIO()
    kwargs = {"quality": int(quality)} if fmt == "jpeg" else {}
    PILImage.fromarray(rgb).save(buf, format=fmt.upper(), **kwargs)
    return make_message(COMPRESSED_IMAGE, header=make_header(stamp, frame_id), format=fmt,
                        data=np.frombuffer(buf.getvalue(), dtype=np.uint8).copy())


def make_camera_info(stamp: float, frame_id: str, K: np.ndarray, width: int, height: int, D=None,
                     distortion_model: str = "plumb_bob"):
    """sensor_msgs/CameraInfo: K (3,3), P = [K|0], R = I, D (default 5 zeros for plumb_bob)."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3) or not np.isfinite(K).all():
        raise ValueError(f"K must be a finite (3,3) matrix, got shape {K.shape}")
    if int(width) <= 0 or int(height) <= 0:
        raise ValueError(f"camera size must be positive, got {width}x{height}")
    if D is None:
        D = np.zeros(5 if distortion_model == "plumb_bob" else 0)
    P = np.zeros((3, 4))
    P[:, :3] = K
    return make_message(CAMERA_INFO, header=make_header(stamp, frame_id), height=int(height), width=int(width),
                        distortion_model=str(distortion_model), d=np.asarray(D, dtype=np.float64).reshape(-1),
                        k=K.reshape(-1).copy(), r=np.eye(3).reshape(-1), p=P.reshape(-1))


def make_pointcloud(stamp: float, frame_id: str, points: np.ndarray, intensity: np.ndarray | None = None):
    """sensor_msgs/PointCloud2 with FLOAT32 fields x,y,z(,intensity), unorganized, is_dense=True.

    points: (N,3) finite, in ``frame_id``. intensity: (N,) or None.
    """
    points = np.asarray(points, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be (N,3), got {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError("points must be finite (is_dense=True)")
    names = ["x", "y", "z"]
    cols = [points]
    if intensity is not None:
        intensity = np.asarray(intensity, dtype=np.float32).reshape(-1)
        if len(intensity) != len(points):
            raise ValueError(f"intensity has {len(intensity)} values for {len(points)} points")
        names.append("intensity")
        cols.append(intensity[:, None])
    data = np.ascontiguousarray(np.concatenate(cols, axis=1).astype("<f4"))
    ts = typestore()
    float32 = ts.types["sensor_msgs/msg/PointField"].FLOAT32
    fields = [make_message("sensor_msgs/msg/PointField", name=n, offset=4 * i, datatype=float32, count=1)
              for i, n in enumerate(names)]
    step = 4 * len(names)
    return make_message(POINTCLOUD2, header=make_header(stamp, frame_id), height=1, width=len(points),
                        fields=fields, is_bigendian=False, point_step=step, row_step=step * len(points),
                        data=data.view(np.uint8).reshape(-1).copy(), is_dense=True)


def make_tf_message(stamp: float, transforms: Iterable[tuple[str, str, np.ndarray]]):
    """tf2_msgs/TFMessage from ``(parent, child, T_parent_child)`` triples."""
    return make_message(TF_MESSAGE, transforms=[make_transform_stamped(stamp, p, c, T) for p, c, T in transforms])


def make_marker_array(stamp: float, frame_id: str, actors: Iterable[tuple[int, np.ndarray, np.ndarray]],
                      ns: str = "actors", color=(1.0, 0.5, 0.0, 0.6)):
    """visualization_msgs/MarkerArray of CUBE markers: ``(actor_id, T_frame_box (4,4), size (3,))``."""
    ts = typestore()
    Marker = ts.types["visualization_msgs/msg/Marker"]
    markers = []
    for actor_id, T, size in actors:
        size = np.asarray(size, dtype=np.float64).reshape(3)
        if not (np.isfinite(size).all() and (size > 0).all()):
            raise ValueError(f"actor {actor_id}: box size must be positive, got {size}")
        markers.append(make_message(
            "visualization_msgs/msg/Marker", header=make_header(stamp, frame_id), ns=ns, id=int(actor_id),
            type=Marker.CUBE, action=Marker.ADD, pose=make_pose(T),
            scale=make_message("geometry_msgs/msg/Vector3", x=float(size[0]), y=float(size[1]), z=float(size[2])),
            color=make_message("std_msgs/msg/ColorRGBA", r=float(color[0]), g=float(color[1]), b=float(color[2]),
                               a=float(color[3])),
        ))
    return make_message(MARKER_ARRAY, markers=markers)


# ---------------------------------------------------------------------------------------
# QoS
# ---------------------------------------------------------------------------------------
def _qos(transient_local: bool, depth: int):
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    return Qos(
        history=QosHistory.KEEP_LAST, depth=depth, reliability=QosReliability.RELIABLE,
        durability=QosDurability.TRANSIENT_LOCAL if transient_local else QosDurability.VOLATILE,
        deadline=QosTime(0, 0), lifespan=QosTime(0, 0), liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=QosTime(0, 0), avoid_ros_namespace_conventions=False,
    )


def offered_qos_for(topic: str):
    """Offered QoS recorded for ``topic``: ``/tf_static`` transient-local (depth 1), others volatile."""
    if topic == "/tf_static":
        return [_qos(True, 1)]
    return [_qos(False, 10)]


# ---------------------------------------------------------------------------------------
# Writer
# ---------------------------------------------------------------------------------------
def _storage_plugin(storage: str):
    from rosbags.rosbag2 import StoragePlugin

    table = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3, "sqlite": StoragePlugin.SQLITE3}
    if storage not in table:
        raise ValueError(f"storage must be 'mcap' or 'sqlite3', got {storage!r}")
    return table[storage]


class DriveBagWriter:
    """Write a drive log as a rosbag2 (version 9). Use as a context manager.

    ``path`` must not exist (the bag is a new directory). Stamps are float seconds; each
    message's log time equals its header stamp.
    """

    def __init__(self, path, storage: str = "mcap"):
        from rosbags.rosbag2 import Writer

        self.path = Path(path)
        if self.path.exists():
            raise BagExistsError(f"bag output path already exists, refusing to overwrite: {self.path}")
        self.storage = storage
        self._writer = Writer(self.path, version=9, storage_plugin=_storage_plugin(storage))
        self._connections: dict[str, object] = {}
        self._types: dict[str, str] = {}
        self.counts: dict[str, int] = {}
        self._open = False

    # context management ---------------------------------------------------------------
    def open(self) -> DriveBagWriter:
        if not self._open:
            self._writer.open()
            self._open = True
        return self

    def close(self) -> None:
        if self._open:
            self._writer.close()
            self._open = False

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    # low level --------------------------------------------------------------------------
    def _connection(self, topic: str, msgtype: str):
        if not self._open:
            raise RuntimeError("DriveBagWriter is not open; use it as a context manager")
        conn = self._connections.get(topic)
        if conn is None:
            conn = self._writer.add_connection(topic, msgtype, typestore=typestore(),
                                               offered_qos_profiles=offered_qos_for(topic))
            self._connections[topic] = conn
            self._types[topic] = msgtype
        elif self._types[topic] != msgtype:
            raise ValueError(f"topic {topic} already carries {self._types[topic]}, cannot write {msgtype}")
        return conn

    def write_raw(self, topic: str, msgtype: str, stamp: float, msg) -> None:
        """Serialize ``msg`` (a rosbags message of ``msgtype``) to ``topic`` at log time ``stamp``."""
        conn = self._connection(topic, msgtype)
        data = typestore().serialize_cdr(msg, msgtype)
        self._writer.write(conn, sec_to_ns(stamp), data)
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def write_serialized(self, topic: str, msgtype: str, stamp: float, data: bytes) -> None:
        """Write already-serialized CDR bytes (no check that they decode)."""
        conn = self._connection(topic, msgtype)
        self._writer.write(conn, sec_to_ns(stamp), bytes(data))
        self.counts[topic] = self.counts.get(topic, 0) + 1

    # typed writers ----------------------------------------------------------------------
    def write_image(self, topic: str, stamp: float, frame_id: str, rgb: np.ndarray, encoding: str = "rgb8"):
        """rgb: (H,W,3) uint8 RGB → sensor_msgs/Image (rgb8 or bgr8)."""
        self.write_raw(topic, IMAGE, stamp, make_image(stamp, frame_id, rgb, encoding))

    def write_compressed_image(self, topic: str, stamp: float, frame_id: str, rgb: np.ndarray, fmt: str = "jpeg"):
        """rgb: (H,W,3) uint8 RGB → sensor_msgs/CompressedImage (jpeg or png)."""
        self.write_raw(topic, COMPRESSED_IMAGE, stamp, make_compressed_image(stamp, frame_id, rgb, fmt))

    def write_camera_info(self, topic: str, stamp: float, frame_id: str, K: np.ndarray, width: int, height: int,
                          D=None, distortion_model: str = "plumb_bob"):
        """K: (3,3) pixels → sensor_msgs/CameraInfo with P = [K|0], R = I."""
        self.write_raw(topic, CAMERA_INFO, stamp,
                       make_camera_info(stamp, frame_id, K, width, height, D, distortion_model))

    def write_pointcloud(self, topic: str, stamp: float, frame_id: str, points: np.ndarray,
                         intensity: np.ndarray | None = None):
        """points: (N,3) float32 in ``frame_id`` → PointCloud2 (x,y,z(,intensity) FLOAT32)."""
        self.write_raw(topic, POINTCLOUD2, stamp, make_pointcloud(stamp, frame_id, points, intensity))

    def write_tf(self, stamp: float, transforms: list[tuple[str, str, np.ndarray]], static: bool = False):
        """``(parent, child, T_parent_child (4,4))`` triples → ``/tf`` or ``/tf_static``."""
        topic = "/tf_static" if static else "/tf"
        self.write_raw(topic, TF_MESSAGE, stamp, make_tf_message(stamp, transforms))

    def write_markers(self, topic: str, stamp: float, frame_id: str,
                      actors: list[tuple[int, np.ndarray, np.ndarray]]):
        """``(actor_id, T_frame_box (4,4), size (3,))`` → MarkerArray of CUBE markers (ns "actors")."""
        self.write_raw(topic, MARKER_ARRAY, stamp, make_marker_array(stamp, frame_id, actors))


# ---------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------
@dataclass
class BagMessage:
    """One message of a bag: log time ``stamp`` (s), deserialized ``msg`` and its CDR bytes."""

    topic: str
    msgtype: str
    stamp: float
    msg: object
    rawdata: bytes


def _reader(path):
    from rosbags.rosbag2 import Reader

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"bag not found: {path}")
    if path.is_file():
        # A bare .mcap / .db3 file: rosbags reads the directory holding metadata.yaml.
        if (path.parent / "metadata.yaml").is_file():
            path = path.parent
        else:
            raise ValueError(f"{path} is a file; pass the bag directory (with metadata.yaml)")
    return Reader(path)


def bag_topics(path) -> dict[str, str]:
    """``{topic: msgtype}`` of a rosbag2 directory."""
    with _reader(path) as reader:
        return {c.topic: c.msgtype for c in reader.connections}


def topic_qos(path) -> dict[str, list]:
    """``{topic: [rosbags Qos, ...]}``: the offered QoS profiles recorded for each topic."""
    out: dict[str, list] = {}
    with _reader(path) as reader:
        for c in reader.connections:
            profiles = list(getattr(c.ext, "offered_qos_profiles", []) or [])
            out.setdefault(c.topic, []).extend(profiles)
    return out


def bag_message_count(path, topics: Iterable[str] | None = None) -> int:
    """Number of messages (on ``topics`` if given)."""
    wanted = None if topics is None else set(topics)
    with _reader(path) as reader:
        return int(sum(c.msgcount for c in reader.connections if wanted is None or c.topic in wanted))


def iter_bag_messages(path, topics: Iterable[str] | None = None, deserialize: bool = True) -> Iterator[BagMessage]:
    """Yield the messages of a bag (on ``topics`` if given) in log-time order.

    Messages that cannot be deserialized are yielded with ``msg=None`` (the raw bytes are kept)
    so that callers can record them as skipped instead of aborting.
    """
    ts = typestore()
    wanted = None if topics is None else set(topics)
    with _reader(path) as reader:
        conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
        if not conns:
            return
        for conn, t_ns, raw in reader.messages(connections=conns):
            msg = None
            if deserialize:
                try:
                    msg = ts.deserialize_cdr(raw, conn.msgtype)
                except Exception as e:  # noqa: BLE001 - corrupt CDR must not stop a reader
                    log.warning("cannot deserialize %s message at %.6f: %s", conn.topic, t_ns * 1e-9, e)
            yield BagMessage(conn.topic, conn.msgtype, t_ns / 1e9, msg, bytes(raw))

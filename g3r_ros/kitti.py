"""KITTI → rosbag2 converters (odometry sequences and raw drives).

Both write the same topics and frames (REP-103/105), see ``docs/DATA.md``:

- ``/kitti/camera_color_left/image_raw`` (rgb8) and ``.../camera_info`` (rectified, no distortion);
  ``/kitti/camera_color_right/...`` likewise when the right colour camera is present (odometry
  ``image_3`` with P3, raw ``image_03``);
- ``/kitti/velo/pointcloud`` (x, y, z, intensity in frame ``velodyne``);
- ``/tf``: ``map → base_link`` per pose; ``/tf_static``: ``base_link → velodyne`` (identity: base_link
  is the Velodyne origin, whose axes already are x fwd, y left, z up), ``base_link →
  camera_color_left`` (optical frame), ``base_link → camera_color_right`` when present and, for raw
  drives, ``imu_link``.

Geometry facts used (KITTI devkit conventions):

- A rectified projection ``P_i = K [I | t_i]`` maps points in the rectified camera-0 frame into
  image i, so ``X_cam_i = X_cam0 + t_i`` with ``t_i = K⁻¹ P_i[:, 3]``; hence
  ``T_cam0_cami = [I | -t_i]``. For P2, t_x > 0: camera 2 sits about 6 cm *left* of camera 0.
- Odometry ``poses.txt``: ``T_w0_cam0`` (camera 0 in the camera-0 frame of frame 0, x right,
  y down, z forward). ``map`` is that frame rotated to REP-103: ``T_map_w0 = R_BODY_OPTICAL``.
- Odometry ``Tr`` is ``T_cam0_velo``.
- Raw ``oxts``: devkit Mercator projection, ``R = Rz(yaw) Ry(pitch) Rx(roll)``, poses relative to
  the first one (``T_imu0_imu``); ``map`` is the IMU frame of the first oxts record.

Odometry stamps are ``times.txt`` + :data:`ODOMETRY_EPOCH` (so they are realistic and positive);
raw stamps are the UTC wall-clock ``timestamps.txt`` values.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .bag import DriveBagWriter
from .geometry import R_BODY_OPTICAL, invert_transform, make_transform
from .progress import progress_bar as tqdm

log = logging.getLogger(__name__)

ODOMETRY_EPOCH = 1.0e9
EARTH_RADIUS = 6378137.0

WORLD_FRAME = "map"
BASE_FRAME = "base_link"
VELO_FRAME = "velodyne"
IMU_FRAME = "imu_link"
LEFT_FRAME = "camera_color_left"
RIGHT_FRAME = "camera_color_right"

LEFT_IMAGE_TOPIC = "/kitti/camera_color_left/image_raw"
LEFT_INFO_TOPIC = "/kitti/camera_color_left/camera_info"
RIGHT_IMAGE_TOPIC = "/kitti/camera_color_right/image_raw"
RIGHT_INFO_TOPIC = "/kitti/camera_color_right/camera_info"
VELO_TOPIC = "/kitti/velo/pointcloud"

# KITTI camera-0 world (x right, y down, z forward) → REP-103 map (x fwd, y left, z up).
T_MAP_CAM0WORLD = make_transform(R_BODY_OPTICAL)


# ---------------------------------------------------------------------------------------
# Pure geometry helpers
# ---------------------------------------------------------------------------------------
def nearest_rotation(R: np.ndarray) -> np.ndarray:
    """Project a (3,3) near-rotation (e.g. printed with 7 digits) onto SO(3) by SVD."""
    U, _, Vt = np.linalg.svd(np.asarray(R, dtype=np.float64))
    Rn = U @ Vt
    if np.linalg.det(Rn) < 0:
        U[:, -1] *= -1
        Rn = U @ Vt
    return Rn


def rigid_from_3x4(M) -> np.ndarray:
    """(3,4) or 12 numbers row-major ``[R|t]`` → (4,4) rigid transform (R re-orthonormalized)."""
    M = np.asarray(M, dtype=np.float64).reshape(3, 4)
    return make_transform(nearest_rotation(M[:, :3]), M[:, 3])


def split_projection(P) -> tuple[np.ndarray, np.ndarray]:
    """Rectified projection ``P = K [I | t]`` (3,4) → (K (3,3), t (3,)) with ``t = K⁻¹ P[:,3]``."""
    P = np.asarray(P, dtype=np.float64).reshape(3, 4)
    K = P[:, :3].copy()
    if abs(K[2, 2] - 1.0) > 1e-9 or abs(K[1, 0]) > 1e-9 or abs(K[2, 0]) > 1e-9 or abs(K[2, 1]) > 1e-9:
        raise ValueError(f"projection matrix is not of the rectified form K [I|t]: {P.tolist()}")
    return K, np.linalg.solve(K, P[:, 3])


def T_cam0_cam_from_projection(P) -> np.ndarray:
    """Pose of rectified camera i in the rectified camera-0 frame, from ``P_i`` (see module doc)."""
    _, t = split_projection(P)
    return make_transform(np.eye(3), -t)


def oxts_rotation(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """Devkit OXTS attitude: ``Rz(yaw) @ Ry(pitch) @ Rx(roll)`` (radians)."""
    cr, sr, cp, sp, cy, sy = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
    Rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    Ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    Rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    return Rz @ Ry @ Rx


def mercator(lat_deg: np.ndarray, lon_deg: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Devkit Mercator projection (metres) of latitude/longitude in degrees."""
    lat = np.asarray(lat_deg, dtype=np.float64)
    lon = np.asarray(lon_deg, dtype=np.float64)
    tx = scale * EARTH_RADIUS * np.pi * lon / 180.0
    ty = scale * EARTH_RADIUS * np.log(np.tan(np.pi * (90.0 + lat) / 360.0))
    return tx, ty


def oxts_poses(oxts: np.ndarray) -> np.ndarray:
    """(M, >=6) OXTS records (lat, lon, alt, roll, pitch, yaw, ...) → (M,4,4) ``T_imu0_imu``."""
    oxts = np.asarray(oxts, dtype=np.float64)
    if oxts.ndim != 2 or oxts.shape[1] < 6 or len(oxts) == 0:
        raise ValueError(f"oxts must be (M, >=6) with M > 0, got {oxts.shape}")
    scale = np.cos(oxts[0, 0] * np.pi / 180.0)
    tx, ty = mercator(oxts[:, 0], oxts[:, 1], scale)
    poses = np.zeros((len(oxts), 4, 4))
    for i, rec in enumerate(oxts):
        poses[i] = make_transform(oxts_rotation(rec[3], rec[4], rec[5]), [tx[i], ty[i], rec[2]])
    return np.einsum("ij,njk->nik", invert_transform(poses[0]), poses)


# ---------------------------------------------------------------------------------------
# File readers
# ---------------------------------------------------------------------------------------
def read_calib_file(path) -> dict[str, np.ndarray]:
    """``key: v1 v2 ...`` lines → ``{key: float array}``; non-numeric values (dates) are skipped."""
    out: dict[str, np.ndarray] = {}
    for line in Path(path).read_text().splitlines():
        if ":" not in line:
            continue
        key, _, value = line.partition(":")
        try:
            out[key.strip()] = np.array([float(v) for v in value.split()], dtype=np.float64)
        except ValueError:
            continue
    return out


def _require(calib: dict, key: str, n: int, path) -> np.ndarray:
    if key not in calib:
        raise ValueError(f"{path}: missing calibration entry {key!r}")
    if calib[key].size != n:
        raise ValueError(f"{path}: {key!r} has {calib[key].size} numbers, expected {n}")
    return calib[key]


def read_velodyne_bin(path) -> tuple[np.ndarray, np.ndarray]:
    """KITTI scan ``.bin`` (float32 rows x,y,z,reflectance) → (points (N,3), intensity (N,)), finite only."""
    raw = np.fromfile(path, dtype="<f4")
    if raw.size % 4:
        raise ValueError(f"{path}: size {raw.size * 4} bytes is not a multiple of 16 (x,y,z,r float32)")
    raw = raw.reshape(-1, 4)
    raw = raw[np.isfinite(raw).all(axis=1)]
    return np.ascontiguousarray(raw[:, :3]), np.ascontiguousarray(raw[:, 3])


def read_png_rgb(path) -> np.ndarray:
    """PNG/JPEG → (H,W,3) uint8 RGB."""
    from PIL import Image as PILImage

    with PILImage.open(path) as im:
        return np.asarray(im.convert("RGB"))


def parse_kitti_timestamp(text: str) -> float:
    """``YYYY-MM-DD hh:mm:ss.fffffffff`` (UTC, e.g. ``2020-05-04 10:00:00.104500000``) → float seconds
    since the epoch."""
    text = text.strip()
    base, _, frac = text.partition(".")
    try:
        t = _dt.datetime.strptime(base, "%Y-%m-%d %H:%M:%S").replace(tzinfo=_dt.UTC)
    except ValueError as e:
        raise ValueError(f"bad KITTI timestamp {text!r}") from e
    return t.timestamp() + (float("0." + frac) if frac else 0.0)


def read_timestamps(path) -> np.ndarray:
    lines = [ln for ln in Path(path).read_text().splitlines() if ln.strip()]
    return np.array([parse_kitti_timestamp(ln) for ln in lines], dtype=np.float64)


def _frame_indices(n: int, max_frames: int | None, stride: int, first: int = 0) -> list[int]:
    """Frame indices ``first, first+stride, ...`` below ``n``, at most ``max_frames`` of them."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    if not 0 <= first < n:
        raise ValueError(f"first frame {first} is outside the sequence's {n} frames")
    idx = list(range(first, n, stride))
    return idx[:max_frames] if max_frames is not None else idx


# ---------------------------------------------------------------------------------------
# Atomic bag output
# ---------------------------------------------------------------------------------------
class _AtomicBag:
    """A :class:`DriveBagWriter` writing into a temporary sibling directory, renamed on success."""

    def __init__(self, out, storage: str):
        self.out = Path(out)
        if self.out.exists():
            raise ValueError(f"output bag already exists, refusing to overwrite: {self.out}")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmpdir = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.", dir=self.out.parent))
        self.writer = DriveBagWriter(self.tmpdir / "bag", storage=storage)

    def __enter__(self) -> DriveBagWriter:
        return self.writer.open()

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.writer.close()
            if exc_type is None:
                os.replace(self.tmpdir / "bag", self.out)
        finally:
            shutil.rmtree(self.tmpdir, ignore_errors=True)


@dataclass
class ConversionSummary:
    """What a converter wrote."""

    out: str
    frames: int
    topics: dict[str, int]
    duration_s: float
    frames_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"out": self.out, "frames": self.frames, "topics": self.topics, "duration_s": self.duration_s}


# ---------------------------------------------------------------------------------------
# Odometry
# ---------------------------------------------------------------------------------------
@dataclass
class OdometryCalib:
    """Odometry calibration: P2 (3,4), ``T_cam0_velo`` (4,4) from Tr, and P3 (3,4) when given."""

    P2: np.ndarray
    T_cam0_velo: np.ndarray
    P3: np.ndarray | None = None

    @property
    def K2(self) -> np.ndarray:
        return split_projection(self.P2)[0]

    @property
    def K3(self) -> np.ndarray:
        return split_projection(self._p3())[0]

    @property
    def T_cam0_cam2(self) -> np.ndarray:
        return T_cam0_cam_from_projection(self.P2)

    @property
    def T_base_cam2(self) -> np.ndarray:
        """Static pose of the left colour optical frame in base_link (= velodyne)."""
        return invert_transform(self.T_cam0_velo) @ self.T_cam0_cam2

    @property
    def T_base_cam3(self) -> np.ndarray:
        """Static pose of the right colour optical frame in base_link, from the exact P3 offset."""
        return invert_transform(self.T_cam0_velo) @ T_cam0_cam_from_projection(self._p3())

    def _p3(self) -> np.ndarray:
        if self.P3 is None:
            raise ValueError("calibration has no P3 (right colour camera)")
        return self.P3


def read_odometry_calib(path) -> OdometryCalib:
    calib = read_calib_file(path)
    P2 = _require(calib, "P2", 12, path).reshape(3, 4)
    Tr = _require(calib, "Tr", 12, path)
    P3 = _require(calib, "P3", 12, path).reshape(3, 4) if "P3" in calib else None
    return OdometryCalib(P2=P2, T_cam0_velo=rigid_from_3x4(Tr), P3=P3)


def read_odometry_poses(path) -> np.ndarray:
    """``poses.txt`` → (M,4,4) ``T_w0_cam0`` (rotations re-orthonormalized)."""
    data = np.loadtxt(path, ndmin=2)
    if data.shape[1] != 12:
        raise ValueError(f"{path}: expected 12 numbers per line, got {data.shape[1]}")
    return np.stack([rigid_from_3x4(row) for row in data])


def odometry_base_poses(poses_cam0: np.ndarray, calib: OdometryCalib) -> np.ndarray:
    """(M,4,4) ``T_w0_cam0`` → (M,4,4) ``T_map_base`` (base_link = velodyne)."""
    return np.einsum("ij,njk,kl->nil", T_MAP_CAM0WORLD, poses_cam0, calib.T_cam0_velo)


def convert_kitti_odometry(seq_dir, out, storage: str = "mcap", max_frames: int | None = None,
                           stride: int = 1, progress: bool = True, first_frame: int = 0,
                           right_camera: bool | None = None) -> ConversionSummary:
    """Convert a KITTI odometry sequence directory into a rosbag2 at ``out`` (see module doc).

    Needs ``image_2/*.png``, ``velodyne/*.bin``, ``calib.txt``, ``times.txt`` and ``poses.txt``
    (test sequences without poses are refused: the TF tree needs them). Frames
    ``first_frame, first_frame + stride, ...`` are written, at most ``max_frames`` of them.
    right_camera: also write ``image_3`` as ``camera_color_right`` (CameraInfo from P3, TF from
    P3's exact offset); None = when ``image_3`` and P3 exist.
    """
    seq = Path(seq_dir)
    if not seq.is_dir():
        raise FileNotFoundError(f"KITTI odometry sequence directory not found: {seq}")
    for name in ("calib.txt", "times.txt", "poses.txt", "image_2", "velodyne"):
        if not (seq / name).exists():
            raise FileNotFoundError(f"KITTI odometry sequence {seq} lacks {name}")
    calib = read_odometry_calib(seq / "calib.txt")
    has_right = (seq / "image_3").is_dir() and calib.P3 is not None
    if right_camera and not has_right:
        raise FileNotFoundError(f"KITTI odometry sequence {seq} has no right colour camera (image_3 + P3)")
    right_camera = has_right if right_camera is None else right_camera
    times = np.loadtxt(seq / "times.txt", ndmin=1).reshape(-1)
    poses = read_odometry_poses(seq / "poses.txt")
    images = sorted((seq / "image_2").glob("*.png"))
    scans = sorted((seq / "velodyne").glob("*.bin"))
    counts_in = [len(times), len(poses), len(images), len(scans)]
    rights = sorted((seq / "image_3").glob("*.png")) if right_camera else []
    if right_camera:
        counts_in.append(len(rights))
    n = min(counts_in)
    if n == 0:
        raise ValueError(f"KITTI odometry sequence {seq} has no complete frame")
    if len(set(counts_in)) != 1:
        log.warning("frame counts differ (times, poses, images, scans[, right images] = %s); using the first %d",
                    counts_in, n)
    for i in range(n):
        if images[i].stem != scans[i].stem or (right_camera and rights[i].stem != images[i].stem):
            raise ValueError(f"image {images[i].name} and scan {scans[i].name} do not pair up")
    frames = _frame_indices(n, max_frames, stride, first_frame)
    T_map_base = odometry_base_poses(poses, calib)
    cameras = [(LEFT_IMAGE_TOPIC, LEFT_INFO_TOPIC, LEFT_FRAME, calib.K2, images)]
    static = [(BASE_FRAME, VELO_FRAME, np.eye(4)), (BASE_FRAME, LEFT_FRAME, calib.T_base_cam2)]
    if right_camera:
        cameras.append((RIGHT_IMAGE_TOPIC, RIGHT_INFO_TOPIC, RIGHT_FRAME, calib.K3, rights))
        static.append((BASE_FRAME, RIGHT_FRAME, calib.T_base_cam3))
    stamps = times + ODOMETRY_EPOCH

    with _AtomicBag(out, storage) as w:
        w.write_tf(float(stamps[frames[0]]), static, static=True)
        for i in tqdm(frames, desc="kitti-odometry", unit="frame", disable=not progress, leave=False):
            t = float(stamps[i])
            w.write_tf(t, [(WORLD_FRAME, BASE_FRAME, T_map_base[i])])
            pts, inten = read_velodyne_bin(scans[i])
            w.write_pointcloud(VELO_TOPIC, t, VELO_FRAME, pts, inten)
            for image_topic, info_topic, frame, K, files in cameras:
                rgb = read_png_rgb(files[i])
                w.write_camera_info(info_topic, t, frame, K, rgb.shape[1], rgb.shape[0], D=np.zeros(5))
                w.write_image(image_topic, t, frame, rgb)
        counts = dict(w.counts)
    return ConversionSummary(out=str(out), frames=len(frames), topics=counts,
                             duration_s=float(stamps[frames[-1]] - stamps[frames[0]]),
                             frames_ids=[images[i].stem for i in frames])


# ---------------------------------------------------------------------------------------
# Raw drives
# ---------------------------------------------------------------------------------------
@dataclass
class RawCalib:
    """Raw-drive calibration.

    P_rect_02/P_rect_03: (3,4). R_rect_00: (4,4) rotation (unrectified cam0 → rectified cam0).
    T_cam0_velo: (4,4) velodyne → unrectified camera 0. T_velo_imu: (4,4) imu → velodyne.
    """

    P_rect_02: np.ndarray
    P_rect_03: np.ndarray
    R_rect_00: np.ndarray
    T_cam0_velo: np.ndarray
    T_velo_imu: np.ndarray

    def T_rect0_velo(self) -> np.ndarray:
        return self.R_rect_00 @ self.T_cam0_velo

    def T_base_cam(self, P_rect: np.ndarray) -> np.ndarray:
        """Static pose of a rectified colour optical frame in base_link (= velodyne)."""
        return invert_transform(self.T_rect0_velo()) @ T_cam0_cam_from_projection(P_rect)


def find_calib_dir(drive_dir) -> Path:
    """The directory holding ``calib_cam_to_cam.txt``: the drive directory or its date directory."""
    drive = Path(drive_dir)
    for d in (drive, drive.parent):
        if (d / "calib_cam_to_cam.txt").is_file():
            return d
    raise FileNotFoundError(f"calib_cam_to_cam.txt not found in {drive} or {drive.parent}")


def read_raw_calib(calib_dir) -> RawCalib:
    d = Path(calib_dir)
    c2c_path, v2c_path, i2v_path = d / "calib_cam_to_cam.txt", d / "calib_velo_to_cam.txt", d / "calib_imu_to_velo.txt"
    for p in (c2c_path, v2c_path, i2v_path):
        if not p.is_file():
            raise FileNotFoundError(f"missing KITTI raw calibration file {p}")
    c2c, v2c, i2v = read_calib_file(c2c_path), read_calib_file(v2c_path), read_calib_file(i2v_path)
    R_rect = make_transform(nearest_rotation(_require(c2c, "R_rect_00", 9, c2c_path).reshape(3, 3)))
    T_cam0_velo = make_transform(nearest_rotation(_require(v2c, "R", 9, v2c_path).reshape(3, 3)),
                                 _require(v2c, "T", 3, v2c_path))
    T_velo_imu = make_transform(nearest_rotation(_require(i2v, "R", 9, i2v_path).reshape(3, 3)),
                                _require(i2v, "T", 3, i2v_path))
    return RawCalib(P_rect_02=_require(c2c, "P_rect_02", 12, c2c_path).reshape(3, 4),
                    P_rect_03=_require(c2c, "P_rect_03", 12, c2c_path).reshape(3, 4),
                    R_rect_00=R_rect, T_cam0_velo=T_cam0_velo, T_velo_imu=T_velo_imu)


def read_oxts_dir(oxts_dir) -> np.ndarray:
    files = sorted((Path(oxts_dir) / "data").glob("*.txt"))
    if not files:
        raise FileNotFoundError(f"no oxts records in {oxts_dir}/data")
    rows = [np.array(f.read_text().split(), dtype=np.float64) for f in files]
    if any(len(r) < 6 for r in rows):
        raise ValueError(f"{oxts_dir}: an oxts record has fewer than 6 values")
    return np.stack([r[:6] for r in rows])


def convert_kitti_raw(drive_dir, out, storage: str = "mcap", max_frames: int | None = None, stride: int = 1,
                      first_frame: int = 0,
                      progress: bool = True) -> ConversionSummary:
    """Convert a KITTI raw drive (synced layout) into a rosbag2 at ``out`` (see module doc).

    Needs ``image_02/``, ``image_03/``, ``velodyne_points/`` and ``oxts/`` each with ``data/`` and
    ``timestamps.txt``, and the three calibration files in the drive or its date directory.
    ``map → base_link`` is published at the oxts stamps; base_link is the Velodyne origin.
    """
    drive = Path(drive_dir)
    if not drive.is_dir():
        raise FileNotFoundError(f"KITTI raw drive directory not found: {drive}")
    for name in ("image_02", "image_03", "velodyne_points", "oxts"):
        if not (drive / name / "timestamps.txt").is_file():
            raise FileNotFoundError(f"KITTI raw drive {drive} lacks {name}/timestamps.txt")
    calib = read_raw_calib(find_calib_dir(drive))
    oxts = read_oxts_dir(drive / "oxts")
    t_oxts = read_timestamps(drive / "oxts" / "timestamps.txt")
    t_left = read_timestamps(drive / "image_02" / "timestamps.txt")
    t_right = read_timestamps(drive / "image_03" / "timestamps.txt")
    t_velo = read_timestamps(drive / "velodyne_points" / "timestamps.txt")
    left = sorted((drive / "image_02" / "data").glob("*.png"))
    right = sorted((drive / "image_03" / "data").glob("*.png"))
    scans = sorted((drive / "velodyne_points" / "data").glob("*.bin"))
    n = min(len(oxts), len(t_oxts), len(left), len(t_left), len(right), len(t_right), len(scans), len(t_velo))
    if n == 0:
        raise ValueError(f"KITTI raw drive {drive} has no complete frame (synced layout with .bin scans expected)")
    frames = _frame_indices(n, max_frames, stride, first_frame)

    T_imu0_imu = oxts_poses(oxts[:n])
    T_imu_velo = invert_transform(calib.T_velo_imu)
    # map = imu frame of the first record; base_link = velodyne.
    T_map_base = np.einsum("nij,jk->nik", T_imu0_imu, T_imu_velo)
    K2, _ = split_projection(calib.P_rect_02)
    K3, _ = split_projection(calib.P_rect_03)
    t0 = float(min(t_oxts[frames[0]], t_left[frames[0]], t_velo[frames[0]]))

    with _AtomicBag(out, storage) as w:
        w.write_tf(t0, [
            (BASE_FRAME, VELO_FRAME, np.eye(4)),
            (BASE_FRAME, IMU_FRAME, calib.T_velo_imu),
            (BASE_FRAME, LEFT_FRAME, calib.T_base_cam(calib.P_rect_02)),
            (BASE_FRAME, RIGHT_FRAME, calib.T_base_cam(calib.P_rect_03)),
        ], static=True)
        # Sensor stamps differ from the oxts stamps by milliseconds: hold the first/last pose over
        # the few ms before the first / after the last oxts record so every sensor stamp has a pose.
        t_sensors = np.concatenate([t_left[frames], t_right[frames], t_velo[frames]])
        if t_sensors.min() < t_oxts[frames[0]]:
            w.write_tf(float(t_sensors.min()), [(WORLD_FRAME, BASE_FRAME, T_map_base[frames[0]])])
        if t_sensors.max() > t_oxts[frames[-1]]:
            w.write_tf(float(t_sensors.max()), [(WORLD_FRAME, BASE_FRAME, T_map_base[frames[-1]])])
        for i in tqdm(frames, desc="kitti-raw", unit="frame", disable=not progress, leave=False):
            w.write_tf(float(t_oxts[i]), [(WORLD_FRAME, BASE_FRAME, T_map_base[i])])
            pts, inten = read_velodyne_bin(scans[i])
            w.write_pointcloud(VELO_TOPIC, float(t_velo[i]), VELO_FRAME, pts, inten)
            for topic_img, topic_info, frame, path, stamp, K in (
                (LEFT_IMAGE_TOPIC, LEFT_INFO_TOPIC, LEFT_FRAME, left[i], t_left[i], K2),
                (RIGHT_IMAGE_TOPIC, RIGHT_INFO_TOPIC, RIGHT_FRAME, right[i], t_right[i], K3),
            ):
                rgb = read_png_rgb(path)
                w.write_camera_info(topic_info, float(stamp), frame, K, rgb.shape[1], rgb.shape[0], D=np.zeros(5))
                w.write_image(topic_img, float(stamp), frame, rgb)
        counts = dict(w.counts)
    return ConversionSummary(out=str(out), frames=len(frames), topics=counts,
                             duration_s=float(t_left[frames[-1]] - t_left[frames[0]]),
                             frames_ids=[left[i].stem for i in frames])

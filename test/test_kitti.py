"""g3r_ros.kitti + ``g3r convert``: KITTI odometry (real data, skipped if absent) and raw (synthetic layout)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import transforms3d.euler as te
from PIL import Image as PILImage

from g3r_ros import bag, kitti, messages
from g3r_ros.cli import main as cli_main
from g3r_ros.tf_tree import TransformTree

N_FRAMES = 8
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kitti-odometry-04"


def _tf_tree(path) -> tuple[TransformTree, dict]:
    """A TF tree filled from a bag, plus the other messages by topic (lists in log order)."""
    tree = TransformTree(horizon_s=1e6)
    other: dict[str, list] = {}
    for m in bag.iter_bag_messages(path):
        if m.topic in ("/tf", "/tf_static"):
            tree.add_records(messages.decode_tf_message(m.msg), static=m.topic == "/tf_static")
        else:
            other.setdefault(m.topic, []).append(m)
    return tree, other


def _calib_lines(path) -> dict:
    out = {}
    for line in Path(path).read_text().splitlines():
        key, _, value = line.partition(":")
        if value.strip():
            out[key.strip()] = np.array(value.split(), dtype=np.float64)
    return out


# ---------------------------------------------------------------------------------------
# Odometry sequence 04 (real data)
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def odo_bag(tmp_path_factory):
    if not DATA.is_dir():
        pytest.skip(f"KITTI odometry data not found at {DATA} (../shared/data beside the repository)")
    out = tmp_path_factory.mktemp("kitti") / "seq04"
    summary = kitti.convert_kitti_odometry(DATA, out, max_frames=N_FRAMES, progress=False)
    return out, summary


def test_odometry_bag_contents(odo_bag):
    out, summary = odo_bag
    assert summary.frames == N_FRAMES and summary.frames_ids[:2] == ["000000", "000001"]
    topics = bag.bag_topics(out)
    assert topics == {
        kitti.LEFT_IMAGE_TOPIC: "sensor_msgs/msg/Image",
        kitti.LEFT_INFO_TOPIC: "sensor_msgs/msg/CameraInfo",
        kitti.RIGHT_IMAGE_TOPIC: "sensor_msgs/msg/Image",
        kitti.RIGHT_INFO_TOPIC: "sensor_msgs/msg/CameraInfo",
        kitti.VELO_TOPIC: "sensor_msgs/msg/PointCloud2",
        "/tf": "tf2_msgs/msg/TFMessage",
        "/tf_static": "tf2_msgs/msg/TFMessage",
    }
    assert summary.topics == {**{t: N_FRAMES for t in topics}, "/tf_static": 1}
    times = np.loadtxt(DATA / "times.txt")[:N_FRAMES] + kitti.ODOMETRY_EPOCH
    imgs = list(bag.iter_bag_messages(out, [kitti.LEFT_IMAGE_TOPIC]))
    np.testing.assert_allclose([m.stamp for m in imgs], times, atol=1e-6)
    np.testing.assert_allclose([messages.header_stamp(m.msg) for m in imgs], times, atol=1e-6)
    first = messages.decode_image(imgs[0].msg)
    np.testing.assert_array_equal(first, np.asarray(PILImage.open(DATA / "image_2" / "000000.png").convert("RGB")))
    info = messages.decode_camera_info(next(bag.iter_bag_messages(out, [kitti.LEFT_INFO_TOPIC])).msg)
    P2 = _calib_lines(DATA / "calib.txt")["P2"].reshape(3, 4)
    np.testing.assert_allclose(info.K, P2[:, :3])
    assert not info.is_distorted and (info.width, info.height) == (first.shape[1], first.shape[0])
    scan = next(bag.iter_bag_messages(out, [kitti.VELO_TOPIC])).msg
    raw = np.fromfile(DATA / "velodyne" / "000000.bin", dtype=np.float32).reshape(-1, 4)
    np.testing.assert_array_equal(messages.pointcloud_xyz(scan, with_intensity=True), raw)
    assert [f.name for f in scan.fields] == ["x", "y", "z", "intensity"]


def test_odometry_independent_mcap_reader(odo_bag):
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    out, _ = odo_bag
    (file,) = list(out.glob("*.mcap"))
    counts: dict[str, int] = {}
    with open(file, "rb") as f:
        for _, channel, _, decoded in make_reader(f, decoder_factories=[DecoderFactory()]).iter_decoded_messages():
            counts[channel.topic] = counts.get(channel.topic, 0) + 1
            if channel.topic == kitti.VELO_TOPIC and counts[channel.topic] == 1:
                assert decoded.header.frame_id == "velodyne" and decoded.point_step == 16
                pts = np.frombuffer(bytes(decoded.data), np.float32).reshape(-1, 4)
                raw = np.fromfile(DATA / "velodyne" / "000000.bin", dtype=np.float32).reshape(-1, 4)
                np.testing.assert_array_equal(pts, raw)
            if channel.topic == "/tf_static":
                assert {t.child_frame_id for t in decoded.transforms} == {"velodyne", "camera_color_left",
                                                                          "camera_color_right"}
    assert counts[kitti.LEFT_IMAGE_TOPIC] == N_FRAMES and counts["/tf"] == N_FRAMES and counts["/tf_static"] == 1


def test_odometry_camera_poses_through_tf_equal_poses_txt(odo_bag):
    """map ← camera_color_left (optical) through TF == R_map_cam0world · poses.txt · T_cam0_cam2, to 1e-5."""
    out, _ = odo_bag
    tree, other = _tf_tree(out)
    poses = np.loadtxt(DATA / "poses.txt").reshape(-1, 3, 4)[:N_FRAMES]
    P2 = _calib_lines(DATA / "calib.txt")["P2"].reshape(3, 4)
    # P2 = K [I | t]: a point X0 in rectified cam0 is at X0 + t in cam2, so cam2 sits at -t in cam0.
    T_cam0_cam2 = np.eye(4)
    T_cam0_cam2[:3, 3] = -np.linalg.solve(P2[:, :3], P2[:, 3])
    assert T_cam0_cam2[0, 3] == pytest.approx(-0.06, abs=0.005)  # camera 2 is ~6 cm left of camera 0
    M = np.zeros((4, 4))
    M[0, 2], M[1, 0], M[2, 1], M[3, 3] = 1.0, -1.0, -1.0, 1.0  # cam0 world (x right,y down,z fwd) → REP-103
    for i, m in enumerate(other[kitti.LEFT_IMAGE_TOPIC]):
        T_w0_cam0 = np.vstack([poses[i], [0, 0, 0, 1]])
        expected = M @ T_w0_cam0 @ T_cam0_cam2
        got = tree.lookup("map", m.msg.header.frame_id, messages.header_stamp(m.msg))
        np.testing.assert_allclose(got, expected, atol=1e-5)
    # map is z-up: the car drives along +x on a nearly level road
    end = tree.lookup("map", "base_link", messages.header_stamp(other[kitti.LEFT_IMAGE_TOPIC][-1].msg))
    assert end[0, 3] > 8.0 and abs(end[2, 3]) < 0.5 and end[2, 2] > 0.99


def test_odometry_lidar_projects_where_calibration_says(odo_bag):
    out, _ = odo_bag
    tree, other = _tf_tree(out)
    calib = _calib_lines(DATA / "calib.txt")
    P2, Tr = calib["P2"].reshape(3, 4), np.vstack([calib["Tr"].reshape(3, 4), [0, 0, 0, 1]])
    for i in (0, N_FRAMES - 1):
        scan, img_msg = other[kitti.VELO_TOPIC][i].msg, other[kitti.LEFT_IMAGE_TOPIC][i].msg
        info = messages.decode_camera_info(other[kitti.LEFT_INFO_TOPIC][i].msg)
        pts = messages.pointcloud_xyz(scan).astype(np.float64)
        t = messages.header_stamp(scan)
        T_cam_velo = np.linalg.inv(tree.lookup("map", "camera_color_left", t)) @ tree.lookup("map", "velodyne", t)
        pc = pts @ T_cam_velo[:3, :3].T + T_cam_velo[:3, 3]
        front = pc[:, 2] > 2.0
        uv_tf = (pc[front] @ info.K.T)[:, :2] / pc[front, 2:3]
        x = (P2 @ Tr @ np.c_[pts[front], np.ones(front.sum())].T).T  # the devkit formula
        uv_calib = x[:, :2] / x[:, 2:3]
        assert np.abs(uv_tf - uv_calib).max() < 1e-3
        # and they land on image content: inside the image, road returns in the lower half
        W, H = info.width, info.height
        inside = (uv_tf[:, 0] >= 0) & (uv_tf[:, 0] < W) & (uv_tf[:, 1] >= 0) & (uv_tf[:, 1] < H)
        assert inside.sum() > 10_000
        road = inside & (pts[front, 2] < -1.4) & (np.linalg.norm(pts[front, :2], axis=1) < 30)
        assert road.sum() > 1000 and np.mean(uv_tf[road, 1] > H / 2) > 0.95
        # road points fall on grey asphalt-like pixels more than on the (bright) sky band at the top
        rgb = messages.decode_image(img_msg)
        v = uv_tf[road, 1].astype(int)
        u = uv_tf[road, 0].astype(int)
        road_px = rgb[v, u].astype(float)
        assert np.abs(road_px - road_px.mean(axis=1, keepdims=True)).mean() < 20  # low saturation


def test_odometry_right_camera_from_p3(odo_bag):
    """image_3 → camera_color_right: same stamps, K from P3, pose from P3's exact offset (~0.54 m right of
    image_2), and LiDAR projects into it as the devkit's P3·Tr·X does."""
    out, _ = odo_bag
    tree, other = _tf_tree(out)
    calib = _calib_lines(DATA / "calib.txt")
    P3, Tr = calib["P3"].reshape(3, 4), np.vstack([calib["Tr"].reshape(3, 4), [0, 0, 0, 1]])
    left, right = other[kitti.LEFT_IMAGE_TOPIC], other[kitti.RIGHT_IMAGE_TOPIC]
    assert [m.stamp for m in right] == [m.stamp for m in left]
    np.testing.assert_array_equal(messages.decode_image(right[0].msg),
                                  np.asarray(PILImage.open(DATA / "image_3" / "000000.png").convert("RGB")))
    info = messages.decode_camera_info(other[kitti.RIGHT_INFO_TOPIC][0].msg)
    np.testing.assert_allclose(info.K, P3[:, :3])
    t = messages.header_stamp(right[0].msg)
    T_left_right = (np.linalg.inv(tree.lookup("map", "camera_color_left", t))
                    @ tree.lookup("map", "camera_color_right", t))
    assert T_left_right[0, 3] == pytest.approx(0.54, abs=0.01)  # optical x points right
    np.testing.assert_allclose(T_left_right[:3, :3], np.eye(3), atol=1e-9)
    assert abs(T_left_right[1, 3]) < 0.01 and abs(T_left_right[2, 3]) < 0.01
    pts = messages.pointcloud_xyz(other[kitti.VELO_TOPIC][0].msg).astype(np.float64)
    T_cam_velo = np.linalg.inv(tree.lookup("map", "camera_color_right", t)) @ tree.lookup("map", "velodyne", t)
    pc = pts @ T_cam_velo[:3, :3].T + T_cam_velo[:3, 3]
    front = pc[:, 2] > 2.0
    uv_tf = (pc[front] @ info.K.T)[:, :2] / pc[front, 2:3]
    x = (P3 @ Tr @ np.c_[pts[front], np.ones(front.sum())].T).T
    assert np.abs(uv_tf - x[:, :2] / x[:, 2:3]).max() < 2e-3  # Tr is re-orthonormalized (7-digit text)


def test_odometry_first_frame_and_left_only(tmp_path):
    if not DATA.is_dir():
        pytest.skip(f"KITTI odometry data not found at {DATA}")
    out = tmp_path / "f"
    summary = kitti.convert_kitti_odometry(DATA, out, first_frame=39, max_frames=2, right_camera=False,
                                           progress=False)
    assert summary.frames_ids == ["000039", "000040"]
    assert kitti.RIGHT_IMAGE_TOPIC not in bag.bag_topics(out)
    stamps = [m.stamp for m in bag.iter_bag_messages(out, [kitti.LEFT_IMAGE_TOPIC])]
    np.testing.assert_allclose(stamps, np.loadtxt(DATA / "times.txt")[39:41] + kitti.ODOMETRY_EPOCH, atol=1e-6)
    with pytest.raises(ValueError, match="outside"):
        kitti.convert_kitti_odometry(DATA, tmp_path / "g", first_frame=51, progress=False)


def test_odometry_stride_and_cli(tmp_path, capsys):
    if not DATA.is_dir():
        pytest.skip(f"KITTI odometry data not found at {DATA}")
    out = tmp_path / "s"
    assert cli_main(["convert", "kitti-odometry", str(DATA), str(out), "--max-frames", "2", "--stride", "5",
                     "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["frames"] == 2 and summary["topics"]["/tf"] == 2
    assert summary["duration_s"] == pytest.approx(float(np.loadtxt(DATA / "times.txt")[5]), abs=1e-5)
    assert cli_main(["convert", "kitti-odometry", str(DATA), str(out), "--no-progress"]) == 1  # exists
    assert not list(tmp_path.glob(".s.*"))  # no temporary directory left behind


# ---------------------------------------------------------------------------------------
# Raw drive layout (synthetic: no raw drive ships with the project)
# ---------------------------------------------------------------------------------------
# Every value below is invented for the test (layout and conventions of the KITTI raw devkit,
# not any real drive's calibration, GPS or clock).
RAW_STAMPS = ["2020-05-04 10:00:00.000000000", "2020-05-04 10:00:00.104500000", "2020-05-04 10:00:00.208250000"]
LAT0, LON0, ALT0 = 47.5, 10.25, 300.0
# desired motion (metres east / north / up, heading yaw, roll, pitch) per frame
MOTION = [(0.0, 0.0, 0.0, 0.3, 0.0, 0.0), (1.2, 0.5, 0.05, 0.35, 0.01, -0.02), (2.3, 1.1, 0.02, 0.45, -0.02, 0.03)]
FX, CX, CY = 700.0, 615.0, 180.0
P_RECT_02 = np.array([[FX, 0, CX, 0.06 * FX], [0, FX, CY, 0.3], [0, 0, 1, 0.003]])  # 6 cm beside cam 0
P_RECT_03 = np.array([[FX, 0, CX, -0.48 * FX], [0, FX, CY, 2.0], [0, 0, 1, 0.0025]])  # 48 cm the other way
R_RECT_00 = te.euler2mat(0.004, -0.01, 0.002)
# velodyne (x fwd, y left, z up) -> camera (x right, y down, z fwd), then a small misalignment
R_VELO_CAM = te.euler2mat(0.012, -0.008, 0.006) @ np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
T_VELO_CAM = np.array([-0.005, -0.07, -0.28])
R_IMU_VELO = te.euler2mat(0.01, -0.02, 0.015)
T_IMU_VELO = np.array([-0.8, 0.3, -0.75])
WORLD_POINTS = np.array([[12.0, 1.0, 0.5], [20.0, -2.0, 1.5], [9.0, 3.0, -0.2]])  # in map (= imu frame 0)


def _rigid(R, t):
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    return T


def _expected_T_map_imu():
    """Devkit poses of the motion above: relative to frame 0, ENU metres."""
    Ts = [_rigid(te.euler2mat(r, p, y, "sxyz"), [e, n, u]) for e, n, u, y, r, p in MOTION]
    return [np.linalg.inv(Ts[0]) @ T for T in Ts]


def _oxts_records():
    """lat/lon/alt/roll/pitch/yaw that the devkit Mercator projection maps to MOTION."""
    er = 6378137.0
    scale = math.cos(math.radians(LAT0))
    x0 = scale * er * math.pi * LON0 / 180
    y0 = scale * er * math.log(math.tan(math.pi * (90 + LAT0) / 360))
    rows = []
    for e, n, u, y, r, p in MOTION:
        lon = (x0 + e) * 180 / (math.pi * scale * er)
        lat = 360 / math.pi * math.atan(math.exp((y0 + n) / (scale * er))) - 90
        rows.append([lat, lon, ALT0 + u, r, p, y] + [0.0] * 24)
    return rows


def _write_raw_drive(root: Path) -> Path:
    date = root / "2020_05_04"
    drive = date / "2020_05_04_drive_0001_sync"
    def fmt(a):
        return " ".join(f"{v:.12e}" for v in np.asarray(a).reshape(-1))

    date.mkdir(parents=True)
    (date / "calib_cam_to_cam.txt").write_text(
        "calib_time: 01-May-2020 09:00:00\ncorner_dist: 1.000000e-01\n"
        f"R_rect_00: {fmt(R_RECT_00)}\nP_rect_00: {fmt(np.c_[P_RECT_02[:, :3], np.zeros(3)])}\n"
        f"P_rect_02: {fmt(P_RECT_02)}\nP_rect_03: {fmt(P_RECT_03)}\nS_rect_02: 1.242000e+03 3.750000e+02\n")
    (date / "calib_velo_to_cam.txt").write_text(
        f"calib_time: 01-May-2020 09:10:00\nR: {fmt(R_VELO_CAM)}\nT: {fmt(T_VELO_CAM)}\n"
        "delta_f: 0.000000e+00 0.000000e+00\ndelta_c: 0.000000e+00 0.000000e+00\n")
    (date / "calib_imu_to_velo.txt").write_text(
        f"calib_time: 01-May-2020 09:20:00\nR: {fmt(R_IMU_VELO)}\nT: {fmt(T_IMU_VELO)}\n")
    T_velo_imu = _rigid(R_IMU_VELO, T_IMU_VELO)
    for sub in ("image_02", "image_03", "velodyne_points", "oxts"):
        (drive / sub / "data").mkdir(parents=True)
        (drive / sub / "timestamps.txt").write_text("\n".join(RAW_STAMPS) + "\n")
    for i, (rec, T_map_imu) in enumerate(zip(_oxts_records(), _expected_T_map_imu())):
        (drive / "oxts" / "data" / f"{i:010d}.txt").write_text(" ".join(repr(v) for v in rec) + "\n")
        for cam in ("image_02", "image_03"):
            PILImage.fromarray(np.full((375, 1242, 3), 40 * i, np.uint8)).save(drive / cam / "data" / f"{i:010d}.png")
        T_velo_map = T_velo_imu @ np.linalg.inv(T_map_imu)
        pts = WORLD_POINTS @ T_velo_map[:3, :3].T + T_velo_map[:3, 3]
        scan = np.c_[pts, np.full(len(pts), 0.5)].astype(np.float32)
        scan.tofile(drive / "velodyne_points" / "data" / f"{i:010d}.bin")
    return drive


@pytest.fixture(scope="module")
def raw_bag(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    drive = _write_raw_drive(root)
    out = root / "raw_bag"
    summary = kitti.convert_kitti_raw(drive, out, progress=False)
    return out, summary


def test_mercator_and_oxts_poses_match_devkit():
    poses = kitti.oxts_poses(np.array(_oxts_records()))
    for got, want in zip(poses, _expected_T_map_imu()):
        np.testing.assert_allclose(got, want, atol=1e-6)
    np.testing.assert_allclose(kitti.oxts_rotation(0.1, -0.2, 0.3), te.euler2mat(0.1, -0.2, 0.3, "sxyz"))
    assert kitti.parse_kitti_timestamp(RAW_STAMPS[0]) == pytest.approx(1588586400.0, abs=1e-6)
    assert kitti.parse_kitti_timestamp(RAW_STAMPS[1]) == pytest.approx(1588586400.1045, abs=1e-6)


def test_raw_bag_topics_stamps_and_poses(raw_bag):
    out, summary = raw_bag
    assert summary.frames == 3
    topics = bag.bag_topics(out)
    for t in (kitti.LEFT_IMAGE_TOPIC, kitti.LEFT_INFO_TOPIC, kitti.RIGHT_IMAGE_TOPIC, kitti.RIGHT_INFO_TOPIC,
              kitti.VELO_TOPIC, "/tf", "/tf_static"):
        assert t in topics
    tree, other = _tf_tree(out)
    stamps = [kitti.parse_kitti_timestamp(s) for s in RAW_STAMPS]
    np.testing.assert_allclose([m.stamp for m in other[kitti.RIGHT_IMAGE_TOPIC]], stamps, atol=1e-6)
    T_imu_velo = np.linalg.inv(_rigid(R_IMU_VELO, T_IMU_VELO))
    for t, T_map_imu in zip(stamps, _expected_T_map_imu()):
        np.testing.assert_allclose(tree.lookup("map", "base_link", t), T_map_imu @ T_imu_velo, atol=1e-6)
        np.testing.assert_allclose(tree.lookup("map", "imu_link", t), T_map_imu, atol=1e-6)
        np.testing.assert_allclose(tree.lookup("base_link", "velodyne", t), np.eye(4), atol=1e-12)


@pytest.mark.parametrize("side", ["left", "right"])
def test_raw_points_project_where_calibration_says(raw_bag, side):
    """A world point in the scans projects through TF + CameraInfo where P_rect · R_rect · Tr_velo_cam puts it."""
    out, _ = raw_bag
    tree, other = _tf_tree(out)
    P = P_RECT_02 if side == "left" else P_RECT_03
    img_topic = kitti.LEFT_IMAGE_TOPIC if side == "left" else kitti.RIGHT_IMAGE_TOPIC
    info_topic = kitti.LEFT_INFO_TOPIC if side == "left" else kitti.RIGHT_INFO_TOPIC
    R4 = _rigid(R_RECT_00, np.zeros(3))
    Tr = _rigid(R_VELO_CAM, T_VELO_CAM)
    for i in range(3):
        scan = messages.pointcloud_xyz(other[kitti.VELO_TOPIC][i].msg).astype(np.float64)
        x = (P @ R4 @ Tr @ np.c_[scan, np.ones(len(scan))].T).T
        want = x[:, :2] / x[:, 2:3]
        img = other[img_topic][i].msg
        info = messages.decode_camera_info(other[info_topic][i].msg)
        np.testing.assert_allclose(info.K, P[:, :3])
        T_cam_map = np.linalg.inv(tree.lookup("map", img.header.frame_id, messages.header_stamp(img)))
        pc = WORLD_POINTS @ T_cam_map[:3, :3].T + T_cam_map[:3, 3]
        assert (pc[:, 2] > 5).all()  # in front of the forward-looking camera
        got = (pc @ info.K.T)[:, :2] / pc[:, 2:3]
        np.testing.assert_allclose(got, want, atol=1e-3)


def test_raw_cli_and_errors(tmp_path, capsys):
    drive = _write_raw_drive(tmp_path / "r")
    assert cli_main(["convert", "kitti-raw", str(drive), str(tmp_path / "b"), "--storage", "sqlite3",
                     "--max-frames", "2", "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["frames"] == 2 and summary["topics"][kitti.RIGHT_IMAGE_TOPIC] == 2
    assert list((tmp_path / "b").glob("*.db3"))
    with pytest.raises(FileNotFoundError, match="not found"):
        kitti.convert_kitti_raw(tmp_path / "nowhere", tmp_path / "c")
    (drive.parent / "calib_imu_to_velo.txt").write_text("R: 1 0 0\n")
    with pytest.raises((ValueError, FileNotFoundError), match="calib_imu_to_velo"):
        kitti.convert_kitti_raw(drive, tmp_path / "d")
    assert not (tmp_path / "d").exists()
    with pytest.raises(ValueError, match="stride"):
        kitti._frame_indices(5, None, 0)


def test_projection_split_and_offset_sign():
    K = np.array([[700.0, 0, 600], [0, 700, 180], [0, 0, 1]])
    t = np.array([0.06, -0.001, 0.002])
    P = K @ np.c_[np.eye(3), t]
    K2, t2 = kitti.split_projection(P)
    np.testing.assert_allclose(K2, K)
    np.testing.assert_allclose(t2, t)
    np.testing.assert_allclose(kitti.T_cam0_cam_from_projection(P)[:3, 3], -t)
    with pytest.raises(ValueError, match="rectified"):
        kitti.split_projection(np.ones((3, 4)))

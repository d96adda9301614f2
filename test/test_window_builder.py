"""g3r_ros.window_builder: windows from a toy drive with exact ground truth, corrupt data, KITTI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from g3r_ros import bag
from g3r_ros.cli import main as cli_main
from g3r_ros.config import config_path, from_dict, load_config
from g3r_ros.geometry import R_BODY_OPTICAL, invert_transform, make_transform, transform_points
from g3r_ros.knn import voxel_downsample
from g3r_ros.window_builder import (
    WindowBuilder,
    WindowConfig,
    camera_info_topic,
    detect_topics,
    points_in_box,
    range_filter,
    window_from_bag,
    window_name,
    windows_from_bag,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kitti-odometry-04"

# ---------------------------------------------------------------------------------------
# A toy drive: ego on a gentle curve, a ground grid and a wall, one moving box actor.
# ---------------------------------------------------------------------------------------
N = 12
T0 = 100.0
W, H = 32, 24
K = np.array([[20.0, 0.0, 16.0], [0.0, 20.0, 12.0], [0.0, 0.0, 1.0]])
T_BASE_LIDAR = make_transform(None, [0.0, 0.0, 1.6])
T_BASE_CAM = make_transform(R_BODY_OPTICAL, [0.5, 0.0, 1.4])
BOX_SIZE = np.array([4.0, 2.0, 1.6])
CAM, INFO, LIDAR, TRACKS = "/cam/image_raw", "/cam/camera_info", "/lidar/points", "/tracks"


def _rot_z(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def stamp(k: int) -> float:
    return T0 + 0.1 * k


def T_map_base(t: float) -> np.ndarray:
    u = t - T0
    return make_transform(_rot_z(0.05 * u), [2.0 * u, 0.1 * u * u, 0.0])


def T_map_box(t: float) -> np.ndarray:
    u = t - T0
    return make_transform(_rot_z(0.1), [8.0 + 3.0 * u, -2.0, 0.9])  # bottom 0.1 m above the ground


def static_points() -> np.ndarray:
    gx, gy = np.meshgrid(np.arange(-10, 40.01, 0.5), np.arange(-8, 8.01, 0.5), indexing="ij")
    ground = np.stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)], axis=1)
    wx, wz = np.meshgrid(np.arange(-10, 40.01, 0.5), np.arange(0.5, 4.01, 0.5), indexing="ij")
    wall = np.stack([wx.ravel(), np.full(wx.size, 8.0), wz.ravel()], axis=1)
    return np.concatenate([ground, wall])


def actor_points_local() -> np.ndarray:
    """Points on the box's sides and top, in box-local coordinates."""
    hx, hy, hz = BOX_SIZE / 2
    a, b = np.meshgrid(np.linspace(-hx, hx, 9), np.linspace(-hz, hz, 5), indexing="ij")
    sides = [np.stack([a.ravel(), np.full(a.size, s * hy), b.ravel()], 1) for s in (-1, 1)]
    a, b = np.meshgrid(np.linspace(-hy, hy, 5), np.linspace(-hz, hz, 5), indexing="ij")
    sides += [np.stack([np.full(a.size, s * hx), a.ravel(), b.ravel()], 1) for s in (-1, 1)]
    a, b = np.meshgrid(np.linspace(-hx, hx, 9), np.linspace(-hy, hy, 5), indexing="ij")
    sides.append(np.stack([a.ravel(), b.ravel(), np.full(a.size, hz)], 1))
    return np.unique(np.round(np.concatenate(sides), 9), axis=0)


def frame_image(k: int) -> np.ndarray:
    rng = np.random.default_rng(k)
    return rng.integers(0, 256, (H, W, 3), dtype=np.uint8)


def toy_messages(n: int = N, image_first: bool = False, compressed: bool = False) -> list[tuple]:
    """(topic, msgtype, log stamp, message) in a realistic order; ``image_first`` puts each
    frame's image and scan before its TF (they must wait for it)."""
    out = [("/tf_static", bag.TF_MESSAGE, T0,
            bag.make_tf_message(T0, [("base_link", "lidar", T_BASE_LIDAR), ("base_link", "cam_optical", T_BASE_CAM)]))]
    world = static_points()
    local = actor_points_local()
    for k in range(n):
        t = stamp(k)
        tf = ("/tf", bag.TF_MESSAGE, t, bag.make_tf_message(t, [("map", "base_link", T_map_base(t))]))
        T_world_lidar = T_map_base(t) @ T_BASE_LIDAR
        pts = np.concatenate([world, transform_points(T_map_box(t), local)])
        scan = (LIDAR, bag.POINTCLOUD2, t,
                bag.make_pointcloud(t, "lidar", transform_points(invert_transform(T_world_lidar), pts)))
        info = (INFO, bag.CAMERA_INFO, t, bag.make_camera_info(t, "cam_optical", K, W, H))
        if compressed:
            img = (CAM + "/compressed", bag.COMPRESSED_IMAGE, t,
                   bag.make_compressed_image(t, "cam_optical", frame_image(k), fmt="png"))
        else:
            img = (CAM, bag.IMAGE, t, bag.make_image(t, "cam_optical", frame_image(k)))
        T_base_box = invert_transform(T_map_base(t)) @ T_map_box(t)
        markers = (TRACKS, bag.MARKER_ARRAY, t, bag.make_marker_array(t, "base_link", [(5, T_base_box, BOX_SIZE)]))
        out += [img, scan, tf, info, markers] if image_first else [tf, info, img, scan, markers]
    return out


def write_bag(path, msgs, storage="mcap"):
    with bag.DriveBagWriter(path, storage=storage) as w:
        for topic, msgtype, t, msg in msgs:
            w.write_raw(topic, msgtype, t, msg)
    return path


def toy_config(**kw) -> WindowConfig:
    base = {"camera_topics": [CAM], "lidar_topic": LIDAR, "tracks_topic": TRACKS, "voxel_size": 0.05,
            "min_range": 1.0, "max_range": 30.0}
    base.update(kw)
    return WindowConfig(**base)


def feed(builder: WindowBuilder, msgs) -> WindowBuilder:
    for topic, _, t, msg in msgs:
        builder.add_message(topic, msg, t)
    return builder


@pytest.fixture(scope="module")
def toy_bags(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    msgs = toy_messages()
    return {s: write_bag(root / s, msgs, storage=s) for s in ("mcap", "sqlite3")}


def _nearest_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For each row of a (N,3), the distance to the nearest row of b (M,3)."""
    from scipy.spatial import cKDTree

    return cKDTree(b).query(a)[0]


# ---------------------------------------------------------------------------------------
# Tests on the toy drive
# ---------------------------------------------------------------------------------------
def test_every_image_is_a_keyframe_with_exact_pose(toy_bags):
    w = window_from_bag(toy_bags["mcap"], toy_config())
    assert len(w.keyframes) == N and not w.skipped
    for k, kf in enumerate(w.keyframes):
        assert kf.stamp == pytest.approx(stamp(k), abs=1e-9) and kf.index == k and kf.camera_name == "cam_optical"
        np.testing.assert_allclose(kf.camera.T_world_cam, T_map_base(stamp(k)) @ T_BASE_CAM, atol=1e-9)
        np.testing.assert_allclose(kf.camera.K, K)
        np.testing.assert_array_equal(kf.image, frame_image(k))
    np.testing.assert_allclose(w.ego_positions, [(T_map_base(stamp(k)) @ T_BASE_LIDAR)[:3, 3] for k in range(N)],
                               atol=1e-9)
    assert w.world_frame == "map"
    w.validate()


def test_lidar_in_world_and_actor_points_in_box_frame(toy_bags):
    w = window_from_bag(toy_bags["mcap"], toy_config())
    world = static_points()
    # background: only static structure (no trail of the moving actor), within float error
    assert len(w.points) > 1000 and w.points.dtype == np.float32
    assert _nearest_dist(w.points, world).max() < 1e-3
    # every static point in range of some scan is there (voxels smaller than the grid spacing)
    origins = w.ego_positions
    seen = np.zeros(len(world), bool)
    for o in origins:
        r = np.linalg.norm(world - o, axis=1)
        seen |= (r >= 1.0 + 1e-6) & (r <= 30.0 - 1e-6)
    assert _nearest_dist(world[seen], w.points).max() < 1e-3
    # the actor: one track, box-local points on the box surface
    (actor,) = w.actors
    assert actor.actor_id == 5
    np.testing.assert_allclose(actor.size, BOX_SIZE)
    np.testing.assert_allclose(actor.stamps, [stamp(k) for k in range(N)], atol=1e-9)
    for k in (0, 7):
        np.testing.assert_allclose(actor.pose_at(stamp(k)), T_map_box(stamp(k)), atol=1e-9)
    local = actor_points_local()
    assert len(actor.points) > 50
    assert _nearest_dist(actor.points, local).max() < 1e-3
    assert (np.abs(actor.points) <= BOX_SIZE / 2 + 1e-4).all()
    s = w.summary()
    assert s["actors"] == 1 and s["actor_points"] == len(actor.points) and s["skipped"] == 0


def test_without_tracks_the_actor_leaves_a_trail_in_the_background(toy_bags):
    w = window_from_bag(toy_bags["mcap"], toy_config(tracks_topic=""))
    assert not w.actors
    assert _nearest_dist(w.points, static_points()).max() > 0.2  # the moving box smeared into the background


def test_keyframe_spacing_and_held_out(toy_bags):
    by_m = window_from_bag(toy_bags["mcap"], toy_config(keyframe_meters=0.5))
    assert [round((k.stamp - T0) * 10) for k in by_m.keyframes] == [0, 3, 6, 9]
    centers = np.array([k.camera.center for k in by_m.keyframes])
    assert (np.linalg.norm(np.diff(centers, axis=0), axis=1) >= 0.5).all()
    by_s = window_from_bag(toy_bags["mcap"], toy_config(keyframe_seconds=0.25))
    assert [round((k.stamp - T0) * 10) for k in by_s.keyframes] == [0, 3, 6, 9]
    held = window_from_bag(toy_bags["mcap"], toy_config(held_out_every=3))
    assert [k.index for k in held.target_keyframes] == [2, 5, 8, 11]
    assert len(held.source_keyframes) == 8 and held.summary()["held_out_views"] == 4


def test_consecutive_windows_by_time_and_distance(toy_bags):
    wins = list(windows_from_bag(toy_bags["mcap"], toy_config(window_seconds=0.5)))
    assert [len(w.keyframes) for w in wins] == [6, 6]
    stamps = [k.stamp for w in wins for k in w.keyframes]
    np.testing.assert_allclose(stamps, [stamp(k) for k in range(N)], atol=1e-9)  # no overlap, no gap
    # named by index and start stamp, prefixed with the bag's name
    assert [w.name for w in wins] == [window_name(toy_bags["mcap"].name, i, w.keyframes[0].stamp)
                                      for i, w in enumerate(wins)]
    assert wins[1].name == f"{toy_bags['mcap'].name}_w001_t{wins[1].keyframes[0].stamp:.2f}"
    by_m = list(windows_from_bag(toy_bags["mcap"], toy_config(window_meters=1.0)))
    assert len(by_m) >= 2
    for w in by_m[:-1]:
        assert np.linalg.norm(np.diff(w.ego_positions, axis=0), axis=1).sum() >= 1.0


def test_mcap_and_sqlite3_give_the_same_window(toy_bags):
    a = window_from_bag(toy_bags["mcap"], toy_config(held_out_every=4))
    b = window_from_bag(toy_bags["sqlite3"], toy_config(held_out_every=4))
    assert a.summary() | {"name": ""} == b.summary() | {"name": ""}
    np.testing.assert_array_equal(a.points, b.points)
    for ka, kb in zip(a.keyframes, b.keyframes):
        np.testing.assert_array_equal(ka.image, kb.image)
        np.testing.assert_array_equal(ka.camera.T_world_cam, kb.camera.T_world_cam)


def test_auto_detected_topics(toy_bags, tmp_path):
    found = detect_topics(bag.bag_topics(toy_bags["mcap"]))
    assert found == {"camera_topics": [CAM], "lidar_topic": LIDAR, "tracks_topic": TRACKS}
    w = window_from_bag(toy_bags["sqlite3"])  # defaults: auto topics, every image, whole bag
    assert len(w.keyframes) == N and len(w.actors) == 1
    # a compressed-only camera is found too, with its info beside the base topic
    p = write_bag(tmp_path / "c", toy_messages(n=3, compressed=True))
    assert detect_topics(bag.bag_topics(p))["camera_topics"] == [CAM + "/compressed"]
    wc = window_from_bag(p)
    np.testing.assert_array_equal(wc.keyframes[2].image, frame_image(2))  # png: lossless


def test_messages_waiting_for_tf_are_processed_when_it_arrives():
    msgs = toy_messages(n=4, image_first=True)  # each frame: image, scan, then TF, info, markers
    b = feed(WindowBuilder(toy_config()), msgs)
    assert b.stats()["keyframes"] == 4 and b.stats()["pending"] == 0 and b.stats()["lidar_scans"] == 4
    last_tf = max(i for i, m in enumerate(msgs) if m[0] == "/tf")
    b = feed(WindowBuilder(toy_config()), msgs[:last_tf] + msgs[last_tf + 1:])
    assert b.stats()["keyframes"] == 3 and b.stats()["pending"] == 3  # frame 3's image, scan, markers wait
    w = b.build()
    assert len(w.keyframes) == 3 and sorted(s.topic for s in w.skipped) == sorted([CAM, LIDAR, TRACKS])
    assert {s.reason.split(":")[0] for s in w.skipped} == {"tf"}  # frame 3 never got its TF
    assert all("newest is" in s.reason for s in w.skipped)
    np.testing.assert_allclose(w.keyframes[2].camera.T_world_cam, T_map_base(stamp(2)) @ T_BASE_CAM, atol=1e-9)


def test_corrupt_messages_become_skip_records(tmp_path):
    msgs = toy_messages(n=6)
    t = stamp(2) + 0.01
    short = bag.make_image(t, "cam_optical", frame_image(0))
    short.data = short.data[:-10]
    yuv = bag.make_image(t + 0.01, "cam_optical", frame_image(0))
    yuv.encoding = "yuv422"
    lost = bag.make_image(t + 0.02, "cam_nowhere", frame_image(0))
    late = bag.make_image(stamp(5) + 3.0, "cam_optical", frame_image(0))
    bad_cloud = bag.make_pointcloud(t, "lidar", np.zeros((4, 3), np.float32))
    bad_cloud.row_step = 7
    msgs += [(CAM, bag.IMAGE, t, short), (CAM, bag.IMAGE, t + 0.01, yuv), (CAM, bag.IMAGE, t + 0.02, lost),
             (CAM, bag.IMAGE, stamp(5) + 3.0, late), (LIDAR, bag.POINTCLOUD2, t, bad_cloud)]
    path = tmp_path / "bad"
    with bag.DriveBagWriter(path) as w:
        for topic, msgtype, s, msg in msgs:
            w.write_raw(topic, msgtype, s, msg)
        w.write_serialized(CAM, bag.IMAGE, t + 0.03, b"\x00\x01\x00\x00garbage")
    win = window_from_bag(path, toy_config())
    assert len(win.keyframes) == 6  # the good frames all survive
    reasons = sorted(s.reason for s in win.skipped)
    assert win.summary()["skipped_by_reason"] == {"decode": 3, "tf": 2, "deserialize": 1}
    assert any("yuv422" in r for r in reasons)
    assert any("step*height" in r for r in reasons)
    assert any("row_step" in r for r in reasons)
    assert any("cam_nowhere" in r and r.startswith("tf:") for r in reasons)
    assert any(r.startswith("tf:") and "newest is" in r for r in reasons)
    assert all(s.topic in (CAM, LIDAR) for s in win.skipped)


def test_missing_camera_info_is_recorded():
    cfg = toy_config(camera_topics=[CAM, "/cam2/image_raw"])
    msgs = toy_messages(n=10)
    msgs += [("/cam2/image_raw", bag.IMAGE, stamp(1), bag.make_image(stamp(1), "cam_optical", frame_image(1)))]
    msgs.sort(key=lambda m: m[2])
    w = feed(WindowBuilder(cfg), msgs).build()
    assert len(w.keyframes) == 10
    (skip,) = w.skipped
    assert skip.topic == "/cam2/image_raw" and skip.reason.startswith("camera_info:")


def test_image_scale_distortion_and_stats():
    b = feed(WindowBuilder(toy_config(image_scale=0.5)), toy_messages(n=2))
    st = b.stats()
    assert st["keyframes"] == 2 and st["lidar_scans"] == 2 and st["messages"][CAM] == 2 and st["skipped"] == 0
    w = b.build()
    kf = w.keyframes[0]
    assert kf.image.shape == (H // 2, W // 2, 3) and (kf.camera.width, kf.camera.height) == (W // 2, H // 2)
    np.testing.assert_allclose(kf.camera.K[0, 0], K[0, 0] / 2)
    assert b.stats()["keyframes"] == 0  # reset
    with pytest.raises(ValueError, match="empty"):
        b.build()
    # a distorted camera is undistorted on ingest
    msgs = toy_messages(n=1)
    for i, (topic, mt, t, _msg) in enumerate(msgs):
        if topic == INFO:
            msgs[i] = (topic, mt, t, bag.make_camera_info(t, "cam_optical", K, W, H, D=[-0.3, 0.1, 0, 0, 0]))
    kf = feed(WindowBuilder(toy_config()), msgs).build().keyframes[0]
    assert kf.image.shape == (H, W, 3) and not np.array_equal(kf.image, frame_image(0))


def test_decimation_and_scan_cap(toy_bags):
    every2 = window_from_bag(toy_bags["mcap"], toy_config(lidar_every=2))
    assert len(every2.ego_positions) == N // 2
    capped = window_from_bag(toy_bags["mcap"], toy_config(max_lidar_scans=3, max_points=500))
    assert len(capped.points) == 500


def test_config_validation_and_yaml():
    for bad in ({"window_seconds": -1.0}, {"held_out_every": 1}, {"voxel_size": 0}, {"min_range": 5.0,
                "max_range": 4.0}, {"image_scale": 2.0}, {"lidar_every": 0}, {"camera_topics": "/cam"}):
        with pytest.raises(ValueError):
            from_dict(WindowConfig, bad)
    with pytest.raises(ValueError, match="unknown config key"):
        from_dict(WindowConfig, {"window_secs": 3})
    kitti = load_config(WindowConfig, config_path("window_kitti.yaml"))
    assert kitti.camera_topics == ["/kitti/camera_color_left/image_raw"] and kitti.image_scale == 0.25
    synth = load_config(WindowConfig, config_path("window_synth.yaml"))
    assert synth.camera_topics == [] and synth.lidar_topic is None
    assert camera_info_topic("/a/b/image_raw") == "/a/b/camera_info"
    assert camera_info_topic("/a/b/image_raw/compressed") == "/a/b/camera_info"


def test_point_helpers():
    rng = np.random.default_rng(0)
    pts = rng.uniform(-5, 5, (2000, 3))
    ds, _ = voxel_downsample(pts, 1.0)
    keys = {tuple(k) for k in np.floor(pts).astype(int)}
    assert len(ds) == len(keys)
    for key in list(keys)[:20]:  # centroid per voxel, by brute force
        sel = (np.floor(pts).astype(int) == key).all(axis=1)
        assert _nearest_dist(pts[sel].mean(0, keepdims=True), ds)[0] < 1e-5
    assert voxel_downsample(np.zeros((0, 3)), 0.1)[0].shape == (0, 3)
    r = np.linalg.norm(range_filter(pts, 2.0, 4.0), axis=1)
    assert r.min() >= 2.0 and r.max() <= 4.0
    mask, local = points_in_box(np.array([[1.0, 0.0, 0.0], [3.0, 0.0, 0.0]]), make_transform(_rot_z(0.5), [1, 0, 0]),
                                [1.0, 1.0, 1.0])
    assert mask.tolist() == [True, False] and np.allclose(local[0], 0)


def test_window_cli(toy_bags, capsys):
    assert cli_main(["window", str(toy_bags["mcap"]), "--no-progress"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["keyframes"] == N and s["actors"] == 1 and s["skipped"] == 0
    assert cli_main(["window", str(toy_bags["mcap"]), "--all", "--no-progress"]) == 0
    assert isinstance(json.loads(capsys.readouterr().out), list)


# ---------------------------------------------------------------------------------------
# KITTI odometry window (real data)
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def kitti_window(tmp_path_factory):
    if not DATA.is_dir():
        pytest.skip(f"KITTI odometry data not found at {DATA} (../shared/data beside the repository)")
    from g3r_ros.kitti import convert_kitti_odometry

    out = tmp_path_factory.mktemp("kw") / "seq04"
    convert_kitti_odometry(DATA, out, max_frames=8, progress=False)
    cfg = dataclasses.replace(load_config(WindowConfig, config_path("window_kitti.yaml")), held_out_every=4,
                              lidar_every=1)
    return window_from_bag(out, cfg)


def test_kitti_window(kitti_window):
    w = kitti_window
    s = w.summary()
    assert s["keyframes"] == 8 and s["held_out_views"] == 2 and s["image_size"] == [306, 92] and s["skipped"] == 0
    assert [k.index for k in w.target_keyframes] == [3, 7]
    poses = np.loadtxt(DATA / "poses.txt").reshape(-1, 3, 4)
    M = make_transform(R_BODY_OPTICAL)
    for i, kf in enumerate(w.keyframes):
        T_w0_cam0 = np.vstack([poses[i], [0, 0, 0, 1]])
        # camera 2's centre is 6 cm left of camera 0 (see test_kitti); compare centres to 0.1 m
        assert np.linalg.norm(kf.camera.center - (M @ T_w0_cam0)[:3, 3]) < 0.1
        assert kf.image.shape == (92, 306, 3)
    # driving forward along +x in a z-up map, ~1.3 m per frame
    steps = np.diff(w.ego_positions, axis=0)
    assert (steps[:, 0] > 1.0).all() and (np.abs(steps[:, 2]) < 0.1).all()
    assert 20_000 < len(w.points) <= 200_000 and np.isfinite(w.points).all()
    near = np.linalg.norm(w.points[:, :2], axis=1) < 15.0
    assert np.median(w.points[near, 2]) == pytest.approx(-1.7, abs=0.3)  # mostly road, ~1.7 m below cam0
    # LiDAR points project into a keyframe with positive depth
    uv, z = w.keyframes[0].camera.project(w.points)
    inside = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < 306) & (uv[:, 1] >= 0) & (uv[:, 1] < 92)
    assert inside.sum() > 5000


def test_all_nan_scan_is_a_recorded_skip():
    """A LiDAR scan with only NaN points is skipped with a reason (the node counts it in ~/status)."""
    from types import SimpleNamespace

    from g3r_ros.window_builder import WindowBuilder, WindowConfig, _Pending

    b = WindowBuilder(WindowConfig(camera_topics=["/cam/image_raw"], lidar_topic="/velo", tracks_topic=""))
    data = np.full((3, 4), np.nan, np.float32).tobytes()
    fields = [SimpleNamespace(name=n, offset=4 * i, datatype=7, count=1) for i, n in enumerate("xyz")] + \
        [SimpleNamespace(name="i", offset=12, datatype=7, count=1)]
    msg = SimpleNamespace(height=1, width=3, fields=fields, is_bigendian=False, point_step=16, row_step=48,
                          data=np.frombuffer(data, np.uint8), is_dense=False)
    b._use_scan(_Pending(kind="lidar", topic="/velo", stamp=1.0, frame_id="velodyne", msg=msg), np.eye(4))
    assert b.stats()["lidar_scans"] == 0
    assert any(s.reason.startswith("lidar: all 3 points non-finite") for s in b._skipped)

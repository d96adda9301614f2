"""Synthetic drive generator: determinism, bag contents, exact ground truth, LiDAR, tracks."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from g3r_ros.bag import iter_bag_messages
from g3r_ros.config import config_path, from_dict, load_config
from g3r_ros.geometry import PinholeCamera, invert_transform, pose_to_transform, quat_xyzw_to_wxyz
from g3r_ros.synthetic import (
    GENERATOR_VERSION,
    SynthConfig,
    generate_drive,
    lane_shifted_camera,
    lidar_scan,
    make_scene,
    render_truth,
    render_truth_depth,
    render_truth_labels,
    scene_from_bag,
)
from g3r_ros.synthetic.bagout import scene_from_json, scene_json
from g3r_ros.synthetic.lidar import lidar_grid
from g3r_ros.synthetic.motion import MIN_GAP
from g3r_ros.synthetic.primitives import BOX, CYL, ELL, HIT_NONE, part_bounds
from g3r_ros.synthetic.raycast import PinholeGrid, cast_grid, cast_rays

SEED = 5
SMALL = {"frames": 4, "width": 64, "height": 40, "cameras": 2, "actors": 3, "lidar_beams": 16,
         "lidar_azimuth_steps": 360}


def small_config(**kw) -> SynthConfig:
    return SynthConfig(**{**SMALL, **kw})


@pytest.fixture(scope="module")
def drive(tmp_path_factory):
    """One small generated bag, its summary and its scene."""
    path = tmp_path_factory.mktemp("synth") / "drive"
    summary = generate_drive(path, SEED, small_config(), progress=False)
    return path, summary, make_scene(SEED, small_config())


@pytest.fixture(scope="module")
def messages(drive):
    path, _, _ = drive
    return list(iter_bag_messages(path))


def _by_topic(messages, topic):
    return [m for m in messages if m.topic == topic]


def _image(msg) -> np.ndarray:
    assert msg.encoding == "rgb8"
    rows = np.asarray(msg.data, dtype=np.uint8).reshape(msg.height, msg.step)
    return rows[:, : msg.width * 3].reshape(msg.height, msg.width, 3)


def _cloud(msg) -> tuple[np.ndarray, np.ndarray]:
    raw = np.asarray(msg.data, dtype=np.uint8).reshape(-1, msg.point_step)
    offs = {f.name: f.offset for f in msg.fields}
    assert all(f.datatype == 7 for f in msg.fields)  # FLOAT32
    col = {k: raw[:, o:o + 4].copy().view("<f4").reshape(-1) for k, o in offs.items()}
    return np.stack([col["x"], col["y"], col["z"]], axis=1), col["intensity"]


def _tf(msg) -> dict:
    out = {}
    for t in msg.transforms:
        tr, q = t.transform.translation, t.transform.rotation
        out[(t.header.frame_id, t.child_frame_id)] = pose_to_transform(
            [tr.x, tr.y, tr.z], quat_xyzw_to_wxyz([q.x, q.y, q.z, q.w]))
    return out


# ---------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------
def test_shipped_yaml_mirrors_dataclass_defaults():
    assert load_config(SynthConfig, config_path("synth.yaml")) == SynthConfig()


@pytest.mark.parametrize("bad", [{"cameras": 4}, {"width": 2}, {"lidar_fov_up_deg": -30.0}, {"frames": 0},
                                 {"storage": "bag"}, {"start_stamp": "1.7e9"}, {"actors": True}])
def test_bad_config_is_a_value_error(bad):
    with pytest.raises(ValueError):
        from_dict(SynthConfig, bad)


def test_unknown_config_key_is_a_value_error():
    with pytest.raises(ValueError, match="unknown config key"):
        from_dict(SynthConfig, {"widht": 10})


def test_bad_seed_and_camera_rejected():
    with pytest.raises(ValueError):
        make_scene(-1, small_config())
    with pytest.raises(ValueError):
        render_truth(make_scene(0, small_config()), "camera")


# ---------------------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------------------
def test_same_seed_same_bytes(drive, tmp_path):
    path, _, _ = drive
    again = tmp_path / "drive"   # same bag name: the storage file is named after it
    generate_drive(again, SEED, small_config(), progress=False)
    assert (again / "drive.mcap").read_bytes() == (path / "drive.mcap").read_bytes()
    assert (again / "metadata.yaml").read_text() == (path / "metadata.yaml").read_text()


def test_different_seeds_differ():
    cfg = small_config(frames=1)
    a, b = make_scene(1, cfg), make_scene(2, cfg)
    assert a.describe() != b.describe()
    ia = render_truth(a, a.camera(0, a.t0), a.t0)
    ib = render_truth(b, b.camera(0, b.t0), b.t0)
    assert np.abs(ia.astype(int) - ib).mean() > 5.0


def test_existing_output_is_refused(drive):
    path, _, _ = drive
    with pytest.raises(ValueError, match="exists"):
        generate_drive(path, SEED, small_config(), progress=False)


# ---------------------------------------------------------------------------------------
# Bag contents
# ---------------------------------------------------------------------------------------
def test_topics_and_counts(drive, messages):
    _, summary, scene = drive
    F = SMALL["frames"]
    counts = {}
    types = {}
    for m in messages:
        counts[m.topic] = counts.get(m.topic, 0) + 1
        types[m.topic] = m.msgtype
    expect = {"/synth/scene": 1, "/tf_static": 1, "/tf": F, "/synth/velodyne/points": F, "/synth/tracks": F}
    for c in range(SMALL["cameras"]):
        expect[f"/synth/cam{c}/image_raw"] = F
        expect[f"/synth/cam{c}/camera_info"] = F
    assert counts == expect
    assert summary["topics"] == expect
    assert types["/synth/cam0/image_raw"] == "sensor_msgs/msg/Image"
    assert types["/synth/velodyne/points"] == "sensor_msgs/msg/PointCloud2"
    assert types["/synth/tracks"] == "visualization_msgs/msg/MarkerArray"
    assert types["/tf"] == "tf2_msgs/msg/TFMessage"
    stamps = sorted({m.stamp for m in _by_topic(messages, "/tf")})
    np.testing.assert_allclose(stamps, scene.stamps, atol=1e-6)
    assert abs(stamps[0] - 1.7e9) < 1.0 and np.allclose(np.diff(stamps), 0.1, atol=1e-6)
    doc = json.loads(_by_topic(messages, "/synth/scene")[0].msg.data)
    assert doc["seed"] == SEED and doc["version"] == GENERATOR_VERSION
    assert doc["config"] == dataclasses.asdict(small_config())


def test_tf_gives_the_generator_camera_poses(drive, messages):
    _, _, scene = drive
    static = _tf(_by_topic(messages, "/tf_static")[0].msg)
    assert set(static) == {("base_link", "velodyne"), ("base_link", "cam0_optical"), ("base_link", "cam1_optical")}
    infos = {c: _by_topic(messages, f"/synth/cam{c}/camera_info") for c in range(2)}
    for k, m in enumerate(_by_topic(messages, "/tf")):
        T_map_base = _tf(m.msg)[("map", "base_link")]
        stamp = scene.stamps[k]
        for c in range(2):
            T = T_map_base @ static[("base_link", f"cam{c}_optical")]
            np.testing.assert_allclose(T, scene.camera(c, stamp).T_world_cam, atol=1e-9)
            info = infos[c][k].msg
            assert info.header.frame_id == f"cam{c}_optical" and info.distortion_model == "plumb_bob"
            np.testing.assert_allclose(np.asarray(info.k).reshape(3, 3), scene.cameras[c].K)
            assert np.all(np.asarray(info.d) == 0)
        np.testing.assert_allclose(T_map_base @ static[("base_link", "velodyne")], scene.lidar_pose(stamp), atol=1e-9)
    # map is the ego's first pose; the camera looks along base_link x (forward)
    np.testing.assert_allclose(scene.ego_pose(scene.t0), np.eye(4), atol=1e-12)
    R = scene.cameras[0].T_base_cam[:3, :3]
    assert R[:, 2] @ np.array([1.0, 0, 0]) > 0.99 and R[:, 1] @ np.array([0, 0, -1.0]) > 0.99


def test_bag_images_are_render_truth(drive, messages):
    path, _, _ = drive
    scene = scene_from_bag(path)
    static = _tf(_by_topic(messages, "/tf_static")[0].msg)
    tfs = _by_topic(messages, "/tf")
    for c in range(2):
        for k, m in enumerate(_by_topic(messages, f"/synth/cam{c}/image_raw")):
            img = _image(m.msg)
            assert img.shape == (40, 64, 3) and m.msg.header.frame_id == f"cam{c}_optical"
            stamp = scene.stamps[k]
            assert np.array_equal(img, render_truth(scene, scene.camera(c, stamp), stamp))
            if k == 1:   # the pose recovered from the bag's TF renders the same image
                T = _tf(tfs[k].msg)[("map", "base_link")] @ static[("base_link", f"cam{c}_optical")]
                cam = PinholeCamera(scene.cameras[c].K, 64, 40, T)
                diff = np.abs(render_truth(scene, cam, m.stamp).astype(int) - img)
                assert diff.max() <= 1 and (diff > 0).mean() < 0.01


def test_scene_from_bag_round_trip(drive):
    path, _, scene = drive
    back = scene_from_bag(path)
    assert back.seed == scene.seed and back.config == scene.config
    np.testing.assert_array_equal(back.stamps, scene.stamps)
    for s in scene.stamps:
        np.testing.assert_array_equal(back.ego_pose(s), scene.ego_pose(s))
    assert scene_from_json(scene_json(scene)).describe() == scene.describe()
    doc = json.loads(scene_json(scene))
    doc["version"] = "0.0"
    with pytest.raises(ValueError, match="version"):
        scene_from_json(json.dumps(doc))
    with pytest.raises(ValueError):
        scene_from_json("not json")


# ---------------------------------------------------------------------------------------
# Ray casting
# ---------------------------------------------------------------------------------------
def test_culled_grid_cast_equals_brute_force():
    scene = make_scene(3, small_config())
    stamp = scene.stamps[2]
    posed = scene.posed(stamp)
    for cam in (scene.camera(0, stamp), lane_shifted_camera(scene.camera(1, stamp), -2.5)):
        grid = PinholeGrid(cam.K, 48, 30, scene.T_road_map @ cam.T_world_cam, ss=1)
        t, hit = cast_grid(grid, scene.geometry, scene.layout.terrain, posed)
        o = np.broadcast_to(grid.origin, (grid.H * grid.W, 3))
        tb, hb = cast_rays(o, grid.dirs.reshape(-1, 3), scene.geometry, scene.layout.terrain, posed)
        np.testing.assert_array_equal(hit.reshape(-1), hb)
        np.testing.assert_allclose(t.reshape(-1), tb, rtol=1e-12)
        assert (hb >= 0).mean() > 0.2 and (hb == HIT_NONE).mean() > 0.02   # objects and sky in view
    grid = lidar_grid(scene, stamp)
    t, hit = cast_grid(grid, scene.geometry, scene.layout.terrain, posed)
    o = np.broadcast_to(grid.origin, (grid.H * grid.W, 3))
    tb, hb = cast_rays(o, grid.dirs.reshape(-1, 3), scene.geometry, scene.layout.terrain, posed)
    tb = np.where(tb > grid.max_range, np.inf, tb)
    hb = np.where(np.isfinite(tb), hb, HIT_NONE)
    np.testing.assert_array_equal(hit.reshape(-1), hb)
    np.testing.assert_allclose(t.reshape(-1), tb, rtol=1e-12)


def test_depth_matches_a_known_surface():
    scene = make_scene(4, small_config())
    # looking straight down from 10 m over the road: the depth is 10 m everywhere
    T = np.eye(4)
    T[:3, :3] = np.diag([1.0, -1.0, -1.0])   # optical z pointing down
    T[:3, 3] = [0.0, 0.0, 10.0]
    K = np.array([[100.0, 0, 8], [0, 100.0, 8], [0, 0, 1]])
    cam = PinholeCamera(K, 16, 16, scene.T_map_road @ T)
    np.testing.assert_allclose(render_truth_depth(scene, cam), 10.0, rtol=1e-9)


# ---------------------------------------------------------------------------------------
# LiDAR
# ---------------------------------------------------------------------------------------
def test_lidar_points_lie_on_geometry_and_below_top_beam(drive, messages):
    _, _, scene = drive
    cfg = scene.config
    for k, m in enumerate(_by_topic(messages, "/synth/velodyne/points")):
        assert m.msg.header.frame_id == "velodyne"
        pts, inten = _cloud(m.msg)
        assert len(pts) > 0.5 * cfg.lidar_beams * cfg.lidar_azimuth_steps
        rng = np.linalg.norm(pts, axis=1)
        assert rng.min() >= cfg.lidar_min_range - 1e-3 and rng.max() <= cfg.lidar_max_range + 1e-3
        elev = np.degrees(np.arctan2(pts[:, 2], np.hypot(pts[:, 0], pts[:, 1])))
        assert elev.max() <= cfg.lidar_fov_up_deg + 1e-3 and elev.min() >= cfg.lidar_fov_down_deg - 1e-3
        assert np.all((inten >= 0) & (inten <= 1)) and inten.std() > 0.01
        # re-cast (brute force) from the sensor towards every 7th point: the first hit is the point
        stamp = scene.stamps[k]
        T_road_lidar = scene.T_road_map @ scene.lidar_pose(stamp)
        sel = pts[::7].astype(np.float64)
        dirs = sel @ T_road_lidar[:3, :3].T
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        o = np.broadcast_to(T_road_lidar[:3, 3], dirs.shape)
        t, hit = cast_rays(o, dirs, scene.geometry, scene.layout.terrain, scene.posed(stamp))
        np.testing.assert_allclose(t, np.linalg.norm(sel, axis=1), atol=2e-3)
        assert (hit >= 0).any() and (hit < -1).any()    # objects and ground


def test_lidar_sees_nothing_above_its_top_beam():
    scene = make_scene(6, small_config(lidar_fov_up_deg=-1.0))
    scan = lidar_scan(scene, scene.t0)
    elev = np.degrees(np.arctan2(scan.points[:, 2], np.hypot(scan.points[:, 0], scan.points[:, 1])))
    assert elev.max() <= -1.0 + 1e-3
    # with the top beam below the horizon every return is the ground or an object below the sensor
    assert scan.points[:, 2].max() < 0.0


def test_lidar_noise_is_seeded():
    scene = make_scene(6, small_config(lidar_noise_m=0.02))
    a, b = lidar_scan(scene, scene.t0, 3), lidar_scan(scene, scene.t0, 3)
    exact = lidar_scan(make_scene(6, small_config()), scene.t0, 3)
    np.testing.assert_array_equal(a.points, b.points)
    d = np.linalg.norm(a.points, axis=1) - np.linalg.norm(exact.points, axis=1)
    assert 0.01 < d.std() < 0.03


# ---------------------------------------------------------------------------------------
# Lane shifts and actors
# ---------------------------------------------------------------------------------------
def test_lane_shifted_view_is_valid_and_differs(drive):
    _, _, scene = drive
    stamp = scene.stamps[1]
    cam = scene.camera(0, stamp)
    base = render_truth(scene, cam, stamp)
    left = -cam.T_world_cam[:3, 0]
    for m in (1.0, 3.0, -3.0):
        shifted = lane_shifted_camera(cam, m)
        move = shifted.center - cam.center
        assert abs(np.linalg.norm(move) - abs(m)) < 1e-9 and abs(move[2]) < 1e-12
        assert np.sign(move @ left) == np.sign(m)
        np.testing.assert_array_equal(shifted.T_world_cam[:3, :3], cam.T_world_cam[:3, :3])
        img = render_truth(scene, shifted, stamp)
        assert img.shape == base.shape and 20 < img.mean() < 235 and img.std() > 10
        assert np.abs(img.astype(int) - base).mean() > 2.0
        depth = render_truth_depth(scene, shifted, stamp)
        assert np.isfinite(depth).mean() > 0.3 and np.nanmin(depth) > 0.5   # not inside an object
    with pytest.raises(ValueError):
        lane_shifted_camera(cam, float("nan"))


def _inside_any_part(scene, point_road, stamp) -> bool:
    posed = scene.posed(stamp)
    geom = scene.geometry
    for gi, T in zip(posed.index, posed.poses):
        g = geom.groups[gi]
        p = point_road if T is None else invert_transform(T)[:3, :3] @ point_road + invert_transform(T)[:3, 3]
        for j in range(g.start, g.stop):
            b = part_bounds(int(geom.kind[j]), geom.shape[j])
            if np.all(p >= b[:3] - 0.2) and np.all(p <= b[3:] + 0.2):
                assert geom.kind[j] in (BOX, CYL, ELL)
                return True
    return False


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_actors_stay_ahead_and_lane_shifts_stay_clear(seed):
    cfg = SynthConfig(frames=40, actors=6)
    scene = make_scene(seed, cfg)
    taus = np.linspace(0.0, cfg.duration, 81)
    ego_x, _ = scene.ego.xy(taus)
    for a in scene.actors:
        x, _ = a.traj.xy(taus)
        assert np.all(x - a.size[0] / 2 - ego_x >= MIN_GAP)
    for stamp in scene.stamps[::13]:
        for m in (-3.0, -1.0, 1.0, 3.0):
            c = lane_shifted_camera(scene.camera(0, stamp), m)
            p = (scene.T_road_map @ np.append(c.center, 1.0))[:3]
            assert not _inside_any_part(scene, p, stamp), (seed, stamp, m)
            assert scene.layout.y_right + 0.2 < p[1] < scene.layout.y_left   # on the road


def test_tracks_match_actor_positions(drive, messages):
    _, _, scene = drive
    for k, m in enumerate(_by_topic(messages, "/synth/tracks")):
        stamp = scene.stamps[k]
        ids = []
        for mk in m.msg.markers:
            assert mk.type == 1 and mk.header.frame_id == "map"   # CUBE
            p, q = mk.pose.position, mk.pose.orientation
            T = pose_to_transform([p.x, p.y, p.z], quat_xyzw_to_wxyz([q.x, q.y, q.z, q.w]))
            np.testing.assert_allclose(T, scene.actor_pose(mk.id, stamp), atol=1e-9)
            # the bag's stamp (int ns → float) gives exactly the generator's motion state
            np.testing.assert_array_equal(scene.actor_pose(mk.id, m.stamp), scene.actor_pose(mk.id, stamp))
            np.testing.assert_allclose([mk.scale.x, mk.scale.y, mk.scale.z], scene.actors[mk.id].size)
            ids.append(mk.id)
            # the box stands on the road, and a ray straight down through its centre hits the car
            assert abs(T[2, 3] - mk.scale.z / 2) < 1e-9
            c = (scene.T_road_map @ T)[:3, 3]
            t, hit = cast_rays(c[None] + [0, 0, 10.0], np.array([[0, 0, -1.0]]), scene.geometry,
                               scene.layout.terrain, scene.posed(stamp))
            assert hit[0] >= 0 and scene.geometry.groups[scene.geometry.group[hit[0]]].actor == mk.id
            assert abs(t[0] - (10.0 - mk.scale.z / 2)) < 1e-6   # the cabin roof is the box top
        assert sorted(ids) == list(range(SMALL["actors"]))
    tracks = scene.actor_tracks()
    assert len(tracks) == SMALL["actors"]
    np.testing.assert_allclose(tracks[0].pose_at(scene.stamps[2]), scene.actor_pose(0, scene.stamps[2]), atol=1e-12)


def test_actors_are_visible_and_static_render_has_none():
    scene = make_scene(7, small_config(frames=1, width=160, height=96, actors=4))
    cam = scene.camera(0, scene.t0)
    labels = render_truth_labels(scene, cam, scene.t0)
    assert (labels >= 2).any() and (labels == 1).any() and (labels == 0).any() and (labels == -1).any()
    assert not (render_truth_labels(scene, cam, None) >= 2).any()


# ---------------------------------------------------------------------------------------
# CLI and preview
# ---------------------------------------------------------------------------------------
def test_cli_synth_with_preview(tmp_path, capsys):
    from g3r_ros.cli import main

    out = tmp_path / "bags" / "s1"
    rc = main(["synth", str(out), "--seed", "1", "--frames", "2", "--width", "48", "--height", "32",
               "--actors", "2", "--no-progress", "--preview"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["frames"] == 2 and summary["actors"] == 2 and summary["image_size"] == [48, 32]
    assert (out / "metadata.yaml").is_file() and (out / "s1.mcap").is_file()
    png = tmp_path / "bags" / "preview.png"
    assert summary["preview"] == str(png) and png.stat().st_size > 10_000
    assert sorted(p.name for p in (tmp_path / "bags").iterdir()) == ["preview.png", "s1"]   # no leftovers
    assert main(["synth", str(out), "--seed", "1", "--no-progress"]) == 1   # refuses to overwrite

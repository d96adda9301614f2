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
from g3r_ros.synthetic.primitives import BOX, CYL, ELL, HIT_KERB, HIT_NONE, HIT_ROAD, HIT_SIDEWALK, part_bounds
from g3r_ros.synthetic.raycast import PinholeGrid, cast_grid, cast_rays

SEED = 5
# Small and quick; the default realism features stay on, except the LiDAR's: a 16-beam uniform
# scanner with exact ranges, so that points can be checked against the geometry (the HDL-64E
# pattern, range noise and dropout have their own tests).
SMALL = {"frames": 4, "width": 64, "height": 40, "cameras": 2, "actors": 3, "lidar_pattern": "uniform",
         "lidar_beams": 16, "lidar_azimuth_steps": 360, "lidar_noise_m": 0.0, "lidar_beam_bias_m": 0.0}


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
            assert np.array_equal(img, render_truth(scene, scene.camera(c, stamp), stamp, recorded=True,
                                                    camera_index=c))
            if k == 1:   # the pose recovered from the bag's TF renders the same image
                T = _tf(tfs[k].msg)[("map", "base_link")] @ static[("base_link", f"cam{c}_optical")]
                cam = PinholeCamera(scene.cameras[c].K, 64, 40, T)
                diff = np.abs(render_truth(scene, cam, m.stamp, recorded=True, camera_index=c).astype(int) - img)
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
# a straight street (generator 1.0's analytic terrain) and a bent one with a side street
STREETS = {"straight": (3, {"curved_roads": 0.0, "intersections": 0.0}),
           "bent+side": (16, {"curved_roads": 1.0, "intersections": 1.0, "street_ahead_m": 60.0})}


@pytest.mark.parametrize("street", list(STREETS))
def test_culled_grid_cast_equals_brute_force(street):
    seed, kw = STREETS[street]
    scene = make_scene(seed, small_config(**kw))
    assert scene.layout.plan.simple == (street == "straight")
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
        assert (hb == HIT_KERB).any() and (hb == HIT_ROAD).any() and (hb == HIT_SIDEWALK).any()
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
    cfg = SynthConfig(frames=40, actors=6, curved_roads=0.5, intersections=1.0)
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
            d = scene.street_coords(c.center[None])[0, 1]
            assert scene.layout.y_right + 0.2 < d < scene.layout.y_left   # on the road


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


# ---------------------------------------------------------------------------------------
# Generator 2.0: presets, features, photometric pipeline
# ---------------------------------------------------------------------------------------
def test_defaults_are_the_measured_feature_settings():
    """Every realism feature is at its FEATURES "on" value unless docs/DATA.md's measurement
    switched it off (DEFAULT_OFF); the plain preset is every feature off."""
    from g3r_ros.synthetic.config import DEFAULT_OFF, FEATURES, PRESETS

    d = dataclasses.asdict(SynthConfig())
    for name, (off, on) in FEATURES.items():
        want = off if name in DEFAULT_OFF else on
        got = {k: d[k] for k in want if not (name == "lidar_pattern" and k == "lidar_beams")}
        assert got == {k: v for k, v in want.items() if k in got}, name
    plain = SynthConfig(**PRESETS["plain"])
    for name, (off, _) in FEATURES.items():
        assert {k: getattr(plain, k) for k in off} == off, name
    with pytest.raises(ValueError, match="unknown synth preset"):
        from g3r_ros.synthetic import preset_overrides
        preset_overrides("nope")


def test_plain_preset_is_generator_1():
    from g3r_ros.synthetic import preset_overrides

    scene = make_scene(11, SynthConfig(**{**preset_overrides("plain"), "frames": 2, "width": 48, "height": 32}))
    assert scene.response.identity and scene.layout.plan.simple and scene.layout.detail == 0.0
    assert len(scene.lidar.elevations) == 32 and scene.lidar.dropout == 0.0 and not np.any(scene.lidar.beam_bias)
    assert scene.cameras[0].T_base_cam[2, 3] == 1.6
    np.testing.assert_allclose(np.degrees(np.arcsin(-scene.cameras[0].T_base_cam[2, 2])), 2.0)
    # with no camera response, clean and recorded images are the plain rounding of the radiance
    from g3r_ros.synthetic import render_radiance

    cam = scene.camera(0, scene.t0)
    rad = render_radiance(scene, cam, scene.t0)
    want = np.clip(np.rint(rad * 255.0), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(render_truth(scene, cam, scene.t0), want)
    np.testing.assert_array_equal(render_truth(scene, cam, scene.t0, recorded=True), want)


def test_clean_and_recorded_truth():
    """recorded = clean + seeded sensor noise (+ JPEG): reproducible per (camera, stamp), zero-mean
    around the clean image, and the clean image holds no noise at all."""
    from g3r_ros.synthetic import render_radiance
    from g3r_ros.synthetic.photometric import develop, jpeg_roundtrip, record

    scene = make_scene(SEED, small_config(frames=3, width=96, height=64, noise_read=3.0, noise_shot=0.0))
    stamp = scene.stamps[1]
    cam = scene.camera(0, stamp)
    clean = render_truth(scene, cam, stamp)
    rec = render_truth(scene, cam, stamp, recorded=True, camera_index=0)
    np.testing.assert_array_equal(rec, render_truth(scene, cam, stamp, recorded=True, camera_index=0))
    assert not np.array_equal(rec, render_truth(scene, cam, stamp, recorded=True, camera_index=1))
    diff = rec.astype(float) - clean
    mid = (clean > 10) & (clean < 245)
    sigma = np.hypot(scene.response.noise_read, 1 / np.sqrt(12))        # read noise and rounding
    assert abs(diff[mid].mean()) < 0.1 * sigma and abs(diff[mid].std() / sigma - 1) < 0.1
    rad = render_radiance(scene, cam, stamp)
    tau = scene.tau(stamp)
    np.testing.assert_array_equal(clean, develop(scene.response, rad, tau))
    np.testing.assert_array_equal(rec, record(scene.response, rad, tau, 0))
    assert not np.array_equal(rec, record(scene.response, rad, tau + 0.1, 0))   # fresh noise every frame
    # JPEG on the recorded image only
    scene = make_scene(SEED, small_config(frames=3, width=96, height=64, noise_read=0.0, noise_shot=0.0,
                                          jpeg_quality_min=60, jpeg_quality_max=60))
    clean = render_truth(scene, cam, stamp)
    rec = render_truth(scene, cam, stamp, recorded=True)
    np.testing.assert_array_equal(rec, jpeg_roundtrip(clean, 60))
    assert 0.5 < np.abs(rec.astype(int) - clean).mean() < 8.0


def test_photometric_draws_stay_in_their_ranges():
    from g3r_ros.synthetic.photometric import develop_float, make_response, vignette_gain

    cfg = SynthConfig(exposure_ev_min=-0.3, exposure_ev_max=0.6, exposure_frame_ev=0.1, contrast_min=1.1,
                      contrast_max=1.4, white_balance=0.05, vignetting_min=0.1, vignetting_max=0.2,
                      blur_px_min=0.2, blur_px_max=0.4, noise_read=1.0, noise_shot=2.0)
    for seed in range(40):
        r = make_response(seed, cfg)
        assert -0.3 <= r.ev <= 0.6 and 1.1 <= r.contrast <= 1.4 and 0.1 <= r.vignette <= 0.2
        assert 0.2 <= r.blur <= 0.4 and r.wb[1] == 1.0 and np.all(np.abs(np.log(r.wb)) <= 0.05 + 1e-12)
        assert 0.6 <= r.noise_read <= 1.4 and 0.6 * 2.0 <= r.noise_shot <= 1.4 * 2.0
        evs = [r.frame_ev(t) for t in np.linspace(0.0, 20.0, 200)]
        assert max(abs(e - r.ev) for e in evs) <= 0.1 * np.sqrt(3.0) + 1e-9
        assert r.frame_ev(None) == r.ev
    a, b = make_response(3, cfg), make_response(3, cfg)
    assert a.ev == b.ev and np.array_equal(a.wb, b.wb) and a.contrast == b.contrast
    g = vignette_gain(40, 20, 0.3)
    assert abs(g.max() - 1.0) < 0.01 and abs(g.min() - (1 - 0.3 * (1 - 1 / 40 - 1 / 20) ** 1)) < 0.05
    # the tone curve keeps mid grey, darkens shadows, brightens highlights; exposure scales by 2^ev
    r = make_response(0, SynthConfig(contrast_min=1.5, contrast_max=1.5))
    r.wb[:] = 1.0
    r.ev, r.drift_amp[:] = 0.0, 0.0
    x = np.array([[[0.35, 0.35, 0.35], [0.1, 0.1, 0.1], [0.6, 0.6, 0.6]]])
    y = develop_float(r, x, None)
    np.testing.assert_allclose(y[0, 0], 0.35)
    assert y[0, 1, 0] < 0.1 and y[0, 2, 0] > 0.6
    r.contrast, r.ev = 1.0, 1.0
    np.testing.assert_allclose(develop_float(r, np.full((1, 1, 3), 0.2), None), 0.4)


def test_same_seed_same_scene_with_every_feature():
    """Determinism with every realism feature on (curves, side streets, noise, JPEG, dropout)."""
    from g3r_ros.synthetic.config import FEATURES

    every = {}
    for _, on in FEATURES.values():
        every.update(on)
    cfg = SynthConfig(**{**every, "frames": 2, "width": 64, "height": 24, "lidar_dropout": 0.05,
                         "lidar_azimuth_steps": 400, "curved_roads": 1.0, "intersections": 1.0})
    a, b = make_scene(21, cfg), make_scene(21, cfg)
    assert a.describe() == b.describe()
    for s in a.stamps:
        np.testing.assert_array_equal(render_truth(a, a.camera(0, s), s, recorded=True),
                                      render_truth(b, b.camera(0, s), s, recorded=True))
        sa, sb = lidar_scan(a, s, 1), lidar_scan(b, s, 1)
        np.testing.assert_array_equal(sa.points, sb.points)
        np.testing.assert_array_equal(sa.intensity, sb.intensity)


# ---------------------------------------------------------------------------------------
# Generator 2.0: LiDAR patterns, noise, dropout
# ---------------------------------------------------------------------------------------
def test_hdl64e_beam_elevations():
    from g3r_ros.synthetic.beams import hdl64e_elevations_deg

    el = hdl64e_elevations_deg()
    assert el.shape == (64,) and np.all(np.diff(el) < 0)
    assert el[0] == 2.0 and abs(el[31] + 8.33) < 1e-12 and abs(el[32] + 8.83) < 1e-12 and abs(el[-1] + 24.33) < 1e-12
    np.testing.assert_allclose(np.diff(el[:32]), -(2.0 + 8.33) / 31)   # ~1/3 deg
    np.testing.assert_allclose(np.diff(el[32:]), -0.5)
    # a scan: every return sits on one of the 64 beams (exact ranges), at ~2000 azimuth steps
    scene = make_scene(SEED, small_config(frames=1, lidar_pattern="hdl64e", lidar_azimuth_steps=2000))
    scan = lidar_scan(scene, scene.t0)
    e = np.degrees(np.arctan2(scan.points[:, 2], np.hypot(scan.points[:, 0], scan.points[:, 1])))
    np.testing.assert_allclose(e, el[scan.ring], atol=1e-3)
    assert set(np.unique(scan.ring)) >= set(range(8, 64)) and scan.azimuth_index.max() == 1999
    assert len(scan.points) > 0.8 * 64 * 2000 * 0.8


def test_lidar_beam_bias_is_per_beam_and_dropout_is_seeded():
    base = small_config(frames=1)
    exact = lidar_scan(make_scene(6, base), 1.7e9, 2)
    scene = make_scene(6, small_config(frames=1, lidar_beam_bias_m=0.05))
    biased = lidar_scan(scene, 1.7e9, 2)
    np.testing.assert_array_equal(biased.ring, exact.ring)
    d = np.linalg.norm(biased.points, axis=1) - np.linalg.norm(exact.points, axis=1)
    for r in np.unique(exact.ring):
        m = exact.ring == r
        np.testing.assert_allclose(d[m], scene.lidar.beam_bias[r], atol=1e-4)   # one offset per beam
    assert 0.01 < scene.lidar.beam_bias.std() < 0.1
    drop = make_scene(6, small_config(frames=1, lidar_dropout=0.2))
    a, b = lidar_scan(drop, 1.7e9, 2), lidar_scan(drop, 1.7e9, 2)
    np.testing.assert_array_equal(a.points, b.points)
    assert 0.5 * len(exact.points) < len(a.points) < 0.85 * len(exact.points)
    # a dropped scan is a subset of the exact one
    key = lambda s: set(zip(s.azimuth_index.tolist(), s.ring.tolist()))   # noqa: E731
    assert key(a) <= key(exact)


# ---------------------------------------------------------------------------------------
# Generator 2.0: bent streets and side streets
# ---------------------------------------------------------------------------------------
def test_centreline_is_tangent_continuous_and_round_trips():
    from g3r_ros.synthetic.road import Centreline

    c = Centreline.from_pieces([(12.0, 0.0), (30.0, 1 / 80.0), (20.0, 0.0), (25.0, -1 / 60.0), (40.0, 0.0)])
    for s0 in c.s0[1:]:
        a, b = c.pose(np.array([s0 - 1e-7])), c.pose(np.array([s0 + 1e-7]))
        assert all(abs(float(u[0]) - float(v[0])) < 1e-5 for u, v in zip(a, b))
    s = np.linspace(-20.0, 140.0, 400)
    d = np.linspace(-25.0, 25.0, 400)[::-1]
    x, y = c.to_world(s, d)
    s2, d2 = c.to_street(x, y)
    np.testing.assert_allclose(s2, s, atol=1e-9)
    np.testing.assert_allclose(d2, d, atol=1e-9)
    # the arc length is the distance travelled along the centreline
    x, y, th = c.pose(np.linspace(0.0, 127.0, 20001))
    assert abs(np.hypot(np.diff(x), np.diff(y)).sum() - 127.0) < 1e-4
    assert abs(th[-1] - (30.0 / 80.0 - 25.0 / 60.0)) < 1e-12


@pytest.mark.parametrize("seed", [16, 23])
def test_bent_street_lidar_points_lie_on_the_plan(seed):
    """LiDAR returns on a bent street with side streets: every return on the ground is where the
    plan says: road returns at z=0 inside the carriageway, sidewalk returns at the kerb height
    outside it, kerb returns on its boundary between the two; and the ego drives in its lane
    with the street's heading."""
    from g3r_ros.synthetic.primitives import HIT_KERB as KERB

    scene = make_scene(seed, small_config(frames=4, lidar_azimuth_steps=720, curved_roads=1.0, intersections=1.0,
                                          street_ahead_m=60.0))
    plan, h = scene.layout.plan, scene.layout.kerb_height
    assert not plan.centre.straight
    n_kerb = 0
    for k, stamp in enumerate(scene.stamps[::3]):
        scan = lidar_scan(scene, stamp, k)
        T = scene.T_road_map @ scene.lidar_pose(stamp)
        p = scan.points.astype(np.float64) @ T[:3, :3].T + T[:3, 3]
        dirs = p - T[:3, 3]
        t, hit = cast_rays(np.broadcast_to(T[:3, 3], p.shape), dirs / np.linalg.norm(dirs, axis=1, keepdims=True),
                           scene.geometry, scene.layout.terrain, scene.posed(stamp))
        f = plan.inside_xy(p[:, 0], p[:, 1])
        road, walk, kerb = hit == HIT_ROAD, hit == HIT_SIDEWALK, hit == KERB
        assert road.sum() > 100 and walk.sum() > 20
        assert np.all(np.abs(p[road, 2]) < 2e-3) and np.all(f[road] >= -1e-3)
        assert np.all(np.abs(p[walk, 2] - h) < 2e-3) and np.all(f[walk] < 1e-3)
        assert np.all(np.abs(f[kerb]) < 2e-3) and np.all((p[kerb, 2] > -2e-3) & (p[kerb, 2] < h + 2e-3))
        n_kerb += kerb.sum()
        # ego: in its lane, heading along the street
        base = scene.T_road_map @ scene.ego_pose(stamp)
        sd = scene.street_coords(scene.ego_pose(stamp)[:3, 3][None])[0]
        assert -scene.layout.lane_width < sd[1] < 0.0
        _, _, th = plan.centre.pose(np.array([sd[0]]))
        yaw = np.arctan2(base[1, 0], base[0, 0])
        assert abs((yaw - th[0] + np.pi) % (2 * np.pi) - np.pi) < np.deg2rad(8)
    assert n_kerb > 0


def test_side_streets_leave_room_for_the_road():
    """Nothing that stands on the ground (walls, poles, trunks) stands on a carriageway, main or
    side street (overhanging lamp arms and crowns may); parked cars stand in the main street's
    parking strip, never in a side street's mouth."""
    from g3r_ros.synthetic.primitives import box_corners

    scene = make_scene(16, small_config(frames=2, curved_roads=1.0, intersections=1.0, street_ahead_m=60.0))
    plan, geom = scene.layout.plan, scene.geometry
    assert plan.crossings and not plan.centre.straight
    checked = 0
    for g in geom.groups:
        if g.actor >= 0:
            continue
        for j in range(g.start, g.stop):
            c = box_corners(part_bounds(int(geom.kind[j]), geom.shape[j]))
            if g.pose is not None:
                c = c @ g.pose[:3, :3].T + g.pose[:3, 3]
            c = c[c[:, 2] < 0.5]                                  # the corners on the ground
            if len(c):
                if g.label == "parked_car":
                    _, sides = plan.inside_parts(*plan.centre.to_street(c[:, 0], c[:, 1]))
                    f = np.max(sides, axis=0)
                else:
                    f = plan.inside_xy(c[:, 0], c[:, 1])
                assert np.all(f < 0.05), (g.label, f.max())
                checked += 1
    assert checked > 50

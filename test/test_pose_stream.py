"""The pose-stream sensor simulator (g3r_ros.pose_stream): rigs, the bounded drop-oldest queue,
rendering a rig at a pose, and the fidelity metrics (g3r_ros.sim_fidelity)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from surface_scenes import WALL_X, plane_scene

from g3r_ros.geometry import R_BODY_OPTICAL, make_transform
from g3r_ros.lidar_sim import generic_beams, simulate_lidar
from g3r_ros.pose_stream import (
    DropOldestQueue,
    PoseSample,
    Rig,
    RigCamera,
    RigLidar,
    SensorSimulator,
    SimConfig,
    StaticMap,
    camera_name,
    load_rig,
    recorded_rig,
)
from g3r_ros.streaming import MapState
from g3r_ros.surface import surface_map

K = np.array([[40.0, 0.0, 32.0], [0.0, 40.0, 24.0], [0.0, 0.0, 1.0]])
T_BASE_CAM = make_transform(R_BODY_OPTICAL, [1.0, 0.0, 0.0])  # facing +x, 1 m ahead of base
BEAMS = generic_beams([0.0, -5.0, -10.0], 5.0, 60.0)


@pytest.fixture(scope="module")
def state():
    params = plane_scene(spacing=0.4, extent=16.0)
    st = MapState(1, StaticMap(params), window=None, stamp=0.0, view_camera=None)
    st._surface = surface_map(params)
    return st


def rig() -> Rig:
    from g3r_ros.geometry import PinholeCamera

    return Rig([RigCamera("front", "front_optical", PinholeCamera(K, 64, 48, T_BASE_CAM))],
               RigLidar("velodyne", make_transform(None, [0.0, 0.0, 0.0]), BEAMS))


def test_camera_names():
    assert camera_name("/kitti/camera_color_left/image_raw") == "kitti/camera_color_left"
    assert camera_name("/cam/image_raw/compressed") == "cam"
    assert camera_name("/image") == "camera"


def test_drop_oldest_queue():
    q = DropOldestQueue(2)
    assert q.put(1) and q.put(2) and not q.put(3)
    assert (q.dropped, q.received, len(q), q.high_water) == (1, 3, 2, 2)
    assert q.get_nowait() == 2 and q.get_nowait() == 3 and q.get_nowait() is None
    with pytest.raises(ValueError, match=">= 1"):
        DropOldestQueue(0)


def test_rig_file(tmp_path):
    from g3r_ros.config import config_path
    from g3r_ros.synthetic import SynthConfig
    from g3r_ros.synthetic.scene import _camera_rig

    r = load_rig(config_path("sim_rig_synth.yaml"))
    nominal = SynthConfig(cameras=3, camera_height_min=1.6, camera_height_max=1.6, camera_pitch_min_deg=0.75,
                          camera_pitch_max_deg=0.75)
    for mine, theirs in zip(r.cameras, _camera_rig(nominal, 0), strict=True):
        assert mine.frame_id == theirs.frame_id and (mine.width, mine.height) == (theirs.width, theirs.height)
        np.testing.assert_allclose(mine.T_base_cam, theirs.T_base_cam, atol=1e-5)
        np.testing.assert_allclose(mine.K, theirs.K, atol=1e-3)
    assert r.lidar.beams.name == "synth" and r.lidar.frame_id == "velodyne"
    bad = {"no cameras": "cameras: []\n", "missing": "cameras: [{name: a, width: 10}]\n",
           "zero quaternion": "cameras: [{name: a, width: 4, height: 4, intrinsics: [1,1,2,2], "
                              "T_base_cam: [0,0,0,0,0,0,0]}]\n",
           "unique": "cameras: [{name: a, width: 4, height: 4, intrinsics: [1,1,2,2], T_base_cam: [0,0,0,1,0,0,0]},"
                     " {name: a, width: 4, height: 4, intrinsics: [1,1,2,2], T_base_cam: [0,0,0,1,0,0,0]}]\n",
           "unknown key": "cams: []\n"}
    messages = {"no cameras": "at least one camera", "missing": "needs name", "zero quaternion": "quaternion is zero",
                "unique": "unique", "unknown key": "unknown key"}
    for name, text in bad.items():
        p = tmp_path / f"{name.replace(' ', '_')}.yaml"
        p.write_text(text)
        with pytest.raises(ValueError, match=messages[name]):
            load_rig(p)


def test_recorded_rig_from_keyframes():
    from g3r_ros.geometry import PinholeCamera
    from g3r_ros.window import Keyframe

    T_world_base = make_transform(None, [5.0, 1.0, 0.0])
    camera = PinholeCamera(K, 64, 48, T_world_base @ T_BASE_CAM)
    kf = Keyframe(np.zeros((48, 64, 3), np.uint8), camera, 2.0, "front_optical")
    r = recorded_rig([kf], {"/front/image_raw": "front_optical", "/side/image_raw": "side_optical"},
                     lambda t: T_world_base, ("velodyne", np.eye(4)), BEAMS)
    assert [c.name for c in r.cameras] == ["front"] and r.cameras[0].frame_id == "front_optical"
    np.testing.assert_allclose(r.cameras[0].T_base_cam, T_BASE_CAM, atol=1e-12)
    assert r.lidar.frame_id == "velodyne"
    with pytest.raises(ValueError, match="no recorded camera"):
        recorded_rig([kf], {"/side/image_raw": "side_optical"}, lambda t: T_world_base)


def test_render_pose_gives_image_depth_and_scan(state):
    sim = SensorSimulator(SimConfig(lidar=True), current_map=lambda: state, resolve=lambda f, T, s: T,
                          rig_for=lambda s: rig())
    base_x = 3.0
    frame = sim.render_pose(state, PoseSample("map", make_transform(None, [base_x, 0.0, 0.0]), 7.0, "stamp-7"))
    assert frame.reply_stamp == "stamp-7" and len(frame.views) == 1 and frame.lidar_frame == "velodyne"
    v = frame.views[0]
    assert v.rgb.shape == (48, 64, 3) and v.rgb.dtype == np.uint8 and v.depth.dtype == np.float32
    centre = v.depth[20:28, 28:36]  # the wall, straight ahead of the camera (1 m ahead of base)
    np.testing.assert_allclose(np.nanmedian(centre), WALL_X - base_x - 1.0, atol=0.05)
    ahead = frame.scan.ring == 0  # the level beam, along +x at azimuth 0
    np.testing.assert_allclose(frame.scan.ranges[ahead & (frame.scan.azimuth_index == 0)], WALL_X - base_x, atol=0.05)
    assert frame.scan.beams is BEAMS


def test_a_pose_flood_drops_the_oldest_and_never_queues_without_bound(state):
    """100 poses offered at once into a queue of 2: most are dropped (counted), the queue never
    holds more than 2, the newest pose is rendered last, and every pose is accounted for."""
    rendered, lock = [], threading.Lock()

    def on_frame(frame):
        with lock:
            rendered.append(frame.reply_stamp)

    sim = SensorSimulator(SimConfig(queue_size=2, depth=False), current_map=lambda: state,
                          resolve=lambda f, T, s: T, rig_for=lambda s: rig(), on_frame=on_frame).start()
    try:
        for i in range(100):
            sim.offer_pose(PoseSample("map", make_transform(None, [0.05 * i, 0.0, 0.0]), 0.0, i))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            s = sim.status_values()
            if s["poses_rendered"] + s["poses_dropped"] == 100:
                break
            time.sleep(0.05)
        s = sim.status_values()
    finally:
        sim.close()
    assert s["poses_received"] == 100 and s["poses_rendered"] + s["poses_dropped"] == 100
    assert s["poses_dropped"] >= 90 and s["pose_queue_high_water"] <= 2 and s["pose_queue_capacity"] == 2
    assert rendered[-1] == 99 and rendered == sorted(rendered), "in order, the newest last"
    assert s["poses_failed"] == 0 and s["render_ms_p50"] > 0


def test_failures_are_counted_not_raised(state):
    def resolve(frame, T, stamp):
        if frame != "map":
            raise ValueError(f"tf: unknown frame {frame}")
        return T

    sim = SensorSimulator(SimConfig(), current_map=lambda: None, resolve=resolve, rig_for=lambda s: rig(),
                          lidar_beams=BEAMS).start()
    try:
        sim.offer_pose(PoseSample("map", np.eye(4), 0.0))
        sim.request_lidar(PoseSample("map", np.eye(4), 0.0))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sim.status_values()["lidar_requests_failed"] < 1:
            time.sleep(0.05)
        s = sim.status_values()
        assert s["poses_failed"] == 1 and s["lidar_requests_failed"] == 1 and "no map yet" in s["last_error"]
        sim._current_map = lambda: state
        sim.offer_pose(PoseSample("nowhere", np.eye(4), 0.0))
        while time.monotonic() < deadline and sim.status_values()["poses_failed"] < 2:
            time.sleep(0.05)
        assert "unknown frame nowhere" in sim.status_values()["last_error"]
    finally:
        sim.close()


def test_scan_and_depth_metrics(state):
    """Against itself the simulation is exact; a scan 1 m longer is 1 m off everywhere; the
    ghost and depth metrics see returns that are not in the reference."""
    from g3r_ros.geometry import PinholeCamera, transform_points
    from g3r_ros.sim_fidelity import compare_depth, compare_scan, ghost_mask, project_scan

    smap = state.surface()
    T = make_transform(None, [2.0, 0.0, 0.0])
    scan = simulate_lidar(smap, T, BEAMS)
    same = compare_scan(smap, T, scan.points, scan, tolerance_cells=0)
    assert same["median_abs_error_m"] < 1e-3 and same["drop_rate"] == 0 and same["ghost_rate"] == 0
    far = scan.points * ((scan.ranges + 1.0) / scan.ranges)[:, None]
    off = compare_scan(smap, T, far, scan, tolerance_cells=0)
    assert off["median_abs_error_m"] == pytest.approx(1.0, abs=0.05) and off["within_0_5m"] < 0.05
    half = scan.points[scan.azimuth_index < BEAMS.n_azimuth // 2]
    assert ghost_mask(scan, half, 0).mean() == pytest.approx(0.5, abs=0.1)
    cam = PinholeCamera(K, 64, 48, T @ T_BASE_CAM)
    pts_world = transform_points(T, scan.points.astype(np.float64))
    ref = project_scan(cam, pts_world)
    d = compare_depth(ref, cam, pts_world)
    assert d["median_rel_error"] == 0 and d["coverage"] == 1.0 and d["lidar_pixels"] > 5
    d2 = compare_depth(ref * 1.1, cam, pts_world)
    assert d2["median_rel_error"] == pytest.approx(0.1, abs=1e-4) and d2["within_5pct"] == 0

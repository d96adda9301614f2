"""Blind-spot (curtain) points above the LiDAR: a ray-cast street with a tall textured wall whose
LiDAR returns stop at 1.5 m, as a driving LiDAR's do on upper façades."""

import numpy as np
import pytest

from g3r_ros.blind_spots import BlindSpotConfig, GroundModel, blind_spot_points
from g3r_ros.geometry import PinholeCamera, look_at
from g3r_ros.window import Keyframe, SceneWindow

W, H, F = 120, 80, 70.0
WALL_X = 9.0
SKY = np.array([0.55, 0.7, 0.95])
EYES = [(0.0, 0.0), (1.0, 0.8), (2.0, -0.8), (3.0, 0.0)]
CAM_Z = 1.6


def wall_rgb(y, z):
    """Wall texture: bands over height and a slow ramp along y, (N,3) in [0,1]."""
    return np.stack([0.45 + 0.35 * np.sin(2.1 * z), 0.4 + 0.3 * np.cos(1.3 * z + 3.0 * y),
                     0.3 + 0.2 * np.sin(1.5 * y)], axis=-1)


def ground_rgb(x, y):
    return np.stack([0.35 + 0.1 * np.sin(x), 0.35 + 0.1 * np.cos(y), 0.33 + 0 * x], axis=-1)


def camera(eye):
    K = np.array([[F, 0, W / 2], [0, F, H / 2], [0, 0, 1.0]])
    return PinholeCamera(K, W, H, look_at((eye[0], eye[1], CAM_Z), (eye[0] + 10, eye[1], CAM_Z)))


def raycast(cam):
    j, i = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    d = np.stack([(j - W / 2) / F, (i - H / 2) / F, np.ones_like(j)], -1).reshape(-1, 3) @ cam.T_world_cam[:3, :3].T
    e = cam.center
    img = np.tile(SKY, (len(d), 1))
    t_g = np.where(d[:, 2] < 0, -e[2] / np.minimum(d[:, 2], -1e-12), np.inf)
    t_w = np.where(d[:, 0] > 0, (WALL_X - e[0]) / np.maximum(d[:, 0], 1e-12), np.inf)
    qw = e + np.where(np.isfinite(t_w), t_w, 0)[:, None] * d
    on_wall = np.isfinite(t_w) & (t_w < t_g) & (np.abs(qw[:, 1]) <= 8) & (qw[:, 2] >= 0) & (qw[:, 2] <= 6)
    qg = e + np.where(np.isfinite(t_g), t_g, 0)[:, None] * d
    on_ground = np.isfinite(t_g) & ~on_wall
    img[on_wall] = wall_rgb(qw[on_wall, 1], qw[on_wall, 2])
    img[on_ground] = ground_rgb(qg[on_ground, 0], qg[on_ground, 1])
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8).reshape(H, W, 3)


def lidar(wall_x=WALL_X, top=1.5):
    y, z = np.meshgrid(np.arange(-8, 8, 0.1), np.arange(0.05, top, 0.1))
    wall = np.stack([np.full(y.size, wall_x), y.ravel(), z.ravel()], 1)
    x, y = np.meshgrid(np.arange(2, WALL_X, 0.2), np.arange(-8, 8, 0.2))
    ground = np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], 1)
    return np.concatenate([wall, ground])


def window():
    kfs = [Keyframe(raycast(camera(e)), camera(e), 0.1 * k, index=k) for k, e in enumerate(EYES)]
    ego = np.array([[x, y, CAM_Z] for x, y in EYES])
    return SceneWindow(kfs, lidar().astype(np.float32), ego_positions=ego, name="wall")


UP = np.array([0.0, 0.0, 1.0])


def test_curtain_continues_the_wall_above_the_lidar():
    win = window()
    pts = blind_spot_points(win, win.points.astype(np.float64), UP, BlindSpotConfig(voxel_size=0.1))
    assert len(pts) > 200 and pts.accepted > 0.8 * pts.proposed
    on_plane = np.abs(pts.means[:, 0] - WALL_X) < 0.3
    assert on_plane.mean() > 0.9
    z = pts.means[on_plane, 2]
    assert z.min() > 1.4 and z.max() > 4.0 and z.max() < 6.5  # above the LiDAR's top, up the wall
    wall = pts.means[on_plane]
    err = np.abs(pts.colors[on_plane] - wall_rgb(wall[:, 1], wall[:, 2])).max(axis=1)
    assert np.median(err) < 0.06
    # discs are vertical and face their camera (normal towards -x within the field of view), and
    # their sigma is the angular spacing at their depth
    assert np.abs(pts.normals[:, 2]).max() < 1e-6 and np.median(pts.normals[on_plane, 0]) < -0.85
    depth = np.linalg.norm(wall - np.array([1.5, 0, CAM_Z]), axis=1)
    assert np.median(pts.sigmas[on_plane] / depth) == pytest.approx(np.radians(0.6), rel=0.5)


def test_inconsistent_depth_is_rejected():
    """LiDAR that puts the wall 3 m too close: the extruded curtain lands at the wrong depth, its
    colours disagree across views, and the consistency test rejects most of it."""
    win = window()
    wrong = lidar(wall_x=WALL_X - 3.0)
    good = blind_spot_points(win, win.points.astype(np.float64), UP, BlindSpotConfig())
    bad = blind_spot_points(win, wrong, UP, BlindSpotConfig())
    assert bad.accepted / max(bad.proposed, 1) < 0.5 * good.accepted / good.proposed


def test_low_structures_and_far_columns_are_not_extruded():
    win = window()
    low = blind_spot_points(win, lidar(top=0.5), UP, BlindSpotConfig(min_structure_height_m=0.8))
    assert len(low) == 0
    far = blind_spot_points(win, win.points.astype(np.float64), UP, BlindSpotConfig(max_distance_m=5.0))
    assert len(far) == 0


def test_ground_model_follows_a_sloped_road():
    x = np.linspace(0, 40, 400)
    road = np.stack([x, np.zeros_like(x), 0.05 * x - 1.7], 1)  # 5 % slope, sensor 1.7 m up
    ego = np.stack([x[::20], np.zeros(20), 0.05 * x[::20]], 1)
    g = GroundModel(road, ego, UP, BlindSpotConfig(ground_percentile=50))
    q = np.array([[10.0, 2.0, 0.5 - 1.7 + 1.0], [30.0, -2.0, 1.5 - 1.7 + 2.0]])
    np.testing.assert_allclose(g.height(q), [1.0, 2.0], atol=0.1)


def test_empty_and_bad_config():
    win = window()
    assert len(blind_spot_points(win, np.zeros((0, 3)), UP, BlindSpotConfig())) == 0
    with pytest.raises(ValueError, match="angle_step_deg"):
        BlindSpotConfig(angle_step_deg=0).validate()
    with pytest.raises(ValueError, match="min_structure_height_m"):
        BlindSpotConfig(min_structure_height_m=20, max_height_m=10).validate()

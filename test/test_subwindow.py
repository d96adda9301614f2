"""Training sub-windows: view sampling, resolution, LiDAR crop, photometric jitter and mirroring."""

import numpy as np
import pytest
import torch

from g3r_ros.geometry import CameraBatch, PinholeCamera, look_at
from g3r_ros.render import render
from g3r_ros.render.types import GaussianParams
from g3r_ros.subwindow import SubWindowConfig, jitter_photometry, mirror_camera, mirror_window, sample_subwindow
from g3r_ros.window import ActorTrack, Keyframe, SceneWindow

W, H, F = 64, 40, 50.0


def camera(x, y=0.0, yaw_target=(10.0, 2.0)):
    K = np.array([[F, 0, 30.0], [0, F, H / 2], [0, 0, 1.0]])  # cx off-centre on purpose
    return PinholeCamera(K, W, H, look_at((x, y, 1.5), (x + yaw_target[0], y + yaw_target[1], 0.5)))


def make_window(n_stamps=12, cameras=2):
    rng = np.random.default_rng(0)
    kfs = []
    for s in range(n_stamps):
        for c in range(cameras):
            img = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
            kfs.append(Keyframe(img, camera(1.0 * s, 0.5 * c), 0.1 * s, f"cam{c}", index=len(kfs)))
    pts = np.c_[rng.uniform(0, 30, 3000), rng.uniform(-8, 8, 3000), rng.uniform(0, 3, 3000)].astype(np.float32)
    pts = np.concatenate([pts, [[-50.0, 0.0, 0.0]]]).astype(np.float32)  # far behind every camera
    track = ActorTrack(3, np.array([4.0, 2.0, 1.5]), np.array([0.0, 1.1]),
                       np.stack([np.eye(4), np.eye(4)]), rng.normal(size=(50, 3)).astype(np.float32))
    track.poses[1][:3, 3] = [5.0, 1.0, 0.0]
    return SceneWindow(kfs, pts, actors=[track], ego_positions=np.c_[np.arange(n_stamps), np.zeros(n_stamps),
                                                                      np.full(n_stamps, 1.7)], name="w")


def test_mirror_camera_projects_mirrored_points_to_mirrored_pixels():
    cam = camera(2.0, 0.3)
    pts = np.c_[np.random.default_rng(1).uniform(5, 20, 50), np.random.default_rng(2).uniform(-5, 5, 50),
                np.random.default_rng(3).uniform(0, 2, 50)]
    uv, z = cam.project(pts)
    m = mirror_camera(cam)
    assert np.linalg.det(m.T_world_cam[:3, :3]) == pytest.approx(1.0)
    uv_m, z_m = m.project(pts * [1, -1, 1])
    np.testing.assert_allclose(z_m, z, atol=1e-9)
    np.testing.assert_allclose(uv_m[:, 0], W - uv[:, 0], atol=1e-9)
    np.testing.assert_allclose(uv_m[:, 1], uv[:, 1], atol=1e-9)


def test_mirrored_render_is_the_flipped_render():
    """Gaussians mirrored with the scene render into the mirrored camera as the flipped image."""
    rng = np.random.default_rng(4)
    n = 300
    means = np.c_[rng.uniform(6, 15, n), rng.uniform(-4, 4, n), rng.uniform(0, 2.5, n)]
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    scales = np.log(rng.uniform(0.05, 0.3, (n, 3)))
    rgb, op = rng.uniform(0, 1, (n, 3)), rng.normal(size=n)
    # reflecting y: R' = M R M, so the quaternion (w,x,y,z) becomes (w,-x,y,-z)
    qm = q * [1, -1, 1, -1]

    def params(m, qq):
        return GaussianParams(*(torch.as_tensor(a, dtype=torch.float32) for a in (m, qq, scales, op, rgb)))

    cam = camera(1.0, 0.2)
    a = render(params(means, q), CameraBatch.from_cameras([cam]), render_depth=False).rgb[0]
    b = render(params(means * [1, -1, 1], qm), CameraBatch.from_cameras([mirror_camera(cam)]),
               render_depth=False).rgb[0]
    assert float(a.std()) > 0.05
    torch.testing.assert_close(b, torch.flip(a, dims=[1]), atol=2e-4, rtol=0)


def test_mirror_window_is_consistent_and_an_involution():
    w = make_window()
    m = mirror_window(w)
    np.testing.assert_array_equal(m.keyframes[0].image, w.keyframes[0].image[:, ::-1])
    np.testing.assert_allclose(m.points[:, 1], -w.points[:, 1])
    a, am = w.actors[0], m.actors[0]
    local = a.points[:5].astype(np.float64)
    world = (a.pose_at(0.5) @ np.c_[local, np.ones(5)].T).T[:, :3]
    world_m = (am.pose_at(0.5) @ np.c_[am.points[:5], np.ones(5)].T).T[:, :3]
    np.testing.assert_allclose(world_m, world * [1, -1, 1], atol=1e-5)
    back = mirror_window(m)
    np.testing.assert_allclose(back.keyframes[3].camera.T_world_cam, w.keyframes[3].camera.T_world_cam, atol=1e-12)
    np.testing.assert_allclose(back.keyframes[3].camera.K, w.keyframes[3].camera.K)
    assert w.points[0, 1] == m.points[0, 1] * -1  # the source window was not modified


def test_jitter_scales_every_image_alike():
    w = make_window(n_stamps=2)
    j = jitter_photometry(w, np.array([1.1, 0.9, 1.0]))
    for k, kj in zip(w.keyframes, j.keyframes):
        expected = np.clip(k.image.astype(np.float32) * [1.1, 0.9, 1.0] + 0.5, 0, 255).astype(np.uint8)
        np.testing.assert_array_equal(kj.image, expected)


def test_sample_subwindow_views_resolution_and_crop():
    w = make_window()
    cfg = SubWindowConfig(span=[4, 6], source_views=5, target_views=2, image_scale=[0.5, 0.5], mirror_prob=0.0,
                          exposure_jitter=0.0, white_balance_jitter=0.0)
    for seed in range(5):
        s = sample_subwindow(w, cfg, np.random.default_rng(seed))
        assert len(s.source_keyframes) == 5 and len(s.target_keyframes) == 2
        stamps = sorted({k.stamp for k in s.keyframes})
        assert stamps[-1] - stamps[0] <= 0.5 + 1e-9  # within 6 consecutive stamps
        assert all(k.image.shape == (H // 2, W // 2, 3) and k.camera.width == W // 2 for k in s.keyframes)
        assert len(s.points) < len(w.points) and not np.any(s.points[:, 0] < -40)  # cropped to the views
        assert [k.index for k in s.keyframes] == list(range(7))
        s.validate()
    # deterministic for a seed, different across seeds
    a = sample_subwindow(w, cfg, np.random.default_rng(7))
    b = sample_subwindow(w, cfg, np.random.default_rng(7))
    assert [k.stamp for k in a.keyframes] == [k.stamp for k in b.keyframes]
    assert len(w.keyframes) == 24 and w.keyframes[0].image.shape == (H, W, 3)  # source untouched


def test_small_windows_keep_a_target_and_bad_config():
    w = make_window(n_stamps=2, cameras=1)
    s = sample_subwindow(w, SubWindowConfig(span=[1, 8], source_views=6, target_views=2), np.random.default_rng(0))
    assert len(s.target_keyframes) >= 1 and len(s.source_keyframes) >= 1
    with pytest.raises(ValueError, match="span"):
        SubWindowConfig(span=[3, 2]).validate()
    with pytest.raises(ValueError, match="mirror_prob"):
        SubWindowConfig(mirror_prob=2).validate()

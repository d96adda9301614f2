"""NeuralScene initialization from a small synthetic window: a textured ground plane, a red
wall that occludes part of it, an optional moving actor, and ray-cast images."""

import math

import numpy as np
import pytest
import torch

from g3r_ros.blind_spots import BlindSpotConfig
from g3r_ros.config import from_dict
from g3r_ros.gaussians import LOG_SCALE, OPACITY, POS, QUAT, RGB, make_decoders
from g3r_ros.geometry import (
    CameraBatch,
    PinholeCamera,
    look_at,
    make_transform,
    quat_to_rotmat_torch,
    transform_points,
)
from g3r_ros.initialization import DistantConfig, InitConfig, estimate_up, init_scene
from g3r_ros.scene import Component, NeuralScene
from g3r_ros.window import ActorTrack, Keyframe, SceneWindow

W, H, F = 96, 64, 60.0
SKY = np.array([0.6, 0.7, 0.9])
WALL_RGB = np.array([0.9, 0.1, 0.1])
WALL_X, WALL_Y, WALL_Z = 6.0, (-1.0, 1.0), (0.2, 1.2)
EYES = [(0.0, -2.0), (1.0, 0.0), (2.0, 2.0)]


def texture(x, y):
    """Smooth ground colour (N,3) in [0,1] at world (x, y)."""
    return np.stack([0.5 + 0.35 * np.sin(0.45 * x) * np.cos(0.35 * y),
                     0.5 + 0.3 * np.cos(0.25 * x + 0.3 * y),
                     0.5 + 0.3 * np.sin(0.4 * y)], axis=-1)


def camera(eye_xy):
    x0, y0 = eye_xy
    K = np.array([[F, 0, W / 2], [0, F, H / 2], [0, 0, 1.0]])
    return PinholeCamera(K, W, H, look_at((x0, y0, 1.5), (x0 + 10, y0, 0.0)))


def raycast(cam: PinholeCamera, wall: bool) -> np.ndarray:
    """Exact image: ground texture at z=0, the wall (plane x=WALL_X), sky elsewhere."""
    j, i = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    d_cam = np.stack([(j - cam.K[0, 2]) / F, (i - cam.K[1, 2]) / F, np.ones_like(j)], -1).reshape(-1, 3)
    d = d_cam @ cam.T_world_cam[:3, :3].T
    e = cam.center
    img = np.tile(SKY, (len(d), 1))
    t_ground = np.where(d[:, 2] < 0, -e[2] / np.minimum(d[:, 2], -1e-12), np.inf)
    hit = np.isfinite(t_ground)
    g = e + t_ground[:, None] * d
    img[hit] = texture(g[hit, 0], g[hit, 1])
    if wall:
        t_wall = np.where(d[:, 0] > 0, (WALL_X - e[0]) / np.maximum(d[:, 0], 1e-12), np.inf)
        q = e + t_wall[:, None] * d
        on = ((t_wall < t_ground) & (q[:, 1] >= WALL_Y[0]) & (q[:, 1] <= WALL_Y[1])
              & (q[:, 2] >= WALL_Z[0]) & (q[:, 2] <= WALL_Z[1]))
        img[on] = WALL_RGB
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8).reshape(H, W, 3)


def bilinear(image, uv):
    """Bilinear sample of an (H,W,3) uint8 image at (N,2) pixel coords; pixel centres at +0.5."""
    x, y = uv[:, 0] - 0.5, uv[:, 1] - 0.5
    out = np.zeros((len(uv), 3))
    img = image / 255.0
    for dx in (0, 1):
        for dy in (0, 1):
            xi = np.clip(np.floor(x) + dx, 0, W - 1).astype(int)
            yi = np.clip(np.floor(y) + dy, 0, H - 1).astype(int)
            wgt = (1 - np.abs(x - (np.floor(x) + dx))) * (1 - np.abs(y - (np.floor(y) + dy)))
            out += wgt[:, None] * img[yi, xi]
    return out


def ground_points(seed=0, dense=False):
    """Jittered grid on z=0: small (825 points, 0.5 m) or dense (covering every view)."""
    rng = np.random.default_rng(seed)
    if dense:
        x, y = np.meshgrid(np.arange(1.5, 45.0, 0.25), np.arange(-14.0, 14.01, 0.25))
    else:
        x, y = np.meshgrid(np.arange(4.0, 20.01, 0.5), np.arange(-6.0, 6.01, 0.5))
    pts = np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], 1)
    pts[:, :2] += rng.uniform(-0.1, 0.1, (len(pts), 2)) * (0.5 if dense else 1.0)
    return pts


def wall_points():
    y, z = np.meshgrid(np.arange(WALL_Y[0], WALL_Y[1] + 1e-6, 0.1), np.arange(WALL_Z[0], WALL_Z[1] + 1e-6, 0.1))
    return np.stack([np.full(y.size, WALL_X), y.ravel(), z.ravel()], 1)


def make_window(wall=False, actors=(), extra_points=None, dense=False):
    kfs = []
    for idx, eye in enumerate(EYES):
        cam = camera(eye)
        kfs.append(Keyframe(raycast(cam, wall), cam, stamp=0.5 * idx, index=idx))
    pts = [ground_points(dense=dense)] + ([wall_points()] if wall else [])
    pts += [extra_points] if extra_points is not None else []
    ego = np.array([[x, y, 1.5] for x, y in EYES])
    return SceneWindow(kfs, np.concatenate(pts).astype(np.float32), actors=list(actors), ego_positions=ego,
                       name="test")


def no_distant(**kw):
    kw.setdefault("blind_spots", BlindSpotConfig(enabled=False))
    return InitConfig(distant=DistantConfig(enabled=False), voxel_size=0.02, **kw)


def zero_decoders():
    decs = make_decoders()
    with torch.no_grad():
        for d in decs.values():
            d.linear.weight.zero_()
            d.linear.bias.zero_()
    return decs


def _bg(scene):
    (c,) = [c for c in scene.components if c.kind == "background"]
    return c.state.double().numpy()


def test_knn_scale_identity_rotation_and_opacity():
    scene = init_scene(make_window(), no_distant(max_footprint_deg=None, crop_to_views=False,
                                                 orient_to_surface=False))
    s = _bg(scene)
    pos = s[:, POS]
    assert len(pos) == len(ground_points())  # voxel smaller than the spacing keeps all points
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    third = np.sort(d, axis=1)[:, 3]  # index 0 is the point itself
    assert np.allclose(np.exp(s[:, LOG_SCALE]), third[:, None], rtol=1e-5)
    assert np.allclose(s[:, QUAT], [1, 0, 0, 0])
    assert np.allclose(1 / (1 + np.exp(-s[:, OPACITY])), 0.7, atol=1e-6)
    assert s[:, 14:].std() > 0.005 and abs(s[:, 14:]).max() < 0.1  # small random latents


def test_crop_to_views_and_budget():
    behind = np.array([[-10.0, 0.0, 0.0], [-5.0, 3.0, 1.0]])  # behind every camera
    win = make_window(extra_points=behind)
    kept = _bg(init_scene(win, no_distant()))[:, POS]
    assert np.min(np.linalg.norm(kept[:, None] - behind[None], axis=-1)) > 1.0
    assert len(kept) < len(ground_points())  # some ground lies outside every view too
    everything = _bg(init_scene(win, no_distant(crop_to_views=False)))[:, POS]
    assert len(everything) == len(ground_points()) + 2
    small = _bg(init_scene(win, no_distant(crop_to_views=False, max_points=100)))
    assert 50 <= len(small) <= 100


def test_footprint_cap_is_an_angle():
    win = make_window()
    scene = init_scene(win, no_distant(max_footprint_deg=4.0, orient_to_surface=False))
    s = _bg(scene)
    pos = s[:, POS]
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    knn = np.sort(d, axis=1)[:, 3]
    depth = np.full(len(pos), np.inf)
    for kf in win.keyframes:
        uv, z = kf.camera.project(pos)
        inside = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
        depth[inside] = np.minimum(depth[inside], z[inside])
    assert np.isfinite(depth).mean() > 0.5
    nowhere = ~np.isfinite(depth)
    depth[nowhere] = np.min([np.linalg.norm(pos[nowhere] - k.camera.center, axis=1) for k in win.keyframes], axis=0)
    cap = math.tan(math.radians(4.0)) * depth
    expected = np.minimum(knn, cap)
    assert np.allclose(np.exp(s[:, LOG_SCALE.start]), expected, rtol=1e-5)
    capped = cap < knn
    assert 0.1 < capped.mean() < 0.9  # near points capped, far ones not
    # the same window at twice the resolution gives the same metric scales
    hi = SceneWindow([Keyframe(np.repeat(np.repeat(k.image, 2, 0), 2, 1), k.camera.scaled(2.0), k.stamp, index=k.index)
                      for k in win.keyframes], win.points, ego_positions=win.ego_positions, name="hi")
    s_hi = _bg(init_scene(hi, no_distant(max_footprint_deg=4.0, orient_to_surface=False)))
    np.testing.assert_allclose(s_hi[:, LOG_SCALE], s[:, LOG_SCALE], atol=1e-6)


def test_discs_tangent_to_the_surface():
    """On the ground plane every Gaussian is a flat disc: local z (normal) along world z, the two
    in-plane sigmas equal to the k-NN scale, the normal sigma flat_ratio times smaller."""
    scene = init_scene(make_window(dense=False), no_distant(max_footprint_deg=None, crop_to_views=False,
                                                            flat_ratio=0.1))
    s = _bg(scene)
    R = quat_to_rotmat_torch(torch.as_tensor(s[:, QUAT])).numpy()
    assert np.quantile(np.abs(R[:, 2, 2]), 0.05) > 0.98  # local z ∥ world z
    scales = np.exp(s[:, LOG_SCALE])
    np.testing.assert_allclose(scales[:, 0], scales[:, 1], rtol=1e-6)
    ratio = scales[:, 2] / scales[:, 0]
    assert np.median(ratio) < 0.2 and ratio.min() >= 0.1 - 1e-6
    # and they render: the initial image is close to the source images (see the render test below)
    iso = _bg(init_scene(make_window(), no_distant(max_footprint_deg=None, crop_to_views=False,
                                                   orient_to_surface=False)))
    np.testing.assert_allclose(np.exp(iso[:, LOG_SCALE.start]), scales[:, 0], rtol=1e-6)


def test_projected_colours_match_images():
    win = make_window()
    scene = init_scene(win, no_distant())
    s = _bg(scene)
    pos, rgb = s[:, POS], s[:, RGB]
    # the nearest view containing each point, sampled at the nearest pixel
    best = np.full(len(pos), np.inf)
    sample = np.full((len(pos), 3), np.nan)
    for kf in win.keyframes:
        uv, z = kf.camera.project(pos)
        inside = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
        better = inside & (z < best)
        best[better] = z[better]
        sample[better] = bilinear(kf.image, uv[better])
    seen = np.isfinite(best)
    assert seen.mean() > 0.5
    err = np.abs(rgb[seen] - sample[seen]).max(axis=1)
    assert np.median(err) < 0.02 and np.quantile(err, 0.95) < 0.06
    # and against the true texture at the point itself, where a pixel covers little ground
    near = seen & (best < 10)
    tex_err = np.abs(rgb[near] - texture(pos[near, 0], pos[near, 1])).max(axis=1)
    assert near.sum() > 100 and np.quantile(tex_err, 0.95) < 0.05


def _wall_hidden(eye, p):
    """Does the wall hide ground points p (N,3) from eye (3,)?"""
    s = (WALL_X - eye[0]) / (p[:, 0] - eye[0])
    q = eye + s[:, None] * (p - eye)
    return ((p[:, 0] > WALL_X) & (q[:, 1] >= WALL_Y[0]) & (q[:, 1] <= WALL_Y[1])
            & (q[:, 2] >= WALL_Z[0]) & (q[:, 2] <= WALL_Z[1]))


def _occlusion_errors(occlusion_tol):
    win = make_window(wall=True)
    scene = init_scene(win, no_distant(occlusion_tol=occlusion_tol))
    s = _bg(scene)
    ground = np.abs(s[:, 2]) < 1e-6
    pos, rgb = s[ground][:, POS], s[ground][:, RGB]
    hidden, inside, depth = [], [], []
    for kf in win.keyframes:
        uv, z = kf.camera.project(pos)
        inside.append((z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H))
        hidden.append(_wall_hidden(kf.camera.center, pos))
        depth.append(np.where(inside[-1], z, np.inf))
    hidden, inside, depth = map(np.array, (hidden, inside, depth))
    nearest = np.argmin(depth, axis=0)
    idx = np.arange(len(pos))
    visible_somewhere = (inside & ~hidden).any(axis=0)
    hidden_in_nearest = hidden[nearest, idx] & inside[nearest, idx]
    # points hidden in their nearest view but seen by another (away from the wall's edge)
    probe = visible_somewhere & hidden_in_nearest & (pos[:, 0] > WALL_X + 1.2)
    err = np.abs(rgb - texture(pos[:, 0], pos[:, 1])).max(axis=1)
    return probe, err, s[~ground][:, RGB]


def test_occlusion_aware_colours():
    probe, err, wall_rgb = _occlusion_errors(0.1)
    assert probe.sum() >= 10, "the scene must contain points hidden in their nearest view"
    assert np.mean(err[probe] < 0.1) > 0.9
    assert np.median(np.abs(wall_rgb - WALL_RGB).max(axis=1)) < 0.05
    # without the occlusion test those points take the wall's colour: the test can fail
    probe_off, err_off, _ = _occlusion_errors(1e9)
    assert np.mean(err_off[probe_off] < 0.1) < 0.5


def _actor_track():
    size = np.array([4.0, 2.0, 1.5])
    rng = np.random.default_rng(1)
    pts = rng.uniform(-0.5, 0.5, (400, 3)) * size
    face = rng.integers(0, 3, 400)
    pts[np.arange(400), face] = np.sign(pts[np.arange(400), face]) * size[face] / 2  # on the box surface

    def yaw(deg, t):
        a = math.radians(deg)
        R = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
        return make_transform(R, t)

    poses = np.stack([yaw(0, (10, 3, 0.75)), yaw(30, (14, 3, 0.75))])
    return ActorTrack(7, size, np.array([0.0, 1.0]), poses, points=pts.astype(np.float32))


def test_actors_placed_at_stamps_and_trail_cropped():
    track = _actor_track()
    trail = transform_points(track.poses[0], np.array([[0.0, 0.0, 0.0], [1.0, 0.5, 0.2]]))
    win = make_window(actors=[track], extra_points=trail)
    scene = init_scene(win, no_distant(orient_to_surface=False))  # identity rotations: R(placed) = R(track)
    assert [c.kind for c in scene.components] == ["background", "actor"]
    bg = _bg(scene)[:, POS]
    assert np.min(np.linalg.norm(bg[:, None] - trail[None], axis=-1)) > 0.1  # trail points cropped
    actor = scene.components[1]
    assert actor.name == "actor_7" and actor.track is track
    local = actor.state[:, POS].double().numpy()
    decs = zero_decoders()
    for stamp in (0.0, 1.0, 0.5):
        p = scene.params_at(decs, stamp)
        (row,) = [r for r in scene.layout(stamp) if r[0] == "actor_7"]
        T = track.pose_at(stamp)
        assert np.allclose(p.means[row[1]:row[2]].detach().double().numpy(), transform_points(T, local), atol=1e-4)
        R = quat_to_rotmat_torch(p.quats[row[1]:row[2]]).detach().double().numpy()
        assert np.allclose(R, T[:3, :3], atol=1e-5)
    assert len(scene.params_at(decs, None)) == len(scene.components[0])  # static map: no actors
    # differentiable w.r.t. the actor's box-local state
    st = [s.clone().requires_grad_(True) for s in scene.states()]
    p = scene.with_states(st).params_at(decs, 1.0)
    p.means[:, 0].sum().backward()
    assert np.allclose(st[1].grad[:, 0].numpy(), math.cos(math.radians(30)), atol=1e-4)
    assert np.allclose(st[1].grad[:, 1].numpy(), -math.sin(math.radians(30)), atol=1e-4)


def test_distant_sphere():
    win = make_window()
    cfg = InitConfig(voxel_size=0.02, distant=DistantConfig(radius=60.0, n_lat=6, n_lon=48, up=[0, 0, 1]))
    scene = init_scene(win, cfg)
    (dist,) = [c for c in scene.components if c.kind == "distant"]
    s = dist.state.double().numpy()
    assert len(s) == 6 * 48
    c = win.ego_positions.mean(axis=0)
    r = np.linalg.norm(s[:, POS] - c, axis=1)
    assert np.allclose(r, 60.0, rtol=1e-5)
    lat = np.degrees(np.arcsin((s[:, 2] - c[2]) / r))
    assert lat.min() == pytest.approx(-15.0, abs=1e-3) and lat.max() == pytest.approx(30.0, abs=1e-3)
    # flat discs facing the centre: local z is radial, scales from the grid spacing
    R = quat_to_rotmat_torch(dist.state[:, QUAT]).double().numpy()
    assert np.allclose(R[:, :, 2], (s[:, POS] - c) / r[:, None], atol=1e-5)
    scales = np.exp(s[:, LOG_SCALE])
    assert np.allclose(scales[:, 1], 0.8 * 60 * math.radians(45 / 5), rtol=1e-4)
    assert (scales[:, 2] < 0.1 * scales[:, :2].min(axis=1)).all()
    # sky colour where the sky is seen (above the horizon, in front of the cameras)
    seen_sky = (lat > 5) & ((s[:, 0] - c[0]) / r > 0.9)
    assert seen_sky.sum() >= 3
    assert np.allclose(s[seen_sky][:, RGB], SKY, atol=0.02)


def test_distant_radius_beyond_scene():
    win = make_window()
    scene = init_scene(win, InitConfig(distant=DistantConfig(radius=5.0, n_lat=2, n_lon=8)))
    (dist,) = [c for c in scene.components if c.kind == "distant"]
    r = np.linalg.norm(dist.state[:, POS].double().numpy() - win.ego_positions.mean(axis=0), axis=1)
    far = np.linalg.norm(_bg(scene)[:, POS] - win.ego_positions.mean(axis=0), axis=1).max()
    assert (r > far).all()


def test_estimate_up_in_z_up_and_y_down_worlds():
    poses = [look_at((0, 0, 1.5), (10, y, 1.0)) for y in (-4.0, 0.0, 4.0)]
    assert np.allclose(estimate_up(poses), [0, 0, 1], atol=1e-6)
    # the same rig in a KITTI-like world (x right, y down, z forward): up is -y
    R = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])  # z-up world → y-down world
    flip = make_transform(R)
    assert np.allclose(estimate_up([flip @ T for T in poses]), [0, -1, 0], atol=1e-6)
    # one heading only: still a sensible up (pitch included), here level cameras
    level = [look_at((x, 0, 1.5), (x + 10, 0, 1.5)) for x in (0.0, 1.0)]
    assert np.allclose(estimate_up(level), [0, 0, 1], atol=1e-6)


def test_random_colour_mode_and_config():
    cfg = from_dict(InitConfig, {"color_mode": "random", "distant": {"enabled": False}, "seed": 3})
    s = _bg(init_scene(make_window(), cfg))
    assert s[:, RGB].min() >= 0 and s[:, RGB].max() <= 1 and s[:, RGB].std() > 0.2
    with pytest.raises(ValueError, match="color_mode"):
        from_dict(InitConfig, {"color_mode": "sh"})
    with pytest.raises(ValueError, match="unknown"):
        from_dict(InitConfig, {"distant": {"radious": 3}})


def test_bad_windows():
    win = make_window()
    with pytest.raises(ValueError, match="no keyframes"):
        init_scene(SceneWindow([], win.points), no_distant())
    with pytest.raises(ValueError, match="LiDAR"):
        init_scene(SceneWindow(win.keyframes, np.zeros((0, 3), np.float32)), no_distant())
    with pytest.raises(ValueError, match="no LiDAR points left"):
        init_scene(win, no_distant(min_range=1000.0))
    with pytest.raises(ValueError, match="kind"):
        Component("x", "sky", torch.zeros(2, 46))
    with pytest.raises(ValueError, match="track"):
        Component("x", "actor", torch.zeros(2, 46))


def test_scene_helpers():
    scene = init_scene(make_window(actors=[_actor_track()]), InitConfig(distant=DistantConfig(n_lat=2, n_lon=16)))
    assert scene.has_actors and not NeuralScene(scene.components[:1]).has_actors
    counts = scene.counts()
    assert counts["actors"] == 1 and counts["distant"] == 32 and counts["total"] == scene.num_points
    moved = scene.with_states([s + 1 for s in scene.states()])
    assert torch.equal(moved.components[0].state, scene.components[0].state + 1)
    assert moved.components[1].track is scene.components[1].track
    with pytest.raises(ValueError):
        scene.with_states(scene.states()[:1])
    with pytest.raises(ValueError, match="decoder"):
        scene.params_at({"background": zero_decoders()["background"]}, 0.0)
    assert NeuralScene([]).params_at({}, None).means.shape == (0, 3)


@pytest.mark.parametrize("orient", [True, False])
def test_initial_render_resembles_the_source_views(orient):
    """Both shapes render close to the images. Discs leave small gaps on this grazing synthetic ground
    (about 1 dB below balls here) but measured +0.7 dB on the real KITTI validation window."""
    from g3r_ros.metrics import psnr
    from g3r_ros.render import render

    win = make_window(wall=True, dense=True)
    # 2°: the old 2-pixel cap of this wide 96-pixel test camera (sparse near-field points need it)
    scene = init_scene(win, InitConfig(voxel_size=0.02, max_footprint_deg=2.0, orient_to_surface=orient,
                                       distant=DistantConfig(radius=80.0, n_lat=12, n_lon=96)))
    params = scene.params_at(zero_decoders(), 0.0)
    cams = CameraBatch.from_cameras([k.camera for k in win.keyframes])
    with torch.no_grad():
        out = render(params, cams)
    gt = torch.as_tensor(np.stack([k.image for k in win.keyframes])).float() / 255
    values = psnr(out.rgb.clamp(0, 1), gt)
    assert (values > (16.5 if orient else 17.5)).all(), values

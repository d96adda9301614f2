"""Tests of the faithful per-scene 3DGS baseline (g3r_ros.baseline)."""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pytest
import torch

from g3r_ros.baseline import SH_C0, Baseline3DGSConfig, optimize_3dgs
from g3r_ros.baseline.densify import add_densification_stats, densify_and_prune, reset_opacity
from g3r_ros.baseline.loss import photometric_loss, psnr
from g3r_ros.baseline.schedule import expon_lr, scene_extent
from g3r_ros.baseline.state import PARAM_NAMES, TrainableGaussians
from g3r_ros.baseline_3dgs import optimize_3dgs as optimize_3dgs_reexport
from g3r_ros.config import config_path, load_config
from g3r_ros.geometry import CameraBatch, PinholeCamera, make_transform, quat_to_rotmat_torch
from g3r_ros.metrics import ssim, ssim_map
from g3r_ros.render.types import GaussianParams
from g3r_ros.window import Keyframe, SceneWindow

W, H = 64, 48


# ---------------------------------------------------------------------------------------
# A tiny synthetic scene: 160 Gaussians on a slab 4 m in front of 4 cameras (64x48).
# ---------------------------------------------------------------------------------------
def _gt_gaussians(n=160, seed=0) -> GaussianParams:
    g = torch.Generator().manual_seed(seed)
    means = torch.stack([torch.rand(n, generator=g) * 4.4 - 2.2, torch.rand(n, generator=g) * 3.4 - 1.7,
                         3.6 + torch.rand(n, generator=g) * 0.8], 1)
    quats = torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=1)
    log_scales = torch.log(0.06 + 0.1 * torch.rand(n, 3, generator=g))
    opacity = torch.full((n,), 2.5)
    rgb = torch.rand(n, 3, generator=g)
    return GaussianParams(means, quats, log_scales, opacity, rgb)


def _cameras() -> list[PinholeCamera]:
    K = np.array([[60.0, 0, W / 2], [0, 60.0, H / 2], [0, 0, 1]])
    offsets = [(-0.3, -0.2, 0.0), (0.3, -0.2, 0.0), (-0.3, 0.2, 0.0), (0.3, 0.2, 0.0), (0.0, 0.0, 0.1)]
    return [PinholeCamera(K, W, H, make_transform(None, o)) for o in offsets]


def _render(g: GaussianParams, cam: PinholeCamera) -> torch.Tensor:
    from g3r_ros.render import render

    with torch.no_grad():
        return render(g, CameraBatch.from_cameras([cam]), render_depth=False).rgb[0]


@pytest.fixture(scope="module")
def scene():
    """(window with 4 source + 1 held-out views, gt Gaussians, perturbed init)."""
    gt = _gt_gaussians()
    kfs = []
    for i, cam in enumerate(_cameras()):
        img = (_render(gt, cam).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
        kfs.append(Keyframe(img, cam, stamp=0.1 * i, held_out=(i == 4), index=i))
    window = SceneWindow(kfs, points=gt.means.numpy().astype(np.float32), name="synthetic-test")
    g = torch.Generator().manual_seed(1)
    # Perturbations sized for graphdeco's learning rates (colour moves <= 7e-4 per step).
    init = GaussianParams(gt.means + 0.01 * torch.randn(gt.means.shape, generator=g), gt.quats.clone(),
                          gt.log_scales + 0.3, torch.zeros_like(gt.opacity_logits),
                          (gt.rgb + 0.03 * torch.randn(gt.rgb.shape, generator=g)).clamp(0, 1))
    return window, gt, init


def _mean_psnr(params: GaussianParams, keyframes) -> float:
    vals = []
    for kf in keyframes:
        gt = torch.from_numpy(kf.image).float() / 255.0
        vals.append(psnr(_render(params, kf.camera), gt))
    return float(np.mean(vals))


def _short_cfg(**kw) -> Baseline3DGSConfig:
    """Explicit short schedule (schedule_scale 1.0) so tests control every event."""
    base = {"schedule_scale": 1.0, "position_lr_max_steps": 200, "densify_from_iter": 10,
            "densification_interval": 10, "densify_until_iter": 60, "opacity_reset_interval": 1000}
    base.update(kw)
    return Baseline3DGSConfig(**base)


# ---------------------------------------------------------------------------------------
# Config, schedule, loss
# ---------------------------------------------------------------------------------------
def test_yaml_mirrors_dataclass_defaults():
    cfg = load_config(Baseline3DGSConfig, config_path("baseline_3dgs.yaml"))
    assert cfg == Baseline3DGSConfig()
    # graphdeco reference values
    assert (cfg.position_lr_init, cfg.position_lr_final, cfg.feature_lr, cfg.opacity_lr, cfg.scaling_lr,
            cfg.rotation_lr) == (1.6e-4, 1.6e-6, 2.5e-3, 0.05, 5e-3, 1e-3)
    assert (cfg.densify_from_iter, cfg.densify_until_iter, cfg.densification_interval,
            cfg.opacity_reset_interval, cfg.densify_grad_threshold) == (500, 15000, 100, 3000, 2e-4)
    with pytest.raises(ValueError, match="unknown config key"):
        load_config(Baseline3DGSConfig, None, overrides={"densify_intervall": 5})


def test_schedule_scale():
    cfg = Baseline3DGSConfig()
    assert cfg.resolved(30000) == Baseline3DGSConfig(schedule_scale=1.0)
    r = cfg.resolved(3000)  # auto: 0.1
    assert (r.densify_from_iter, r.densify_until_iter, r.densification_interval, r.opacity_reset_interval,
            r.position_lr_max_steps) == (50, 1500, 10, 300, 3000)
    r = Baseline3DGSConfig(schedule_scale=0.5).resolved(100)
    assert (r.densify_from_iter, r.densification_interval, r.position_lr_max_steps) == (250, 50, 15000)
    # short runs: the interval is floored at one epoch of source views, reset keeps its 30x ratio
    r = cfg.resolved(600, n_views=25)
    assert (r.densify_from_iter, r.densify_until_iter, r.densification_interval, r.opacity_reset_interval,
            r.position_lr_max_steps) == (10, 300, 25, 750, 600)
    assert cfg.resolved(600, n_views=1000).densification_interval == 100  # never above graphdeco's
    assert cfg.resolved(30000, n_views=1000) == cfg.resolved(30000)  # full length: untouched
    assert Baseline3DGSConfig(min_interval_epochs=0).resolved(600, n_views=25).densification_interval == 2
    tiny = cfg.resolved(30)  # periods never reach 0
    assert tiny.densification_interval == 1 and tiny.opacity_reset_interval == 3
    with pytest.raises(ValueError, match="schedule_scale"):
        Baseline3DGSConfig(schedule_scale="fast").validate()
    with pytest.raises(ValueError, match="schedule_scale"):
        Baseline3DGSConfig(schedule_scale=-1.0).validate()


def test_position_lr_schedule_matches_formula():
    extent = 7.3
    lr0, lr1, T = 1.6e-4 * extent, 1.6e-6 * extent, 30000
    assert expon_lr(0, lr0, lr1, T) == pytest.approx(lr0, rel=1e-12)
    assert expon_lr(T, lr0, lr1, T) == pytest.approx(lr1, rel=1e-12)
    assert expon_lr(5 * T, lr0, lr1, T) == pytest.approx(lr1, rel=1e-12)
    for step in (1, 777, 15000, 29999):
        t = step / T
        assert expon_lr(step, lr0, lr1, T) == pytest.approx(lr0 ** (1 - t) * lr1 ** t, rel=1e-9)
    assert expon_lr(15000, lr0, lr1, T) == pytest.approx(math.sqrt(lr0 * lr1), rel=1e-9)
    # delayed warm-up (graphdeco's delay_mult form)
    assert expon_lr(0, lr0, lr1, T, delay_steps=100, delay_mult=0.01) == pytest.approx(0.01 * lr0)
    d = 0.01 + 0.99 * math.sin(0.5 * math.pi * 0.5)
    assert expon_lr(50, lr0, lr1, T, 100, 0.01) == pytest.approx(d * lr0 ** (1 - 50 / T) * lr1 ** (50 / T))
    assert expon_lr(-1, lr0, lr1, T) == 0.0


def test_loop_applies_the_position_lr_schedule(scene, monkeypatch):
    window, _, init = scene
    seen = []
    orig = TrainableGaussians.set_lr

    def spy(self, name, lr):
        if name == "means":
            seen.append(lr)
        orig(self, name, lr)

    monkeypatch.setattr(TrainableGaussians, "set_lr", spy)
    res = optimize_3dgs(window, init, _short_cfg(densify_until_iter=0), iters=5, progress=False)
    ext = res.extent
    radius = np.linalg.norm(np.array([(-0.3, -0.2), (0.3, -0.2), (-0.3, 0.2), (0.3, 0.2)]), axis=1).max()
    assert ext == pytest.approx(1.1 * radius)
    want = [expon_lr(i, 1.6e-4 * ext, 1.6e-6 * ext, 200) for i in range(1, 6)]
    assert seen == pytest.approx(want, rel=1e-12)


def test_scene_extent():
    c = np.array([[1.0, 0, 0], [-1.0, 0, 0], [0, 3.0, 0], [0, -3.0, 0]])
    assert scene_extent(c) == pytest.approx(3.3)
    assert scene_extent(c[:1], fallback=2.5) == 2.5
    with pytest.raises(ValueError):
        scene_extent(np.zeros((0, 3)))


def test_ssim_and_loss():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 12, 16, 3, generator=g)
    assert float(ssim(a, a).mean()) == pytest.approx(1.0, abs=1e-6)
    b = (a + 0.1 * torch.randn(a.shape, generator=g)).clamp(0, 1).requires_grad_(True)
    loss, l1 = photometric_loss(b, a, 0.2)
    s = ssim(b, a).mean()
    assert 0.0 < float(s.detach()) < 0.99
    assert float(loss.detach()) == pytest.approx(0.8 * float(l1.detach()) + 0.2 * (1 - float(s.detach())), rel=1e-6)
    loss.backward()
    assert b.grad is not None and torch.isfinite(b.grad).all() and b.grad.abs().sum() > 0
    # the centre pixel of an 11x11 image sees the whole window: check it against the formula
    x = torch.rand(1, 11, 11, 1, generator=g, dtype=torch.float64)
    y = (0.5 * x + 0.2 + 0.05 * torch.rand(1, 11, 11, 1, generator=g, dtype=torch.float64)).clamp(0, 1)
    win = torch.exp(-((torch.arange(11) - 5.0) ** 2) / (2 * 1.5**2)).double()
    win = torch.outer(win, win) / win.sum() ** 2
    x2, y2 = x[0, :, :, 0], y[0, :, :, 0]
    mx, my = (win * x2).sum(), (win * y2).sum()
    vx, vy, cxy = (win * x2 * x2).sum() - mx**2, (win * y2 * y2).sum() - my**2, (win * x2 * y2).sum() - mx * my
    want = ((2 * mx * my + 1e-4) * (2 * cxy + 9e-4)) / ((mx**2 + my**2 + 1e-4) * (vx + vy + 9e-4))
    assert float(ssim_map(x, y)[0, 5, 5, 0]) == pytest.approx(float(want), rel=1e-10)


# ---------------------------------------------------------------------------------------
# Optimizer state and densification on crafted cases
# ---------------------------------------------------------------------------------------
def _crafted_state(extent=10.0):
    """6 Gaussians: 0 small/high grad, 1 large/high grad, 2 small/low grad, 3 transparent,
    4 huge in world (2 m > 0.1*extent), 5 never visible."""
    n = 6
    means = torch.arange(n * 3, dtype=torch.float32).reshape(n, 3)
    quats = torch.nn.functional.normalize(torch.tensor([[1.0, 0, 0, 0], [0.9, 0.3, -0.2, 0.1]] * 3), dim=1)
    scales = torch.tensor([[0.05] * 3, [0.5, 0.2, 0.1], [0.05] * 3, [0.05] * 3, [2.0, 0.1, 0.1], [0.05] * 3])
    opac = torch.logit(torch.tensor([0.9, 0.8, 0.7, 0.001, 0.9, 0.6]))
    rgb = torch.rand(n, 3, generator=torch.Generator().manual_seed(0))
    init = GaussianParams(means, quats, scales.log(), opac, rgb)
    lrs = {"means": 1e-3, "quats": 1e-3, "log_scales": 5e-3, "opacity_logits": 0.05, "rgb": 7e-4}
    st = TrainableGaussians(init, lrs)
    # one Adam step so every parameter has moments
    loss = sum((p * (i + 1)).square().sum() for i, p in enumerate(st.params.values()))
    loss.backward()
    st.optimizer.step()
    st.optimizer.zero_grad(set_to_none=True)
    st.grad_accum = torch.tensor([3e-4, 6e-4, 1e-4, 1e-5, 1e-5, 0.0]) * 2
    st.denom = torch.tensor([2.0, 2.0, 2.0, 2.0, 2.0, 0.0])
    st.max_radii = torch.tensor([3.0, 10.0, 2.0, 1.0, 30.0, 0.0])
    return st, init


def _check_consistent(st: TrainableGaussians):
    n = len(st)
    for name in PARAM_NAMES:
        p = st.params[name]
        assert p.shape[0] == n and p.is_leaf and p.requires_grad
        s = st.adam_state(name)
        assert s["exp_avg"].shape == p.shape and s["exp_avg_sq"].shape == p.shape
        assert any(g["params"][0] is p for g in st.optimizer.param_groups)
    assert st.grad_accum.shape == st.denom.shape == st.max_radii.shape == (n,)
    assert len(st.optimizer.state) == len(PARAM_NAMES)


def test_densify_clone_split_prune_crafted():
    extent = 10.0  # percent_dense*extent = 0.1 m, world-size prune at 1.0 m
    st, _init = _crafted_state(extent)
    before = {n: st.params[n].detach().clone() for n in PARAM_NAMES}
    mom_before = {n: st.adam_state(n)["exp_avg"].clone() for n in PARAM_NAMES}
    step_before = float(st.adam_state("means")["step"])
    cfg = Baseline3DGSConfig()
    rep = densify_and_prune(st, cfg, extent, size_threshold=20.0, generator=torch.Generator().manual_seed(0))
    # 0 cloned; 1 split into 2 (parent removed); 3 pruned (opacity), 4 pruned (world size)
    assert (rep.cloned, rep.split, rep.pruned) == (1, 1, 2)
    assert rep.n_after == len(st) == 6 + 1 + 2 - 1 - 2
    _check_consistent(st)
    # row order: survivors [0, 2, 5], clone of 0, two children of 1
    means = st.params["means"].detach()
    for row, src in ((0, 0), (1, 2), (2, 5), (3, 0)):
        for n in PARAM_NAMES:
            assert torch.equal(st.params[n].detach()[row], before[n][src])
    # survivors keep their Adam moments; new rows have zero moments; the step count is kept
    for n in PARAM_NAMES:
        m = st.adam_state(n)["exp_avg"]
        assert torch.equal(m[:3], mom_before[n][[0, 2, 5]])
        assert (m[3:] == 0).all()
    assert float(st.adam_state("means")["step"]) == step_before
    # split children: scale / (0.8 * 2), same rotation/colour/opacity, sampled around the parent
    kids = slice(4, 6)
    expected = (before["log_scales"][1] - math.log(1.6)).expand(2, 3)
    assert torch.allclose(st.params["log_scales"].detach()[kids], expected)
    for n in ("quats", "opacity_logits", "rgb"):
        assert torch.equal(st.params[n].detach()[kids], before[n][1].expand_as(st.params[n].detach()[kids]))
    off = means[kids] - before["means"][1]
    assert (off.norm(dim=1) < 4 * 0.5).all() and (off.norm(dim=1) > 0).all()
    # statistics reset
    assert (st.grad_accum == 0).all() and (st.denom == 0).all() and (st.max_radii == 0).all()
    # an optimizer step on the edited state works and moves the parameters
    loss = sum(p.square().sum() for p in st.params.values())
    loss.backward()
    st.optimizer.step()
    _check_consistent(st)


def test_densify_before_first_reset_keeps_large_and_screen_size_flag():
    extent = 10.0
    st, _ = _crafted_state(extent)
    rep = densify_and_prune(st, Baseline3DGSConfig(), extent, size_threshold=None)
    assert rep.pruned == 1  # only the transparent one: no size pruning before the first reset
    _check_consistent(st)
    # screen-size pruning (off by default, as graphdeco's effectively is)
    st, _ = _crafted_state(extent)
    st.grad_accum.zero_()
    st.params["log_scales"].data[4] = math.log(0.5)  # not huge in world any more; 30 px on screen
    rep = densify_and_prune(st, Baseline3DGSConfig(), extent, size_threshold=20.0)
    assert rep.pruned == 1 and len(st) == 5
    st, _ = _crafted_state(extent)
    st.grad_accum.zero_()
    st.params["log_scales"].data[4] = math.log(0.5)
    rep = densify_and_prune(st, Baseline3DGSConfig(screen_size_prune=True), extent, size_threshold=20.0)
    assert rep.pruned == 2 and len(st) == 4


def test_split_samples_follow_the_gaussian():
    n = 3000
    q = torch.nn.functional.normalize(torch.tensor([[0.8, 0.2, 0.5, -0.1]]), dim=1).repeat(n, 1)
    s = torch.tensor([[0.6, 0.3, 0.1]]).repeat(n, 1)
    init = GaussianParams(torch.zeros(n, 3), q, s.log(), torch.zeros(n), torch.zeros(n, 3))
    st = TrainableGaussians(init, dict.fromkeys(PARAM_NAMES, 1e-3))
    st.grad_accum.fill_(1.0)
    st.denom.fill_(1.0)
    densify_and_prune(st, Baseline3DGSConfig(), extent=1.0, size_threshold=None,
                      generator=torch.Generator().manual_seed(0))
    assert len(st) == 2 * n
    x = st.params["means"].detach().double()
    R = quat_to_rotmat_torch(q[:1].double())[0]
    want = R @ torch.diag(s[0].double() ** 2) @ R.T
    assert torch.allclose(torch.cov(x.T), want, atol=0.02 * 0.36)


def test_max_gaussians_caps_growth():
    st, _ = _crafted_state()
    rep = densify_and_prune(st, Baseline3DGSConfig(max_gaussians=7), 10.0, size_threshold=None)
    # 6 + budget 1: only the highest-gradient candidate (the large one, split -> +1)
    assert (rep.cloned, rep.split) == (0, 1)
    _check_consistent(st)


def test_add_densification_stats_units():
    init = GaussianParams(torch.zeros(3, 3), torch.tensor([[1.0, 0, 0, 0]] * 3), torch.zeros(3, 3),
                          torch.zeros(3), torch.zeros(3, 3))
    st = TrainableGaussians(init, dict.fromkeys(PARAM_NAMES, 1e-3))
    grad = torch.tensor([[[1e-5, 2e-5], [3e-5, 0.0], [1.0, 1.0]],
                         [[0.0, 1e-5], [1e-5, 1e-5], [1.0, 1.0]]])
    radii = torch.tensor([[4, 7, 0], [9, 0, 0]], dtype=torch.int32)
    add_densification_stats(st, grad, radii, width=64, height=48)
    c = 2  # the loss is a mean over 2 views
    g0 = math.hypot(1e-5 * 32 * c, 2e-5 * 24 * c) + math.hypot(0, 1e-5 * 24 * c)
    g1 = math.hypot(3e-5 * 32 * c, 0)
    assert st.grad_accum.tolist() == pytest.approx([g0, g1, 0.0])
    assert st.denom.tolist() == [2.0, 1.0, 0.0]
    assert st.max_radii.tolist() == [9.0, 7.0, 0.0]


def test_opacity_reset():
    st, _ = _crafted_state()
    op_before = torch.sigmoid(st.params["opacity_logits"].detach())
    other = st.adam_state("rgb")["exp_avg"].clone()
    reset_opacity(st, 0.01)
    op = torch.sigmoid(st.params["opacity_logits"].detach())
    assert torch.allclose(op, torch.minimum(op_before, torch.tensor(0.01)), atol=1e-7)
    assert float(op[3]) == pytest.approx(float(op_before[3]), rel=1e-5)  # already below: unchanged
    assert (st.adam_state("opacity_logits")["exp_avg"] == 0).all()
    assert (st.adam_state("opacity_logits")["exp_avg_sq"] == 0).all()
    assert torch.equal(st.adam_state("rgb")["exp_avg"], other)
    _check_consistent(st)


# ---------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------
def test_baseline_raises_source_psnr(scene):
    """The faithful optimizer (LRs, Adam, L1 + D-SSIM, camera stack) without densification."""
    window, _, init = scene
    snapshot = [getattr(init, n).clone() for n in PARAM_NAMES]
    p0 = _mean_psnr(init, window.source_keyframes)
    res = optimize_3dgs(window, init, _short_cfg(densify_until_iter=0), iters=40, progress=False, seed=0,
                        eval_fn=lambda g: {"psnr_all_sources": _mean_psnr(g, window.source_keyframes)},
                        eval_every=15)
    p1 = _mean_psnr(res.params, window.source_keyframes)
    assert p1 > p0 + 3.0, (p0, p1)
    assert res.log[0]["iter"] == 0 and res.log[0]["psnr_all_sources"] == pytest.approx(p0, abs=1e-4)
    assert res.log[0]["psnr_source"] == pytest.approx(p0, abs=0.5)  # PSNR of the mean MSE
    assert res.log[-1]["iter"] == 40 and res.log[-1]["psnr_all_sources"] == pytest.approx(p1, abs=1e-4)
    assert [e["iter"] for e in res.log if "psnr_all_sources" in e] == [0, 15, 30, 40]
    assert res.stop_reason == "iters" and res.iterations_run == 40
    # the caller's tensors are untouched
    for n, t in zip(PARAM_NAMES, snapshot):
        assert torch.equal(getattr(init, n), t)
    # log: required keys, one entry per iteration (log_every=1), monotone time
    assert [e["iter"] for e in res.log] == list(range(41))
    for e in res.log:
        assert {"iter", "time_s", "loss", "psnr_source", "n_gaussians"} <= set(e)
        assert math.isfinite(e["loss"]) and math.isfinite(e["psnr_source"])
    times = [e["time_s"] for e in res.log]
    assert times[0] == 0.0 and all(b > a for a, b in itertools.pairwise(times))
    assert res.train_time_s == pytest.approx(times[-1])


def test_densification_in_loop(scene):
    window, _, init = scene
    cfg = _short_cfg(densify_from_iter=4, densification_interval=4, densify_until_iter=13)
    res = optimize_3dgs(window, init, cfg, iters=13, progress=False, seed=0, log_every=100)
    events = [e for e in res.log if "densify" in e]
    assert [e["iter"] for e in events] == [8, 12]  # > densify_from_iter, every 4, < densify_until_iter
    for e in events:
        d = e["densify"]
        assert d["n_after"] == d["n_before"] + d["cloned"] + d["split"] - d["pruned"]
        assert e["n_gaussians"] == d["n_after"]
    assert events[0]["densify"]["n_before"] == len(init)
    assert sum(e["densify"]["cloned"] + e["densify"]["split"] for e in events) > 0
    assert len(res.params) == events[-1]["densify"]["n_after"] == res.log[-1]["n_gaussians"]
    assert [e["iter"] for e in res.log] == [0, 8, 12, 13]  # log_every=100: events and the end
    assert res.densify_events == [{"iter": e["iter"], **e["densify"]} for e in events]
    # the densified model still renders finite images of plausible quality
    p = _mean_psnr(res.params, window.source_keyframes)
    assert math.isfinite(p) and p > 10.0


def test_held_out_views_are_not_trained_on(scene):
    window, _, init = scene
    used = []

    def spy_render(g, cams, **kw):
        from g3r_ros.render import render

        used.append(float(cams.viewmats[0, 2, 3]))
        return render(g, cams, **kw)

    optimize_3dgs(window, init, _short_cfg(), iters=12, progress=False, render_fn=spy_render)
    assert -0.1 not in [round(z, 6) for z in used]  # the held-out camera is at z = 0.1
    # graphdeco's camera stack: every source view once per epoch
    training = used[4:]  # first 4 renders: iteration-0 evaluation
    assert sorted(training[:4]) == sorted(training[4:8])


def test_opacity_reset_in_loop(scene):
    window, _, init = scene
    seen = {}

    def eval_fn(g):
        seen.setdefault("op", []).append(float(torch.sigmoid(g.opacity_logits).max()))
        return {}

    res = optimize_3dgs(window, init, _short_cfg(opacity_reset_interval=8, densify_until_iter=12), iters=9,
                        progress=False, eval_fn=eval_fn, eval_every=1)
    resets = [e["iter"] for e in res.log if e.get("opacity_reset")]
    assert resets == [8]
    assert seen["op"][8] <= 0.0101 and seen["op"][7] > 0.4  # after iteration 8 (index 8 = iter 8)


def test_time_budget_and_eval_time_excluded(scene):
    window, _, init = scene

    def slow_eval(g):
        time.sleep(0.05)
        return {"dummy": 1.0}

    t0 = time.perf_counter()
    res = optimize_3dgs(window, init, _short_cfg(), iters=100000, time_budget_s=0.5, progress=False,
                        eval_fn=slow_eval, eval_every_s=0.1)
    wall = time.perf_counter() - t0
    assert res.stop_reason == "time_budget"
    assert 0 < res.iterations_run < 100000
    assert res.log[-1]["iter"] == res.iterations_run and "dummy" in res.log[-1]
    times = [e["time_s"] for e in res.log]  # log_every=1: every iteration
    assert times[-2] < 0.5 <= times[-1] == res.train_time_s  # stopped at the first check past the budget
    assert all(b >= a for a, b in itertools.pairwise(times))
    n_eval = sum(1 for e in res.log if "dummy" in e)
    assert n_eval >= 2
    assert res.eval_time_s >= 0.05 * n_eval and wall >= res.train_time_s + 0.05 * n_eval


def test_fill_budget_goes_on_past_iters_at_the_final_schedule(scene):
    window, _, init = scene
    cfg = _short_cfg(densify_until_iter=3)
    res = optimize_3dgs(window, init, cfg, iters=3, time_budget_s=0.3, progress=False, fill_budget=True)
    assert res.stop_reason == "time_budget" and res.iterations_run > 3
    assert res.log[-1]["iter"] == res.iterations_run and res.train_time_s >= 0.3
    assert not [e for e in res.densify_events if e["iter"] > 3]  # no densification or reset past the schedule
    plain = optimize_3dgs(window, init, cfg, iters=3, time_budget_s=0.3, progress=False)
    assert plain.stop_reason == "iters" and plain.iterations_run == 3


def test_bad_input(scene):
    window, _, init = scene
    with pytest.raises(ValueError, match="no keyframes"):
        optimize_3dgs(SceneWindow([], np.zeros((0, 3), np.float32)), init, iters=1, progress=False)
    held = SceneWindow([Keyframe(k.image, k.camera, k.stamp, held_out=True) for k in window.keyframes],
                       window.points)
    with pytest.raises(ValueError, match="no source keyframes"):
        optimize_3dgs(held, init, iters=1, progress=False)
    bad = GaussianParams(init.means.clone(), init.quats, init.log_scales, init.opacity_logits, init.rgb)
    bad.means[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        optimize_3dgs(window, bad, iters=1, progress=False)
    empty = GaussianParams(*(getattr(init, n)[:0] for n in PARAM_NAMES))
    with pytest.raises(ValueError, match="no Gaussians"):
        optimize_3dgs(window, empty, iters=1, progress=False)
    wrong = Keyframe(np.zeros((10, 10, 3), np.uint8), window.keyframes[0].camera, 0.0)
    with pytest.raises(ValueError, match="does not match its camera"):
        optimize_3dgs(SceneWindow([wrong], window.points), init, iters=1, progress=False)
    with pytest.raises(ValueError, match="unknown config key"):
        optimize_3dgs(window, init, {"opacity_lrr": 0.1}, iters=1, progress=False)


def test_public_api_and_rgb_lr(scene):
    window, _, init = scene
    assert optimize_3dgs_reexport is optimize_3dgs
    # rgb LR is the SH-DC LR mapped through rgb = SH_C0 * dc + 0.5
    captured = {}
    orig = TrainableGaussians.__init__

    def spy(self, init_, lrs, eps=1e-15, device="cpu"):
        captured.update(lrs, eps=eps)
        orig(self, init_, lrs, eps, device)

    TrainableGaussians.__init__ = spy
    try:
        optimize_3dgs(window, init, {"densify_until_iter": 0}, iters=1, progress=False)
    finally:
        TrainableGaussians.__init__ = orig
    assert captured["rgb"] == pytest.approx(2.5e-3 * SH_C0)
    assert captured["eps"] == 1e-15
    assert (captured["opacity_logits"], captured["log_scales"], captured["quats"]) == (0.05, 5e-3, 1e-3)

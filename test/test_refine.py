"""Refinement of a G3R map (g3r_ros.refine): it improves, never loses the start, obeys budgets
and cancellation, keeps the decomposition; the config YAML mirrors the dataclass."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
import torch

import g3r_ros.refine as refine_mod
from g3r_ros.config import config_path, from_dict, load_yaml
from g3r_ros.evaluate import evaluate_keyframes, mean_psnr
from g3r_ros.initialization import InitConfig, init_scene
from g3r_ros.model import COMPONENT_KINDS, G3RModel
from g3r_ros.net import NetSetConfig
from g3r_ros.refine import EXPLICIT_DECODERS, RefineConfig, explicit_scene, refine
from g3r_ros.synthetic import SynthConfig, generate_drive
from g3r_ros.window_builder import WindowConfig, window_from_bag

INIT = from_dict(InitConfig, {"max_points": 1500, "actor_max_points": 150, "distant": {"n_lat": 4, "n_lon": 32}})
TINY_NET = {"channels": [8, 16], "time_embed_dim": 16, "point_channels": 8, "head_channels": 16}


@pytest.fixture(scope="module")
def window(tmp_path_factory):
    bag = tmp_path_factory.mktemp("synth") / "bag"
    generate_drive(bag, 1234, SynthConfig(frames=8, width=64, height=40, actors=1, supersample=1), progress=False)
    return window_from_bag(bag, WindowConfig(held_out_every=4))


@pytest.fixture(scope="module")
def scene(window):
    torch.manual_seed(0)
    return init_scene(window, INIT)


def cfg(**kw) -> RefineConfig:
    base = {"seconds": None, "iters": 12, "device": "cpu", "views_per_iter": 1}
    return RefineConfig(**{**base, **kw})


def source_psnr(params_at, window) -> float:
    return mean_psnr(evaluate_keyframes(params_at, window.source_keyframes, keep_renders=False))


def test_refine_improves_source_psnr_and_keeps_the_decomposition(window, scene, one_torch_thread):
    epochs = []
    res = refine(scene, window, cfg(iters=36), on_epoch=lambda it, sc, e: epochs.append((it, e)), progress=False)
    before = source_psnr(lambda s: scene.params_at(EXPLICIT_DECODERS, s), window)
    after = source_psnr(res.params_at, window)
    assert res.stop_reason == "iters" and res.iterations == 36
    assert after > before + 0.3, (before, after)
    assert res.best_psnr > res.start_psnr
    # the start is logged and the callback sees it, then every epoch (6 source views here)
    assert epochs[0][0] == 0 and [it for it, _ in epochs[1:]] == [6, 12, 18, 24, 30, 36]
    assert [e["iter"] for e in res.log] == [it for it, _ in epochs]
    # same components (names, kinds, tracks, counts): actors stay box-local, placed per stamp
    assert [(c.name, c.kind, c.track) for c in res.scene.components] == \
           [(c.name, c.kind, c.track) for c in scene.components]
    assert res.scene.num_points == scene.num_points
    assert any(c.kind == "actor" for c in res.scene.components)
    # the input scene is not modified
    assert source_psnr(lambda s: scene.params_at(EXPLICIT_DECODERS, s), window) == pytest.approx(before)


def test_explicit_scene_renders_like_the_decoded_neural_scene(window, scene):
    torch.manual_seed(1)
    model = G3RModel(from_dict(NetSetConfig, {k: TINY_NET for k in COMPONENT_KINDS}))
    with torch.no_grad():
        for dec in model.decoders.values():   # a decoder with a real residual
            dec.linear.weight.normal_(0, 0.3)
            dec.linear.weight.mul_(dec.input_mask)
    stamp = window.keyframes[2].stamp
    a = scene.params_at(model.decoders, stamp)
    b = explicit_scene(scene, model.decoders).params_at(EXPLICIT_DECODERS, stamp)
    for f in ("means", "quats", "log_scales", "opacity_logits", "rgb"):
        torch.testing.assert_close(getattr(a, f), getattr(b, f))
    assert not torch.allclose(a.rgb, scene.params_at(EXPLICIT_DECODERS, stamp).rgb)


def test_a_nan_keeps_the_best_state(window, scene, monkeypatch, one_torch_thread):
    """The loss turns NaN at the 15th call: refinement stops and returns the best epoch's state."""
    real = refine_mod._loss
    calls = {"n": 0}

    def poisoned(*a, **kw):
        calls["n"] += 1
        loss = real(*a, **kw)
        return loss * float("nan") if calls["n"] >= 15 else loss

    monkeypatch.setattr(refine_mod, "_loss", poisoned)
    seen = []
    res = refine(scene, window, cfg(iters=40), on_epoch=lambda it, sc, e: seen.append(sc), progress=False)
    assert res.stop_reason == "diverged" and res.iterations == 15
    p = res.params_at(window.keyframes[0].stamp)
    assert all(torch.isfinite(getattr(p, f)).all() for f in ("means", "quats", "log_scales", "opacity_logits", "rgb"))
    # the best state is the better of the two finished epochs (12 iterations), never worse than the start
    assert res.best_psnr == max(e["psnr_source"] for e in res.log)
    assert source_psnr(res.params_at, window) >= source_psnr(lambda s: scene.params_at(EXPLICIT_DECODERS, s),
                                                              window) - 0.05


def test_a_psnr_collapse_stops_and_returns_the_start(window, scene, one_torch_thread):
    """Absurd learning rates wreck the map: the 1 dB guard stops it and G3R's map comes back."""
    bad = cfg(iters=30, lr_rgb=5.0, lr_opacity=50.0, lr_log_scales=5.0)
    res = refine(scene, window, bad, progress=False)
    assert res.stop_reason == "diverged"
    assert res.log[-1]["psnr_source"] < res.start_psnr - bad.max_drop_db
    start = scene.params_at(EXPLICIT_DECODERS, window.keyframes[0].stamp)
    got = res.params_at(window.keyframes[0].stamp)
    assert res.best_psnr == res.start_psnr
    for f in ("means", "log_scales", "opacity_logits", "rgb"):
        torch.testing.assert_close(getattr(got, f), getattr(start, f))


def test_cancel_returns_the_best_state_so_far(window, scene, one_torch_thread):
    ev = threading.Event()
    ev.set()
    res = refine(scene, window, cfg(iters=10), cancel=ev, progress=False)
    assert res.stop_reason == "cancelled" and res.iterations == 0
    assert res.best_psnr == res.start_psnr

    ev = threading.Event()
    res = refine(scene, window, cfg(iters=100), cancel=ev, on_epoch=lambda it, sc, e: it and ev.set(),
                 progress=False)
    assert res.stop_reason == "cancelled" and res.iterations == 6   # one epoch of 6 source views


class _FakeTime:
    """A clock that advances 1 s at every reading (budgets without timed assertions)."""

    def __init__(self):
        self.t = 0.0

    def perf_counter(self):
        self.t += 1.0
        return self.t


def test_budgets_are_respected(window, scene, monkeypatch, one_torch_thread):
    res = refine(scene, window, cfg(iters=7), progress=False)
    assert res.stop_reason == "iters" and res.iterations == 7
    monkeypatch.setattr(refine_mod, "time", _FakeTime())
    res = refine(scene, window, cfg(iters=None, seconds=20.0), progress=False)
    assert res.stop_reason == "seconds" and 0 < res.iterations < 20
    assert res.total_s >= 20.0
    res = refine(scene, window, cfg(iters=3, seconds=1000.0), progress=False)   # whichever comes first
    assert res.stop_reason == "iters" and res.iterations == 3
    res = refine(scene, window, cfg(iters=None, seconds=0.0), progress=False)
    assert res.stop_reason == "seconds" and res.iterations == 0


def test_callback_time_is_not_counted(window, scene, monkeypatch, one_torch_thread):
    fake = _FakeTime()
    monkeypatch.setattr(refine_mod, "time", fake)

    def slow_callback(it, sc, e):
        fake.t += 1000.0   # an expensive held-out evaluation

    res = refine(scene, window, cfg(iters=None, seconds=200.0), on_epoch=slow_callback, progress=False)
    assert res.stop_reason == "seconds" and res.iterations >= 6   # the 1000-s callbacks did not end it


def test_distant_appearance_mode_moves_no_distant_geometry(window, scene, one_torch_thread):
    res = refine(scene, window, cfg(iters=12, distant="appearance"), progress=False)
    kinds = [c.kind for c in scene.components]
    i = kinds.index("distant")
    before, after = scene.components[i].state, res.scene.components[i].state
    torch.testing.assert_close(after[:, 0:10], before[:, 0:10])      # position, scale, rotation
    assert not torch.allclose(after[:, 10:14], before[:, 10:14])    # colour / opacity do change


def test_densification_grows_the_background_within_its_cap(window, scene, one_torch_thread):
    c = cfg(iters=24, densify_every=1, densify_grad_threshold=1e-7, max_growth=1.5)
    res = refine(scene, window, c, progress=False)
    n0 = {comp.name: len(comp) for comp in scene.components}
    for comp in res.scene.components:
        if comp.kind == "background":
            assert n0[comp.name] < len(comp) <= int(1.5 * n0[comp.name])
        else:
            assert len(comp) == n0[comp.name]
    assert [e["n_gaussians"] for e in res.log][-1] >= res.scene.num_points


def test_config_validation_and_yaml_mirror():
    with pytest.raises(ValueError, match="budget"):
        RefineConfig(seconds=None, iters=None).validate()
    for bad in ({"seconds": -1.0}, {"iters": -2}, {"views_per_iter": 0}, {"distant": "some"},
                {"lr_rgb": float("nan")}, {"max_drop_db": 0.0}, {"device": "tpu"}):
        with pytest.raises(ValueError):
            RefineConfig(**bad).validate()
    data = load_yaml(config_path("refine.yaml"))
    assert set(data) == {f.name for f in dataclasses.fields(RefineConfig)}
    assert from_dict(RefineConfig, data) == RefineConfig()


def test_no_source_views_is_a_clear_error(window, scene):
    import copy

    w = copy.copy(window)
    w.keyframes = [dataclasses.replace(k, held_out=True) for k in window.keyframes]
    with pytest.raises(ValueError, match="source"):
        refine(scene, w, cfg(iters=1), progress=False)
    assert np.isfinite(source_psnr(lambda s: scene.params_at(EXPLICIT_DECODERS, s), window))

"""The G3R loop: end to end on a synthetic window, step schedule, turbo, and that it can learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from g3r_ros.config import from_dict
from g3r_ros.initialization import InitConfig, init_scene
from g3r_ros.model import COMPONENT_KINDS, G3RModel
from g3r_ros.net import NetSetConfig
from g3r_ros.reconstruct import Cancelled, ReconstructConfig, lift_gradients, reconstruct, step_size, subsample_scene
from g3r_ros.synthetic import SynthConfig, generate_drive
from g3r_ros.views import make_chunks
from g3r_ros.window import SceneWindow
from g3r_ros.window_builder import WindowConfig, window_from_bag

TINY_NET = {"channels": [8, 16], "time_embed_dim": 16, "point_channels": 8, "head_channels": 16}
INIT = from_dict(InitConfig, {"max_points": 1500, "actor_max_points": 150, "distant": {"n_lat": 4, "n_lon": 32}})


def tiny_model(seed=0) -> G3RModel:
    torch.manual_seed(seed)
    return G3RModel(from_dict(NetSetConfig, {k: TINY_NET for k in COMPONENT_KINDS}))


@pytest.fixture(scope="module")
def window(tmp_path_factory) -> SceneWindow:
    bag = tmp_path_factory.mktemp("synth") / "bag"
    generate_drive(bag, 1234, SynthConfig(frames=8, width=64, height=40, actors=1, supersample=1), progress=False)
    return window_from_bag(bag, WindowConfig(held_out_every=4))


def test_step_size_is_a_cosine_from_max_to_min():
    vals = [step_size(t, 24, 1.0, 0.1) for t in range(24)]
    assert vals[0] == pytest.approx(1.0) and vals[-1] == pytest.approx(0.1)
    assert all(a > b for a, b in zip(vals, vals[1:]))
    assert vals[12] == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 12 / 23)))


def test_loop_runs_end_to_end_with_a_random_network(window):
    model = tiny_model()
    seen = []
    res = reconstruct(window, model, ReconstructConfig(steps=3, view_chunk=2), init_config=INIT,
                      on_step=lambda t, scene, e: seen.append(t), progress=False)
    assert len(res.log) == 3 and seen == [0, 1, 2]
    for e in res.log:
        assert {"loss_mse", "psnr_source", "render_s", "backward_s", "network_s", "elapsed_s"} <= set(e)
        assert np.isfinite(e["loss_mse"]) and e["render_s"] > 0 and e["network_s"] > 0
    params = res.params_at(window.keyframes[0].stamp)
    assert len(params) == res.scene.num_points > 0
    assert torch.isfinite(params.means).all()


def test_lifted_gradients_do_not_depend_on_chunking(window):
    """Accumulating over view chunks gives the same gradient as one big chunk (memory-bounded)."""
    torch.manual_seed(0)
    scene = init_scene(window, INIT)
    model = tiny_model()
    g1 = lift_gradients(model, scene, make_chunks(window.source_keyframes, chunk_size=1, per_stamp=True))
    g6 = lift_gradients(model, scene, make_chunks(window.source_keyframes, chunk_size=6, per_stamp=True))
    for a, b in zip(g1.grads, g6.grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert g1.sse == pytest.approx(g6.sse, rel=1e-5)
    assert any(float(g.abs().sum()) > 0 for g in g1.grads)


def test_turbo_uses_fewer_steps_and_points(window):
    torch.manual_seed(0)
    scene = init_scene(window, INIT)
    half = subsample_scene(scene, 0.5, seed=0)
    assert abs(half.num_points - scene.num_points / 2) <= len(scene.components)
    res = reconstruct(window, tiny_model(), ReconstructConfig(steps=24, turbo=True, turbo_steps=2), scene=scene,
                      progress=False)
    assert len(res.log) == 2 and res.scene.num_points == half.num_points


def test_cancel_stops_the_loop(window):
    import threading

    ev = threading.Event()
    ev.set()
    with pytest.raises(Cancelled):
        reconstruct(window, tiny_model(), ReconstructConfig(steps=2), init_config=INIT, cancel=ev, progress=False)


def test_bad_inputs_are_clear_errors(window):
    empty = SceneWindow(keyframes=[], points=np.zeros((0, 3), np.float32))
    with pytest.raises(ValueError, match="no keyframes"):
        reconstruct(empty, tiny_model(), ReconstructConfig(steps=1), progress=False)
    no_lidar = SceneWindow(keyframes=window.keyframes, points=np.zeros((0, 3), np.float32))
    with pytest.raises(ValueError, match="LiDAR"):
        reconstruct(no_lidar, tiny_model(), ReconstructConfig(steps=1), progress=False)
    with pytest.raises(ValueError, match="device"):
        ReconstructConfig(device="tpu").validate()
    with pytest.raises(ValueError):
        ReconstructConfig(steps=0).validate()


@pytest.mark.slow
def test_the_loop_learns_on_a_tiny_window(window, tmp_path):
    """A short overfit-training run on one window: afterwards 8 G3R steps lower the held-out
    L2 clearly below the init's, and clearly more than the untrained network does."""
    from g3r_ros.evaluate import evaluate_keyframes
    from g3r_ros.offline import identity_decoders
    from g3r_ros.train import TrainConfig, TrainStep

    torch.manual_seed(0)
    scene0 = init_scene(window, INIT)
    model = tiny_model()
    cfg = TrainConfig(steps=8, lr=3e-3)
    step_mod = TrainStep(model, cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    src = make_chunks(window.source_keyframes, chunk_size=6, per_stamp=True)
    tgt = make_chunks(window.target_keyframes, chunk_size=8, per_stamp=True)

    def heldout_mse(m):
        res = reconstruct(window, m, ReconstructConfig(steps=8), scene=scene0, progress=False)
        scores = evaluate_keyframes(res.params_at, window.target_keyframes, keep_renders=False)
        return float(np.mean([10 ** (-s.psnr / 10) for s in scores]))

    init_scores = evaluate_keyframes(lambda s: scene0.params_at(identity_decoders("cpu"), s),
                                     window.target_keyframes, keep_renders=False)
    init_mse = float(np.mean([10 ** (-s.psnr / 10) for s in init_scores]))
    untrained = heldout_mse(model)
    for _ in range(6):
        scene = scene0
        grads = lift_gradients(model, scene, src).grads
        for t in range(8):
            loss, new_states, _, grads = step_mod(scene, grads, t, 8, step_size(t, 8, 1.0, 0.1), src, tgt,
                                                  lift_next=t < 7)
            opt.zero_grad()
            loss.backward()
            opt.step()
            scene = scene.with_states([s.detach() for s in new_states])
    trained = heldout_mse(model)
    print(f"held-out MSE: init {init_mse:.5f}, untrained {untrained:.5f}, trained {trained:.5f}")
    assert trained < 0.85 * init_mse, (init_mse, untrained, trained)
    assert trained < untrained - 0.05 * init_mse, (init_mse, untrained, trained)

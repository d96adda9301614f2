"""G3R-Net: shapes, init, step embedding, gradients, invariances, checkpoints and config."""

from __future__ import annotations

import pytest
import torch

from g3r_ros.config import config_path, load_config
from g3r_ros.gaussians import COMPONENT_KINDS as COMPONENTS
from g3r_ros.net import (
    G3RNet,
    G3RNetSet,
    NetConfig,
    NetSetConfig,
    load_net_config,
    normalize_gradient,
    step_embedding,
)

C = 46
TINY = {"channels": (4, 6), "time_embed_dim": 8, "point_channels": 4, "head_channels": 8}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def scene(n: int = 600, seed: int = 0, dtype=torch.float32):
    """Points on a ground plane and a wall (metres) with a matching random state and grad."""
    g = torch.Generator().manual_seed(seed)
    m = n // 2
    ground = torch.rand(m, 3, generator=g) * torch.tensor([12.0, 8.0, 0.2])
    wall = torch.rand(n - m, 3, generator=g) * torch.tensor([12.0, 0.2, 3.0]) + torch.tensor([0.0, 8.0, 0.0])
    pts = torch.cat([ground, wall]).to(dtype)
    state = torch.randn(n, C, generator=g).to(dtype)
    state[:, :3] = pts
    grad = normalize_gradient(torch.randn(n, C, generator=g).to(dtype))
    return pts, state, grad


def test_output_shape_and_small_at_init():
    torch.manual_seed(0)
    net = G3RNet()
    pts, state, grad = scene()
    delta = net(pts, state, grad, 0, 24)
    assert delta.shape == (pts.shape[0], C) and delta.dtype == torch.float32
    assert bool(torch.isfinite(delta).all())
    # near-zero last layer: an untrained network barely moves the state
    assert 0 < float(delta.detach().abs().max()) < 0.05


def test_step_embedding_changes_output():
    torch.manual_seed(1)
    net = G3RNet(NetConfig(head_init_std=0.2))
    pts, state, grad = scene()
    with torch.no_grad():
        a = net(pts, state, grad, 0, 24)
        b = net(pts, state, grad, 12, 24)
        c = net(pts, state, grad, 6, 12)  # same progress as (12, 24), different t and T
    assert float((a - b).abs().max()) > 1e-3
    assert float((b - c).abs().max()) > 1e-4
    e = step_embedding(3, 24, 64)
    assert e.shape == (64,) and not torch.equal(e, step_embedding(4, 24, 64))
    assert not torch.equal(e, step_embedding(3, 12, 64))


def test_output_bounded_by_output_scale():
    """The tanh head is bounded by output_scale (gradient skip off: it adds -gain*grad on top)."""
    torch.manual_seed(2)
    net = G3RNet(NetConfig(head_init_std=50.0, output_scale=0.3, learn_output_scale=False, gradient_skip=False, **TINY))
    pts, state, grad = scene(200)
    delta = net(pts, state, grad, 1, 4).detach()
    assert float(delta.abs().max()) <= 0.3 + 1e-6
    assert float(delta.abs().max()) > 0.25  # saturated tanh reaches the scale
    assert "output_scale" not in dict(net.named_parameters())


def test_empty_input_gives_empty_delta():
    net = G3RNet(NetConfig(**TINY))
    z = torch.zeros(0, 3)
    delta = net(z, torch.zeros(0, C), torch.zeros(0, C), 0, 24)
    assert delta.shape == (0, C)
    delta.sum().backward()  # still attached to the graph


@pytest.mark.parametrize("bad", ["points", "state", "grad", "step", "total", "dtype", "nan", "batch", "voxel"])
def test_bad_inputs_raise_value_error(bad):
    net = G3RNet(NetConfig(**TINY))
    pts, state, grad = scene(50)
    args = {"points_xyz": pts, "state": state, "grad": grad, "step": 0, "total_steps": 8}
    if bad == "points":
        args["points_xyz"] = pts[:, :2]
    elif bad == "state":
        args["state"] = state[:, :45]
    elif bad == "grad":
        args["grad"] = grad[:49]
    elif bad == "step":
        args["step"] = 8
    elif bad == "total":
        args["total_steps"] = 0
    elif bad == "dtype":
        args["state"] = state.double()
    elif bad == "nan":
        args["grad"] = grad.clone()
        args["grad"][3, 5] = float("nan")
    elif bad == "batch":
        args["batch"] = torch.zeros(7, dtype=torch.int64)
    elif bad == "voxel":
        args["voxel_size"] = -1.0
    with pytest.raises(ValueError):
        net(**args)


def test_bad_config_raises_value_error():
    for kw in ({"channels": ()}, {"blocks": 0}, {"time_embed_dim": 6}, {"position_channels": (0, 2)},
               {"output_scale": 0.0}, {"kernel_size": 2}, {"voxel_size": -0.1}):
        with pytest.raises(ValueError):
            G3RNet(NetConfig(**kw))
    with pytest.raises(ValueError):
        G3RNet(NetConfig(), component="sky")


def test_gradcheck_tiny_network():
    torch.manual_seed(3)
    net = G3RNet(NetConfig(head_init_std=0.3, **TINY)).double()
    pts, state, grad = scene(24, dtype=torch.float64)
    pts = pts * 0.1  # a few voxels, several points per voxel
    state = state.requires_grad_(True)
    grad = grad.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s, g: net(pts, s, g, 2, 5), (state, grad), fast_mode=True)
    # full Jacobian on a few channels of a few points
    sub = state[:6, 10:16].detach().clone().requires_grad_(True)

    def f(x):
        s = state.detach().clone()
        s[:6, 10:16] = x
        return net(pts, s, grad.detach(), 2, 5)
    assert torch.autograd.gradcheck(f, (sub,))


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(4)
    net = G3RNet(NetConfig(head_init_std=0.1))
    pts, state, grad = scene(400)
    net(pts, state, grad, 3, 24).square().sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name


def test_points_sharing_a_voxel_get_different_updates():
    torch.manual_seed(5)
    net = G3RNet(NetConfig(head_init_std=0.3, **TINY))
    pts = torch.tensor([[0.05, 0.05, 0.05], [0.3, 0.1, 0.2], [1.0, 1.0, 1.0]])
    state = torch.randn(3, C)
    grad = torch.randn(3, C).clamp(-1, 1)
    delta = net(pts, state, grad, 0, 4).detach()
    assert float((delta[0] - delta[1]).abs().max()) > 1e-4


def test_translation_by_whole_voxels_is_invariant():
    torch.manual_seed(6)
    net = G3RNet(NetConfig(voxel_size=0.5, head_init_std=0.3))
    pts, state, grad = scene(300)
    pts = torch.round(pts * 64) / 64  # dyadic coordinates: the shift below is exact in float32
    state[:, :3] = pts
    shift = torch.tensor([500.0, -250.0, 20.0])  # whole voxels
    a = net(pts, state, grad, 1, 8)
    state2 = state.clone()
    state2[:, :3] += shift
    b = net(pts + shift, state2, grad, 1, 8)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_batched_actors_equal_separate_runs():
    torch.manual_seed(7)
    net = G3RNet(NetConfig(head_init_std=0.3, **TINY), component="actor")
    p1, s1, g1 = scene(120, seed=1)
    p2, s2, g2 = scene(80, seed=2)
    batch = torch.cat([torch.zeros(120, dtype=torch.int64), torch.ones(80, dtype=torch.int64)])
    both = net(torch.cat([p1, p2]), torch.cat([s1, s2]), torch.cat([g1, g2]), 2, 8, batch=batch)
    torch.testing.assert_close(both[:120], net(p1, s1, g1, 2, 8), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(both[120:], net(p2, s2, g2, 2, 8), rtol=1e-4, atol=1e-6)


def test_voxel_size_override_changes_voxelization():
    torch.manual_seed(8)
    net = G3RNet(NetConfig(head_init_std=0.3, **TINY), component="distant")
    assert net.voxel_size == 20.0
    pts, state, grad = scene(200)
    with torch.no_grad():
        a = net(pts * 100, state, grad, 0, 4)
        b = net(pts * 100, state, grad, 0, 4, voxel_size=40.0)
    assert float((a - b).abs().max()) > 1e-5


def test_normalize_gradient():
    g = torch.tensor([[1.0, -4.0, 0.0], [-2.0, 2.0, 0.0]])
    n = normalize_gradient(g)
    torch.testing.assert_close(n, torch.tensor([[0.5, -1.0, 0.0], [-1.0, 0.5, 0.0]]))
    assert normalize_gradient(torch.zeros(0, 3)).shape == (0, 3)


def test_tiny_network_learns_a_target_update():
    """Plumbing check: Adam on the net fits a gradient-dependent target update."""
    torch.manual_seed(9)
    net = G3RNet(NetConfig(channels=(8, 8), time_embed_dim=8, point_channels=8, head_channels=16,
                           output_scale=0.5, head_init_std=0.01))
    pts, state, grad = scene(300)
    target = torch.zeros_like(grad)
    target[:, 10:13] = -0.4 * grad[:, 10:13]  # move the colour against its gradient
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for it in range(60):
        loss = (net(pts, state, grad, it % 4, 4) - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], (losses[0], losses[-1])


def test_netset_components_size_and_config():
    cfg = load_net_config()
    assert cfg == load_config(NetSetConfig, config_path("net.yaml")).resolved()
    ns = G3RNetSet(cfg)
    assert set(ns.nets.keys()) == set(COMPONENTS)
    assert ns["background"].voxel_size == 0.4 and ns["actor"].voxel_size == 0.15
    assert ns["distant"].voxel_size == 20.0
    assert ns["actor"] is ns["actor"]  # one shared actor network
    n_bytes = sum(p.numel() * 4 for p in ns.parameters())
    assert n_bytes < 30e6
    with pytest.raises(ValueError):
        ns["sky"]
    # one NetConfig for all three: per-component default voxel sizes still apply
    shared = G3RNetSet(NetConfig(**TINY))
    assert [shared[c].voxel_size for c in COMPONENTS] == [0.4, 0.15, 20.0]
    assert shared["actor"].config.channels == (4, 6)
    with pytest.raises(ValueError, match="unknown config key"):
        from g3r_ros.config import from_dict
        from_dict(NetSetConfig, {"background": {"voxelsize": 0.3}})


def test_default_model_saves_under_30_mb(tmp_path):
    """The default networks (all three, with the decoders) in the one model file format."""
    from g3r_ros.model import G3RModel, save_model

    path = tmp_path / "default.pt"
    save_model(G3RModel(NetSetConfig()), path)
    assert path.stat().st_size < 30e6


def test_gradient_skip_is_a_learned_descent_path():
    """With the head zeroed, the update is exactly -gain * grad (per channel), and gain learns."""
    import torch

    from g3r_ros.net import G3RNet, NetConfig

    torch.manual_seed(0)
    net = G3RNet(NetConfig(channels=(8, 16), gradient_skip_init=0.05), "background")
    with torch.no_grad():
        net.out.weight.zero_()
        net.out.bias.zero_()
    pts = torch.randn(50, 3) * 2
    state = torch.randn(50, 46)
    grad = torch.rand(50, 46) * 2 - 1
    delta = net(pts, state, grad, 0, 4)
    torch.testing.assert_close(delta, -0.05 * grad)
    delta.sum().backward()
    torch.testing.assert_close(net.gradient_gain.grad, -grad.sum(0))
    off = G3RNet(NetConfig(channels=(8, 16), gradient_skip=False), "background")
    assert off.gradient_gain is None

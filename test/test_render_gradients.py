"""Gradients of the torch backend: finite differences (float64) and the dense compositor's
autograd (float32), for all five parameter groups; and CUDA torch-vs-gsplat parity."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("gsplat")
from render_reference import make_scene, reference_render

from g3r_ros.render import render
from g3r_ros.render.torch_backend import render_torch
from g3r_ros.render.types import GaussianParams

FIELDS = ("means", "quats", "log_scales", "opacity_logits", "rgb")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _params(g):
    return [getattr(g, f) for f in FIELDS]


def _weights(shape_rgb, shape_1, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(shape_rgb, generator=gen).to(dtype), torch.randn(shape_1, generator=gen).to(dtype),
            torch.randn(shape_1, generator=gen).to(dtype))


def _loss(rgb, alpha, depth, w):
    return (rgb * w[0]).sum() + (alpha * w[1]).sum() + 0.1 * (depth * w[2]).sum()


def _tiny_scene(seed):
    g, cams = make_scene(6, 14, 11, seed=seed, n_cams=2, px_size=(2.0, 4.0), logit_range=(-1.0, 2.0),
                         dtype=torch.float64)
    return g, cams


@pytest.mark.parametrize("seed", [0, 1])
def test_float64_gradients_match_finite_differences(seed):
    g, cams = _tiny_scene(seed)
    bg = torch.tensor([0.2, 0.5, 0.7], dtype=torch.float64)
    w = _weights((2, 11, 14, 3), (2, 11, 14, 1), torch.float64, seed)

    def f(*ps):
        out = render(GaussianParams(*ps), cams, backend="torch", background=bg)
        return _loss(out.rgb, out.alpha, out.depth, w)

    params = [p.clone().requires_grad_(True) for p in _params(g)]
    grads = torch.autograd.grad(f(*params), params)
    assert all(gr.abs().sum() > 0 for gr in grads), "every parameter group must receive gradient"
    h = 1e-6
    with torch.no_grad():
        for gi, (p, gr) in enumerate(zip(params, grads)):
            flat = p.view(-1)
            for i in range(flat.numel()):
                old = flat[i].item()
                flat[i] = old + h
                fp = f(*params).item()
                flat[i] = old - h
                fm = f(*params).item()
                flat[i] = old
                num = (fp - fm) / (2 * h)
                ana = gr.reshape(-1)[i].item()
                assert abs(num - ana) <= 1e-6 + 1e-5 * abs(num), (FIELDS[gi], i, num, ana)


def test_float64_gradcheck():
    g, cams = _tiny_scene(2)

    def f(*ps):
        out = render(GaussianParams(*ps), cams, backend="torch")
        return out.rgb, out.alpha, out.depth

    params = [p.clone().requires_grad_(True) for p in _params(g)]
    assert torch.autograd.gradcheck(f, params, eps=1e-6, atol=1e-6, rtol=1e-5, fast_mode=True)


def _compare_with_reference(g, cams, bg=None, seed=0, **torch_kw):
    C, H, W = len(cams), cams.height, cams.width
    w = _weights((C, H, W, 3), (C, H, W, 1), g.means.dtype, seed)
    params = [p.clone().requires_grad_(True) for p in _params(g)]
    gp = GaussianParams(*params)
    if torch_kw:
        bgc = None if bg is None else bg.expand(C, 3)
        out = render_torch(gp, cams, bgc, **torch_kw)
        if out.means2d.requires_grad:
            out.means2d.retain_grad()
    else:
        out = render(gp, cams, backend="torch", background=bg)
    ours = torch.autograd.grad(_loss(out.rgb, out.alpha, out.depth, w), params + [out.means2d])
    rgb, alpha, depth, m2d = reference_render(gp, cams, background=bg, return_means2d=True)
    ref = torch.autograd.grad(_loss(rgb, alpha, depth, w), params + [m2d])
    for name, a, b in zip(FIELDS + ("means2d",), ours, ref):
        scale = b.abs().max().item()
        assert scale > 0, name
        err = (a - b).abs().max().item()
        # float32 gradients summed in different orders: 1e-4 relative to the largest entry.
        assert err <= 1e-4 * scale + 1e-6, (name, err, scale)


def test_float32_gradients_match_dense_reference():
    g, cams = make_scene(250, 37, 29, seed=3, n_cams=2, dtype=torch.float32)
    _compare_with_reference(g, cams, bg=torch.tensor([0.3, 0.6, 0.1]))


def test_float32_gradients_with_early_termination_and_cap():
    g, cams = make_scene(300, 24, 20, seed=4, px_size=(3.0, 8.0), logit_range=(3.0, 9.0), dtype=torch.float32)
    _compare_with_reference(g, cams, seed=1)


def test_means2d_grad_is_retained_and_in_the_graph():
    g, cams = make_scene(120, 30, 20, seed=5, dtype=torch.float32)
    g.means.requires_grad_(True)
    out = render(g, cams, backend="torch")
    out.rgb.sum().backward()
    assert out.means2d.grad is not None and out.means2d.grad.shape == (1, 120, 2)
    visible = out.radii[0] > 0
    assert out.means2d.grad[0][visible].abs().sum() > 0
    assert (out.means2d.grad[0][~visible] == 0).all()
    # No grad requested: no retained grad, nothing breaks.
    with torch.no_grad():
        out2 = render(g.detach(), cams, backend="torch")
    assert not out2.means2d.requires_grad


@pytest.mark.parametrize("kw", [{"k_block": 4}, {"chunk_elements": 64 * 4}, {"tile_size": 16}])
def test_gradients_with_other_blocks_chunks_tiles_match_reference(kw):
    """Early-exit K-blocks (tiles dropping out as their pixels stop), many chunks, 16x16 tiles."""
    g, cams = make_scene(300, 24, 20, seed=13, px_size=(3.0, 8.0), logit_range=(1.0, 7.0), dtype=torch.float32)
    _compare_with_reference(g, cams, bg=torch.tensor([0.9, 0.1, 0.4]), seed=2, **kw)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
def test_cuda_torch_backend_matches_gsplat_backend():
    from g3r_ros.render.gsplat_backend import gsplat_cuda_available

    if not gsplat_cuda_available():
        pytest.skip("gsplat CUDA extension unavailable")
    g, cams = make_scene(3000, 128, 96, seed=7, n_cams=2, dtype=torch.float32)
    g = GaussianParams(*(p.cuda() for p in _params(g)))
    cams = cams.to(device="cuda")
    bg = torch.tensor([0.1, 0.2, 0.3], device="cuda")
    w = [t.cuda() for t in _weights((2, 96, 128, 3), (2, 96, 128, 1), torch.float32)]
    outs, grads = [], []
    for backend in ("torch", "gsplat"):
        params = [p.clone().requires_grad_(True) for p in _params(g)]
        out = render(GaussianParams(*params), cams, backend=backend, background=bg)
        grads.append(torch.autograd.grad(_loss(out.rgb, out.alpha, out.depth, w), params))
        outs.append(out)
    a, b = outs
    assert (a.rgb - b.rgb).abs().max() <= 1e-4
    assert (a.alpha - b.alpha).abs().max() <= 1e-4
    assert torch.equal(a.radii, b.radii)
    for name, x, y in zip(FIELDS, *grads):
        assert (x - y).abs().max() <= 1e-3 * y.abs().max() + 1e-6, name


def test_gradients_match_gsplat_torch_pipeline_with_benchmark_stand_ins():
    from g3r_ros.benchmarks.render import gsplat_reference_render, make_bench_scene

    g, cams = make_bench_scene(200, 32, 24, seed=4)
    w = _weights((1, 24, 32, 3), (1, 24, 32, 1), torch.float32)
    grads = []
    for fn in (lambda gp: render(gp, cams, backend="torch"), lambda gp: gsplat_reference_render(gp, cams)):
        params = [p.clone().requires_grad_(True) for p in _params(g)]
        out = fn(GaussianParams(*params))
        rgb, alpha, depth = (out.rgb, out.alpha, out.depth) if hasattr(out, "rgb") else out[:3]
        grads.append(torch.autograd.grad(_loss(rgb, alpha, depth, w), params))
    for name, a, b in zip(FIELDS, *grads):
        assert (a - b).abs().max() <= 1e-4 * b.abs().max() + 1e-6, name

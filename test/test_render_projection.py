"""Projection parity with gsplat 1.5.3's pure-torch reference functions (run on CPU)."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("gsplat")
from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci
from render_reference import make_scene

from g3r_ros.render.projection import opacity_extent, project_gaussians, quat_scale_to_covar
from g3r_ros.render.torch_backend import project
from g3r_ros.render.types import ALPHA_MIN, EPS2D, FAR_PLANE, NEAR_PLANE

KINDS = ["iso", "aniso", "behind", "offscreen", "random"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _gsplat(g, cams):
    covars, _ = _quat_scale_to_covar_preci(g.quats, torch.exp(g.log_scales), compute_preci=False)
    radii, means2d, depths, conics, _ = _fully_fused_projection(
        g.means, covars, cams.viewmats, cams.Ks, cams.width, cams.height, eps2d=EPS2D,
        near_plane=NEAR_PLANE, far_plane=FAR_PLANE)
    return covars, radii, means2d, depths, conics


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [0, 1, 300])
def test_projection_matches_gsplat_reference(kind, n):
    g, cams = make_scene(n, 64, 48, kind=kind, seed=n + len(kind), n_cams=2)
    covars_ref, radii_ref, m_ref, d_ref, c_ref = _gsplat(g, cams)
    covars = quat_scale_to_covar(g.quats, torch.exp(g.log_scales))
    torch.testing.assert_close(covars, covars_ref, rtol=1e-10, atol=1e-12)

    # Without opacities: gsplat's 3.33-sigma boxes, as in its torch reference.
    p = project_gaussians(g.means, covars, None, cams.viewmats, cams.Ks, cams.width, cams.height)
    ok_ref = (radii_ref > 0).all(-1)
    assert torch.equal(p.radii_xy, radii_ref.to(torch.int32))
    assert torch.equal(p.valid, ok_ref)
    torch.testing.assert_close(p.depths, d_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(p.means2d[ok_ref], m_ref[ok_ref], rtol=1e-10, atol=1e-9)
    torch.testing.assert_close(p.conics[ok_ref], c_ref[ok_ref], rtol=1e-9, atol=1e-12)
    if kind == "behind" and n > 1:
        assert (d_ref < NEAR_PLANE).any() and ok_ref.any(), "scene should mix culled and visible Gaussians"
    if kind == "offscreen" and n > 1:
        assert (~ok_ref).any() and ok_ref.any()


@pytest.mark.parametrize("kind", ["random", "aniso", "behind"])
def test_opacity_aware_radii(kind):
    """gsplat's CUDA projection: extent = min(3.33, sqrt(2 ln(255 o))), culled when o < 1/255."""
    g, cams = make_scene(400, 80, 60, kind=kind, seed=3, logit_range=(-7.0, 4.0))
    p = project(g, cams)
    _covars, radii_ref, m_ref, _, c_ref = _gsplat(g, cams)
    op = torch.sigmoid(g.opacity_logits)
    # 2D covariance (with the blur) recovered from the reference conics.
    det = c_ref[..., 0] * c_ref[..., 2] - c_ref[..., 1] ** 2
    cxx, cyy = c_ref[..., 2] / det, c_ref[..., 0] / det
    ext = torch.tensor([opacity_extent(float(o)) for o in op], dtype=torch.float64)
    rx = torch.ceil(ext * torch.sqrt(cxx))
    ry = torch.ceil(ext * torch.sqrt(cyy))
    W, H = cams.width, cams.height
    inside = (m_ref[..., 0] + rx > 0) & (m_ref[..., 0] - rx < W) & (m_ref[..., 1] + ry > 0) & (m_ref[..., 1] - ry < H)
    expect_valid = (radii_ref > 0).all(-1) & (op >= ALPHA_MIN) & inside
    expect_valid &= (ext > 0)
    assert torch.equal(p.valid, expect_valid)
    assert (op < ALPHA_MIN).any() and expect_valid.any()
    v = expect_valid
    assert torch.equal(p.radii_xy[v][:, 0], rx[v].to(torch.int32))
    assert torch.equal(p.radii_xy[v][:, 1], ry[v].to(torch.int32))
    assert (p.radii_xy[~v] == 0).all()


def test_opacity_extent_formula():
    assert opacity_extent(1.0) == pytest.approx(math.sqrt(2 * math.log(255.0)))
    assert opacity_extent(1.0) < 3.33
    assert opacity_extent(0.5 / 255.0) == 0.0
    assert opacity_extent(10.0 / 255.0) == pytest.approx(math.sqrt(2 * math.log(10.0)))


def test_projection_gradients_match_gsplat_reference():
    g, cams = make_scene(60, 40, 30, kind="random", seed=7, n_cams=2)
    params = [g.means, g.quats, g.log_scales]
    for t in params:
        t.requires_grad_(True)
    p = project(g, cams)
    _, radii_ref, m_ref, d_ref, c_ref = _gsplat(g, cams)
    ok = p.valid & (radii_ref > 0).all(-1)
    wm = torch.randn(m_ref.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    wc = torch.randn(c_ref.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))

    def loss(m, c, d):
        return (m[ok] * wm[ok]).sum() + (c[ok] * wc[ok]).sum() + d[ok].sum()

    ours = torch.autograd.grad(loss(p.means2d, p.conics, p.depths), params)
    ref = torch.autograd.grad(loss(m_ref, c_ref, d_ref), params)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_culled_entries_have_finite_zero_gradients():
    g, cams = make_scene(50, 32, 24, kind="behind", seed=11)
    g.means.requires_grad_(True)
    p = project(g, cams)
    (p.means2d.sum() * 0 + p.means2d[p.valid].sum()).backward()
    assert torch.isfinite(g.means.grad).all()
    assert (g.means.grad[~p.valid[0]] == 0).all()

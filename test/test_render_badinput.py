"""Bad input to ``render`` raises a clear ValueError, never a crash deep in a kernel."""

from __future__ import annotations

import pytest
import torch

from g3r_ros.geometry import CameraBatch
from g3r_ros.render import render
from g3r_ros.render.types import GaussianParams

FIELDS = ("means", "quats", "log_scales", "opacity_logits", "rgb")


def _scene(n=5):
    g = GaussianParams(
        means=torch.tensor([[0.0, 0.0, 5.0]]).repeat(n, 1) + 0.1 * torch.arange(n, dtype=torch.float32)[:, None],
        quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1),
        log_scales=torch.full((n, 3), -2.0),
        opacity_logits=torch.zeros(n),
        rgb=torch.full((n, 3), 0.5),
    )
    K = torch.tensor([[20.0, 0.0, 8.0], [0.0, 20.0, 6.0], [0.0, 0.0, 1.0]])
    cams = CameraBatch(K[None], torch.eye(4)[None], 16, 12)
    return g, cams


def _replace(g, field, value):
    parts = {f: getattr(g, f) for f in FIELDS}
    parts[field] = value
    return GaussianParams(**parts)


def test_valid_input_renders():
    g, cams = _scene()
    out = render(g, cams, backend="torch")
    assert out.rgb.shape == (1, 12, 16, 3) and out.alpha.max() > 0


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_parameters(field, bad):
    g, cams = _scene()
    t = getattr(g, field).clone()
    t.view(-1)[2] = bad
    with pytest.raises(ValueError, match=f"{field}.*NaN or Inf"):
        render(_replace(g, field, t), cams, backend="torch")


@pytest.mark.parametrize("field,shape", [("means", (5, 2)), ("quats", (5, 3)), ("log_scales", (4, 3)),
                                         ("opacity_logits", (5, 1)), ("rgb", (6, 3)), ("means", (5,))])
def test_mismatched_shapes(field, shape):
    g, cams = _scene()
    with pytest.raises(ValueError, match=field):
        render(_replace(g, field, torch.zeros(shape)), cams, backend="torch")


def test_non_float_and_mixed_dtypes():
    g, cams = _scene()
    with pytest.raises(ValueError, match="floating point"):
        render(_replace(g, "rgb", torch.ones(5, 3, dtype=torch.int64)), cams)
    with pytest.raises(ValueError, match="rgb"):
        render(_replace(g, "rgb", g.rgb.double()), cams)
    with pytest.raises(ValueError, match="GaussianParams"):
        render((g.means, g.quats), cams)


@pytest.mark.parametrize("w,h", [(0, 12), (16, 0), (0, 0), (-3, 12), (16.0, 12)])
def test_bad_image_size(w, h):
    g, cams = _scene()
    with pytest.raises(ValueError, match="width|height"):
        render(g, CameraBatch(cams.Ks, cams.viewmats, w, h), backend="torch")


def test_empty_camera_batch():
    g, _ = _scene()
    with pytest.raises(ValueError, match="empty camera batch"):
        render(g, CameraBatch(torch.zeros(0, 3, 3), torch.zeros(0, 4, 4), 16, 12), backend="torch")


def test_bad_cameras():
    g, cams = _scene()
    with pytest.raises(ValueError, match="Ks"):
        render(g, CameraBatch(cams.Ks[0], cams.viewmats, 16, 12))
    with pytest.raises(ValueError, match="viewmats"):
        render(g, CameraBatch(cams.Ks, cams.viewmats[:, :3], 16, 12))
    with pytest.raises(ValueError, match="2 Ks but 1 viewmats"):
        render(g, CameraBatch(cams.Ks.repeat(2, 1, 1), cams.viewmats, 16, 12))
    vm = cams.viewmats.clone()
    vm[0, 0, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        render(g, CameraBatch(cams.Ks, vm, 16, 12))
    K = cams.Ks.clone()
    K[0, 0, 0] = 0.0
    with pytest.raises(ValueError, match="focal"):
        render(g, CameraBatch(K, cams.viewmats, 16, 12))
    with pytest.raises(ValueError, match="CameraBatch"):
        render(g, [cams])


def test_bad_background_and_backend():
    g, cams = _scene()
    with pytest.raises(ValueError, match="background"):
        render(g, cams, background=torch.zeros(4))
    with pytest.raises(ValueError, match="background"):
        render(g, cams, background=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="background"):
        render(g, cams, background=torch.tensor([0.0, float("nan"), 0.0]))
    with pytest.raises(ValueError, match="unknown backend"):
        render(g, cams, backend="vulkan")
    with pytest.raises(ValueError, match="CUDA"):
        render(g, cams, backend="gsplat")


def test_zero_gaussians_is_valid():
    g, cams = _scene(0)
    out = render(g, cams, background=torch.tensor([1.0, 0.0, 0.0]))
    assert (out.rgb[..., 0] == 1).all() and (out.alpha == 0).all()


def test_degenerate_but_finite_gaussians_do_not_crash():
    """Zero quaternions, huge/tiny scales, Gaussians on the camera plane: finite output."""
    g, cams = _scene(6)
    g.quats[0] = 0.0
    g.log_scales[1] = 30.0
    g.log_scales[2] = -60.0
    g.means[3] = torch.tensor([0.0, 0.0, 0.0])
    g.means[4] = torch.tensor([1.0, 0.0, 0.0])
    g.opacity_logits[5] = 80.0
    for p in (g.means, g.log_scales, g.opacity_logits):
        p.requires_grad_(True)
    out = render(g, cams, backend="torch")
    assert torch.isfinite(out.rgb).all() and torch.isfinite(out.alpha).all() and torch.isfinite(out.depth).all()
    (out.rgb.sum() + out.depth.sum()).backward()
    for p in (g.means, g.log_scales, g.opacity_logits):
        assert torch.isfinite(p.grad).all()


def test_backward_works_when_nothing_is_visible():
    g, cams = _scene(4)
    g.means[:, 2] = -5.0  # all behind the camera
    for p in (g.means, g.rgb, g.opacity_logits):
        p.requires_grad_(True)
    out = render(g, cams, backend="torch", background=torch.tensor([0.1, 0.2, 0.3]))
    assert (out.alpha == 0).all() and (out.radii == 0).all()
    (out.rgb.sum() + out.depth.sum()).backward()
    assert (g.means.grad == 0).all() and (g.rgb.grad == 0).all()
    assert out.means2d.grad is not None and (out.means2d.grad == 0).all()


def test_backward_works_with_zero_gaussians():
    g, cams = _scene(0)
    for f in FIELDS:
        getattr(g, f).requires_grad_(True)
    out = render(g, cams, backend="torch")
    out.rgb.sum().backward()
    assert g.means.grad is not None and g.means.grad.shape == (0, 3)

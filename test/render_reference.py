"""Dense brute-force reference renderer for the renderer tests (not part of the package).

Every pixel is tested against every Gaussian, in depth order, one Gaussian at a time,
replaying gsplat 1.5.3's CUDA per-pixel loop literally (no tiles, no boxes: outside the
opacity-aware box alpha < 1/255 anyway). Projection uses gsplat's own pure-torch reference
functions, so this module shares no code with ``g3r_ros.render``. Differentiable through
autograd; slow (a Python loop over Gaussians), so for small scenes only.
"""

from __future__ import annotations

import torch
from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci

from g3r_ros.render.types import ALPHA_MAX, ALPHA_MIN, EPS2D, FAR_PLANE, NEAR_PLANE, TRANSMITTANCE_MIN


def reference_project(means, quats, log_scales, viewmats, Ks, width, height):
    """gsplat's pure-torch projection. Returns radii (C,N,2) int, means2d (C,N,2), depths (C,N),
    conics (C,N,3) (3.33-sigma radii, no opacity culling: that is the reference's behaviour)."""
    covars, _ = _quat_scale_to_covar_preci(quats, torch.exp(log_scales), compute_preci=False)
    radii, means2d, depths, conics, _ = _fully_fused_projection(
        means, covars, viewmats, Ks, width, height, eps2d=EPS2D, near_plane=NEAR_PLANE, far_plane=FAR_PLANE)
    return radii, means2d, depths, conics


def reference_render(gaussians, cameras, background=None, return_means2d=False):
    """Brute-force render. gaussians: GaussianParams; cameras: CameraBatch (same dtype/device).

    background: None, (3,) or (C,3). Returns (rgb (C,H,W,3), alpha (C,H,W,1), depth (C,H,W,1) "ED"),
    plus gsplat's projected means2d (C,N,2) (with ``retain_grad()`` when it requires grad) if
    ``return_means2d``.
    """
    W, H = cameras.width, cameras.height
    Ks, vm = cameras.Ks.to(gaussians.means), cameras.viewmats.to(gaussians.means)
    C = Ks.shape[0]
    radii, means2d, depths, conics = reference_project(gaussians.means, gaussians.quats, gaussians.log_scales,
                                                       vm, Ks, W, H)
    if means2d.requires_grad:
        means2d.retain_grad()
    opac = torch.sigmoid(gaussians.opacity_logits)
    dtype, dev = gaussians.means.dtype, gaussians.means.device
    ys, xs = torch.meshgrid(torch.arange(H, dtype=dtype, device=dev) + 0.5,
                            torch.arange(W, dtype=dtype, device=dev) + 0.5, indexing="ij")
    px, py = xs.reshape(-1), ys.reshape(-1)
    rgbs, alphas, dep = [], [], []
    for c in range(C):
        ok = (radii[c] > 0).all(-1) & (opac >= ALPHA_MIN)
        ids = ok.nonzero().squeeze(1)
        ids = ids[torch.argsort(depths[c, ids].detach(), stable=True)]
        T = torch.ones(H * W, dtype=dtype, device=dev)
        done = torch.zeros(H * W, dtype=torch.bool, device=dev)
        acc = torch.zeros(H * W, 3, dtype=dtype, device=dev)
        accd = torch.zeros(H * W, dtype=dtype, device=dev)
        for g in ids.tolist():
            a, b, cc = conics[c, g]
            dx = means2d[c, g, 0] - px
            dy = means2d[c, g, 1] - py
            sigma = 0.5 * (a * dx * dx + cc * dy * dy) + b * dx * dy
            alpha = torch.clamp_max(opac[g] * torch.exp(-sigma), ALPHA_MAX)
            use = (sigma >= 0) & (alpha >= ALPHA_MIN) & ~done
            next_T = T * (1.0 - alpha)
            stop = use & (next_T <= TRANSMITTANCE_MIN)
            done = done | stop
            use = use & ~stop
            w = torch.where(use, alpha * T, torch.zeros_like(alpha))
            acc = acc + w[:, None] * gaussians.rgb[g]
            accd = accd + w * depths[c, g]
            T = torch.where(use, next_T, T)
        alpha_img = 1.0 - T
        col = acc
        if background is not None:
            bg = torch.as_tensor(background, dtype=dtype, device=dev)
            bg = bg if bg.dim() == 1 else bg[c]
            col = col + T[:, None] * bg
        rgbs.append(col.reshape(H, W, 3))
        alphas.append(alpha_img.reshape(H, W, 1))
        dep.append((accd / alpha_img.clamp_min(1e-10)).reshape(H, W, 1))
    out = (torch.stack(rgbs), torch.stack(alphas), torch.stack(dep))
    return out + (means2d,) if return_means2d else out


def make_scene(n: int, width: int, height: int, *, kind: str = "random", seed: int = 0, n_cams: int = 1,
               dtype=torch.float64, fov_scale: float = 1.0, px_size: tuple = (0.7, 4.0),
               logit_range: tuple = (-2.0, 3.0)):
    """A random scene in front of camera 0 (optical frame = world), plus extra cameras
    slightly translated/rotated. Returns (GaussianParams, CameraBatch), float64 by default.

    kind: "random" (mixed sizes), "iso" (isotropic), "aniso" (scale ratios up to ~100),
    "behind" (a third of the Gaussians behind the camera or near z=0),
    "offscreen" (centres spread to 3x the field of view).
    """
    import math

    from g3r_ros.geometry import CameraBatch
    from g3r_ros.render.types import GaussianParams

    gen = torch.Generator().manual_seed(seed)

    def rand(*s):
        return torch.rand(*s, generator=gen, dtype=torch.float64)

    f = 0.9 * width
    K = torch.tensor([[f, 0.0, width / 2.0 + 0.3], [0.0, 0.95 * f, height / 2.0 - 0.2], [0.0, 0.0, 1.0]],
                     dtype=torch.float64)
    z = 2.0 + 10.0 * rand(n)
    spread = 3.0 if kind == "offscreen" else 1.1 * fov_scale
    x = (rand(n) - 0.5) * spread * width / f * z
    y = (rand(n) - 0.5) * spread * height / f * z
    if kind == "behind":
        k = n // 3
        z[:k] = -3.0 + 3.2 * rand(k)  # in (-3, 0.2): behind, around the near plane, just in front
    means = torch.stack([x, y, z], 1)
    quats = torch.randn(n, 4, generator=gen, dtype=torch.float64)
    lo, hi = math.log(px_size[0]), math.log(px_size[1])
    px = torch.exp(lo + rand(n) * (hi - lo))
    base = torch.log(px * z.abs().clamp_min(0.5) / f)[:, None]
    if kind == "iso":
        log_scales = base.expand(n, 3).clone()
        quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=torch.float64).expand(n, 4).clone()
    elif kind == "aniso":
        log_scales = base + torch.stack([torch.full((n,), 1.5, dtype=torch.float64),
                                         torch.full((n,), -3.0, dtype=torch.float64),
                                         torch.zeros(n, dtype=torch.float64)], 1)
    else:
        log_scales = base + 0.35 * torch.randn(n, 3, generator=gen, dtype=torch.float64)
    logits = logit_range[0] + (logit_range[1] - logit_range[0]) * rand(n)
    rgb = rand(n, 3)
    g = GaussianParams(*(t.to(dtype).contiguous() for t in (means, quats, log_scales, logits, rgb)))
    viewmats = [torch.eye(4, dtype=torch.float64)]
    for i in range(1, n_cams):
        a = 0.05 * i
        R = torch.tensor([[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]],
                         dtype=torch.float64)
        T = torch.eye(4, dtype=torch.float64)
        T[:3, :3] = R
        T[:3, 3] = torch.tensor([0.2 * i, -0.05 * i, 0.1 * i], dtype=torch.float64)
        viewmats.append(T)
    cams = CameraBatch(K.expand(n_cams, 3, 3).to(dtype).contiguous(), torch.stack(viewmats).to(dtype), width,
                       height)
    return g, cams

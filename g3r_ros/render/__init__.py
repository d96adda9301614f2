"""Differentiable Gaussian rendering: one entry point, two backends.

``render(gaussians, cameras, *, backend="auto", background=None, render_depth=True)``
returns a :class:`RenderOutput` with rgb (C,H,W,3), alpha (C,H,W,1) and gsplat's "ED"
expected depth (C,H,W,1), plus the projected means2d (C,N,2) and radii (C,N).

Backends (semantics of gsplat 1.5.3 ``rasterization(packed=False, rasterize_mode="classic",
render_mode="RGB+ED")``, see docs/RENDERER.md):

- ``"torch"``: pure PyTorch on any device, differentiable w.r.t. every Gaussian parameter;
- ``"gsplat"``: gsplat's CUDA kernels (CUDA tensors only);
- ``"auto"``: gsplat when the tensors are on CUDA and gsplat's extension is available,
  torch otherwise. The choice is logged once per (device type, choice).
"""

from __future__ import annotations

import logging

import torch

from ..geometry import CameraBatch
from .types import (
    ALPHA_MAX,
    ALPHA_MIN,
    EPS2D,
    FAR_PLANE,
    NEAR_PLANE,
    TRANSMITTANCE_MIN,
    GaussianParams,
    RenderOutput,
)

__all__ = [
    "ALPHA_MAX",
    "ALPHA_MIN",
    "BACKENDS",
    "EPS2D",
    "FAR_PLANE",
    "NEAR_PLANE",
    "TRANSMITTANCE_MIN",
    "GaussianParams",
    "RenderOutput",
    "render",
]

log = logging.getLogger(__name__)
BACKENDS = ("auto", "torch", "gsplat")
_logged_choices: set = set()

_PARAM_SHAPES = {"means": (3,), "quats": (4,), "log_scales": (3,), "opacity_logits": (), "rgb": (3,)}


def _check_gaussians(g: GaussianParams) -> None:
    if not isinstance(g, GaussianParams):
        raise ValueError(f"gaussians must be a GaussianParams, got {type(g).__name__}")  # noqa: TRY004
    N = None
    ref = None
    for name, tail in _PARAM_SHAPES.items():
        t = getattr(g, name)
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"gaussians.{name} must be a torch.Tensor, got {type(t).__name__}")  # noqa: TRY004
        if t.dim() != 1 + len(tail) or tuple(t.shape[1:]) != tail:
            raise ValueError(f"gaussians.{name} must have shape (N,{','.join(map(str, tail))}), "
                             f"got {tuple(t.shape)}")
        if not t.is_floating_point():
            raise ValueError(f"gaussians.{name} must be floating point, got {t.dtype}")
        if N is None:
            N, ref = t.shape[0], t
        elif t.shape[0] != N:
            raise ValueError(f"gaussians.{name} has {t.shape[0]} rows but means has {N}")
        elif t.dtype != ref.dtype or t.device != ref.device:
            raise ValueError(f"gaussians.{name} is {t.dtype} on {t.device}, means is {ref.dtype} on {ref.device}")
        if t.numel() and not bool(torch.isfinite(t.detach()).all()):
            raise ValueError(f"gaussians.{name} contains NaN or Inf")


def _check_cameras(cameras: CameraBatch) -> None:
    if not isinstance(cameras, CameraBatch):
        raise ValueError(f"cameras must be a CameraBatch, got {type(cameras).__name__}")  # noqa: TRY004
    Ks, vm = cameras.Ks, cameras.viewmats
    if not isinstance(Ks, torch.Tensor) or not isinstance(vm, torch.Tensor):
        raise ValueError("cameras.Ks and cameras.viewmats must be torch tensors")  # noqa: TRY004
    if Ks.dim() != 3 or tuple(Ks.shape[1:]) != (3, 3):
        raise ValueError(f"cameras.Ks must have shape (C,3,3), got {tuple(Ks.shape)}")
    if vm.dim() != 3 or tuple(vm.shape[1:]) != (4, 4):
        raise ValueError(f"cameras.viewmats must have shape (C,4,4), got {tuple(vm.shape)}")
    if Ks.shape[0] == 0:
        raise ValueError("empty camera batch: need at least one camera")
    if vm.shape[0] != Ks.shape[0]:
        raise ValueError(f"cameras: {Ks.shape[0]} Ks but {vm.shape[0]} viewmats")
    for name in ("width", "height"):
        v = getattr(cameras, name)
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"cameras.{name} must be a positive int, got {v!r}")
    if not (bool(torch.isfinite(Ks).all()) and bool(torch.isfinite(vm).all())):
        raise ValueError("cameras contain NaN or Inf")
    if not (bool((Ks[:, 0, 0] > 0).all()) and bool((Ks[:, 1, 1] > 0).all())):
        raise ValueError("cameras: focal lengths Ks[:,0,0] and Ks[:,1,1] must be positive")


def _prepare_background(background, C: int, like: torch.Tensor) -> torch.Tensor | None:
    if background is None:
        return None
    bg = torch.as_tensor(background, dtype=like.dtype, device=like.device)
    if bg.shape == (3,):
        bg = bg.expand(C, 3)
    if tuple(bg.shape) != (C, 3):
        raise ValueError(f"background must have shape (3,) or (C,3) with C={C}, got {tuple(bg.shape)}")
    if not bool(torch.isfinite(bg).all()):
        raise ValueError("background contains NaN or Inf")
    return bg


def _choose_backend(backend: str, device: torch.device, dtype: torch.dtype) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    if backend == "torch":
        return "torch"
    from .gsplat_backend import gsplat_cuda_available

    if backend == "gsplat":
        if device.type != "cuda":
            raise ValueError(f"backend 'gsplat' needs CUDA tensors, got device {device}")
        if not gsplat_cuda_available():
            raise ValueError("backend 'gsplat' requested but gsplat's CUDA extension is not available")
        if dtype != torch.float32:
            raise ValueError(f"backend 'gsplat' needs float32 tensors, got {dtype}")
        return "gsplat"
    choice = "gsplat" if device.type == "cuda" and dtype == torch.float32 and gsplat_cuda_available() else "torch"
    key = (device.type, choice)
    if key not in _logged_choices:
        _logged_choices.add(key)
        log.info("render backend 'auto' on %s: using %s", device.type, choice)
    return choice


def _empty_render(C: int, H: int, W: int, bg, render_depth: bool, like: torch.Tensor) -> RenderOutput:
    """N = 0: background everywhere, alpha 0, depth 0."""
    kw = {"dtype": like.dtype, "device": like.device}
    rgb = torch.zeros(C, H, W, 3, **kw)
    if bg is not None:
        rgb = rgb + bg[:, None, None, :]
    return RenderOutput(rgb=rgb, alpha=torch.zeros(C, H, W, 1, **kw),
                        depth=torch.zeros(C, H, W, 1, **kw) if render_depth else None,
                        means2d=torch.zeros(C, 0, 2, **kw), radii=torch.zeros(C, 0, dtype=torch.int32,
                                                                                device=like.device))


def render(gaussians: GaussianParams, cameras: CameraBatch, *, backend: str = "auto", background=None,
           render_depth: bool = True) -> RenderOutput:
    """Render N Gaussians into C cameras.

    gaussians: means (N,3) world, quats (N,4) w,x,y,z, log_scales (N,3), opacity_logits (N,),
    rgb (N,3); N = 0 renders the background. cameras: a :class:`CameraBatch` (C >= 1, viewmats
    world-to-camera); it is cast to the Gaussians' dtype and device. background: None (black),
    (3,) or (C,3). Raises ``ValueError`` on NaN/Inf, bad shapes, empty batches or zero-size images.

    When any Gaussian parameter requires grad, ``out.means2d.retain_grad()`` has been called,
    so ``out.means2d.grad`` holds the screen-space positional gradient after ``backward()``.
    """
    _check_gaussians(gaussians)
    _check_cameras(cameras)
    like = gaussians.means
    cameras = cameras.to(device=like.device, dtype=like.dtype)
    bg = _prepare_background(background, len(cameras), like)
    choice = _choose_backend(backend, like.device, like.dtype)
    if len(gaussians) == 0:
        out = _empty_render(len(cameras), cameras.height, cameras.width, bg, render_depth, like)
        params = [getattr(gaussians, f) for f in _PARAM_SHAPES]
        if torch.is_grad_enabled() and any(p.requires_grad for p in params):
            # Keep the (empty) parameters in the graph so that backward() works (zero-size grads).
            zero = sum(p.sum() for p in params) * 0.0
            out.rgb = out.rgb + zero
            out.alpha = out.alpha + zero
            out.depth = out.depth + zero if out.depth is not None else None
        return out
    if choice == "gsplat":
        from .gsplat_backend import render_gsplat

        return render_gsplat(gaussians, cameras, bg, render_depth)
    from .torch_backend import render_torch

    out = render_torch(gaussians, cameras, bg, render_depth)
    if out.means2d is not None and out.means2d.requires_grad:
        out.means2d.retain_grad()
    return out

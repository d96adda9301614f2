"""Depth images of a Gaussian map: metres along the optical axis, NaN where nothing was seen.

Depth is the *surface* depth of :mod:`g3r_ros.surface` (where each pixel's ray meets the
planes the Gaussians lie on, as an opacity-weighted mean of inverse distances), along the
optical axis (camera z). Where the accumulated opacity alpha is small the value is a few
faint Gaussians', not a surface, so :func:`depth_image` replaces it with NaN below
``min_opacity`` (REP-117's reading: NaN = no valid measurement; REP-118's depth-image
layout: ``32FC1`` in metres). The renderer's own "ED" depth (mean *centre* depth) is 11-13 %
off the real LiDAR on the KITTI benchmark window, the surface depth ~3 % (docs/ROS.md).

Files (:func:`write_depth`, chosen by the suffix):

- ``.npy`` / ``.tif`` / ``.tiff``: float32 metres, NaN where invalid (the ``32FC1`` convention);
- ``.png``: 16-bit unsigned millimetres, 0 where invalid or beyond 65.535 m (the older
  ``g3r render --depth-out`` format, kept for tools that read 16-bit depth PNGs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .geometry import CameraBatch, PinholeCamera
from .render import render

DEFAULT_MIN_OPACITY = 0.5
DEPTH_SUFFIXES = (".npy", ".tif", ".tiff", ".png")
MM_MAX = 65535


def depth_image(depth, alpha, min_opacity: float = DEFAULT_MIN_OPACITY) -> np.ndarray:
    """Expected depth (H,W) or (H,W,1) metres and accumulated opacity alike → (H,W) float32 metres,
    NaN where ``alpha < min_opacity`` or the depth is not finite and positive."""
    if not 0.0 <= float(min_opacity) <= 1.0:
        raise ValueError(f"min_opacity must be in [0, 1], got {min_opacity}")
    d = _numpy(depth).astype(np.float32, copy=False)
    a = _numpy(alpha)
    d = d.reshape(d.shape[:2]) if d.ndim == 3 else d
    a = a.reshape(a.shape[:2]) if a.ndim == 3 else a
    if d.shape != a.shape or d.ndim != 2:
        raise ValueError(f"depth and alpha must be (H,W) images of one size, got {d.shape} and {a.shape}")
    out = d.copy()
    out[~((a >= min_opacity) & np.isfinite(d) & (d > 0))] = np.nan
    return out


def _numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def depth_to_millimetres(depth_m: np.ndarray) -> np.ndarray:
    """(H,W) float metres (NaN = invalid) → (H,W) uint16 millimetres, 0 where invalid or > 65.535 m."""
    d = np.asarray(depth_m, dtype=np.float64)
    mm = np.round(np.nan_to_num(d, nan=0.0) * 1000.0)
    mm[~np.isfinite(d) | (mm > MM_MAX) | (mm < 0)] = 0
    return mm.astype(np.uint16)


def write_depth(path, depth_m: np.ndarray) -> Path:
    """Write a depth image atomically; the suffix picks the format (module doc). Returns the path."""
    from PIL import Image

    from .atomic import atomic_path, atomic_write_with

    path = Path(path)
    suffix = path.suffix.lower()
    d = np.asarray(depth_m, dtype=np.float32)
    if d.ndim != 2:
        raise ValueError(f"a depth image is (H,W), got shape {d.shape}")
    if suffix == ".npy":
        return atomic_write_with(path, lambda f: np.save(f, d))
    if suffix in (".tif", ".tiff"):
        with atomic_path(path) as tmp:
            Image.fromarray(np.ascontiguousarray(d)).save(tmp, format="TIFF")
        return path
    if suffix == ".png":
        with atomic_path(path) as tmp:
            Image.fromarray(depth_to_millimetres(d)).save(tmp, format="PNG")
        return path
    raise ValueError(f"depth file {path}: unknown suffix {path.suffix!r}; use one of {DEPTH_SUFFIXES}")


def read_depth(path) -> np.ndarray:
    """Read a file of :func:`write_depth` back → (H,W) float32 metres, NaN where invalid."""
    from PIL import Image

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return np.load(path, allow_pickle=False).astype(np.float32)
    img = np.asarray(Image.open(path))
    if suffix == ".png":
        out = img.astype(np.float32) / 1000.0
        out[img == 0] = np.nan
        return out
    return img.astype(np.float32)


@dataclass
class RGBD:
    """One rendered view: rgb (H,W,3) float32 in [0,1]; depth (H,W) float32 metres along the optical
    axis, NaN where invalid (None when not rendered); alpha (H,W) float32 accumulated opacity."""

    rgb: np.ndarray
    depth: np.ndarray | None
    alpha: np.ndarray


@torch.no_grad()
def render_rgbd(map_like, cameras: list[PinholeCamera], *, min_opacity: float = DEFAULT_MIN_OPACITY,
                depth: bool = True, background=None, backend: str = "auto") -> list[RGBD]:
    """Colour (one batched render per image size) and, with ``depth``, the surface depth of
    every camera (``g3r_ros.surface.surface_depth``, one render per camera: the plane features
    depend on the camera centre), NaN where the opacity is below ``min_opacity``.

    map_like: a ``SurfaceMap`` (prepare it once per map: its normals take ~1 s per 70k
    Gaussians), or ``GaussianParams`` (prepared here when ``depth``)."""
    from .surface import SurfaceMap, as_surface_map, surface_depth

    smap = as_surface_map(map_like) if depth else None
    params = map_like.params if isinstance(map_like, SurfaceMap) else (smap.params if smap else map_like)
    out: list[RGBD | None] = [None] * len(cameras)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, c in enumerate(cameras):
        groups.setdefault((c.width, c.height), []).append(i)
    for idx in groups.values():
        batch = CameraBatch.from_cameras([cameras[i] for i in idx], device=params.means.device)
        r = render(params, batch, background=background, backend=backend, render_depth=False)
        rgb = r.rgb.clamp(0.0, 1.0).cpu().numpy()
        alpha = r.alpha[..., 0].cpu().numpy()
        for k, i in enumerate(idx):
            d = None
            if smap is not None:
                z, a = surface_depth(smap, cameras[i], backend)
                d = depth_image(z, a, min_opacity)
            out[i] = RGBD(rgb[k], d, alpha[k])
    return out  # type: ignore[return-value]

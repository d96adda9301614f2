"""Surface depth of a Gaussian map: where a ray meets the surface the Gaussians sample (ROS-free).

The renderer's own depth (gsplat's "ED") averages the Gaussians' *centre* depths. On a
surface seen at a grazing angle (a road ahead) the Gaussians that cover a pixel have centres
spread far along the ray and the nearest ones weigh most, so ED comes out short: on the
KITTI benchmark window, 11-13 % median error against the real LiDAR. This module casts rays
against the *planes* the Gaussians lie on instead:

- each Gaussian gets a surface normal n from the PCA of its ``normal_k`` nearest centres
  (:func:`surface_map`); where the neighbourhood is not planar (foliage, poles, thin
  structures) the plane faces the ray origin instead;
- for rays o + s r from a common origin o, the plane through centre mu is hit at
  1/s = f . r with f = n / (n . (mu - o)): inverse distance is *linear* in the per-Gaussian
  vector f. The renderer composites f like a colour; dividing by the accumulated opacity
  gives the expected inverse distance along any ray through a pixel. On a surface of
  coplanar Gaussians every term is the exact hit, whatever the compositing weights.

Why the centres' neighbourhood and not each Gaussian's own shortest axis: G3R's photometric
updates tilt thin discs freely (a tilted road disc changes the image little), and a tilted
disc's plane is met far from its centre at grazing angles. Measured on the KITTI window
(frame 5, real LiDAR returns on the road ahead): own axes -0.51 m median range error,
neighbour PCA +0.04 m (docs/ROS.md, "Sensor simulation").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .geometry import CameraBatch, PinholeCamera
from .render import render
from .render.types import GaussianParams

NORMAL_K = 16
MIN_PLANARITY = 0.3
MIN_COS = 0.05  # a plane seen this close to edge-on from the ray origin faces the origin instead
_FIELDS = ("means", "quats", "log_scales", "opacity_logits", "rgb")


@dataclass
class SurfaceMap:
    """Gaussians (world) with a unit surface normal (N,3) and a ``planar`` flag (N,) each."""

    params: GaussianParams
    normals: torch.Tensor
    planar: torch.Tensor

    def __len__(self) -> int:
        return len(self.params)

    def subset(self, keep: torch.Tensor) -> SurfaceMap:
        return SurfaceMap(GaussianParams(*(getattr(self.params, f)[keep] for f in _FIELDS)), self.normals[keep],
                          self.planar[keep])

    def at(self, params: GaussianParams) -> SurfaceMap:
        """The same map with ``params`` from another stamp (actors moved): Gaussians whose centre
        moved keep no plane (their normal was estimated where they were)."""
        if len(params) != len(self.params):
            raise ValueError(f"params have {len(params)} Gaussians, the surface map {len(self.params)}")
        same = ((params.means - self.params.means).abs() <= 1e-4).all(-1)
        return SurfaceMap(params, self.normals, self.planar & same)


def surface_map(params: GaussianParams, normal_k: int = NORMAL_K, min_planarity: float = MIN_PLANARITY) -> SurfaceMap:
    """Normals from the PCA of each centre's ``normal_k`` nearest centres; planar where the
    planarity (1 - l3/l2) is at least ``min_planarity`` (module doc)."""
    from .knn import surface_normals

    means = params.means.detach()
    normals, planarity = surface_normals(means.cpu().double().numpy(), normal_k)
    return SurfaceMap(params, torch.as_tensor(normals, dtype=means.dtype, device=means.device),
                      torch.as_tensor(planarity >= min_planarity, device=means.device))


def as_surface_map(map_like, stamp: float | None = None) -> SurfaceMap:
    """A :class:`SurfaceMap` as is; ``GaussianParams`` (world), or anything with ``params_at(stamp)``
    (a reconstruction's output: actors placed at ``stamp``), prepared with :func:`surface_map`."""
    if isinstance(map_like, SurfaceMap):
        return map_like
    if isinstance(map_like, GaussianParams):
        return surface_map(map_like)
    if callable(getattr(map_like, "params_at", None)):
        return surface_map(map_like.params_at(stamp))
    raise ValueError(f"expected a SurfaceMap, GaussianParams or an object with params_at(stamp), got "
                     f"{type(map_like).__name__}")


def within(smap: SurfaceMap, origin: np.ndarray, radius: float) -> SurfaceMap:
    """The Gaussians whose centres lie within ``radius`` m of ``origin`` (world)."""
    means = smap.params.means
    o = torch.as_tensor(origin, dtype=means.dtype, device=means.device)
    return smap.subset(((means - o) ** 2).sum(-1) <= radius * radius)


def plane_features(smap: SurfaceMap, origin: np.ndarray, R_world_frame: np.ndarray) -> torch.Tensor:
    """(N,3) per-Gaussian f = n / (n . (mu - o)), expressed in the frame whose rotation in the world
    is ``R_world_frame``: for a ray o + s r (r in that frame), the Gaussian's plane is met at 1/s = f . r."""
    p = smap.params
    dt, dev = p.means.dtype, p.means.device
    rel = p.means - torch.as_tensor(origin, dtype=dt, device=dev)
    dist = rel.norm(dim=1).clamp_min(1e-6)
    n = smap.normals.to(dt)
    d = (n * rel).sum(1)
    plane = smap.planar & (d.abs() >= MIN_COS * dist)
    n = torch.where(plane[:, None], n, rel / dist[:, None])
    d = torch.where(plane, d, dist)
    return (n / d[:, None]) @ torch.as_tensor(R_world_frame, dtype=dt, device=dev)  # rows: R^T f


@torch.no_grad()
def render_planes(smap: SurfaceMap, cameras: list[PinholeCamera], origin: np.ndarray, R_world_frame: np.ndarray,
                  backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Composited plane features of ``cameras`` (one batch, one size), all rays leaving ``origin``:
    features (C,H,W,3) float64 in the frame of ``R_world_frame`` and accumulated opacity (C,H,W)."""
    p = smap.params
    f = plane_features(smap, origin, R_world_frame)
    feats = GaussianParams(p.means, p.quats, p.log_scales, p.opacity_logits, f)
    out = render(feats, CameraBatch.from_cameras(cameras, device=p.means.device), backend=backend, render_depth=False)
    return out.rgb.double().cpu().numpy(), out.alpha[..., 0].double().cpu().numpy()


def surface_depth(smap: SurfaceMap, camera: PinholeCamera, backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Surface depth along the optical axis (H,W) float32 metres (NaN where nothing is hit in
    front) and accumulated opacity (H,W) float32 of one camera."""
    T = camera.T_world_cam
    feat, alpha = render_planes(smap, [camera], T[:3, 3], T[:3, :3], backend)
    K = camera.K
    x = (np.arange(camera.width) + 0.5 - K[0, 2]) / K[0, 0]
    y = (np.arange(camera.height) + 0.5 - K[1, 2]) / K[1, 1]
    f, a = feat[0], alpha[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = (f[..., 0] * x[None, :] + f[..., 1] * y[:, None] + f[..., 2]) / a  # ray (x, y, 1): s = z
        z = np.where(inv > 0, 1.0 / inv, np.nan)
    return z.astype(np.float32), a.astype(np.float32)

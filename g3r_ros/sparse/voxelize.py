"""Points <-> voxels: quantization, mean pooling into voxels and gathering back to points."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .kernel_map import CoordinateManager
from .keys import MAX_BATCH, check_coords, pack_keys, unpack_keys


@dataclass
class Voxelization:
    """Assignment of N points to M occupied voxels.

    manager: level-1 voxels (coords (M,4) [b,x,y,z], sorted keys) and their kernel maps.
    point_to_voxel: (N,) int64 voxel row of each point. counts: (M,) points per voxel
    (float, in the points' dtype). voxel_size: metres per voxel.
    """

    manager: CoordinateManager
    point_to_voxel: torch.Tensor
    counts: torch.Tensor
    voxel_size: float

    @property
    def num_voxels(self) -> int:
        return int(self.counts.numel())


def voxel_coords(points: torch.Tensor, voxel_size: float, batch: torch.Tensor | None = None) -> torch.Tensor:
    """points (N,3) metres -> (N,4) int64 [b, floor(x/v), floor(y/v), floor(z/v)]."""
    q = torch.floor(points.detach() / voxel_size).to(torch.int64)
    b = torch.zeros_like(q[:, :1]) if batch is None else batch.reshape(-1, 1).to(torch.int64)
    return torch.cat([b, q], 1)


def voxelize(points: torch.Tensor, voxel_size: float, batch: torch.Tensor | None = None) -> Voxelization:
    """Group points (N,3) metres (any frame) into cubic voxels of ``voxel_size`` metres.

    batch: optional (N,) int in [0, 512): points of different batch entries never share a
    voxel or a neighbourhood (e.g. several actors through one shared network).
    """
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be (N,3), got {tuple(points.shape)}")
    if not points.is_floating_point():
        raise ValueError(f"points must be floating point, got {points.dtype}")
    if not (voxel_size > 0 and voxel_size < float("inf")):
        raise ValueError(f"voxel_size must be positive and finite, got {voxel_size}")
    if batch is not None:
        if batch.shape != (points.shape[0],):
            raise ValueError(f"batch must be ({points.shape[0]},), got {tuple(batch.shape)}")
        if batch.is_floating_point():
            raise ValueError("batch must be an integer tensor")
        if batch.numel() and (int(batch.min()) < 0 or int(batch.max()) >= MAX_BATCH):
            raise ValueError(f"batch indices must be in [0, {MAX_BATCH})")
    if points.numel() and not bool(torch.isfinite(points).all()):
        raise ValueError("points contain NaN or infinite values")
    coords = voxel_coords(points, voxel_size, batch)
    check_coords(coords)
    keys, point_to_voxel, counts = torch.unique(pack_keys(coords), sorted=True, return_inverse=True,
                                                return_counts=True)
    manager = CoordinateManager(unpack_keys(keys), keys)
    return Voxelization(manager, point_to_voxel, counts.to(points.dtype), float(voxel_size))


def voxel_mean(feats: torch.Tensor, vox: Voxelization) -> torch.Tensor:
    """Mean of per-point feats (N,C) over each voxel -> (M,C). Differentiable."""
    if feats.ndim != 2 or feats.shape[0] != vox.point_to_voxel.numel():
        raise ValueError(f"feats must be ({vox.point_to_voxel.numel()}, C), got {tuple(feats.shape)}")
    summed = feats.new_zeros((vox.num_voxels, feats.shape[1])).index_add_(0, vox.point_to_voxel, feats)
    return summed / vox.counts.to(feats.dtype).unsqueeze(1)


def voxel_to_points(vfeats: torch.Tensor, vox: Voxelization) -> torch.Tensor:
    """Voxel feats (M,C) -> per-point feats (N,C) (each point takes its voxel's row)."""
    if vfeats.ndim != 2 or vfeats.shape[0] != vox.num_voxels:
        raise ValueError(f"voxel feats must be ({vox.num_voxels}, C), got {tuple(vfeats.shape)}")
    return vfeats.index_select(0, vox.point_to_voxel)


def local_offsets(points: torch.Tensor, voxel_size: float) -> torch.Tensor:
    """Position of each point inside its voxel, (N,3) in [-0.5, 0.5) voxel units.

    Differentiable in ``points`` (d/dp = 1/voxel_size)."""
    scaled = points / voxel_size
    return scaled - torch.floor(scaled.detach()) - 0.5

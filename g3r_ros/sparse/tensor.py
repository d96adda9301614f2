"""SparseTensor: voxel features at one level of a :class:`CoordinateManager`."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .kernel_map import CoordinateManager
from .keys import check_coords, pack_keys


@dataclass
class SparseTensor:
    """Features on the active voxels of one level.

    feats: (M,C) one row per voxel of level ``stride``, in the key order of
    ``manager.level(stride)``. stride: voxel size of this level in base voxels (1, 2, 4 ...).
    manager: the shared levels and kernel maps of this point set.
    """

    feats: torch.Tensor
    stride: int
    manager: CoordinateManager

    def __post_init__(self):
        n = self.manager.num_voxels(self.stride)
        if self.feats.ndim != 2 or self.feats.shape[0] != n:
            raise ValueError(f"feats must be ({n}, C) for stride {self.stride}, got {tuple(self.feats.shape)}")

    @classmethod
    def from_coords(cls, coords: torch.Tensor, feats: torch.Tensor) -> SparseTensor:
        """Level-1 tensor from unique coords (M,4) int64 [b,x,y,z] (any order) and feats (M,C)."""
        check_coords(coords)
        if feats.ndim != 2 or feats.shape[0] != coords.shape[0]:
            raise ValueError(f"feats must be ({coords.shape[0]}, C), got {tuple(feats.shape)}")
        keys, order = torch.sort(pack_keys(coords))
        if keys.numel() > 1 and bool((keys[1:] == keys[:-1]).any()):
            raise ValueError("coords contain duplicate voxels")
        manager = CoordinateManager(coords[order], keys)
        return cls(feats[order], 1, manager)

    @property
    def coords(self) -> torch.Tensor:
        """(M,4) int64 [b,x,y,z] in units of this level's voxels."""
        return self.manager.level(self.stride)[0]

    @property
    def keys(self) -> torch.Tensor:
        return self.manager.level(self.stride)[1]

    @property
    def num_voxels(self) -> int:
        return int(self.feats.shape[0])

    @property
    def channels(self) -> int:
        return int(self.feats.shape[1])

    def replace(self, feats: torch.Tensor) -> SparseTensor:
        """Same voxels, new features (M,C')."""
        return SparseTensor(feats, self.stride, self.manager)

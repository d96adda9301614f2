"""Pure-PyTorch sparse 3D convolution (CPU and CUDA).

- :mod:`.keys`: int64 voxel keys (batch, x, y, z);
- :mod:`.kernel_map`: neighbour/stride maps from sorted keys, cached per level;
- :mod:`.tensor`: :class:`SparseTensor` (features at one level);
- :mod:`.conv`: submanifold, stride-2 down and transposed up convs (hand-written backward);
- :mod:`.voxelize`: points -> voxels (mean pooling) -> points;
- :mod:`.unet`: the residual sparse U-Net used by G3R-Net.
"""

from .conv import SparseDownConv3d, SparseUpConv3d, SubmanifoldConv3d, sparse_conv, sparse_conv_reference
from .kernel_map import CoordinateManager, KernelMap, downsample_map, submanifold_map
from .tensor import SparseTensor
from .unet import SparseResBlock, SparseResUNet
from .voxelize import Voxelization, local_offsets, voxel_mean, voxel_to_points, voxelize

__all__ = [
    "CoordinateManager", "KernelMap", "SparseDownConv3d", "SparseResBlock", "SparseResUNet", "SparseTensor",
    "SparseUpConv3d", "SubmanifoldConv3d", "Voxelization", "downsample_map", "local_offsets", "sparse_conv",
    "sparse_conv_reference",
    "submanifold_map", "voxel_mean", "voxel_to_points", "voxelize",
]

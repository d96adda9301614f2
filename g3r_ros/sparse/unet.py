"""A residual sparse U-Net (in the spirit of TorchSparse's SparseResUNet).

Layout for ``channels = (c0, c1, ..., cL)`` and ``blocks`` residual blocks per level:

    stem:    linear C_in -> c0 (per voxel), LayerNorm, ReLU                     stride 1
    encoder: level l: blocks x ResBlock(c_l);  down conv (k2 s2) c_l -> c_{l+1}  stride 2^l
    bottleneck (stride 2^L): + conditioning vector (e.g. a step embedding), ResBlocks
    decoder: up conv (k2 s2 transposed) c_{l+1} -> c_l, concat encoder skip,
             ResBlock(2 c_l -> c_l), (blocks - 1) x ResBlock(c_l)
    output:  c0 features on the level-1 voxels

Normalization is LayerNorm over the channels of each voxel (not BatchNorm): the result of
one voxel never depends on how many other voxels or scenes are in the batch, training
and inference behave the same, and a single scene per step trains fine.
"""

from __future__ import annotations

import torch
from torch import nn

from .conv import SparseDownConv3d, SparseUpConv3d, SubmanifoldConv3d
from .tensor import SparseTensor


class NormAct(nn.Module):
    """Per-voxel LayerNorm over channels, then ReLU (optional)."""

    def __init__(self, channels: int, act: bool = True):
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.act = act

    def forward(self, x: SparseTensor) -> SparseTensor:
        f = self.norm(x.feats)
        return x.replace(torch.relu(f) if self.act else f)


class SparseResBlock(nn.Module):
    """conv3 - LN - ReLU - conv3 - LN, plus shortcut (identity or a per-voxel linear), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__()
        self.conv1 = SubmanifoldConv3d(in_channels, out_channels, kernel_size)
        self.na1 = NormAct(out_channels)
        self.conv2 = SubmanifoldConv3d(out_channels, out_channels, kernel_size)
        self.na2 = NormAct(out_channels, act=False)
        self.shortcut = nn.Linear(in_channels, out_channels, bias=False) if in_channels != out_channels else None

    def forward(self, x: SparseTensor) -> SparseTensor:
        y = self.na2(self.conv2(self.na1(self.conv1(x))))
        skip = x.feats if self.shortcut is None else self.shortcut(x.feats)
        return y.replace(torch.relu(y.feats + skip))


def _down(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(SparseDownConv3d(cin, cout), NormAct(cout))


def _up(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(SparseUpConv3d(cin, cout), NormAct(cout))


class SparseResUNet(nn.Module):
    """Residual sparse U-Net on level-1 voxels.

    forward(x: SparseTensor (M,C_in) at stride 1, cond: (c_L,) or (B, c_L) or None) ->
    SparseTensor (M, c0) at stride 1. ``cond`` is added to the bottleneck features (per
    batch entry when 2-D, indexed by the voxels' batch coordinate).
    """

    def __init__(self, in_channels: int, channels=(32, 64, 96), blocks: int = 1, kernel_size: int = 3):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if len(channels) < 1 or min(channels) < 1:
            raise ValueError(f"channels must be a non-empty list of positive ints, got {channels}")
        if blocks < 1:
            raise ValueError(f"blocks must be >= 1, got {blocks}")
        self.channels = channels
        self.stem = nn.Linear(in_channels, channels[0])
        self.stem_na = NormAct(channels[0])
        L = len(channels) - 1
        self.enc = nn.ModuleList(
            nn.Sequential(*[SparseResBlock(channels[i], channels[i], kernel_size) for _ in range(blocks)])
            for i in range(L))
        self.downs = nn.ModuleList(_down(channels[i], channels[i + 1]) for i in range(L))
        self.bottleneck = nn.Sequential(*[SparseResBlock(channels[L], channels[L], kernel_size)
                                          for _ in range(blocks)])
        self.ups = nn.ModuleList(_up(channels[i + 1], channels[i]) for i in range(L))
        self.dec = nn.ModuleList(
            nn.Sequential(SparseResBlock(2 * channels[i], channels[i], kernel_size),
                          *[SparseResBlock(channels[i], channels[i], kernel_size) for _ in range(blocks - 1)])
            for i in range(L))

    @property
    def bottleneck_channels(self) -> int:
        return self.channels[-1]

    def forward(self, x: SparseTensor, cond: torch.Tensor | None = None) -> SparseTensor:
        if x.stride != 1:
            raise ValueError(f"SparseResUNet expects a stride-1 tensor, got stride {x.stride}")
        h = self.stem_na(x.replace(self.stem(x.feats)))
        skips = []
        for enc, down in zip(self.enc, self.downs):
            h = enc(h)
            skips.append(h)
            h = down(h)
        if cond is not None:
            h = h.replace(h.feats + self._cond_rows(cond, h))
        h = self.bottleneck(h)
        for i in reversed(range(len(self.ups))):
            h = self.ups[i](h)
            h = self.dec[i](h.replace(torch.cat([h.feats, skips[i].feats], 1)))
        return h

    def _cond_rows(self, cond: torch.Tensor, h: SparseTensor) -> torch.Tensor:
        c = self.bottleneck_channels
        if cond.ndim == 1 and cond.shape[0] == c:
            return cond
        if cond.ndim == 2 and cond.shape[1] == c:
            b = h.coords[:, 0]
            if h.num_voxels and int(b.max()) >= cond.shape[0]:
                raise ValueError(f"cond has {cond.shape[0]} rows but batch index {int(b.max())} occurs")
            return cond.index_select(0, b)
        raise ValueError(f"cond must be ({c},) or (B, {c}), got {tuple(cond.shape)}")

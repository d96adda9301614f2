"""Kernel maps: which input voxel feeds which output voxel through which kernel offset.

A :class:`KernelMap` lists, per kernel offset ``k``, index pairs ``(out_idx, in_idx)``:
the convolution is ``out[out_idx] += feats[in_idx] @ W[k]``. Submanifold maps come from
``torch.searchsorted`` on sorted int64 keys; the stride-2 map comes from
``torch.unique`` of the halved coordinates. Maps of one point set are built once per level
and cached by :class:`CoordinateManager`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property

import torch

from .keys import offset_delta, pack_keys, unpack_keys


@dataclass(frozen=True)
class KernelMap:
    """Gather/scatter pairs of one sparse convolution.

    num_in / num_out: voxel counts of the input and output levels. kernel_volume: K, the
    number of weight slices. center: the offset whose map is the identity (only when
    num_in == num_out), handled as one dense matmul; None if there is none. pairs: tuples
    ``(k, out_idx (P_k,), in_idx (P_k,))`` for every other offset with at least one pair;
    within one offset every ``out_idx`` is distinct.
    """

    num_in: int
    num_out: int
    kernel_volume: int
    center: int | None
    pairs: tuple

    def transposed(self) -> KernelMap:
        """The map with input and output swapped (a transposed convolution)."""
        return KernelMap(self.num_out, self.num_in, self.kernel_volume, self.center,
                         tuple((k, i, o) for k, o, i in self.pairs))

    @cached_property
    def tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Neighbour tables of the map (every (out, k) has at most one input, and every (in, k)
        at most one output):

        - ``out_table`` (num_out, K) int64: the input feeding output o through offset k, or
          ``num_in`` (the index of a zero pad row) when none;
        - ``in_table`` (num_in, K) int64: the output fed by input i through offset k, or
          ``num_out`` when none.

        With them a convolution is one gather and one matrix product, forward and backward,
        without any scatter (see ``g3r_ros.sparse.conv``)."""
        device = self.pairs[0][1].device if self.pairs else torch.device("cpu")
        out_t = torch.full((self.num_out, self.kernel_volume), self.num_in, dtype=torch.int64, device=device)
        in_t = torch.full((self.num_in, self.kernel_volume), self.num_out, dtype=torch.int64, device=device)
        if self.center is not None:
            ar = torch.arange(self.num_out, device=device)
            out_t[:, self.center] = ar
            in_t[:, self.center] = ar
        for k, o, i in self.pairs:
            out_t[o, k] = i
            in_t[i, k] = o
        return out_t, in_t

    @property
    def num_pairs(self) -> int:
        n = sum(int(o.numel()) for _, o, _ in self.pairs)
        return n + (self.num_out if self.center is not None else 0)


def kernel_offsets(kernel_size: int) -> torch.Tensor:
    """(k^3, 3) int64 offsets, index ``(dx+r)*k*k + (dy+r)*k + (dz+r)`` with r=(k-1)/2.

    This is the order of a dense ``conv3d`` weight ``[..., kx, ky, kz]`` flattened, with
    tensor dims (D,H,W) taken as (x,y,z).
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"submanifold kernel_size must be odd and >= 1, got {kernel_size}")
    r = (kernel_size - 1) // 2
    rng = range(-r, r + 1)
    return torch.tensor(list(itertools.product(rng, rng, rng)), dtype=torch.int64)


def submanifold_map(keys: torch.Tensor, kernel_size: int = 3) -> KernelMap:
    """Map of a submanifold conv: outputs at the input sites, ``in = out + offset``.

    keys: (M,) int64 sorted ascending, unique. Only half of the offsets are searched; the
    mirrored offset's pairs are the same pairs swapped.
    """
    offsets = kernel_offsets(kernel_size).to(keys.device)
    K = offsets.shape[0]
    center = K // 2
    M = int(keys.numel())
    if M == 0 or K == 1:
        return KernelMap(M, M, K, center, ())
    half = torch.arange(center + 1, K, device=keys.device)
    query = keys[:, None] + offset_delta(offsets[half])[None, :]  # (M, H)
    idx = torch.searchsorted(keys, query).clamp_(max=M - 1)
    hit = keys[idx] == query
    pairs = {}
    for j, k in enumerate(half.tolist()):
        out_idx = hit[:, j].nonzero().squeeze(1)
        if out_idx.numel() == 0:
            continue
        in_idx = idx[out_idx, j]
        pairs[k] = (out_idx, in_idx)
        pairs[K - 1 - k] = (in_idx, out_idx)
    return KernelMap(M, M, K, center, tuple((k, *pairs[k]) for k in sorted(pairs)))


def downsample_map(coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, KernelMap]:
    """Stride-2, kernel-2 map from a level to the next coarser one.

    coords: (M,4) int64 [b,x,y,z] of the fine level. Returns the coarse coords (Mc,4)
    sorted by key, their keys (Mc,), and the map fine -> coarse in which every fine voxel
    appears exactly once, at offset ``k = 4*(x&1) + 2*(y&1) + (z&1)`` of its parent
    ``(x>>1, y>>1, z>>1)`` (the order of a dense ``conv3d`` kernel-2 weight flattened).
    """
    parent = coords.clone()
    parent[:, 1:] = parent[:, 1:] >> 1
    coarse_keys, parent_idx = torch.unique(pack_keys(parent), sorted=True, return_inverse=True)
    Mc = int(coarse_keys.numel())
    coarse = unpack_keys(coarse_keys)
    bits = coords[:, 1:] & 1
    k_of = bits[:, 0] * 4 + bits[:, 1] * 2 + bits[:, 2]
    pairs = []
    for k in range(8):
        fine_idx = (k_of == k).nonzero().squeeze(1)
        if fine_idx.numel():
            pairs.append((k, parent_idx[fine_idx], fine_idx))
    return coarse, coarse_keys, KernelMap(int(coords.shape[0]), Mc, 8, None, tuple(pairs))


class CoordinateManager:
    """Voxel levels (stride 1, 2, 4, ...) of one point set and their cached kernel maps.

    Level ``s`` holds coords (M_s,4) int64 [b,x,y,z] in units of ``s`` base voxels, sorted
    by key, and keys (M_s,). Build it once per forward pass; every conv on the same level
    reuses the same maps (also in backward).
    """

    def __init__(self, coords: torch.Tensor, keys: torch.Tensor):
        self._levels = {1: (coords, keys)}
        self._maps: dict = {}

    @property
    def device(self) -> torch.device:
        return self._levels[1][1].device

    def level(self, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(coords, keys) at ``stride`` (a power of two), built on demand."""
        if stride < 1 or stride & (stride - 1):
            raise ValueError(f"stride must be a power of two, got {stride}")
        if stride not in self._levels:
            self.down(stride // 2)
        return self._levels[stride]

    def num_voxels(self, stride: int) -> int:
        return int(self.level(stride)[1].numel())

    def submanifold(self, stride: int, kernel_size: int = 3) -> KernelMap:
        key = ("subm", stride, kernel_size)
        if key not in self._maps:
            self._maps[key] = submanifold_map(self.level(stride)[1], kernel_size)
        return self._maps[key]

    def down(self, stride: int) -> KernelMap:
        """Map from level ``stride`` to level ``2*stride``."""
        key = ("down", stride)
        if key not in self._maps:
            coords, _ = self.level(stride)
            coarse, coarse_keys, kmap = downsample_map(coords)
            self._levels[2 * stride] = (coarse, coarse_keys)
            self._maps[key] = kmap
        return self._maps[key]

    def up(self, stride: int) -> KernelMap:
        """Map from level ``stride`` to level ``stride // 2`` (transpose of the down map)."""
        if stride < 2:
            raise ValueError(f"cannot go up from stride {stride}")
        key = ("up", stride)
        if key not in self._maps:
            self._maps[key] = self.down(stride // 2).transposed()
        return self._maps[key]

"""Packing integer voxel coordinates (batch, x, y, z) into sortable int64 keys.

Layout, from the most significant bit: 9 bits batch, then 18 bits each for x, y and z,
every axis stored with an offset of 2**17. Packing is linear in each field, so the key of
``coords + d`` is ``key(coords) + offset_delta(d)`` as long as every field stays in range;
:func:`check_coords` enforces a margin that keeps all neighbours of a 3x3x3 (or up to
``2 * KEY_MARGIN + 1`` wide) kernel packable.
"""

from __future__ import annotations

import torch

AXIS_BITS = 18
BATCH_BITS = 9
COORD_OFFSET = 1 << (AXIS_BITS - 1)
# Neighbour offsets of up to +-KEY_MARGIN must stay inside the field.
KEY_MARGIN = 4
COORD_MIN = -COORD_OFFSET + KEY_MARGIN
COORD_MAX = COORD_OFFSET - 1 - KEY_MARGIN
MAX_BATCH = 1 << BATCH_BITS

_SHIFT_X = 2 * AXIS_BITS
_SHIFT_B = 3 * AXIS_BITS
_MASK = (1 << AXIS_BITS) - 1


def check_coords(coords: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``coords`` (M,4) int64 [b,x,y,z] can be packed."""
    if coords.ndim != 2 or coords.shape[1] != 4:
        raise ValueError(f"coords must be (M,4) [batch,x,y,z], got shape {tuple(coords.shape)}")
    if coords.dtype != torch.int64:
        raise ValueError(f"coords must be int64, got {coords.dtype}")
    if coords.shape[0] == 0:
        return
    lo = coords.min(0).values.tolist()
    hi = coords.max(0).values.tolist()
    if lo[0] < 0 or hi[0] >= MAX_BATCH:
        raise ValueError(f"batch index must be in [0, {MAX_BATCH}), got [{lo[0]}, {hi[0]}]")
    if min(lo[1:]) < COORD_MIN or max(hi[1:]) > COORD_MAX:
        raise ValueError(
            f"voxel coordinates span [{min(lo[1:])}, {max(hi[1:])}] but must lie in [{COORD_MIN}, {COORD_MAX}]: "
            "the points are too far from the origin for this voxel size (use a larger voxel size or "
            "express the points in a local frame)")


def pack_keys(coords: torch.Tensor) -> torch.Tensor:
    """(M,4) int64 [b,x,y,z] -> (M,) int64 keys (order: batch, then x, y, z)."""
    c = coords.to(torch.int64)
    return ((c[:, 0] << _SHIFT_B) | ((c[:, 1] + COORD_OFFSET) << _SHIFT_X)
            | ((c[:, 2] + COORD_OFFSET) << AXIS_BITS) | (c[:, 3] + COORD_OFFSET))


def unpack_keys(keys: torch.Tensor) -> torch.Tensor:
    """(M,) int64 keys -> (M,4) int64 [b,x,y,z]; inverse of :func:`pack_keys`."""
    b = keys >> _SHIFT_B
    x = ((keys >> _SHIFT_X) & _MASK) - COORD_OFFSET
    y = ((keys >> AXIS_BITS) & _MASK) - COORD_OFFSET
    z = (keys & _MASK) - COORD_OFFSET
    return torch.stack([b, x, y, z], 1)


def offset_delta(offsets: torch.Tensor) -> torch.Tensor:
    """(K,3) int64 xyz offsets -> (K,) int64 key increments: key(c + d) = key(c) + delta(d)."""
    d = offsets.to(torch.int64)
    return (d[:, 0] << _SHIFT_X) + (d[:, 1] << AXIS_BITS) + d[:, 2]

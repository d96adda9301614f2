"""Solid primitives and groups: the geometry that cameras and the LiDAR ray cast.

Primitives ("parts") live in the local frame of their group:

- ``BOX``: axis-aligned box, shape ``(xmin, ymin, zmin, xmax, ymax, zmax)``;
- ``CYL``: vertical (local z) cylinder with a top cap, shape ``(cx, cy, r, z0, z1, 0)``;
- ``ELL``: axis-aligned ellipsoid, shape ``(cx, cy, cz, rx, ry, rz)``.

A group is one object (a building, a tree, a car): a contiguous run of parts, a local
AABB used for culling, and a pose: fixed (``T_road_local``, identity for most of the street)
or, for a moving actor, taken from its track at the render stamp. Each part has a material
id and a row of ``NPARAM`` material parameters (colours, pattern sizes, ...), read by
``textures``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

BOX, CYL, ELL = 0, 1, 2
NPARAM = 24

# Materials. Terrain materials are not parts: the ground is an analytic height profile.
SKY = -1
ROAD, SIDEWALK, KERB = 1, 2, 3
FACADE = 10
CAR_BODY, CAR_CABIN, TIRE = 20, 21, 22
METAL, LAMP, SIGN = 30, 31, 32
BARK, FOLIAGE = 40, 41

# Hit codes stored in a hit buffer instead of a part index.
HIT_NONE = -1
HIT_ROAD, HIT_SIDEWALK, HIT_KERB = -2, -3, -4


def part_bounds(kind: int, shape) -> np.ndarray:
    """Local AABB (6,) of one part."""
    s = np.asarray(shape, dtype=np.float64)
    if kind == BOX:
        return s.copy()
    if kind == CYL:
        return np.array([s[0] - s[2], s[1] - s[2], s[3], s[0] + s[2], s[1] + s[2], s[4]])
    if kind == ELL:
        return np.array([s[0] - s[3], s[1] - s[4], s[2] - s[5], s[0] + s[3], s[1] + s[4], s[2] + s[5]])
    raise ValueError(f"unknown primitive kind {kind}")


def box_corners(bounds: np.ndarray) -> np.ndarray:
    """(..., 6) AABB → (..., 8, 3) corners; corner i has x hi if i&1, y hi if i&2, z hi if i&4."""
    b = np.asarray(bounds, dtype=np.float64)
    lo, hi = b[..., None, :3], b[..., None, 3:]
    bits = np.array([[i & 1, (i >> 1) & 1, (i >> 2) & 1] for i in range(8)], dtype=bool)
    return np.where(bits, hi, lo)


# The 12 edges of a box as corner index pairs (corners differing in one bit).
BOX_EDGES = np.array([(i, i | b) for b in (1, 2, 4) for i in range(8) if not i & b], dtype=np.int64)


@dataclass
class Group:
    """One object: parts ``[start, stop)`` of its table, ``label`` ("building", "car", ...),
    ``bounds`` (6,) local AABB, ``pose`` T_road_local (None = identity), ``actor`` index into
    the scene's moving actors (-1 = static)."""

    label: str
    start: int
    stop: int
    bounds: np.ndarray
    pose: np.ndarray | None = None
    actor: int = -1
    # parts of each kind, as (start, stop) runs; filled by GeometryBuilder.finish
    runs: dict = field(default_factory=dict)


@dataclass
class Geometry:
    """Flat part table plus groups. kind (P,) int8, shape (P,6), material (P,) int16,
    params (P,NPARAM) float64, group (P,) int32."""

    kind: np.ndarray
    shape: np.ndarray
    material: np.ndarray
    params: np.ndarray
    group: np.ndarray
    groups: list[Group]

    def __len__(self) -> int:
        return len(self.kind)


class GeometryBuilder:
    """Accumulates groups of parts, then freezes them into a :class:`Geometry`."""

    def __init__(self):
        self._parts: list[tuple[int, np.ndarray, int, np.ndarray]] = []
        self._groups: list[Group] = []
        self._open: list | None = None

    @property
    def count(self) -> int:
        """Groups ended so far."""
        return len(self._groups)

    def begin(self, label: str, pose: np.ndarray | None = None, actor: int = -1) -> None:
        if self._open is not None:
            raise RuntimeError("previous group not ended")
        self._open = [label, pose, actor, []]

    def add(self, kind: int, shape, material: int, params=None) -> None:
        if self._open is None:
            raise RuntimeError("add() outside a group")
        p = np.zeros(NPARAM)
        if params is not None:
            params = np.asarray(params, dtype=np.float64).reshape(-1)
            if len(params) > NPARAM:
                raise ValueError(f"at most {NPARAM} material parameters, got {len(params)}")
            p[: len(params)] = params
        self._open[3].append((int(kind), np.asarray(shape, dtype=np.float64).reshape(6), int(material), p))

    def end(self) -> int:
        label, pose, actor, parts = self._open
        self._open = None
        if not parts:
            raise ValueError(f"group {label!r} has no parts")
        parts.sort(key=lambda q: q[0])  # runs of one kind, for vectorized intersection
        start = len(self._parts)
        self._parts.extend(parts)
        b = np.array([part_bounds(k, s) for k, s, _, _ in parts])
        bounds = np.concatenate([b[:, :3].min(0), b[:, 3:].max(0)])
        runs = {}
        for kind in (BOX, CYL, ELL):
            idx = [start + i for i, q in enumerate(parts) if q[0] == kind]
            if idx:
                runs[kind] = (idx[0], idx[-1] + 1)
        self._groups.append(Group(label, start, len(self._parts), bounds, pose, actor, runs))
        return len(self._groups) - 1

    def finish(self) -> Geometry:
        if self._open is not None:
            raise RuntimeError("a group is still open")
        n = len(self._parts)
        kind = np.array([q[0] for q in self._parts], dtype=np.int8).reshape(n)
        shape = np.array([q[1] for q in self._parts], dtype=np.float64).reshape(n, 6)
        material = np.array([q[2] for q in self._parts], dtype=np.int16).reshape(n)
        params = np.array([q[3] for q in self._parts], dtype=np.float64).reshape(n, NPARAM)
        group = np.zeros(n, dtype=np.int32)
        for gi, g in enumerate(self._groups):
            group[g.start:g.stop] = gi
        return Geometry(kind, shape, material, params, group, self._groups)

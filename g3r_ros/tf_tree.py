"""A time-interpolated transform tree (static + dynamic edges), like a tf2 buffer.

Each frame has at most one parent. An edge stores ``T_parent_child`` either once
(static, valid at every time) or as a time-sorted buffer (dynamic) kept ``horizon_s``
behind its newest stamp. ``lookup(target, source, stamp)`` composes the edges on the
tree path between the two frames (walking edges either way) and interpolates every
dynamic edge at ``stamp``: translation linearly, rotation by slerp. Thread-safe.
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
from dataclasses import dataclass, field

import numpy as np

from .geometry import invert_transform, pose_to_transform, rotmat_to_quat, slerp
from .messages import TransformRecord

log = logging.getLogger(__name__)


class TransformError(LookupError):
    """A transform that the tree cannot provide (unknown frame, no path, stamp out of range)."""


@dataclass
class _Edge:
    """The samples of ``T_parent_child`` for one child frame."""

    parent: str
    static: bool
    stamps: list[float] = field(default_factory=list)
    Ts: list[np.ndarray] = field(default_factory=list)
    trans: list[np.ndarray] = field(default_factory=list)
    quats: list[np.ndarray] = field(default_factory=list)  # (w,x,y,z), sign-aligned

    def insert(self, stamp: float, T: np.ndarray) -> None:
        q = rotmat_to_quat(T[:3, :3])
        i = bisect.bisect_left(self.stamps, stamp)
        if i < len(self.stamps) and self.stamps[i] == stamp:
            self.Ts[i], self.trans[i], self.quats[i] = T, T[:3, 3].copy(), q
            return
        self.stamps.insert(i, stamp)
        self.Ts.insert(i, T)
        self.trans.insert(i, T[:3, 3].copy())
        self.quats.insert(i, q)

    def prune(self, horizon_s: float) -> None:
        cut = bisect.bisect_left(self.stamps, self.stamps[-1] - horizon_s)
        if cut:
            for lst in (self.stamps, self.Ts, self.trans, self.quats):
                del lst[:cut]


def _fmt_frames(frames) -> str:
    frames = sorted(frames)
    shown = ", ".join(frames[:20])
    return shown + (f", ... ({len(frames)} in all)" if len(frames) > 20 else "")


class TransformTree:
    """Static and dynamic ``T_parent_child`` edges with time interpolation.

    horizon_s: how far behind each edge's newest stamp samples are kept.
    extrapolation_s: a lookup up to this far outside an edge's buffered time range uses
    the nearest sample instead of failing (default 0: no extrapolation).
    """

    def __init__(self, horizon_s: float = 30.0, extrapolation_s: float = 0.0):
        if not (math.isfinite(horizon_s) and horizon_s >= 0):
            raise ValueError(f"horizon_s must be finite and >= 0, got {horizon_s}")
        if not (math.isfinite(extrapolation_s) and extrapolation_s >= 0):
            raise ValueError(f"extrapolation_s must be finite and >= 0, got {extrapolation_s}")
        self.horizon_s = float(horizon_s)
        self.extrapolation_s = float(extrapolation_s)
        self._edges: dict[str, _Edge] = {}
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ building
    def add(self, record: TransformRecord, static: bool = False) -> None:
        """Insert one ``T_parent_child`` sample. Raises ``ValueError`` on a bad record or a cycle.

        A child that gets a different parent, or switches between static and dynamic,
        replaces its old edge (with a warning), as tf2 does on re-parenting.
        """
        parent, child = record.parent.lstrip("/"), record.child.lstrip("/")
        T = np.asarray(record.T, dtype=np.float64)
        stamp = float(record.stamp)
        if not parent or not child or parent == child:
            raise ValueError(f"bad transform {parent!r} -> {child!r}: frames must be non-empty and distinct")
        if T.shape != (4, 4) or not np.isfinite(T).all():
            raise ValueError(f"transform {parent} -> {child} must be a finite 4x4 matrix")
        if not math.isfinite(stamp):
            raise ValueError(f"transform {parent} -> {child} has a non-finite stamp {stamp}")
        with self._lock:
            edge = self._edges.get(child)
            if edge is None or edge.parent != parent or edge.static != static:
                if edge is not None:
                    log.warning("frame %s: replacing %s edge from %s with %s edge from %s", child,
                                "static" if edge.static else "dynamic", edge.parent,
                                "static" if static else "dynamic", parent)
                f = parent
                while f in self._edges:  # adding parent -> child must not close a loop
                    if f == child:
                        raise ValueError(f"transform {parent} -> {child} would create a cycle")
                    f = self._edges[f].parent
                if f == child:
                    raise ValueError(f"transform {parent} -> {child} would create a cycle")
                edge = self._edges[child] = _Edge(parent=parent, static=static)
            if static:
                edge.stamps, edge.Ts, edge.trans, edge.quats = [], [], [], []
            edge.insert(stamp, T)
            if not static:
                edge.prune(self.horizon_s)

    def static_only(self) -> TransformTree:
        """A new tree with the same settings and a copy of the static edges only (a stream that
        restarts keeps its sensor mounts but not its motion)."""
        import copy

        out = TransformTree(self.horizon_s, self.extrapolation_s)
        with self._lock:
            out._edges = {child: copy.deepcopy(e) for child, e in self._edges.items() if e.static}
        return out

    def add_records(self, records, static: bool = False) -> int:
        """Insert many records; returns how many were added."""
        n = 0
        for r in records:
            self.add(r, static=static)
            n += 1
        return n

    # ------------------------------------------------------------------ queries
    @property
    def frames(self) -> list[str]:
        with self._lock:
            return sorted(set(self._edges) | {e.parent for e in self._edges.values()})

    def parent(self, frame: str) -> str | None:
        with self._lock:
            e = self._edges.get(frame.lstrip("/"))
            return e.parent if e else None

    def time_range(self, child: str) -> tuple[float, float] | None:
        """(oldest, newest) buffered stamps of ``child``'s edge; None for a static edge."""
        with self._lock:
            e = self._edges.get(child.lstrip("/"))
            if e is None:
                raise TransformError(f"frame {child} has no parent edge")
            return None if e.static else (e.stamps[0], e.stamps[-1])

    def _chain(self, frame: str) -> list[str]:
        chain = [frame]
        while chain[-1] in self._edges:
            chain.append(self._edges[chain[-1]].parent)
        return chain

    def _path(self, target: str, source: str) -> tuple[list[str], list[str]]:
        """Frames climbed from source and from target up to (excluding) their common ancestor."""
        known = set(self._edges) | {e.parent for e in self._edges.values()}
        for name, f in (("source", source), ("target", target)):
            if f not in known:
                raise TransformError(f"unknown {name} frame '{f}' in lookup from {source} to {target} "
                                     f"(known frames: {_fmt_frames(known)})")
        up_s, up_t = self._chain(source), self._chain(target)
        in_t = {f: i for i, f in enumerate(up_t)}
        for i, f in enumerate(up_s):
            if f in in_t:
                return up_s[:i], up_t[: in_t[f]]
        raise TransformError(f"frames {source} and {target} are not connected (source root {up_s[-1]}, "
                             f"target root {up_t[-1]}; known frames: {_fmt_frames(known)})")

    def _edge_at(self, child: str, stamp: float, source: str, target: str) -> np.ndarray:
        e = self._edges[child]
        if e.static:
            return e.Ts[0]
        s = e.stamps
        i = bisect.bisect_left(s, stamp)
        if i < len(s) and s[i] == stamp:
            return e.Ts[i]
        where = f"no transform from {source} to {target} at t={stamp:.6f}"
        edge = f"(edge {e.parent} -> {child})"
        if i == len(s):
            if stamp - s[-1] <= self.extrapolation_s:
                return e.Ts[-1]
            raise TransformError(f"{where}: newest is {s[-1]:.6f} {edge}")
        if i == 0:
            if s[0] - stamp <= self.extrapolation_s:
                return e.Ts[0]
            raise TransformError(f"{where}: oldest is {s[0]:.6f} {edge}, buffer horizon {self.horizon_s:g} s")
        u = (stamp - s[i - 1]) / (s[i] - s[i - 1])
        t = (1.0 - u) * e.trans[i - 1] + u * e.trans[i]
        return pose_to_transform(t, slerp(e.quats[i - 1], e.quats[i], u))

    def latest_common_time(self, target: str, source: str) -> float:
        """Newest stamp at which every dynamic edge between the frames has data (0.0 if all static)."""
        with self._lock:
            up_s, up_t = self._path(target.lstrip("/"), source.lstrip("/"))
            dyn = [self._edges[f] for f in up_s + up_t if not self._edges[f].static]
            if not dyn:
                return 0.0
            newest = min(e.stamps[-1] for e in dyn)
            oldest = max(e.stamps[0] for e in dyn)
            if newest < oldest - self.extrapolation_s:
                raise TransformError(f"no common time between {source} and {target}: edges span "
                                     f"[{oldest:.6f}, {newest:.6f}] do not overlap")
            return newest

    def lookup(self, target: str, source: str, stamp: float | None = None) -> np.ndarray:
        """``T_target_source`` (4,4) float64 at ``stamp`` seconds (None: latest common time).

        Raises :class:`TransformError` naming the unknown frame, the disconnected frames,
        or the edge whose buffer does not cover ``stamp``.
        """
        target, source = target.lstrip("/"), source.lstrip("/")
        with self._lock:
            if stamp is None:
                stamp = self.latest_common_time(target, source)
            stamp = float(stamp)
            if not math.isfinite(stamp):
                raise TransformError(f"lookup from {source} to {target} at non-finite t={stamp}")
            if target == source:
                return np.eye(4)
            up_s, up_t = self._path(target, source)
            T_anc_source = np.eye(4)
            for f in up_s:
                T_anc_source = self._edge_at(f, stamp, source, target) @ T_anc_source
            T_anc_target = np.eye(4)
            for f in up_t:
                T_anc_target = self._edge_at(f, stamp, source, target) @ T_anc_target
        return invert_transform(T_anc_target) @ T_anc_source

    def can_transform(self, target: str, source: str, stamp: float | None = None) -> bool:
        """Whether :meth:`lookup` would succeed."""
        try:
            self.lookup(target, source, stamp)
        except TransformError:
            return False
        return True

"""Exact hard shadows of the sun, cast by every group (buildings, trees, poles, cars).

All shadow rays share one direction (towards the sun), so both the points and the groups
project onto the plane perpendicular to it. Points are binned on that plane; each group
tests only the points inside its projected bounding rectangle, as one (points x parts)
intersection. The terrain casts no shadows."""

from __future__ import annotations

import numpy as np

from .raycast import PosedGroups, _rotate_T, _safe_inv, intersect_parts

CELL = 1.0   # metres: bin size on the projection plane


def _sun_basis(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.cross(s, [0.0, 0.0, 1.0])
    if np.linalg.norm(a) < 1e-6:
        a = np.array([1.0, 0.0, 0.0])
    a = a / np.linalg.norm(a)
    b = np.cross(s, a)
    return a, b / np.linalg.norm(b)


def _dot(v, w):
    return v[..., 0] * w[0] + v[..., 1] * w[1] + v[..., 2] * w[2]


def sun_visibility(scene, points: np.ndarray, posed: PosedGroups) -> np.ndarray:
    """1.0 where the sun is visible from ``points`` (M,3) (road frame, already nudged off their
    surface), 0.0 where some group is in the way."""
    M = len(points)
    vis = np.ones(M)
    if M == 0 or not len(posed.index):
        return vis
    s = scene.lighting.sun_dir
    a, b = _sun_basis(s)
    pa, pb, ps = _dot(points, a), _dot(points, b), _dot(points, s)
    ca, cb, cs = _dot(posed.corners, a), _dot(posed.corners, b), _dot(posed.corners, s)
    amin, amax, bmin, bmax, smax = ca.min(1), ca.max(1), cb.min(1), cb.max(1), cs.max(1)
    keep = (amax >= pa.min()) & (amin <= pa.max()) & (bmax >= pb.min()) & (bmin <= pb.max()) & (smax > ps.min())
    if not keep.any():
        return vis
    ia0, ib0 = np.floor(pa.min() / CELL), np.floor(pb.min() / CELL)
    ia = (np.floor(pa / CELL) - ia0).astype(np.int64)
    ib = (np.floor(pb / CELL) - ib0).astype(np.int64)
    na = int(ia.max()) + 1
    nbins = int(ib.max()) + 1
    key = ib * na + ia
    order = np.argsort(key, kind="stable")
    skey = key[order]
    o_all = points
    geom = scene.geometry
    dirs_cache = None
    for k in np.nonzero(keep)[0]:
        a0 = int(max(np.floor(amin[k] / CELL) - ia0, 0))
        a1 = int(min(np.floor(amax[k] / CELL) - ia0, na - 1))
        b0 = int(max(np.floor(bmin[k] / CELL) - ib0, 0))
        b1 = int(min(np.floor(bmax[k] / CELL) - ib0, nbins - 1))
        if a0 > a1 or b0 > b1:
            continue
        rows = np.arange(b0, b1 + 1) * na
        st = np.searchsorted(skey, rows + a0, side="left")
        en = np.searchsorted(skey, rows + a1, side="right")
        lens = en - st
        total = int(lens.sum())
        if total == 0:
            continue
        offs = np.repeat(st - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
        cand = order[offs + np.arange(total)]
        cand = cand[(vis[cand] > 0) & (ps[cand] < smax[k]) & (pa[cand] >= amin[k]) & (pa[cand] <= amax[k])
                    & (pb[cand] >= bmin[k]) & (pb[cand] <= bmax[k])]
        if len(cand) == 0:
            continue
        g = geom.groups[posed.index[k]]
        T = posed.poses[k]
        o = o_all[cand]
        if dirs_cache is None or len(dirs_cache) < len(cand):
            dirs_cache = np.broadcast_to(s, (max(len(cand), 1024), 3))
        d = dirs_cache[: len(cand)]
        if T is not None:
            o = _rotate_T(o - T[:3, 3], T[:3, :3])
            d = _rotate_T(d, T[:3, :3])
        t, _ = intersect_parts(geom, g.runs, o, np.ascontiguousarray(d), _safe_inv(d))
        vis[cand[np.isfinite(t)]] = 0.0
    return vis

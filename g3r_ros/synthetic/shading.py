"""From hits to colours: normals, textures, sun + ambient Lambertian lighting, cast shadows
and distance fog. Pure functions of (ray, hit, scene, stamp): the same world point shades the
same from any viewpoint except for view-dependent fog, which depends only on distance."""

from __future__ import annotations

import numpy as np

from . import textures
from .primitives import (
    BARK,
    BOX,
    CAR_BODY,
    CAR_CABIN,
    CYL,
    ELL,
    FACADE,
    FOLIAGE,
    HIT_KERB,
    HIT_NONE,
    HIT_ROAD,
    HIT_SIDEWALK,
    LAMP,
    METAL,
    SIGN,
    TIRE,
)
from .raycast import PosedGroups
from .sky import sky_colour

MATERIALS = {
    FACADE: textures.facade, CAR_BODY: textures.car_body, CAR_CABIN: textures.car_cabin, TIRE: textures.tire,
    METAL: textures.metal, LAMP: textures.lamp, SIGN: textures.sign, BARK: textures.bark,
    FOLIAGE: textures.foliage,
}


def part_normals(kind: np.ndarray, shape: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Outward unit normals (M,3) at local points p (M,3) on parts of ``kind`` (M,) / ``shape`` (M,6)."""
    n = np.zeros_like(p)
    b = kind == BOX
    if b.any():
        pb, sb = p[b], shape[b]
        d = np.concatenate([np.abs(pb - sb[:, :3]), np.abs(pb - sb[:, 3:])], axis=1)   # (m,6)
        f = np.argmin(d, axis=1)
        nb = np.zeros_like(pb)
        nb[np.arange(len(pb)), f % 3] = np.where(f < 3, -1.0, 1.0)
        n[b] = nb
    c = kind == CYL
    if c.any():
        pc, sc = p[c], shape[c]
        rx, ry = pc[:, 0] - sc[:, 0], pc[:, 1] - sc[:, 1]
        rad = np.hypot(rx, ry)
        cap = np.abs(pc[:, 2] - sc[:, 4]) < np.abs(rad - sc[:, 2])
        safe = np.maximum(rad, 1e-12)
        nc = np.stack([rx / safe, ry / safe, np.zeros(len(pc))], axis=1)
        nc[cap] = [0.0, 0.0, 1.0]
        n[c] = nc
    e = kind == ELL
    if e.any():
        pe, se = p[e], shape[e]
        g = (pe - se[:, :3]) / se[:, 3:] ** 2
        n[e] = g / np.linalg.norm(g, axis=1, keepdims=True)
    return n


def _ground(code: int, p: np.ndarray, lay, noise, detail: float):
    """Albedo (M,3), reflectivity (M,) and normals (M,3) of terrain hits (road-frame points)."""
    plan = lay.plan
    if plan.simple:                                 # generator 1.0's straight street: x, y are street coordinates
        if code == HIT_KERB:
            col, refl = textures.kerb_face(p, lay, noise, detail)
            n = np.stack([np.zeros(len(p)), -np.sign(p[:, 1]), np.zeros(len(p))], axis=1)
            return col, refl, n
        fn = textures.road if code == HIT_ROAD else textures.sidewalk
        col, refl = fn(p, lay, noise, detail)
        return col, refl, np.tile([0.0, 0.0, 1.0], (len(p), 1))
    s, d = plan.centre.to_street(p[:, 0], p[:, 1])
    q = np.stack([s, d, p[:, 2]], axis=1)
    if code == HIT_KERB:
        col, refl = textures.kerb_face(q, lay, noise, detail)
        return col, refl, plan.kerb_normal_xy(p[:, 0], p[:, 1])
    up = np.tile([0.0, 0.0, 1.0], (len(p), 1))
    main, sides = plan.inside_parts(s, d)
    if code == HIT_SIDEWALK:
        f = plan.inside(s, d)
        # tiles run along the nearest street; walk widths are that street's
        u, walk = s.copy(), np.where(d > 0, lay.sidewalk_left, lay.sidewalk_right)
        for c, g in zip(plan.crossings, sides):
            near = g > main
            along, across = plan.crossing_coords(c, s, d)
            u = np.where(near, along, u)
            walk = np.where(near, c.walk, walk)
        col, refl = textures.sidewalk(q, lay, noise, detail, u=u, dk=-f, walk=walk)
        return col, refl, up
    col = np.empty((len(p), 3))
    refl = np.empty(len(p))
    todo = np.ones(len(p), dtype=bool)
    gaps = np.zeros(len(p), dtype=bool)
    for c, g in zip(plan.crossings, sides):
        side = g > main                             # on the side street, off the main carriageway
        m = side & todo
        if m.any():
            along, across = plan.crossing_coords(c, s[m], d[m])
            col[m], refl[m] = textures.road(np.stack([along, across, p[m, 2]], axis=1), lay.side_street_layout(c),
                                            noise, detail)
            todo &= ~m
        gaps |= np.abs(s - c.s) < c.half_width + c.corner
    if todo.any():
        col[todo], refl[todo] = textures.road(q[todo], lay, noise, detail, edge_gaps=gaps[todo])
    return col, refl, up


def surface(scene, origins: np.ndarray, dirs: np.ndarray, t: np.ndarray, hit: np.ndarray, posed: PosedGroups,
            detail: float | None = None):
    """Surfaces seen by the rays that hit something.

    origins (3,) or (N,3), dirs (N,3), t (N,), hit (N,) as ``cast_grid``. Returns idx (K,)
    indices of the hit rays, and for them albedo (K,3), LiDAR reflectivity (K,), road-frame
    points (K,3) and unit normals (K,3). ``detail``: texture detail strength (default the
    layout's; it changes albedo only, so callers that need reflectivity alone pass 0).
    """
    lay, noise, geom = scene.layout, scene.noise, scene.geometry
    detail = lay.detail if detail is None else float(detail)
    idx = np.nonzero(hit != HIT_NONE)[0]
    K = len(idx)
    h = hit[idx]
    o = origins if origins.ndim == 1 else origins[idx]
    pts = o + t[idx, None] * dirs[idx]
    alb = np.zeros((K, 3))
    refl = np.zeros(K)
    nrm = np.zeros((K, 3))
    if K == 0:
        return idx, alb, refl, pts, nrm
    # one contiguous run per material (terrain codes are negative, materials positive)
    key = np.where(h >= 0, geom.material[np.maximum(h, 0)], h)
    order = np.argsort(key, kind="stable")
    skey = key[order]
    cuts = np.flatnonzero(np.diff(skey)) + 1
    starts = np.concatenate([[0], cuts])
    stops = np.concatenate([cuts, [K]])
    has_pose = np.array([g.pose is not None or g.actor >= 0 for g in geom.groups], dtype=bool)
    pose_R = np.tile(np.eye(3), (len(geom.groups), 1, 1))
    pose_t = np.zeros((len(geom.groups), 3))
    for gi, T in zip(posed.index, posed.poses):
        if T is not None:
            pose_R[gi], pose_t[gi] = T[:3, :3], T[:3, 3]
    for a, b in zip(starts, stops):
        code = int(skey[a])
        sel = order[a:b]
        p = pts[sel]
        if code in (HIT_ROAD, HIT_SIDEWALK, HIT_KERB):
            alb[sel], refl[sel], nrm[sel] = _ground(code, p, lay, noise, detail)
            continue
        pid = h[sel]
        gids = geom.group[pid]
        moved = np.flatnonzero(has_pose[gids])
        if len(moved):
            # each point into its group's local frame: gathered per-point rotations, the same
            # elementwise arithmetic as raycast._rotate_T
            R, t = pose_R[gids[moved]], pose_t[gids[moved]]
            v = p[moved] - t
            p[moved] = v[:, 0:1] * R[:, 0, :] + v[:, 1:2] * R[:, 1, :] + v[:, 2:3] * R[:, 2, :]
        shape = geom.shape[pid]
        n = part_normals(geom.kind[pid], shape, p)
        alb[sel], refl[sel] = MATERIALS[code](p, n, shape, geom.params[pid], noise, detail)
        if len(moved):
            nm = n[moved]
            n[moved] = nm[:, 0:1] * R[:, :, 0] + nm[:, 1:2] * R[:, :, 1] + nm[:, 2:3] * R[:, :, 2]
        nrm[sel] = n
    return idx, alb, refl, pts, nrm


def shade(scene, origins: np.ndarray, dirs: np.ndarray, t: np.ndarray, hit: np.ndarray, posed: PosedGroups,
          shadows: bool = True) -> np.ndarray:
    """Linear display radiance (N,3) (not clipped) of rays: sky, or lit and fogged surfaces."""
    from .shadow import sun_visibility

    light, sky = scene.lighting, scene.sky
    idx, alb, _, pts, n = surface(scene, origins, dirs, t, hit, posed)
    out = np.empty((len(t), 3))
    miss = hit == HIT_NONE
    if miss.any():
        out[miss] = sky_colour(dirs[miss], sky, light, scene.noise)
    if len(idx):
        sd = light.sun_dir
        ndl = np.maximum(n[:, 0] * sd[0] + n[:, 1] * sd[1] + n[:, 2] * sd[2], 0.0)
        if shadows:
            lit = np.flatnonzero(ndl > 0)
            if len(lit):
                ndl[lit] *= sun_visibility(scene, pts[lit] + 1e-4 * n[lit], posed)
        light_rgb = light.ambient_rgb[None] * (0.75 + 0.25 * n[:, 2:3]) + light.sun_rgb[None] * ndl[:, None]
        d = dirs[idx]
        dist = t[idx] * np.sqrt((d * d).sum(1))
        f = np.exp(-dist / sky.fog_distance)[:, None]
        out[idx] = alb * light_rgb * f + sky.horizon[None] * (1 - f)
    return out

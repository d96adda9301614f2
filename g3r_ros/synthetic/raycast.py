"""Vectorized ray casting against the terrain profile and the grouped primitives.

Two ray layouts share one caster:

- :class:`PinholeGrid`: rays through the (sub)pixel centres of a pinhole camera;
- :class:`SphericalGrid`: a spinning LiDAR's (beam elevation x azimuth step) rays.

Both cull per group: a group's 8 bounding corners map to a conservative rectangle of grid
rows/columns (exact projection for the pinhole, angular bounds for the sphere), and only
those rays are tested against the group's parts, as a (rays x parts) array. The ground is
an analytic profile (road at z=0 between two kerbs, raised sidewalks outside), tested
against every ray. All frames here are the scene's road frame (x along the street, z up).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .primitives import BOX, BOX_EDGES, CYL, ELL, HIT_KERB, HIT_NONE, HIT_ROAD, HIT_SIDEWALK, Geometry, box_corners

EPS = 1e-6


# ---------------------------------------------------------------------------------------
# Primitive kernels: o (3,) or (N,3), d (N,3) → t (N,P), inf where missed
# ---------------------------------------------------------------------------------------
def _rel(o: np.ndarray, points: np.ndarray) -> np.ndarray:
    """points (P,k) minus origins: (P,k) for one origin, (N,P,k) for per-ray origins."""
    return points - o if o.ndim == 1 else points[None, :, :] - o[:, None, :]


def intersect_boxes(o: np.ndarray, d: np.ndarray, inv: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Slab test. boxes (P,6) → t (N,P) of the entry point (inf: miss, or origin inside)."""
    lo = _rel(o, boxes[:, :3]) * inv[:, None, :]
    hi = _rel(o, boxes[:, 3:]) * inv[:, None, :]
    tn = np.fmin(lo, hi)
    tf = np.fmax(lo, hi)
    tnear = np.fmax(np.fmax(tn[..., 0], tn[..., 1]), tn[..., 2])
    tfar = np.fmin(np.fmin(tf[..., 0], tf[..., 1]), tf[..., 2])
    return np.where((tnear <= tfar) & (tnear > EPS), tnear, np.inf)


def intersect_cylinders(o: np.ndarray, d: np.ndarray, cyl: np.ndarray) -> np.ndarray:
    """Vertical cylinders (cx, cy, r, z0, z1, _) with a top cap → t (N,P)."""
    rel = _rel(o, np.stack([cyl[:, 0], cyl[:, 1], cyl[:, 4]], axis=1))  # centre of the top cap
    ox, oy, oz_top = -rel[..., 0], -rel[..., 1], -rel[..., 2]             # origin relative to it
    dx, dy, dz = d[:, 0:1], d[:, 1:2], d[:, 2:3]
    r, z0, z1 = cyl[:, 2], cyl[:, 3], cyl[:, 4]
    a = dx * dx + dy * dy
    b = 2.0 * (ox * dx + oy * dy)
    c = ox * ox + oy * oy - r * r
    disc = b * b - 4.0 * a * c
    with np.errstate(divide="ignore", invalid="ignore"):
        ts = (-b - np.sqrt(np.maximum(disc, 0.0))) / (2.0 * a)
        z = oz_top + z1 + ts * dz
        side = np.where((disc >= 0) & (ts > EPS) & (z >= z0) & (z <= z1), ts, np.inf)
        tc = -oz_top / dz
        cx = ox + tc * dx
        cy = oy + tc * dy
        cap = np.where((tc > EPS) & (cx * cx + cy * cy <= r * r), tc, np.inf)
    return np.fmin(side, cap)


def intersect_ellipsoids(o: np.ndarray, d: np.ndarray, ell: np.ndarray) -> np.ndarray:
    """Axis-aligned ellipsoids (cx, cy, cz, rx, ry, rz) → t (N,P) of the entry point."""
    inv_r = 1.0 / ell[:, 3:]
    oc = -_rel(o, ell[:, :3]) * inv_r            # origin in unit-sphere coordinates
    dd = d[:, None, :] * inv_r[None, :, :]
    a = (dd * dd).sum(-1)
    b = 2.0 * (oc * dd).sum(-1)
    c = (oc * oc).sum(-1) - 1.0
    disc = b * b - 4.0 * a * c
    with np.errstate(invalid="ignore"):
        t = (-b - np.sqrt(np.maximum(disc, 0.0))) / (2.0 * a)
    return np.where((disc >= 0) & (t > EPS), t, np.inf)


def intersect_parts(geom: Geometry, runs: dict, o: np.ndarray, d: np.ndarray, inv: np.ndarray):
    """Nearest hit over a group's parts (``runs``: kind → (start, stop)). Returns t (N,), part (N,) int32."""
    best = np.full(len(d), np.inf)
    part = np.full(len(d), HIT_NONE, dtype=np.int32)
    for kind, (a, b) in runs.items():
        shp = geom.shape[a:b]
        if kind == BOX:
            T = intersect_boxes(o, d, inv, shp)
        elif kind == CYL:
            T = intersect_cylinders(o, d, shp)
        elif kind == ELL:
            T = intersect_ellipsoids(o, d, shp)
        else:  # pragma: no cover - builder only makes these
            raise ValueError(f"unknown primitive kind {kind}")
        if b - a == 1:
            tk, k = T[:, 0], np.full(len(d), a, dtype=np.int32)
        else:
            j = np.argmin(T, axis=1)
            tk = T[np.arange(len(d)), j]
            k = (a + j).astype(np.int32)
        upd = tk < best
        best = np.where(upd, tk, best)
        part = np.where(upd, k, part)
    return best, part


# ---------------------------------------------------------------------------------------
# Terrain: road (z=0) for y_right <= y <= y_left, sidewalks (z=h) outside, kerb faces between
# ---------------------------------------------------------------------------------------
@dataclass
class Terrain:
    """Cross-section of the street in the road frame: road surface z=0 between the kerbs at
    ``y_right`` < 0 < ``y_left``; raised ground at z=``kerb_height`` outside them."""

    y_right: float
    y_left: float
    kerb_height: float


@dataclass
class PlanTerrain:
    """A street of any plan (bends, side streets; ``road.RoadPlan``): road surface z=0 where
    ``plan.inside`` >= 0, raised ground z=``kerb_height`` elsewhere, vertical kerb faces between."""

    plan: object
    kerb_height: float


KERB_ITERATIONS = 10      # false-position steps
KERB_TOLERANCE = 1e-7     # m of inside-ness: rays not this close by then are bisected
KERB_BISECTIONS = 30


def _kerb_crossing(plan, o: np.ndarray, d: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The t in [lo, hi] where rays (o, d) (M,3) leave the carriageway (inside-ness >= 0 at lo,
    < 0 at hi). ``KERB_ITERATIONS`` steps of the Illinois false-position method (superlinear on
    the nearly linear inside-ness of a kerb, and it keeps the bracket), then bisection of the
    few brackets not yet within ``KERB_TOLERANCE`` (corners, where the inside-ness has a kink)."""
    def f(t, rows=slice(None)):
        p = o[rows] + t[:, None] * d[rows]
        return plan.inside_xy(p[:, 0], p[:, 1])

    flo, fhi = f(lo), f(hi)
    side = np.zeros(len(lo), dtype=np.int8)
    for _ in range(KERB_ITERATIONS):
        denom = np.where(flo - fhi > 0, flo - fhi, 1.0)
        c = np.clip((lo * -fhi + hi * flo) / denom, lo, hi)
        fc = f(c)
        inside = fc >= 0
        # inside: c replaces lo; outside: c replaces hi; the end kept twice is halved (Illinois)
        flo, fhi = (np.where(inside, fc, np.where(side == -1, 0.5 * flo, flo)),
                    np.where(inside, np.where(side == 1, 0.5 * fhi, fhi), fc))
        lo, hi = np.where(inside, c, lo), np.where(inside, hi, c)
        side = np.where(inside, 1, -1).astype(np.int8)
    t = np.where(np.abs(flo) <= np.abs(fhi), lo, hi)
    slow = np.flatnonzero(np.minimum(np.abs(flo), np.abs(fhi)) > KERB_TOLERANCE)
    if len(slow):
        a, b = lo[slow], hi[slow]
        for _ in range(KERB_BISECTIONS):
            mid = 0.5 * (a + b)
            inside = f(mid, slow) >= 0
            a, b = np.where(inside, mid, a), np.where(inside, b, mid)
        t[slow] = 0.5 * (a + b)
    return t


def _intersect_plan_terrain(o: np.ndarray, d: np.ndarray, terrain: PlanTerrain):
    """As :func:`intersect_terrain` for a :class:`PlanTerrain`. A ray that reaches the sidewalk
    level over the carriageway and the road level outside it crossed a kerb face, found by
    :func:`_kerb_crossing`. Limitation: a ray that leaves and re-enters the carriageway between
    the two levels (grazing a corner) is taken to hit the road."""
    o = np.broadcast_to(o, d.shape)
    plan, h = terrain.plan, terrain.kerb_height
    t = np.full(len(d), np.inf)
    code = np.full(len(d), HIT_NONE, dtype=np.int32)
    with np.errstate(divide="ignore", invalid="ignore"):
        dz = d[:, 2]
        above = o[:, 2] > h
        t0 = -o[:, 2] / dz
        ta = np.where(above, (h - o[:, 2]) / dz, EPS)
        cand = np.flatnonzero((dz < 0) & (t0 > EPS) & (ta > 0))
    if not len(cand):
        return t, code
    pa = o[cand] + ta[cand, None] * d[cand]
    fa = plan.inside_xy(pa[:, 0], pa[:, 1])
    walk = above[cand] & (fa < 0)
    t[cand[walk]] = ta[cand[walk]]
    code[cand[walk]] = HIT_SIDEWALK
    rest = np.flatnonzero(~walk & (fa >= 0))
    if not len(rest):
        return t, code
    i = cand[rest]
    p0 = o[i] + t0[i, None] * d[i]
    road = plan.inside_xy(p0[:, 0], p0[:, 1]) >= 0
    t[i[road]] = t0[i[road]]
    code[i[road]] = HIT_ROAD
    k = i[~road]
    if len(k):
        t[k] = _kerb_crossing(plan, o[k], d[k], ta[k].copy(), t0[k].copy())
        code[k] = HIT_KERB
    return t, code


def intersect_terrain(o: np.ndarray, d: np.ndarray, terrain):
    """o (3,) or (N,3), d (N,3) → t (N,), code (N,) int32 (HIT_ROAD/HIT_SIDEWALK/HIT_KERB/HIT_NONE).
    ``terrain``: a straight :class:`Terrain` (exact, analytic) or a :class:`PlanTerrain`."""
    if isinstance(terrain, PlanTerrain):
        return _intersect_plan_terrain(o, d, terrain)
    o = np.broadcast_to(o, d.shape)
    oy, oz = o[:, 1], o[:, 2]
    dy, dz = d[:, 1], d[:, 2]
    yr, yl, h = terrain.y_right, terrain.y_left, terrain.kerb_height
    t = np.full(len(d), np.inf)
    code = np.full(len(d), HIT_NONE, dtype=np.int32)
    with np.errstate(divide="ignore", invalid="ignore"):
        down = dz < 0
        tr = -oz / dz
        y = oy + tr * dy
        ok = down & (tr > EPS) & (y >= yr) & (y <= yl)
        t = np.where(ok, tr, t)
        code = np.where(ok, HIT_ROAD, code)
        ts = (h - oz) / dz
        y = oy + ts * dy
        ok = down & (ts > EPS) & ((y <= yr) | (y >= yl)) & (ts < t)
        t = np.where(ok, ts, t)
        code = np.where(ok, HIT_SIDEWALK, code)
        for yk, sign in ((yl, 1.0), (yr, -1.0)):  # kerb faces look towards the road
            tk = (yk - oy) / dy
            z = oz + tk * dz
            ok = (sign * dy > 0) & (tk > EPS) & (z >= 0) & (z <= h) & (tk < t)
            t = np.where(ok, tk, t)
            code = np.where(ok, HIT_KERB, code)
    return t, code


# ---------------------------------------------------------------------------------------
# Ray grids
# ---------------------------------------------------------------------------------------
def _safe_inv(d: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return 1.0 / d


def _rotate(v: np.ndarray, R: np.ndarray) -> np.ndarray:
    """R @ v for (...,3) vectors, elementwise (no BLAS: bitwise reproducible for any batch)."""
    return (v[..., 0:1] * R[:, 0] + v[..., 1:2] * R[:, 1] + v[..., 2:3] * R[:, 2])


def _rotate_T(v: np.ndarray, R: np.ndarray) -> np.ndarray:
    """R.T @ v for (...,3) vectors, elementwise."""
    return (v[..., 0:1] * R[0] + v[..., 1:2] * R[1] + v[..., 2:3] * R[2])


class PinholeGrid:
    """Rays through the centres of an ``ss``x``ss`` subdivision of each pixel.

    K: (3,3) at the image resolution. T_road_cam: optical frame pose in the road frame.
    Directions are not normalized: their optical z is 1, so ray t is the depth along z.
    """

    def __init__(self, K: np.ndarray, width: int, height: int, T_road_cam: np.ndarray, ss: int = 1):
        K = np.asarray(K, dtype=np.float64)
        self.Ks = K.copy()
        self.Ks[:2] *= ss
        self.H, self.W = int(height) * ss, int(width) * ss
        self.R = np.asarray(T_road_cam[:3, :3], dtype=np.float64)
        self.origin = np.asarray(T_road_cam[:3, 3], dtype=np.float64).copy()
        fx, s, cx = self.Ks[0]
        fy, cy = self.Ks[1, 1], self.Ks[1, 2]
        v = (np.arange(self.H) + 0.5)[:, None] * np.ones((1, self.W))
        u = (np.arange(self.W) + 0.5)[None, :] * np.ones((self.H, 1))
        yc = (v - cy) / fy
        xc = (u - cx - s * yc) / fx
        cam = np.stack([xc, yc, np.ones_like(xc)], axis=-1)
        self.dirs = _rotate(cam, self.R)
        self.inv = _safe_inv(self.dirs)

    def rects(self, corners: np.ndarray, near: float = 1e-4) -> list:
        """corners (G,8,3) road frame → per group a list of (r0, r1, c0, c1) (exclusive ends)."""
        pc = _rotate_T(corners - self.origin, self.R)                    # (G,8,3) camera frame
        za = pc[:, BOX_EDGES[:, 0], 2]
        zb = pc[:, BOX_EDGES[:, 1], 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            s = (near - za) / (zb - za)
        cross = (za - near) * (zb - near) < 0
        pa = pc[:, BOX_EDGES[:, 0]]
        pb = pc[:, BOX_EDGES[:, 1]]
        pe = pa + np.where(cross, s, 0.0)[..., None] * (pb - pa)
        pts = np.concatenate([pc, pe], axis=1)                          # (G,20,3)
        valid = np.concatenate([pc[..., 2] >= near, cross], axis=1)
        z = np.where(valid, pts[..., 2], 1.0)
        fx, sk, cx = self.Ks[0]
        fy, cy = self.Ks[1, 1], self.Ks[1, 2]
        u = fx * pts[..., 0] / z + sk * pts[..., 1] / z + cx
        v = fy * pts[..., 1] / z + cy
        umin = np.where(valid, u, np.inf).min(1)
        umax = np.where(valid, u, -np.inf).max(1)
        vmin = np.where(valid, v, np.inf).min(1)
        vmax = np.where(valid, v, -np.inf).max(1)
        out = []
        for g in range(len(corners)):
            if not valid[g].any():
                out.append([])
                continue
            # pixel centres j + 0.5 inside [umin, umax], with one pixel of margin
            c0 = max(int(np.floor(umin[g] - 0.5)) - 1, 0)
            c1 = min(int(np.ceil(umax[g] - 0.5)) + 2, self.W)
            r0 = max(int(np.floor(vmin[g] - 0.5)) - 1, 0)
            r1 = min(int(np.ceil(vmax[g] - 0.5)) + 2, self.H)
            out.append([(r0, r1, c0, c1)] if (c0 < c1 and r0 < r1) else [])
        return out


class SphericalGrid:
    """A spinning multi-beam sensor: rows are beams (elevations, descending), columns azimuth
    steps ``j * 2*pi / n_az`` from the sensor's +x towards +y. Unit directions: t is range.

    elevations: (B,) radians. T_road_sensor: sensor pose (x fwd, y left, z up) in the road frame.
    """

    def __init__(self, elevations: np.ndarray, n_az: int, T_road_sensor: np.ndarray, max_range: float = np.inf):
        el = np.asarray(elevations, dtype=np.float64)
        if np.any(np.diff(el) >= 0):
            raise ValueError("beam elevations must be strictly descending")
        self.el = el
        self.n_az = int(n_az)
        self.H, self.W = len(el), self.n_az
        self.max_range = float(max_range)
        self.R = np.asarray(T_road_sensor[:3, :3], dtype=np.float64)
        self.origin = np.asarray(T_road_sensor[:3, 3], dtype=np.float64).copy()
        self.az = np.arange(self.n_az) * (2.0 * np.pi / self.n_az)
        ce = np.cos(el)[:, None]
        self.dirs_sensor = np.stack([ce * np.cos(self.az)[None], ce * np.sin(self.az)[None],
                                     np.sin(el)[:, None] * np.ones((1, self.n_az))], axis=-1)
        self.dirs = _rotate(self.dirs_sensor, self.R)
        self.inv = _safe_inv(self.dirs)

    def rects(self, corners: np.ndarray) -> list:
        """corners (G,8,3) road frame → per group a list of (r0, r1, c0, c1) (exclusive ends;
        a range that wraps around azimuth 0 is split in two)."""
        pc = _rotate_T(corners - self.origin, self.R)                     # (G,8,3) sensor frame
        x, y, z = pc[..., 0], pc[..., 1], pc[..., 2]
        r = np.hypot(x, y)
        ac = np.arctan2(y.mean(1), x.mean(1))
        rel = np.mod(np.arctan2(y, x) - ac[:, None] + np.pi, 2 * np.pi) - np.pi
        lo = rel.min(1)
        hi = rel.max(1)
        full = (hi - lo >= np.pi - 1e-9) | (r.min(1) < 1e-9)
        # distance from the sensor axis to the footprint: min over the projected edges
        pa = pc[:, BOX_EDGES[:, 0], :2]
        pb = pc[:, BOX_EDGES[:, 1], :2]
        e = pb - pa
        ee = (e * e).sum(-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.clip(np.where(ee > 0, -(pa * e).sum(-1) / ee, 0.0), 0.0, 1.0)
        rmin = np.hypot(*(pa + u[..., None] * e).transpose(2, 0, 1)).min(1)
        rmin = np.where(full, 0.0, rmin)
        rmax = r.max(1)
        zmin, zmax = z.min(1), z.max(1)
        emax = np.arctan2(zmax, np.where(zmax > 0, rmin, rmax))
        emin = np.arctan2(zmin, np.where(zmin < 0, rmin, rmax))
        dz = np.where((zmin <= 0) & (zmax >= 0), 0.0, np.minimum(np.abs(zmin), np.abs(zmax)))
        near = np.hypot(rmin, dz)
        asc = -self.el                                                   # ascending
        step = 2.0 * np.pi / self.n_az
        out = []
        for g in range(len(corners)):
            if near[g] > self.max_range:
                out.append([])
                continue
            r0 = int(np.searchsorted(asc, -emax[g] - 1e-9, side="left"))
            r1 = int(np.searchsorted(asc, -emin[g] + 1e-9, side="right"))
            if r0 >= r1:
                out.append([])
                continue
            if full[g]:
                out.append([(r0, r1, 0, self.n_az)])
                continue
            j0 = int(np.ceil((ac[g] + lo[g]) / step - 1e-6))
            j1 = int(np.floor((ac[g] + hi[g]) / step + 1e-6)) + 1
            if j1 - j0 >= self.n_az:
                out.append([(r0, r1, 0, self.n_az)])
                continue
            a, b = j0 % self.n_az, j1 % self.n_az
            if j0 >= j1:
                out.append([])
            elif b == 0 or a < b:
                out.append([(r0, r1, a, b if b else self.n_az)])
            else:
                out.append([(r0, r1, a, self.n_az), (r0, r1, 0, b)])
        return out


# ---------------------------------------------------------------------------------------
# Casting
# ---------------------------------------------------------------------------------------
@dataclass
class PosedGroups:
    """Groups to cast at one stamp: indices into ``geometry.groups``, their T_road_local
    (None = identity) and their road-frame bounding corners (G,8,3)."""

    index: list
    poses: list
    corners: np.ndarray


def pose_groups(geom: Geometry, actor_poses: dict | None) -> PosedGroups:
    """Static groups plus the moving actors present in ``actor_poses`` (actor → T_road_box)."""
    idx, poses, corners = [], [], []
    for gi, g in enumerate(geom.groups):
        if g.actor >= 0:
            if not actor_poses or g.actor not in actor_poses:
                continue
            T = actor_poses[g.actor]
        else:
            T = g.pose
        c = box_corners(g.bounds)
        if T is not None:
            c = c @ T[:3, :3].T + T[:3, 3]
        idx.append(gi)
        poses.append(T)
        corners.append(c)
    return PosedGroups(idx, poses, np.array(corners).reshape(-1, 8, 3))


def _local_rays(o: np.ndarray, d: np.ndarray, T: np.ndarray | None):
    if T is None:
        return o, d, None
    R = T[:3, :3]
    return _rotate_T(o - T[:3, 3], R), _rotate_T(d, R), True


def cast_grid(grid, geom: Geometry, terrain: Terrain, posed: PosedGroups):
    """Nearest hit of every grid ray. Returns t (H,W) (inf = nothing) and hit (H,W) int32:
    a part index, or a terrain code (HIT_ROAD/HIT_SIDEWALK/HIT_KERB), or HIT_NONE (sky)."""
    H, W = grid.H, grid.W
    t, hit = intersect_terrain(grid.origin, grid.dirs.reshape(-1, 3), terrain)
    t = t.reshape(H, W)
    hit = hit.reshape(H, W)
    rects = grid.rects(posed.corners) if len(posed.index) else []
    for k, pieces in enumerate(rects):
        g = geom.groups[posed.index[k]]
        T = posed.poses[k]
        for r0, r1, c0, c1 in pieces:
            d = grid.dirs[r0:r1, c0:c1].reshape(-1, 3)
            o, dl, moved = _local_rays(grid.origin, d, T)
            inv = _safe_inv(dl) if moved else grid.inv[r0:r1, c0:c1].reshape(-1, 3)
            tg, pg = intersect_parts(geom, g.runs, o, dl, inv)
            sub_t = t[r0:r1, c0:c1]
            sub_h = hit[r0:r1, c0:c1]
            tg = tg.reshape(sub_t.shape)
            better = tg < sub_t
            if better.any():
                sub_t[better] = tg[better]
                sub_h[better] = pg.reshape(sub_t.shape)[better]
    if isinstance(grid, SphericalGrid):
        far = t > grid.max_range
        t[far] = np.inf
        hit[far] = HIT_NONE
    return t, hit


def cast_rays(origins: np.ndarray, dirs: np.ndarray, geom: Geometry, terrain: Terrain, posed: PosedGroups,
              chunk: int = 2048):
    """Brute-force nearest hit of arbitrary rays (no culling): origins, dirs (N,3) road frame.
    Returns t (N,), hit (N,) as :func:`cast_grid`. For checks and small ray sets."""
    origins = np.asarray(origins, dtype=np.float64).reshape(-1, 3)
    dirs = np.asarray(dirs, dtype=np.float64).reshape(-1, 3)
    if origins.shape != dirs.shape:
        raise ValueError(f"origins {origins.shape} and dirs {dirs.shape} differ")
    t_all = np.empty(len(dirs))
    h_all = np.empty(len(dirs), dtype=np.int32)
    for s in range(0, len(dirs), chunk):
        o, d = origins[s:s + chunk], dirs[s:s + chunk]
        t, hit = intersect_terrain(o, d, terrain)
        for k, gi in enumerate(posed.index):
            g = geom.groups[gi]
            T = posed.poses[k]
            if T is None:
                ol, dl = o, d
            else:
                ol, dl = _rotate_T(o - T[:3, 3], T[:3, :3]), _rotate_T(d, T[:3, :3])
            tg, pg = intersect_parts(geom, g.runs, ol, dl, _safe_inv(dl))
            better = tg < t
            t = np.where(better, tg, t)
            hit = np.where(better, pg, hit)
        t_all[s:s + chunk] = t
        h_all[s:s + chunk] = hit
    return t_all, h_all

"""Procedural surface textures: albedo (M,3) and LiDAR reflectivity (M,) per hit.

Every function is a pure function of the hit point and normal in the primitive's *local*
frame (so a car's paint moves with the car), its shape and material parameters, and the seeded
:class:`~g3r_ros.synthetic.noise.NoiseBank`. Inputs: p (M,3) local points, n (M,3) local unit
normals, shape (M,6) part shapes, prm (M,NPARAM) material parameters, ``detail``: the strength
of the multi-scale texture noise (config ``texture_detail``; 0 gives generator 1.0's textures).
Ground textures take street coordinates (x along the street, y to its left, z up).
"""

from __future__ import annotations

import numpy as np

from .layout import StreetLayout
from .noise import NoiseBank


def _frac(x):
    return x - np.floor(x)


def _mix(a, b, m):
    """Where mask m (M,) is set take b, else a; a and b broadcast to (M,3)."""
    return np.where(m[:, None], b, a)


# ---------------------------------------------------------------------------------------
# Ground
# ---------------------------------------------------------------------------------------
def _detail(noise: NoiseBank, u, v, scales, ch: int) -> np.ndarray:
    """Sum of zero-mean value-noise layers: ``scales`` = ((frequency, amplitude), ...)."""
    out = np.zeros(np.shape(u))
    for k, (f, a) in enumerate(scales):
        out += a * (noise.value(u * f + 3.7 * k, v * f - 1.3 * k, ch=ch + k) - 0.5)
    return out


def road_detail(x, y, lay: StreetLayout, noise: NoiseBank, detail: float) -> np.ndarray:
    """(M,) multiplicative asphalt detail: large worn and patched areas (tens of metres), stains
    (metres), aggregate (centimetres), darker polished wheel paths in every lane and thin
    dark cracks."""
    g = _detail(noise, x, y * 2.0, ((0.05, 0.35), (0.4, 0.3), (1.7, 0.25), (7.0, 0.22), (28.0, 0.2)), ch=12)
    grain = noise.cell(np.floor(x * 55.0), np.floor(y * 55.0), ch=3) - 0.5
    lw = lay.lane_width
    off = np.abs(np.mod(y, lw) - 0.5 * lw)                    # distance from the nearest lane centre
    track = np.exp(-(((off - 0.85) / 0.28) ** 2)) * (0.6 + 0.8 * noise.value(x * 0.2, y, ch=6))
    crack = np.abs(noise.value(x * 0.7, y * 1.3, ch=7) - 0.5) < 0.012
    crack &= noise.value(x * 0.08, y * 0.1, ch=8) < 0.45
    f = 1.0 + detail * (g + 0.16 * grain - 0.1 * track - 0.3 * crack)
    return np.clip(f, 0.3, 2.0)


def road(p: np.ndarray, lay: StreetLayout, noise: NoiseBank, detail: float = 0.0, edge_gaps=None):
    """Asphalt with repairs, lane markings, crosswalks and stop lines (street coordinates).
    ``edge_gaps`` (M,) bool: no edge lines there (side street mouths)."""
    x, y = p[:, 0], p[:, 1]
    g = noise.fbm(x * 0.35, y * 0.35, 3, ch=1)
    grain = noise.cell(np.floor(x * 22.0), np.floor(y * 22.0), ch=2)
    col = lay.asphalt[None] * (0.78 + 0.38 * g + 0.14 * (grain - 0.5))[:, None]
    patch = (noise.cell(np.floor(x / 7.0), np.floor(y / lay.lane_width), ch=4) < 0.18) & (
        np.abs(_frac(x / 7.0) - 0.45) < 0.28)
    col = col * np.where(patch, 0.82, 1.0)[:, None]
    if detail > 0:
        col = col * road_detail(x, y, lay, noise, detail)[:, None]
    n, lw = lay.lanes_per_dir, lay.lane_width
    dash = _frac((x + lay.dash_phase) / lay.dash_period) < lay.dash_length / lay.dash_period
    ay = np.abs(y)
    yellow = np.zeros(len(p), dtype=bool)
    if lay.centre_style == 0:
        yellow = (ay > 0.07) & (ay < 0.19)
        white = np.zeros(len(p), dtype=bool)
    elif lay.centre_style == 1:
        white = (ay < 0.075) & dash
    else:
        white = ay < 0.075
    for k in range(1, n):
        white |= (np.abs(ay - k * lw) < 0.075) & dash
    edge_right = np.abs(y + n * lw) < 0.09
    edge_left = (np.abs(y - n * lw) < 0.09) & (dash if lay.parking_left > 0 else True)
    if edge_gaps is not None:
        edge_right &= ~edge_gaps
        edge_left &= ~edge_gaps
    white |= edge_right | edge_left
    for xc in lay.crosswalks:
        white |= (np.abs(x - xc) < 2.0) & (_frac(y / 1.1) < 0.5)
        white |= (np.abs(x - (xc - 3.4)) < 0.2) & (y > -n * lw) & (y < 0)
        white |= (np.abs(x - (xc + 3.4)) < 0.2) & (y < n * lw) & (y > 0)
    wear = (0.65 + 0.35 * noise.fbm(x * 2.0, y * 2.0, 2, ch=5))[:, None]
    if detail > 0:
        wear = np.clip(wear - detail * 0.25 * (noise.value(x * 6.0, y * 9.0, ch=9) < 0.3)[:, None], 0.2, 1.0)
    col = _mix(col, col * (1 - wear) + np.array([0.86, 0.86, 0.84]) * wear, white)
    col = _mix(col, col * (1 - wear) + np.array([0.86, 0.68, 0.18]) * wear, yellow)
    refl = np.where(white | yellow, 0.55, 0.1)
    return col, refl


def grass_detail(x, y, noise: NoiseBank, detail: float) -> np.ndarray:
    """(M,3) multiplicative grass detail: clumps, bare and dry patches, blades."""
    g = _detail(noise, x, y, ((0.12, 0.5), (0.9, 0.4), (4.0, 0.35)), ch=4)
    blade = noise.cell(np.floor(x * 45.0), np.floor(y * 45.0), ch=10) - 0.5
    dry = np.clip(noise.value(x * 0.25, y * 0.25, ch=11) * 2.0 - 1.0, 0.0, 1.0)
    f = 1.0 + detail * (g + 0.5 * blade)
    tint = np.stack([1.0 + 0.5 * detail * dry, 1.0 + 0.1 * detail * dry, 1.0 + 0.2 * detail * dry], axis=1)
    return np.clip(f, 0.2, 2.5)[:, None] * tint


def sidewalk(p: np.ndarray, lay: StreetLayout, noise: NoiseBank, detail: float = 0.0, u=None, dk=None, walk=None):
    """Kerb stones, paving tiles, and the yards beyond the sidewalks (street coordinates).
    Optional per point: ``u`` the coordinate along the kerb, ``dk`` the distance from it and
    ``walk`` the sidewalk's width (default: those of the straight main street)."""
    x, y = p[:, 0], p[:, 1]
    left = y > 0
    if dk is None:
        dk = np.where(left, y - lay.y_left, lay.y_right - y)
    if walk is None:
        walk = np.where(left, lay.sidewalk_left, lay.sidewalk_right)
    u = x if u is None else u
    g = noise.fbm(x * 0.5, y * 0.5, 2, ch=6)
    kerb = dk < 0.25
    tile = lay.tile
    ti, tj = np.floor(u / tile), np.floor(dk / tile)
    joint = (_frac(u / tile) < 0.035 / tile) | (_frac(dk / tile) < 0.035 / tile)
    pave = lay.paving[None] * (0.82 + 0.3 * noise.cell(ti, tj + 1000 * left, ch=7) + 0.1 * (g - 0.5))[:, None]
    pave = pave * np.where(joint, 0.62, 1.0)[:, None]
    kc = lay.kerb_colour[None] * (0.88 + 0.2 * g)[:, None] * np.where(_frac(u) < 0.012, 0.6, 1.0)[:, None]
    yg = noise.fbm(x * 0.8, y * 0.8, 3, ch=8)
    grain = noise.cell(np.floor(x * 18.0), np.floor(y * 18.0), ch=9)
    yard = lay.yard[None] * (0.65 + 0.6 * yg + 0.2 * (grain - 0.5))[:, None]
    if detail > 0:
        yard = yard * grass_detail(x, y, noise, detail)
        pave = pave * np.clip(1.0 + detail * _detail(noise, x, y, ((0.3, 0.25), (2.5, 0.2), (30.0, 0.15)), ch=13),
                              0.3, 2.0)[:, None]
    col = np.where(kerb[:, None], kc, np.where((dk < walk)[:, None], pave, yard))
    refl = np.where(kerb, 0.3, np.where(dk < walk, 0.25, 0.2))
    return col, refl


def kerb_face(p: np.ndarray, lay: StreetLayout, noise: NoiseBank, detail: float = 0.0):
    g = noise.fbm(p[:, 0] * 2.0, p[:, 2] * 2.0, 2, ch=6)
    col = lay.kerb_colour[None] * (0.75 + 0.2 * g)[:, None] * np.where(_frac(p[:, 0]) < 0.012, 0.6, 1.0)[:, None]
    return col, np.full(len(p), 0.3)


# ---------------------------------------------------------------------------------------
# Buildings
# ---------------------------------------------------------------------------------------
def _where(mask):
    return np.flatnonzero(mask)


def facade_detail(u, v, ch, noise: NoiseBank, detail: float) -> np.ndarray:
    """(M,) multiplicative wall detail: weathering (metres), rain streaks (tall, narrow), grain
    (centimetres), a darker splash zone near the ground."""
    g = _detail(noise, u, v, ((0.15, 0.3), (1.2, 0.18), (9.0, 0.12), (35.0, 0.1)), ch=ch + 7)
    streak = noise.value(u * 3.0, v * 0.2, ch=ch + 11) - 0.5
    splash = np.exp(-np.maximum(v, 0.0) / 0.5)
    return np.clip(1.0 + detail * (g + 0.35 * streak - 0.2 * splash), 0.3, 2.0)


def facade(p, n, shape, prm, noise: NoiseBank, detail: float = 0.0):
    """Walls (plaster / brick / panels / glass curtain) with window grids, shop fronts, doors,
    ledges and cornices; flat roofs. Params: see ``layout._facade_params``. Each feature is
    evaluated only on the points it covers."""
    M = len(p)
    wall, style, sh = prm[:, 0:3], prm[:, 3], prm[:, 4]
    ww, wh, bay, sill = prm[:, 5].copy(), prm[:, 6].copy(), prm[:, 7], prm[:, 8].copy()
    door_u, shop = prm[:, 15], prm[:, 16] > 0.5
    ch, side, lit_p = prm[:, 20].astype(np.int64), prm[:, 21], prm[:, 22]
    along_x = np.abs(n[:, 1]) > 0.5
    roof = n[:, 2] > 0.5
    u = np.where(along_x, p[:, 0] - shape[:, 0], p[:, 1] - shape[:, 1])
    face_len = np.where(along_x, shape[:, 3] - shape[:, 0], shape[:, 4] - shape[:, 1])
    v = p[:, 2] - shape[:, 2]
    height = shape[:, 5] - shape[:, 2]
    street = n[:, 1] * side < -0.5
    g = noise.fbm(u * 0.6 + 31.0 * side, v * 0.6, 2, ch=ch)
    # wall material, per style
    col = np.empty((M, 3))
    i = _where(style < 0.5)                                   # plaster
    if len(i):
        grain = noise.cell(np.floor(u[i] * 30.0), np.floor(v[i] * 30.0), ch=ch[i] + 1)
        col[i] = wall[i] * (0.88 + 0.2 * g[i] + 0.06 * (grain - 0.5))[:, None]
    i = _where(np.abs(style - 1) < 0.5)                       # brick
    if len(i):
        ui, vi_, gi = u[i], v[i], g[i]
        row = np.floor(vi_ / 0.075)
        off = np.mod(row, 2) * 0.12
        bcol = np.floor((ui + off) / 0.24)
        mortar = (_frac((ui + off) / 0.24) < 0.05) | (_frac(vi_ / 0.075) < 0.15)
        brick = wall[i] * ((0.78 + 0.4 * noise.cell(bcol, row, ch=ch[i] + 2)) * (0.92 + 0.16 * gi))[:, None]
        col[i] = _mix(brick, np.array([0.72, 0.7, 0.66]) * (0.9 + 0.1 * gi)[:, None], mortar)
    i = _where(style > 1.5)                                   # panels (also behind curtain glass)
    if len(i):
        pw, ph = bay[i] * 0.5, sh[i] * 0.5
        ui, vi_ = u[i], v[i]
        pj = (np.abs(_frac(ui / pw + 0.5) - 0.5) * pw < 0.02) | (np.abs(_frac(vi_ / ph + 0.5) - 0.5) * ph < 0.02)
        tone = 0.9 + 0.12 * noise.cell(np.floor(ui / pw), np.floor(vi_ / ph), ch=ch[i] + 2)
        col[i] = wall[i] * (tone * np.where(pj, 0.6, 1.0))[:, None]
    curtain = style > 2.5
    ww = np.where(curtain, bay - 0.14, ww)
    wh = np.where(curtain, sh - 0.3, wh)
    sill = np.where(curtain, 0.15, sill)
    # window grid
    s = np.floor(v / sh)
    vi = v - s * sh
    nb = np.maximum(np.floor((face_len - 0.8) / bay), 1.0)
    margin = (face_len - nb * bay) / 2
    bu = np.floor((u - margin) / bay)
    ui = u - margin - (bu + 0.5) * bay
    aui = np.abs(ui)
    in_bay = (bu >= 0) & (bu < nb) & (v < height - 0.45) & ~roof
    win = in_bay & (aui < ww / 2) & (vi > sill) & (vi < sill + wh)
    frm = in_bay & (aui < ww / 2 + 0.08) & (vi > sill - 0.1) & (vi < sill + wh + 0.08) & ~win
    ground = (s == 0) & (shape[:, 2] < 0.5) & ~roof
    gshop = ground & shop
    if gshop.any():
        shopwin = gshop & (aui < bay * 0.42) & (vi > 0.35) & (vi < sh - 0.75) & in_bay
        win = np.where(gshop, shopwin, win)
        frm = np.where(gshop, in_bay & (aui < bay * 0.42 + 0.08) & (vi > 0.27) & (vi < sh - 0.67) & ~shopwin, frm)
        i = _where(gshop & (vi > sh - 0.65) & (vi < sh - 0.25) & street)     # awning
        col[i] = prm[i, 17:20] * np.where(_frac(u[i] / 0.5) < 0.5, 1.0, 0.82)[:, None]
    if detail > 0:
        col = col * facade_detail(u + 31.0 * side, v, ch, noise, detail)[:, None]
    mull = win & (aui < 0.025) & ~curtain
    i = _where(frm | mull)
    col[i] = prm[i, 9:12]
    i = _where(win & ~mull)                                   # glass
    if len(i):
        key = bu[i] + 100 * (n[i, 0] + 2 * n[i, 1])
        cw = noise.cell(key, s[i], ch=ch[i] + 3)
        cw2 = noise.cell(key, s[i], ch=ch[i] + 4)
        grad = np.clip((vi[i] - sill[i]) / np.maximum(wh[i], 0.1), 0.0, 1.0)
        gcol = prm[i, 12:15] * (0.65 + 0.6 * cw)[:, None] + (0.14 * grad)[:, None] * np.array([0.7, 0.8, 0.9])
        gcol = _mix(gcol, np.array([0.95, 0.82, 0.55]) * (0.75 + 0.2 * cw)[:, None], cw2 < lit_p[i])
        if detail > 0:   # reflections of the street in the glass
            refl_ = _detail(noise, u[i] * 0.5 + v[i] * 0.2, v[i], ((0.4, 0.9), (2.0, 0.4)), ch=ch[i] + 13)
            gcol = gcol * np.clip(1.0 + detail * refl_, 0.3, 2.5)[:, None]
        blinds = (cw2 > 0.6) & (cw2 < 0.8) & (grad > 0.45) & ~curtain[i]
        col[i] = _mix(gcol, np.array([0.82, 0.78, 0.68]) * (0.85 + 0.1 * g[i])[:, None], blinds)
    du = u - np.minimum(door_u, np.maximum(face_len - 1.6, 0.2))
    sg = street & ground & (v < 2.4)
    i = _where(sg & (du > 0) & (du < 1.2) & (v < 2.3))        # door
    col[i] = np.array([0.36, 0.23, 0.14]) * (0.8 + 0.4 * noise.value(u[i] * 40.0, v[i] * 1.5, ch=ch[i] + 5))[:, None]
    i = _where(sg & (du > -0.1) & (du < 1.3) & ~((du > 0) & (du < 1.2) & (v < 2.3)))
    col[i] = prm[i, 9:12] * 0.8
    i = _where((vi < 0.1) & (s >= 1) & ~win & ~roof)          # storey ledges
    col[i] = np.clip(wall[i] * 1.12, 0, 1)
    i = _where((v > height - 0.35) & ~roof)                   # cornice
    col[i] = wall[i] * 0.72
    col *= np.clip(0.8 + 0.33 * v, 0.0, 1.0)[:, None]
    i = _where(roof)
    if len(i):
        rf = prm[i, 23] * (0.75 + 0.4 * noise.fbm(p[i, 0] * 1.5, p[i, 1] * 1.5, 2, ch=ch[i] + 6))
        col[i] = np.stack([rf, rf * 0.98, rf * 0.95], axis=1)
    refl = np.where(win & ~mull, 0.08, np.where(roof, 0.2, 0.35))
    return col, refl


# ---------------------------------------------------------------------------------------
# Cars (params: 0-2 paint, 3-5 L W H, 6 body top, 7-8 cabin x range, 9 glass tint)
# ---------------------------------------------------------------------------------------
def car_body(p, n, shape, prm, noise: NoiseBank, detail: float = 0.0):
    paint, W = prm[:, 0:3], prm[:, 4]
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    bottom, top = shape[:, 2], shape[:, 5]
    ay = np.abs(y)
    zr = np.clip((z - bottom) / np.maximum(top - bottom, 0.1), 0, 1)
    col = paint * (0.82 + 0.3 * zr)[:, None]
    front, rear, sides = n[:, 0] > 0.5, n[:, 0] < -0.5, np.abs(n[:, 1]) > 0.5
    lamps = (ay > W / 2 - 0.45) & (ay < W / 2 - 0.08) & (z > top - 0.3) & (z < top - 0.1)
    grille = (ay < W / 2 - 0.55) & (z > top - 0.36) & (z < top - 0.12)
    bumper = z < bottom + 0.2
    plate = (ay < 0.26) & (z > bottom + 0.22) & (z < bottom + 0.34)
    col = _mix(col, np.array([0.12, 0.12, 0.13]), (front | rear) & bumper)
    col = _mix(col, np.array([0.06, 0.06, 0.07]), front & grille)
    col = _mix(col, np.array([0.92, 0.92, 0.86]), front & lamps)
    col = _mix(col, np.array([0.72, 0.06, 0.05]), rear & lamps)
    col = _mix(col, np.array([0.88, 0.88, 0.85]), (front | rear) & plate)
    L = prm[:, 3]
    seam = sides & ((np.abs(x + 0.05 * L) < 0.012) | (np.abs(x - 0.22 * L) < 0.012) | (np.abs(x + 0.3 * L) < 0.012))
    trim = sides & (z < bottom + 0.12)
    col = _mix(col, paint * 0.35, seam)
    col = _mix(col, np.array([0.08, 0.08, 0.09]), trim)
    refl = np.where(lamps & (front | rear) | plate & (front | rear), 0.9, 0.4)
    return col, refl


def car_cabin(p, n, shape, prm, noise: NoiseBank, detail: float = 0.0):
    paint, tint = prm[:, 0:3], prm[:, 9]
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    x0, x1, z0, z1 = shape[:, 0], shape[:, 3], shape[:, 2], shape[:, 5]
    y1 = shape[:, 4]
    sides, ends, top = np.abs(n[:, 1]) > 0.5, np.abs(n[:, 0]) > 0.5, n[:, 2] > 0.5
    mid = 0.5 * (x0 + x1)
    pillar = (x - x0 < 0.14) | (x1 - x < 0.14) | (np.abs(x - mid) < 0.06)
    glass_side = sides & ~pillar & (z > z0 + 0.06) & (z < z1 - 0.07)
    glass_end = ends & (np.abs(y) < y1 - 0.12) & (z > z0 + 0.05) & (z < z1 - 0.07)
    glass = glass_side | glass_end
    grad = np.clip((z - z0) / np.maximum(z1 - z0, 0.1), 0, 1)
    gcol = np.array([0.09, 0.11, 0.13]) * (1.0 + 3.0 * tint)[:, None] + (0.12 * grad)[:, None] * np.array(
        [0.7, 0.8, 0.9])
    col = _mix(paint * 0.95, gcol, glass)
    col = _mix(col, paint * 1.02, top)
    return col, np.where(glass, 0.06, 0.4)


def tire(p, n, shape, prm, noise: NoiseBank, detail: float = 0.0):
    r = prm[:, 4]
    zc = shape[:, 2] + r
    dist = np.hypot(p[:, 0] - prm[:, 3], p[:, 2] - zc)
    side = np.abs(n[:, 1]) > 0.5
    hub = side & (dist < 0.55 * r)
    col = _mix(np.broadcast_to(prm[:, 0:3], (len(p), 3)), np.array([0.55, 0.55, 0.57]) * (
        0.8 + 0.2 * np.cos(dist * 40.0))[:, None], hub)
    return col, np.full(len(p), 0.05)


# ---------------------------------------------------------------------------------------
# Street furniture and vegetation
# ---------------------------------------------------------------------------------------
def metal(p, n, shape, prm, noise: NoiseBank, detail: float = 0.0):
    g = noise.value(p[:, 2] * 3.0, p[:, 0] + p[:, 1], ch=10)
    return prm[:, 0:3] * (0.85 + 0.25 * g)[:, None], np.full(len(p), 0.5)


def lamp(p, n, shape, prm, noise: NoiseBank, detail: float = 0.0):
    return prm[:, 0:3] * np.where(n[:, 2] < -0.5, 1.0, 0.7)[:, None], np.full(len(p), 0.6)


def sign(p, n, shape, prm, noise: NoiseBank, detail: float = 0.0):
    """Plate facing -x: a round or square sign with a border and a bar; grey back and edges."""
    dy, dz = p[:, 1] - prm[:, 7], p[:, 2] - (shape[:, 2] + shape[:, 5]) / 2
    face = n[:, 0] < -0.5
    r = np.hypot(dy, dz)
    circle = prm[:, 6] < 0.5
    inside = np.where(circle, r < 0.29, (np.abs(dy) < 0.29) & (np.abs(dz) < 0.29))
    border = np.where(circle, r > 0.22, (np.abs(dy) > 0.23) | (np.abs(dz) > 0.23))
    bar = (np.abs(dz) < 0.05) & (np.abs(dy) < 0.16)
    col = np.broadcast_to(np.array([0.55, 0.55, 0.57]), (len(p), 3))
    col = _mix(col, prm[:, 0:3], face & inside)
    col = _mix(col, prm[:, 3:6], face & inside & (border | bar))
    return col, np.where(face & inside, 0.9, 0.5)


def bark(p, n, shape, prm, noise: NoiseBank, detail: float = 0.0):
    ang = np.arctan2(p[:, 1] - shape[:, 1], p[:, 0] - shape[:, 0])
    g = noise.value(ang * 4.0, p[:, 2] * 1.2, ch=11)
    streak = noise.cell(np.floor((ang + np.pi) * 6.0), np.floor(p[:, 2] * 5.0), ch=12)
    return prm[:, 0:3] * (0.6 + 0.45 * g + 0.15 * streak)[:, None], np.full(len(p), 0.2)


def foliage(p, n, shape, prm, noise: NoiseBank, detail: float = 0.0):
    ch = prm[:, 3].astype(np.int64) + 3
    a = (p[:, 0] + 0.6 * p[:, 2]) * 1.6
    b = (p[:, 1] - 0.8 * p[:, 2]) * 1.6 + 0.3 * p[:, 0]
    big = noise.fbm(a, b, 2, ch=ch)
    leaves = noise.value(a * 6.0 + 3.1 * n[:, 2], b * 6.0, ch=ch + 1)
    f = 0.55 * big + 0.45 * leaves
    hue = noise.value(a * 0.5, b * 0.5, ch=ch + 2)
    col = prm[:, 0:3] * (0.35 + 1.0 * f)[:, None]
    col = col * (1 + 0.25 * (hue - 0.5))[:, None] * np.array([1.0, 1.0, 0.8]) + (0.06 * hue)[:, None] * np.array(
        [1.0, 0.7, 0.0])
    if detail > 0:
        # leaf clusters with dark gaps into the crown, single leaves, darker underside
        clusters = noise.value(a * 3.0, b * 3.0 + 5.1 * p[:, 2], ch=ch + 4)
        gaps = np.clip((0.4 - clusters) / 0.25, 0.0, 1.0)
        leaf = noise.cell(np.floor(a * 18.0), np.floor(b * 18.0 + 9.0 * p[:, 2]), ch=ch + 5) - 0.5
        under = np.clip(-n[:, 2], 0.0, 1.0)
        f = (1.0 - 0.75 * gaps) * (1.0 + 0.6 * leaf) * (1.0 - 0.4 * under)
        col = col * (1.0 + detail * (f - 1.0))[:, None]
    return col, np.full(len(p), 0.25)

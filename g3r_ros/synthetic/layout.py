"""Procedural street layout from a seed: the street's plan (bends, side streets), road
cross-section and markings, sidewalks, buildings, lamp posts, signs, trees, bollards and
parked cars.

Objects along the main street are built in *street coordinates* (x along the street, y to
the left, z up, ground at z=0; see ``road``) as groups of primitives (see ``primitives``);
on a bent street each group is then placed rigidly at its own position along the
centreline (:func:`bend_groups`). Side-street buildings are built in their side street's
frame. Each part of the scene draws from its own random stream (``noise.sub_rng(seed, name)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .cars import add_car_parts, random_car
from .noise import sub_rng
from .primitives import BARK, BOX, CYL, ELL, FACADE, FOLIAGE, LAMP, METAL, SIGN, Geometry, GeometryBuilder
from .raycast import PlanTerrain, Terrain
from .road import Centreline, Crossing, RoadPlan

WALL_COLOURS = np.array([
    [0.80, 0.74, 0.62], [0.72, 0.45, 0.35], [0.86, 0.84, 0.78], [0.60, 0.62, 0.64], [0.78, 0.66, 0.50],
    [0.55, 0.35, 0.28], [0.88, 0.80, 0.65], [0.66, 0.70, 0.72], [0.82, 0.60, 0.45], [0.45, 0.47, 0.50],
    [0.90, 0.88, 0.82], [0.70, 0.76, 0.70], [0.62, 0.52, 0.46],
])


@dataclass
class StreetLayout:
    """The street's cross-section, markings and ground textures (road frame, metres)."""

    lane_width: float
    lanes_per_dir: int
    y_right: float            # right kerb (negative)
    y_left: float             # left kerb (positive)
    kerb_height: float
    sidewalk_right: float     # widths
    sidewalk_left: float
    parking_left: float       # parking strip width on the left (0: none)
    x_lo: float
    x_hi: float
    centre_style: int         # 0 double yellow, 1 dashed white, 2 solid white
    dash_period: float
    dash_length: float
    dash_phase: float
    crosswalks: list = field(default_factory=list)
    asphalt: np.ndarray = field(default_factory=lambda: np.array([0.3, 0.3, 0.3]))
    paving: np.ndarray = field(default_factory=lambda: np.array([0.6, 0.6, 0.6]))
    tile: float = 0.4
    yard: np.ndarray = field(default_factory=lambda: np.array([0.35, 0.45, 0.25]))
    kerb_colour: np.ndarray = field(default_factory=lambda: np.array([0.7, 0.7, 0.68]))
    detail: float = 0.0       # texture_detail: multi-scale texture noise strength (0: generator 1.0)
    plan: RoadPlan | None = None   # centreline and side streets (None: straight, none)

    def __post_init__(self):
        if self.plan is None:
            self.plan = RoadPlan(Centreline.from_pieces([(1.0, 0.0)]), self.y_right, self.y_left)

    @property
    def terrain(self):
        if self.plan.simple:
            return Terrain(self.y_right, self.y_left, self.kerb_height)
        return PlanTerrain(self.plan, self.kerb_height)

    def side_street_layout(self, c: Crossing) -> StreetLayout:
        """The cross-section of side street ``c``, in its own street coordinates (x out from the
        main centreline, y across): one lane each way, dashed centre line, a crosswalk and stop
        lines just beyond the main street's kerb."""
        # x of a left arm runs out from 0 to +inf, a right arm's from 0 to -inf
        crossings = [self.y_left + self.sidewalk_left + 2.5 if arm > 0 else self.y_right - self.sidewalk_right - 2.5
                     for arm in c.sides]
        return StreetLayout(
            lane_width=c.lane_width, lanes_per_dir=1, y_right=-c.half_width, y_left=c.half_width,
            kerb_height=self.kerb_height, sidewalk_right=c.walk, sidewalk_left=c.walk, parking_left=0.0,
            x_lo=-np.inf, x_hi=np.inf, centre_style=1, dash_period=self.dash_period, dash_length=self.dash_length,
            dash_phase=self.dash_phase, crosswalks=crossings, asphalt=self.asphalt, paving=self.paving,
            tile=self.tile, yard=self.yard, kerb_colour=self.kerb_colour, detail=self.detail,
            plan=RoadPlan(Centreline.from_pieces([(1.0, 0.0)]), -c.half_width, c.half_width))

    def ego_lane_y(self) -> float:
        """Centre of the ego lane: the same-direction lane next to the centre line."""
        return -0.5 * self.lane_width

    def lane_centres(self, direction: int) -> list[float]:
        """Lane centres for traffic along +x (direction=+1, right side) or -x (-1, left side)."""
        return [-direction * (k + 0.5) * self.lane_width for k in range(self.lanes_per_dir)]


def make_centreline(seed: int, x_hi: float, p_curved: float) -> Centreline:
    """With probability ``p_curved`` a street that bends: a straight run (0-40 m), then alternating
    circular bends (radius 60-300 m, 12-45 deg, either way) and straights, up to ``x_hi``;
    otherwise one straight piece."""
    rng = sub_rng(seed, "plan")
    if rng.random() >= p_curved:
        return Centreline.from_pieces([(1.0, 0.0)])
    pieces = [(rng.uniform(0.0, 40.0), 0.0)]
    s = pieces[0][0]
    while s < x_hi:
        radius = rng.uniform(60.0, 300.0)
        angle = np.deg2rad(rng.uniform(12.0, 45.0))
        sign = 1.0 if rng.random() < 0.5 else -1.0
        pieces.append((radius * angle, sign / radius))
        straight = rng.uniform(20.0, 90.0)
        pieces.append((straight, 0.0))
        s += radius * angle + straight
    return Centreline.from_pieces(pieces)


def make_crossings(seed: int, centre: Centreline, s_lo: float, s_hi: float, p_cross: float) -> list[Crossing]:
    """Side streets at right angles on straight stretches between ``s_lo`` and ``s_hi`` (one
    candidate every 40-90 m, each taken with probability ``p_cross``; a candidate on a bend moves
    to the next straight), at least 40 m apart."""
    rng = sub_rng(seed, "crossings")
    out: list[Crossing] = []
    if p_cross <= 0:
        return out
    s = s_lo + rng.uniform(0.0, 40.0)
    while s < s_hi:
        take = rng.random() < p_cross
        lw = rng.uniform(2.9, 3.4)
        half = lw + rng.uniform(0.0, 0.6)
        corner = rng.uniform(3.0, 6.0)
        walk = rng.uniform(1.8, 3.2)
        u = rng.random()
        sides = (1, -1) if u < 0.4 else ((1,) if u < 0.7 else (-1,))
        reach = half + corner + walk + 6.0
        k = int(centre.piece(s))
        if centre.kappa[k] != 0.0 and k + 1 < len(centre.s0):     # on a bend: try the next straight
            k += 1
            s = max(s, centre.s0[k] + reach + 1.0)
        lo = -np.inf if k == 0 else centre.s0[k]
        hi = np.inf if k == len(centre.s0) - 1 else centre.s0[k + 1]
        if take and centre.kappa[k] == 0.0 and s - reach > lo and s + reach < hi and s < s_hi:
            out.append(Crossing(float(s), sides, float(half), float(corner), float(walk), 1, float(lw)))
        s += rng.uniform(40.0, 90.0)
    return out


def make_layout(seed: int, x_lo: float, x_hi: float, parked_cars: bool, detail: float = 0.0,
                curved: float = 0.0, crossings: float = 0.0, visible_hi: float | None = None) -> StreetLayout:
    """The street of ``seed`` from ``x_lo`` to ``x_hi`` (arc length). ``curved``: probability of
    bends; ``crossings``: probability of a side street per candidate spot between 15 m and
    ``visible_hi`` (default ``x_hi``)."""
    rng = sub_rng(seed, "street")
    lw = rng.uniform(3.0, 3.7)
    n = 1 if rng.random() < 0.6 else 2
    shoulder = rng.uniform(1.3, 2.4)
    parking = 2.3 if parked_cars else rng.uniform(0.5, 1.5)
    asphalt_tone = rng.uniform(0.22, 0.38)
    warm = rng.uniform(-0.02, 0.03)
    pave = np.clip(rng.uniform(0.45, 0.72) + rng.uniform(-0.06, 0.06, 3), 0, 1)
    n_cross = int(rng.integers(0, 3))
    crosswalks = sorted(float(x) for x in rng.uniform(x_lo + 40, x_hi - 60, n_cross))
    yard = np.array([rng.uniform(0.25, 0.45), rng.uniform(0.35, 0.5), rng.uniform(0.18, 0.3)])
    return StreetLayout(
        lane_width=lw, lanes_per_dir=n, y_right=-(n * lw + shoulder), y_left=n * lw + parking,
        kerb_height=rng.uniform(0.10, 0.18), sidewalk_right=rng.uniform(2.2, 4.5),
        sidewalk_left=rng.uniform(2.2, 4.5), parking_left=parking if parked_cars else 0.0,
        x_lo=x_lo, x_hi=x_hi, centre_style=int(rng.integers(0, 3)), dash_period=rng.uniform(8.0, 12.0),
        dash_length=rng.uniform(2.5, 4.0), dash_phase=rng.uniform(0, 12), crosswalks=crosswalks,
        asphalt=np.array([asphalt_tone + warm, asphalt_tone, asphalt_tone - warm]), paving=pave,
        tile=float(rng.choice([0.3, 0.4, 0.5, 0.6])), yard=yard,
        kerb_colour=np.clip(np.full(3, rng.uniform(0.55, 0.78)), 0, 1), detail=float(detail),
        plan=_plan(seed, n * lw + parking, -(n * lw + shoulder), x_hi, curved, crossings,
                   x_hi if visible_hi is None else visible_hi),
    )


def _plan(seed, y_left, y_right, x_hi, curved, crossings, visible_hi) -> RoadPlan:
    centre = make_centreline(seed, x_hi, curved)
    return RoadPlan(centre, y_right, y_left, make_crossings(seed, centre, 15.0, visible_hi, crossings))


def _facade_params(rng: np.random.Generator, side: int, x0: float, storey: float) -> list:
    """FACADE material params (see ``textures.facade``)."""
    wall = np.clip(WALL_COLOURS[rng.integers(len(WALL_COLOURS))] * rng.uniform(0.85, 1.1), 0, 1)
    style = int(rng.choice(4, p=[0.4, 0.3, 0.18, 0.12]))
    bay = rng.uniform(2.2, 4.2)
    ww = rng.uniform(0.35, 0.65) * bay
    wh = rng.uniform(0.4, 0.62) * storey
    sill = rng.uniform(0.7, 1.0)
    frame = np.clip(rng.choice([0.9, 0.2, 0.55]) + rng.uniform(-0.05, 0.05, 3), 0, 1)
    glass = np.array([0.18, 0.24, 0.30]) * rng.uniform(0.7, 1.3) + rng.uniform(-0.04, 0.04, 3)
    accent = np.clip(rng.uniform(0.1, 0.9, 3), 0, 1)
    return [*wall, style, storey, ww, wh, bay, sill, *frame, *np.clip(glass, 0, 1),
            rng.uniform(1.0, 6.0), float(rng.random() < 0.45), *accent, int(rng.integers(0, 8)), side,
            rng.uniform(0.0, 0.25), rng.uniform(0.25, 0.45)]


def _add_frontage(b: GeometryBuilder, rng: np.random.Generator, side: int, kerb: float, walk: float,
                  x0: float, x1: float, density: float, pose=None, plan: RoadPlan | None = None,
                  max_width=None) -> None:
    """A row of buildings on ``side`` (+1: left, façades facing -y) of a street whose kerb is at
    y = ``kerb``, from x0 to x1. ``pose``: the row's frame (None: street coordinates);
    ``plan``: skip lots in front of side streets; ``max_width(x)``: cap on lot widths (bends)."""
    x = x0
    while x < x1:
        width = rng.uniform(8.0, 26.0)
        if max_width is not None:
            width = min(width, max_width(x))
        gap = rng.uniform(2.0, 7.0) if rng.random() < 0.25 else 0.0
        setback = rng.uniform(3.0, 6.0) if rng.random() < 0.15 else rng.uniform(0.0, 1.2)
        depth = rng.uniform(8.0, 16.0)
        storey = rng.uniform(2.9, 3.5)
        floors = int(np.clip(rng.normal(2.5 + 5.0 * density, 1.5), 1, 10))
        height = floors * storey + rng.uniform(0.3, 1.0)
        front = kerb + side * (walk + setback)
        y0, y1 = sorted((front, front + side * depth))
        params = _facade_params(rng, side, x, storey)
        upper = floors >= 3 and rng.random() < 0.3
        inset = rng.uniform(1.0, 2.5) if upper else 0.0
        extra = int(rng.integers(1, 4)) * storey if upper else 0.0
        if plan is None or not plan.blocked(x, x + width, side, 1.0):
            b.begin("building", pose=pose)
            b.add(BOX, [x, y0, 0.0, x + width, y1, height], FACADE, params)
            if upper:   # a set-back upper block
                ya, yb = (y0 + inset, y1) if side > 0 else (y0, y1 - inset)
                b.add(BOX, [x + 0.5, ya, height, x + width - 0.5, yb, height + extra], FACADE, params)
            b.end()
        x += width + gap


def _add_buildings(b: GeometryBuilder, lay: StreetLayout, seed: int) -> None:
    centre = lay.plan.centre
    cap = None
    if not centre.straight:
        # on a bend a rigid lot bulges from the kerb by width^2 / (8 R): keep that under ~0.5 m
        def cap(x):
            k = float(np.max(np.abs(centre.kappa_at(np.array([x, x + 10.0, x + 26.0])))))
            return 26.0 if k == 0 else float(np.clip(np.sqrt(4.0 / k), 8.0, 26.0))
    for side in (1, -1):   # +1: left of the street (façade faces -y)
        rng = sub_rng(seed, "bld+" if side > 0 else "bld-")
        kerb = lay.y_left if side > 0 else lay.y_right
        walk = lay.sidewalk_left if side > 0 else lay.sidewalk_right
        density = rng.uniform(0.0, 1.0)           # tall city blocks vs low houses
        _add_frontage(b, rng, side, kerb, walk, lay.x_lo - 20.0, lay.x_hi + 20.0, density, plan=lay.plan,
                      max_width=cap)


def _add_side_street_buildings(b: GeometryBuilder, lay: StreetLayout, seed: int) -> None:
    """Buildings along each side street arm, in the arm's frame (x out from the main street)."""
    centre = lay.plan.centre
    for k, c in enumerate(lay.plan.crossings):
        for arm in c.sides:
            T = centre.frame(c.s)
            a = np.deg2rad(90.0 * arm)
            R = np.eye(4)
            R[:2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
            pose = T @ R
            main_kerb = lay.y_left if arm > 0 else -lay.y_right
            main_walk = lay.sidewalk_left if arm > 0 else lay.sidewalk_right
            start = main_kerb + main_walk + c.corner * 0.5
            rng = sub_rng(seed, f"side{k}{'+' if arm > 0 else '-'}")
            density = rng.uniform(0.0, 0.8)
            length = rng.uniform(40.0, 90.0)
            for side in (1, -1):
                kerb = c.half_width * side
                _add_frontage(b, rng, side, kerb, c.walk, start, start + length, density, pose=pose)


def _add_street_furniture(b: GeometryBuilder, lay: StreetLayout, seed: int) -> list[tuple[float, float]]:
    """Lamp posts, signs and bollards; returns their (x, y) so trees keep clear of them."""
    used = []
    for side in (1, -1):
        rng = sub_rng(seed, "lamp+" if side > 0 else "lamp-")
        kerb = lay.y_left if side > 0 else lay.y_right
        if rng.random() < 0.85:
            spacing = rng.uniform(20.0, 34.0)
            height = rng.uniform(5.5, 8.0)
            grey = np.clip(rng.uniform(0.2, 0.6) + rng.uniform(-0.03, 0.03, 3), 0, 1)
            x = lay.x_lo + rng.uniform(0, spacing)
            while x < lay.x_hi:
                y = kerb + side * 0.5
                arm = rng.uniform(1.0, 2.0)
                if lay.plan.blocked(x, x, side, 1.0):
                    x += spacing
                    continue
                b.begin("lamp")
                b.add(CYL, [x, y, 0.08, 0.0, height, 0], METAL, grey)
                ya, yb = sorted((y, y - side * arm))
                b.add(BOX, [x - 0.05, ya, height - 0.12, x + 0.05, yb, height], METAL, grey)
                yh = y - side * arm
                b.add(BOX, [x - 0.3, yh - 0.15, height - 0.25, x + 0.3, yh + 0.15, height - 0.05], LAMP,
                      [0.95, 0.93, 0.85])
                b.end()
                used.append((x, y))
                x += spacing
        rng = sub_rng(seed, "sign+" if side > 0 else "sign-")
        for _ in range(int(rng.integers(0, 4))):
            x = rng.uniform(lay.x_lo, lay.x_hi)
            y = kerb + side * rng.uniform(0.4, 0.8)
            h = rng.uniform(2.0, 2.6)
            plate = [[0.1, 0.3, 0.75], [0.85, 0.85, 0.85], [0.9, 0.75, 0.1], [0.1, 0.5, 0.2]][int(rng.integers(4))]
            symbol = [[0.95, 0.95, 0.95], [0.8, 0.1, 0.1], [0.1, 0.1, 0.1]][int(rng.integers(3))]
            kind = float(rng.integers(2))
            if lay.plan.blocked(x, x, side, 1.0):
                continue
            b.begin("sign")
            b.add(CYL, [x, y, 0.035, 0.0, h + 0.3, 0], METAL, [0.6, 0.6, 0.62])
            b.add(BOX, [x - 0.03 - 0.04, y - 0.3, h, x - 0.03, y + 0.3, h + 0.6], SIGN,
                  [*plate, *symbol, kind, y, h + 0.3])
            b.end()
            used.append((x, y))
        rng = sub_rng(seed, "bollard+" if side > 0 else "bollard-")
        for _ in range(int(rng.integers(0, 6))):
            x = rng.uniform(lay.x_lo, lay.x_hi)
            y = kerb + side * rng.uniform(0.3, 0.6)
            col = [[0.2, 0.2, 0.22], [0.6, 0.1, 0.1], [0.15, 0.3, 0.2], [0.7, 0.7, 0.1]][int(rng.integers(4))]
            if rng.random() < 0.5:
                part = (CYL, [x, y, rng.uniform(0.08, 0.15), 0.0, rng.uniform(0.8, 1.1), 0])
            else:   # a bin / utility box
                s = rng.uniform(0.4, 0.8)
                part = (BOX, [x - s / 2, y - 0.25, 0.0, x + s / 2, y + 0.25, rng.uniform(0.8, 1.3)])
            if lay.plan.blocked(x, x, side, 1.0):
                continue
            b.begin("bollard")
            b.add(*part, METAL, col)
            b.end()
            used.append((x, y))
    return used


def _add_trees(b: GeometryBuilder, lay: StreetLayout, seed: int, used: list) -> None:
    used = np.array(used).reshape(-1, 2)
    for side in (1, -1):
        rng = sub_rng(seed, "tree+" if side > 0 else "tree-")
        if rng.random() < 0.25:
            continue
        kerb = lay.y_left if side > 0 else lay.y_right
        walk = lay.sidewalk_left if side > 0 else lay.sidewalk_right
        spacing = rng.uniform(7.0, 15.0)
        green = np.array([rng.uniform(0.15, 0.4), rng.uniform(0.35, 0.55), rng.uniform(0.1, 0.22)])
        x = lay.x_lo + rng.uniform(0, spacing)
        while x < lay.x_hi:
            y = kerb + side * min(rng.uniform(0.9, 1.4), walk - 0.4)
            if len(used) == 0 or np.min(np.hypot(used[:, 0] - x, used[:, 1] - y)) > 2.0:
                r_trunk = rng.uniform(0.1, 0.22)
                h_trunk = rng.uniform(2.4, 3.6)
                rxy = rng.uniform(1.3, 2.6)
                rz = rng.uniform(1.4, 3.0)
                cz = max(h_trunk + 0.4 * rz, 2.6 + rz)
                col = np.clip(green * rng.uniform(0.8, 1.2, 3), 0, 1)
                crown = [x, y, cz, rxy * rng.uniform(0.9, 1.1), rxy * rng.uniform(0.9, 1.1), rz]
                ch = int(rng.integers(0, 8))
                if not lay.plan.blocked(x - rxy, x + rxy, side, 0.5):
                    b.begin("tree")
                    b.add(CYL, [x, y, r_trunk, 0.0, cz, 0], BARK, [0.32, 0.24, 0.17])
                    b.add(ELL, crown, FOLIAGE, [*col, ch])
                    b.end()
            x += spacing * rng.uniform(0.8, 1.25)


def _add_parked_cars(b: GeometryBuilder, lay: StreetLayout, seed: int) -> None:
    if lay.parking_left <= 0:
        return
    rng = sub_rng(seed, "parked")
    occupancy = rng.uniform(0.3, 0.9)
    x = lay.x_lo + rng.uniform(0, 5)
    while x < lay.x_hi:
        car = random_car(rng)
        L, W, H = car["size"]
        if rng.random() < occupancy and not lay.plan.blocked(x - 0.5, x + L + 0.5, 1, 0.0):
            yaw = 0.0 if rng.random() < 0.5 else np.pi
            yaw += rng.uniform(-0.03, 0.03)
            y = lay.y_left - 0.25 - W / 2 - rng.uniform(0.0, 0.15)
            c, s = np.cos(yaw), np.sin(yaw)
            T = np.eye(4)
            T[:2, :2] = [[c, -s], [s, c]]
            T[:3, 3] = [x + L / 2, y, H / 2]
            b.begin("parked_car", pose=T)
            add_car_parts(b, car)
            b.end()
        x += L + rng.uniform(0.8, 5.0)


def build_static(b: GeometryBuilder, lay: StreetLayout, seed: int) -> list[int]:
    """Add every static object of the street to ``b``; returns the indices of the groups built in
    street coordinates (to be placed along a bent centreline by :func:`bend_groups`)."""
    first = b.count
    _add_buildings(b, lay, seed)
    used = _add_street_furniture(b, lay, seed)
    _add_trees(b, lay, seed, used)
    _add_parked_cars(b, lay, seed)
    along = list(range(first, b.count))
    _add_side_street_buildings(b, lay, seed)
    return along


def bend_groups(geom: Geometry, groups: list[int], centre: Centreline) -> None:
    """Place groups built in street coordinates along a bent centreline: each group moves
    rigidly with the street frame at its anchor (the x of its bounding box centre, or of its
    pose), so it keeps its offset from the kerb there. No-op on a straight centreline."""
    if centre.straight:
        return
    for gi in groups:
        g = geom.groups[gi]
        anchor = float(g.pose[0, 3]) if g.pose is not None else 0.5 * float(g.bounds[0] + g.bounds[3])
        shift = np.eye(4)
        shift[0, 3] = -anchor
        g.pose = centre.frame(anchor) @ shift @ (g.pose if g.pose is not None else np.eye(4))

"""Procedural street layout from a seed: road cross-section and markings, sidewalks,
buildings, lamp posts, signs, trees, bollards and parked cars.

Everything is built in the *road frame* (x along the street, y to the left, z up, ground at
z=0) as groups of primitives (see ``primitives``). Each part of the scene draws from its own
random stream (``noise.sub_rng(seed, name)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .cars import add_car_parts, random_car
from .noise import sub_rng
from .primitives import BARK, BOX, CYL, ELL, FACADE, FOLIAGE, LAMP, METAL, SIGN, GeometryBuilder
from .raycast import Terrain

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

    @property
    def terrain(self) -> Terrain:
        return Terrain(self.y_right, self.y_left, self.kerb_height)

    def ego_lane_y(self) -> float:
        """Centre of the ego lane: the same-direction lane next to the centre line."""
        return -0.5 * self.lane_width

    def lane_centres(self, direction: int) -> list[float]:
        """Lane centres for traffic along +x (direction=+1, right side) or -x (-1, left side)."""
        return [-direction * (k + 0.5) * self.lane_width for k in range(self.lanes_per_dir)]


def make_layout(seed: int, x_lo: float, x_hi: float, parked_cars: bool) -> StreetLayout:
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
        kerb_colour=np.clip(np.full(3, rng.uniform(0.55, 0.78)), 0, 1),
    )


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


def _add_buildings(b: GeometryBuilder, lay: StreetLayout, seed: int) -> None:
    for side in (1, -1):   # +1: left of the street (façade faces -y)
        rng = sub_rng(seed, "bld+" if side > 0 else "bld-")
        kerb = lay.y_left if side > 0 else lay.y_right
        walk = lay.sidewalk_left if side > 0 else lay.sidewalk_right
        density = rng.uniform(0.0, 1.0)           # tall city blocks vs low houses
        x = lay.x_lo - 20.0
        while x < lay.x_hi + 20.0:
            width = rng.uniform(8.0, 26.0)
            gap = rng.uniform(2.0, 7.0) if rng.random() < 0.25 else 0.0
            setback = rng.uniform(3.0, 6.0) if rng.random() < 0.15 else rng.uniform(0.0, 1.2)
            depth = rng.uniform(8.0, 16.0)
            storey = rng.uniform(2.9, 3.5)
            floors = int(np.clip(rng.normal(2.5 + 5.0 * density, 1.5), 1, 10))
            height = floors * storey + rng.uniform(0.3, 1.0)
            front = kerb + side * (walk + setback)
            y0, y1 = sorted((front, front + side * depth))
            params = _facade_params(rng, side, x, storey)
            b.begin("building")
            b.add(BOX, [x, y0, 0.0, x + width, y1, height], FACADE, params)
            if floors >= 3 and rng.random() < 0.3:   # a set-back upper block
                inset = rng.uniform(1.0, 2.5)
                extra = int(rng.integers(1, 4)) * storey
                ya, yb = (y0 + inset, y1) if side > 0 else (y0, y1 - inset)
                b.add(BOX, [x + 0.5, ya, height, x + width - 0.5, yb, height + extra], FACADE, params)
            b.end()
            x += width + gap


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
            b.begin("sign")
            b.add(CYL, [x, y, 0.035, 0.0, h + 0.3, 0], METAL, [0.6, 0.6, 0.62])
            b.add(BOX, [x - 0.03 - 0.04, y - 0.3, h, x - 0.03, y + 0.3, h + 0.6], SIGN,
                  [*plate, *symbol, float(rng.integers(2)), y, h + 0.3])
            b.end()
            used.append((x, y))
        rng = sub_rng(seed, "bollard+" if side > 0 else "bollard-")
        for _ in range(int(rng.integers(0, 6))):
            x = rng.uniform(lay.x_lo, lay.x_hi)
            y = kerb + side * rng.uniform(0.3, 0.6)
            col = [[0.2, 0.2, 0.22], [0.6, 0.1, 0.1], [0.15, 0.3, 0.2], [0.7, 0.7, 0.1]][int(rng.integers(4))]
            b.begin("bollard")
            if rng.random() < 0.5:
                b.add(CYL, [x, y, rng.uniform(0.08, 0.15), 0.0, rng.uniform(0.8, 1.1), 0], METAL, col)
            else:   # a bin / utility box
                s = rng.uniform(0.4, 0.8)
                b.add(BOX, [x - s / 2, y - 0.25, 0.0, x + s / 2, y + 0.25, rng.uniform(0.8, 1.3)], METAL, col)
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
                b.begin("tree")
                b.add(CYL, [x, y, r_trunk, 0.0, cz, 0], BARK, [0.32, 0.24, 0.17])
                col = np.clip(green * rng.uniform(0.8, 1.2, 3), 0, 1)
                b.add(ELL, [x, y, cz, rxy * rng.uniform(0.9, 1.1), rxy * rng.uniform(0.9, 1.1), rz], FOLIAGE,
                      [*col, int(rng.integers(0, 8))])
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
        if rng.random() < occupancy:
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


def build_static(b: GeometryBuilder, lay: StreetLayout, seed: int) -> None:
    """Add every static object of the street to ``b``."""
    _add_buildings(b, lay, seed)
    used = _add_street_furniture(b, lay, seed)
    _add_trees(b, lay, seed, used)
    _add_parked_cars(b, lay, seed)

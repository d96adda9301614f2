"""The street's plan: a centreline of straight and circular pieces, and side streets.

**Street coordinates** (s, d): arc length s along the centreline and signed lateral offset d
(positive to the left). Everything along the street (lanes, markings, kerbs, lots, the ego's
and the actors' paths) is laid out in them, as generator 1.0 laid it out along the road
frame's x and y. The centreline starts at the road frame's origin heading along +x and is
tangent-continuous; a straight centreline maps (s, d) to (x, y) exactly, so generator 1.0's
streets are the special case of one straight piece.

**Side streets** (:class:`Crossing`) leave the centreline at right angles on straight pieces
(T or X junctions) with rounded kerb corners. The carriageway is the set where
:meth:`RoadPlan.inside` >= 0 (a signed distance-like function in metres: the main
carriageway's, and each side street's, smoothly united); the sidewalks and yards are the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

REACH = 60.0   # m: street coordinates are exact up to this far from the centreline


def _wrap(a):
    return (a + np.pi) % (2.0 * np.pi) - np.pi


@dataclass
class Centreline:
    """Tangent-continuous pieces: ``s0`` (P,) start arc lengths (``s0[0] = -inf`` conceptually:
    the first piece extends backwards, the last forwards), ``kappa`` (P,) curvatures (1/m,
    positive turning left, 0 straight), and each piece's start pose ``x0, y0, th0`` (P,)."""

    s0: np.ndarray
    kappa: np.ndarray
    x0: np.ndarray
    y0: np.ndarray
    th0: np.ndarray

    def __post_init__(self):
        # each piece's end point (the next one's start; inf for the last) and a bounding
        # circle (its mid point, half its length plus REACH) outside which it is never nearest
        self.x1 = np.append(self.x0[1:], np.inf)
        self.y1 = np.append(self.y0[1:], np.inf)
        length = np.append(np.diff(self.s0), np.inf)
        mx, my, _ = _advance(self.x0, self.y0, self.th0, self.kappa, np.where(np.isfinite(length), length / 2, 0.0))
        self.mid = np.stack([mx, my], axis=1)
        self.radius = length / 2 + REACH
        self.radius[0] = np.inf                       # the first piece extends backwards forever

    @property
    def straight(self) -> bool:
        return len(self.s0) == 1 and self.kappa[0] == 0.0

    @staticmethod
    def from_pieces(pieces: list[tuple[float, float]]) -> Centreline:
        """Pieces ``[(length, kappa), ...]`` starting at s = 0 at the origin heading +x. The first
        piece must be straight (it also extends to s < 0); the last extends to +inf."""
        if not pieces or pieces[0][1] != 0.0:
            raise ValueError("the first piece must be straight")
        s0, kap, x0, y0, th0 = [0.0], [0.0], [0.0], [0.0], [0.0]
        for k in range(1, len(pieces)):
            length, kp = pieces[k - 1]
            x, y, th = _advance(x0[-1], y0[-1], th0[-1], kap[-1], length)
            s0.append(s0[-1] + length)
            kap.append(float(pieces[k][1]))
            x0.append(x)
            y0.append(y)
            th0.append(th)
        return Centreline(*(np.array(v, dtype=np.float64) for v in (s0, kap, x0, y0, th0)))

    def piece(self, s) -> np.ndarray:
        return np.clip(np.searchsorted(self.s0, s, side="right") - 1, 0, len(self.s0) - 1)

    def pose(self, s):
        """(x, y, theta) of the centreline at arc lengths ``s`` (any shape)."""
        s = np.asarray(s, dtype=np.float64)
        if self.straight:
            return s.copy(), np.zeros_like(s), np.zeros_like(s)
        k = self.piece(s)
        return _advance(self.x0[k], self.y0[k], self.th0[k], self.kappa[k], s - self.s0[k])

    def kappa_at(self, s) -> np.ndarray:
        return self.kappa[self.piece(np.asarray(s, dtype=np.float64))]

    def to_world(self, s, d):
        """Street coordinates → road-frame (x, y)."""
        s = np.asarray(s, dtype=np.float64)
        d = np.asarray(d, dtype=np.float64)
        if self.straight:
            return s + 0.0 * d, d + 0.0 * s
        x, y, th = self.pose(s)
        return x - d * np.sin(th), y + d * np.cos(th)

    def to_street(self, x, y):
        """Road-frame (x, y) → street coordinates (s, d): the foot point on the nearest piece
        (each piece's own formula inside its extent; the distance to its end points outside).
        Pieces farther than ``REACH`` m are skipped, so a point farther than that from the street
        may get its coordinates from another piece, still with |d| >= ``REACH``."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if self.straight:
            return x.copy(), y.copy()
        best = np.full(x.shape, np.inf)
        s_out = np.zeros(x.shape)
        d_out = np.zeros(x.shape)
        P = len(self.s0)
        xf, yf = x.reshape(-1), y.reshape(-1)
        best, s_out, d_out = best.reshape(-1), s_out.reshape(-1), d_out.reshape(-1)
        for k in range(P):
            if np.isfinite(self.radius[k]):
                sel = np.flatnonzero(np.hypot(xf - self.mid[k, 0], yf - self.mid[k, 1]) < self.radius[k])
                if not len(sel):
                    continue
                px, py = xf[sel], yf[sel]
            else:
                sel, px, py = slice(None), xf, yf
            s, d, dist = self._piece_coords(k, px, py)
            take = dist < best[sel]
            best[sel] = np.where(take, dist, best[sel])
            s_out[sel] = np.where(take, s, s_out[sel])
            d_out[sel] = np.where(take, d, d_out[sel])
        s_out, d_out = s_out.reshape(x.shape), d_out.reshape(x.shape)
        return s_out, d_out

    def _piece_coords(self, k: int, x: np.ndarray, y: np.ndarray):
        """(s, d, distance to piece k) of points (x, y) by piece k's own formula."""
        P = len(self.s0)
        s_lo = -np.inf if k == 0 else self.s0[k]
        s_hi = np.inf if k == P - 1 else self.s0[k + 1]
        c, sn = np.cos(self.th0[k]), np.sin(self.th0[k])
        dx, dy = x - self.x0[k], y - self.y0[k]
        kp = self.kappa[k]
        if kp == 0.0:
            s = self.s0[k] + dx * c + dy * sn
            d = -dx * sn + dy * c
        else:
            cx, cy = self.x0[k] - sn / kp, self.y0[k] + c / kp        # centre of curvature
            rx, ry = x - cx, y - cy
            r = np.hypot(rx, ry)
            # the foot point's heading: the radius direction turned by -90 deg (left turn)
            th = np.arctan2(ry, rx) + (np.pi / 2 if kp > 0 else -np.pi / 2)
            s = self.s0[k] + _wrap(th - self.th0[k]) / kp
            d = 1.0 / kp - np.sign(kp) * r
        inside = (s >= s_lo) & (s <= s_hi)
        # outside its extent a piece's nearest point is one of its two end points
        d_lo = np.hypot(dx, dy) if k > 0 else np.inf
        d_hi = np.hypot(x - self.x1[k], y - self.y1[k]) if k < P - 1 else np.inf
        return s, d, np.where(inside, np.abs(d), np.minimum(d_lo, d_hi))

    def frame(self, s: float) -> np.ndarray:
        """T_road_street (4,4) at arc length ``s``: origin on the centreline, x along it, z up."""
        x, y, th = (float(v) for v in self.pose(s))
        c, sn = np.cos(th), np.sin(th)
        T = np.eye(4)
        T[:2, :2] = [[c, -sn], [sn, c]]
        T[:2, 3] = [x, y]
        return T


def _advance(x, y, th, kappa, ds):
    """Pose after ``ds`` metres along a piece of curvature ``kappa`` from (x, y, th) (broadcasts)."""
    x, y, th, kappa, ds = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (x, y, th, kappa, ds)))
    straight = kappa == 0.0
    k = np.where(straight, 1.0, kappa)
    th1 = th + kappa * ds
    xs = x + ds * np.cos(th)
    ys = y + ds * np.sin(th)
    xa = x + (np.sin(th1) - np.sin(th)) / k
    ya = y - (np.cos(th1) - np.cos(th)) / k
    return np.where(straight, xs, xa), np.where(straight, ys, ya), th1


@dataclass
class Crossing:
    """A side street leaving the main street at arc length ``s`` (a straight piece), at right
    angles, to the left (``sides`` contains +1), the right (-1) or both. ``half_width``: half
    its carriageway; ``corner``: kerb corner radius; ``walk``: its sidewalks' width."""

    s: float
    sides: tuple
    half_width: float
    corner: float
    walk: float
    lanes_per_dir: int = 1
    lane_width: float = 3.2


def smooth_max(a, b, k: float):
    """Polynomial smooth maximum: max(a, b) plus a blend where they are within ``k``."""
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.maximum(a, b) + h * h * k * 0.25


@dataclass
class RoadPlan:
    """The centreline, the main carriageway's kerbs (``y_right`` < 0 < ``y_left`` in street
    coordinates) and the side streets. ``simple``: one straight piece and no side streets
    (generator 1.0's street; the terrain then uses the exact analytic caster)."""

    centre: Centreline
    y_right: float
    y_left: float
    crossings: list = field(default_factory=list)

    @property
    def simple(self) -> bool:
        return self.centre.straight and not self.crossings

    def crossing_coords(self, c: Crossing, s, d):
        """Street coordinates → (along, across) of side street ``c``: along = d (out from the
        main centreline), across = s - c.s. Exact because the main street is straight there."""
        return d, s - c.s

    def inside_parts(self, s, d):
        """(main, [side street k]) inside-ness: positive in that carriageway (metres)."""
        main = np.minimum(d - self.y_right, self.y_left - d)
        sides = []
        for c in self.crossings:
            along, across = self.crossing_coords(c, s, d)
            arm = -np.inf * np.ones_like(along)
            for side in c.sides:
                arm = np.maximum(arm, side * along)
            sides.append(np.minimum(c.half_width - np.abs(across), arm))
        return main, sides

    def inside(self, s, d):
        """Inside-ness of street points: >= 0 on the carriageway (main or side streets, with
        rounded corners), < 0 on sidewalks and yards; about the distance to the kerb."""
        main, sides = self.inside_parts(s, d)
        f = main
        for c, g in zip(self.crossings, sides):
            f = smooth_max(f, g, c.corner)
        return f

    def inside_xy(self, x, y):
        s, d = self.centre.to_street(x, y)
        return self.inside(s, d)

    def kerb_normal_xy(self, x, y, h: float = 1e-4) -> np.ndarray:
        """(M,3) horizontal unit normals of the kerb faces at road-frame (x, y): towards the
        carriageway (up the gradient of :meth:`inside`), by central differences."""
        gx = self.inside_xy(x + h, y) - self.inside_xy(x - h, y)
        gy = self.inside_xy(x, y + h) - self.inside_xy(x, y - h)
        n = np.hypot(gx, gy)
        n = np.where(n > 0, n, 1.0)
        return np.stack([gx / n, gy / n, np.zeros_like(gx)], axis=1)

    def blocked(self, s0: float, s1: float, side: int, margin: float) -> bool:
        """Whether the lot [s0, s1] on ``side`` of the main street overlaps a side street's
        mouth (its carriageway, corners and sidewalks, plus ``margin``)."""
        for c in self.crossings:
            if side in c.sides:
                reach = c.half_width + c.corner + c.walk + margin
                if s1 > c.s - reach and s0 < c.s + reach:
                    return True
        return False

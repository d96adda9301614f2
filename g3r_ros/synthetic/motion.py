"""Smooth trajectories along the street: the ego car and the moving actors.

A trajectory is ``x(tau) = x0 + s*(v*tau + ax*sin(wx*tau + px) - ax*sin(px))`` along the street
and ``y(tau) = y0 + ay*(sin(wy*tau + py) - sin(py))`` across it (tau: seconds since the first
frame; street coordinates, see ``road``), heading along the velocity. Speeds never reverse
(``ax*wx < v/2``). On a bent street the pose follows the centreline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cars import add_car_parts, random_car
from .layout import StreetLayout
from .noise import sub_rng
from .primitives import GeometryBuilder
from .road import Centreline

# Moving actors stay at least this far ahead (bumper to bumper, metres) of whatever they
# follow, so that lane-shifted views of the ego never sit inside a moving car.
MIN_GAP = 8.0


@dataclass
class Trajectory:
    x0: float
    y0: float
    s: float          # +1 along +x, -1 along -x
    v: float
    ax: float = 0.0
    wx: float = 0.0
    px: float = 0.0
    ay: float = 0.0
    wy: float = 0.0
    py: float = 0.0
    z: float = 0.0    # height of the tracked frame's origin above the ground
    centre: Centreline | None = None   # the street's centreline (None or straight: x, y are road-frame)

    def xy(self, tau):
        tau = np.asarray(tau, dtype=np.float64)
        x = self.x0 + self.s * (self.v * tau + self.ax * (np.sin(self.wx * tau + self.px) - np.sin(self.px)))
        y = self.y0 + self.ay * (np.sin(self.wy * tau + self.py) - np.sin(self.py))
        return x, y

    def velocity(self, tau):
        tau = np.asarray(tau, dtype=np.float64)
        vx = self.s * (self.v + self.ax * self.wx * np.cos(self.wx * tau + self.px))
        vy = self.ay * self.wy * np.cos(self.wy * tau + self.py)
        return vx, vy

    def pose(self, tau: float) -> np.ndarray:
        """T_road_frame (4,4) at ``tau``: position, heading along the velocity, level."""
        x, y = self.xy(tau)
        vx, vy = self.velocity(tau)
        if self.centre is not None and not self.centre.straight:
            s = float(x)
            cx, cy, th = (float(v) for v in self.centre.pose(s))
            kappa = float(self.centre.kappa_at(s))
            yaw = th + np.arctan2(vy, vx * (1.0 - kappa * y))
            x, y = cx - y * np.sin(th), cy + y * np.cos(th)
        else:
            yaw = np.arctan2(vy, vx)
        c, s = np.cos(yaw), np.sin(yaw)
        T = np.eye(4)
        T[0, 0], T[0, 1], T[1, 0], T[1, 1] = c, -s, s, c
        T[:3, 3] = [float(x), float(y), self.z]
        return T


@dataclass
class MovingActor:
    """A moving car: ``actor_id`` (marker id), box ``size`` (3,), paint, trajectory of its
    box centre, and the geometry group holding its parts (box-local frame)."""

    actor_id: int
    size: np.ndarray
    car_type: str
    paint: np.ndarray
    traj: Trajectory
    group: int = -1


def make_ego(seed: int, lay: StreetLayout, speed_min: float, speed_max: float) -> Trajectory:
    rng = sub_rng(seed, "ego")
    v = rng.uniform(speed_min, speed_max)
    wx = 2 * np.pi / rng.uniform(6.0, 14.0)
    return Trajectory(
        x0=0.0, y0=lay.ego_lane_y() + rng.uniform(-0.2, 0.2), s=1.0, v=v,
        ax=rng.uniform(0.0, 0.15) * v / wx, wx=wx, px=rng.uniform(0, 2 * np.pi),
        ay=rng.uniform(0.0, 0.35), wy=2 * np.pi / rng.uniform(7.0, 16.0), py=rng.uniform(0, 2 * np.pi),
        centre=lay.plan.centre,
    )


def _place_ahead(traj: Trajectory, leader_x: np.ndarray, gap: float, taus: np.ndarray) -> None:
    """Set ``traj.x0`` so that x(tau) >= leader_x(tau) + gap at every sampled tau."""
    traj.x0 = 0.0
    x, _ = traj.xy(taus)
    traj.x0 = float(np.max(leader_x - x) + gap)


def make_actors(seed: int, lay: StreetLayout, ego: Trajectory, n: int, duration: float,
                builder: GeometryBuilder) -> list[MovingActor]:
    """``n`` moving cars in the lanes, all ahead of the ego through the drive (see MIN_GAP).

    Same-direction cars drive a little faster than the ego, oncoming cars start far enough
    ahead that they have not reached the ego when the drive ends. Each car's parts are added
    to ``builder`` as a group in its box-local frame.
    """
    rng = sub_rng(seed, "actors")
    taus = np.linspace(0.0, duration + 1.0, int(np.ceil((duration + 1.0) / 0.05)) + 1)
    lanes = [(+1, y) for y in lay.lane_centres(+1)] + [(-1, y) for y in lay.lane_centres(-1)]
    weights = np.array([0.4 if s > 0 else 0.6 for s, _ in lanes])
    weights /= weights.sum()
    ego_x, _ = ego.xy(taus)
    # last object placed in each lane: (x(tau) of its front/back towards the newcomer)
    last = {}
    actors = []
    for k in range(n):
        li = int(rng.choice(len(lanes), p=weights))
        s, y = lanes[li]
        car = random_car(rng)
        L, _, H = car["size"]
        if s > 0:
            v = ego.v + rng.uniform(0.3, 2.0)
        else:
            v = rng.uniform(4.0, 11.0)
        wx = 2 * np.pi / rng.uniform(5.0, 12.0)
        traj = Trajectory(x0=0.0, y0=y + rng.uniform(-0.25, 0.25), s=float(s), v=v,
                          ax=rng.uniform(0.0, 0.2) * v / wx, wx=wx, px=rng.uniform(0, 2 * np.pi),
                          ay=rng.uniform(0.0, 0.15), wy=2 * np.pi / rng.uniform(6.0, 12.0),
                          py=rng.uniform(0, 2 * np.pi), z=H / 2, centre=lay.plan.centre)
        if li in last:
            lead_x, lead_half = last[li]
            gap = lead_half + L / 2 + MIN_GAP * rng.uniform(1.0, 3.0)
        else:
            lead_x, lead_half = ego_x, 2.5                      # ego: its front ~2.5 m ahead of base_link
            gap = lead_half + L / 2 + MIN_GAP + (rng.uniform(0, 25) if s > 0 else rng.uniform(10, 45))
        _place_ahead(traj, lead_x, gap, taus)
        last[li] = (traj.xy(taus)[0], L / 2)
        gi = builder_group(builder, car, k)
        actors.append(MovingActor(k, car["size"].copy(), car["type"], car["paint"].copy(), traj, gi))
    return actors


def builder_group(builder: GeometryBuilder, car: dict, actor_id: int) -> int:
    builder.begin("actor", actor=actor_id)
    add_car_parts(builder, car)
    return builder.end()

"""Car shapes: a few boxes in the car's local frame (origin at the bounding-box centre, x
forward, y left, z up), shared by parked and moving cars."""

from __future__ import annotations

import numpy as np

from .primitives import BOX, CAR_BODY, CAR_CABIN, TIRE, GeometryBuilder

# name: (length, width, height) ranges, body-top fraction of the height, hood and boot lengths (fraction of L)
CAR_TYPES = {
    "hatchback": ((3.8, 4.2), (1.70, 1.78), (1.42, 1.52), 0.50, 0.22, 0.08),
    "sedan": ((4.4, 4.9), (1.76, 1.86), (1.40, 1.50), 0.50, 0.24, 0.18),
    "suv": ((4.5, 4.9), (1.85, 1.95), (1.65, 1.80), 0.55, 0.20, 0.06),
    "van": ((4.9, 5.4), (1.90, 2.02), (1.95, 2.15), 0.50, 0.12, 0.03),
}
PAINTS = np.array([
    [0.85, 0.85, 0.86], [0.10, 0.10, 0.11], [0.55, 0.56, 0.58], [0.70, 0.10, 0.08], [0.12, 0.22, 0.50],
    [0.90, 0.90, 0.92], [0.30, 0.32, 0.34], [0.15, 0.35, 0.20], [0.85, 0.65, 0.15], [0.40, 0.15, 0.10],
    [0.25, 0.45, 0.70], [0.60, 0.58, 0.50],
])


def random_car(rng: np.random.Generator) -> dict:
    """Draw a car: type, size (3,) = (L, W, H) and paint rgb (3,)."""
    names = list(CAR_TYPES)
    name = names[int(rng.choice(len(names), p=[0.25, 0.4, 0.25, 0.1]))]
    (l0, l1), (w0, w1), (h0, h1), body, hood, boot = CAR_TYPES[name]
    size = np.array([rng.uniform(l0, l1), rng.uniform(w0, w1), rng.uniform(h0, h1)])
    paint = PAINTS[rng.integers(len(PAINTS))] * rng.uniform(0.9, 1.05)
    return {"type": name, "size": size, "paint": np.clip(paint, 0, 1), "body": body, "hood": hood, "boot": boot,
            "tint": rng.uniform(0.05, 0.2)}


def add_car_parts(b: GeometryBuilder, car: dict) -> None:
    """Add a car's parts (inside an open group): lower body, cabin and four wheels.

    Material params: 0-2 paint rgb, 3-5 size L W H, 6 body-top z, 7-8 cabin x range, 9 glass tint.
    """
    L, W, H = car["size"]
    zb = -H / 2
    wheel_r = 0.31 if car["type"] != "van" else 0.34
    body_bottom = zb + wheel_r * 0.9
    body_top = zb + car["body"] * H + 0.25
    cab0 = -L / 2 + car["boot"] * L + 0.15
    cab1 = L / 2 - car["hood"] * L - 0.25
    params = [*car["paint"], L, W, H, body_top, cab0, cab1, car["tint"]]
    b.add(BOX, [-L / 2, -W / 2, body_bottom, L / 2, W / 2, body_top], CAR_BODY, params)
    b.add(BOX, [cab0, -W / 2 + 0.09, body_top, cab1, W / 2 - 0.09, H / 2], CAR_CABIN, params)
    ax = L / 2 - 0.12 * L - 0.35
    for sx in (-1, 1):
        for sy in (-1, 1):
            y_out, y_in = sy * (W / 2 - 0.04), sy * (W / 2 - 0.27)
            b.add(BOX, [sx * ax - wheel_r, min(y_out, y_in), zb, sx * ax + wheel_r, max(y_out, y_in), zb + 2 * wheel_r],
                  TIRE, [0.06, 0.06, 0.065, sx * ax, wheel_r])

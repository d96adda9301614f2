"""Lighting and sky: sun and ambient light, a sky gradient with clouds, and far structure
(mountain ridges and/or a distant skyline by azimuth) at infinity, so that the distant region
of a reconstruction has something to learn. Directions are in the road frame (z up)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .noise import NoiseBank, sub_rng


def kelvin_to_rgb(kelvin: float) -> np.ndarray:
    """Approximate colour of a black body at ``kelvin`` (1000-15000 K), max channel 1."""
    t = float(np.clip(kelvin, 1000.0, 15000.0)) / 100.0
    r = 1.0 if t <= 66 else 1.2929 * (t - 60) ** -0.1332
    g = 0.3901 * np.log(t) - 0.6318 if t <= 66 else 1.1299 * (t - 60) ** -0.0755
    b = 1.0 if t >= 66 else (0.0 if t <= 19 else 0.5432 * np.log(t - 10) - 1.1963)
    rgb = np.clip(np.array([r, g, b], dtype=np.float64), 0.0, 1.0)
    return rgb / rgb.max()


@dataclass
class Lighting:
    """sun_dir (3,) unit, towards the sun; sun_rgb, ambient_rgb (3,) radiance scales."""

    sun_dir: np.ndarray
    sun_rgb: np.ndarray
    ambient_rgb: np.ndarray
    kelvin: float


@dataclass
class Sky:
    zenith: np.ndarray
    horizon: np.ndarray
    fog_distance: float        # metres: geometry fades to the horizon colour with distance
    cloud_cover: float
    cloud_rgb: np.ndarray
    mountains: bool
    mountain_base: float       # radians above the horizon
    mountain_amp: float
    mountain_rgb: np.ndarray
    skyline: bool
    skyline_height: float      # radians
    skyline_rgb: np.ndarray
    skyline_cell: float        # radians of azimuth per distant building
    channel: int


def make_lighting(seed: int) -> tuple[Lighting, Sky]:
    rng = sub_rng(seed, "light")
    el = np.deg2rad(rng.uniform(15.0, 60.0))
    az = rng.uniform(0, 2 * np.pi)
    sun_dir = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    kelvin = rng.uniform(3800.0, 7000.0)
    overcast = rng.uniform(0.0, 1.0)
    sun = kelvin_to_rgb(kelvin) * rng.uniform(0.75, 0.95) * (1.0 - 0.45 * overcast)
    zenith = np.array([rng.uniform(0.18, 0.35), rng.uniform(0.35, 0.55), rng.uniform(0.7, 0.95)])
    zenith = zenith * (1 - 0.5 * overcast) + 0.5 * overcast * np.array([0.7, 0.72, 0.75])
    horizon = np.clip(np.array([0.78, 0.84, 0.92]) * rng.uniform(0.9, 1.05) * (0.9 + 0.1 * kelvin_to_rgb(kelvin)), 0, 1)
    ambient = (0.6 * horizon + 0.4 * zenith) * rng.uniform(0.48, 0.6) * (1.0 + 0.35 * overcast)
    light = Lighting(sun_dir, sun, ambient, kelvin)
    kind = rng.choice(3)
    sky = Sky(
        zenith=zenith, horizon=horizon, fog_distance=rng.uniform(250.0, 700.0),
        cloud_cover=rng.uniform(0.1, 0.7) + 0.3 * overcast,
        cloud_rgb=np.array([0.95, 0.95, 0.97]) * (1 - 0.3 * overcast),
        mountains=kind in (0, 2), mountain_base=np.deg2rad(rng.uniform(1.0, 3.0)),
        mountain_amp=np.deg2rad(rng.uniform(2.0, 6.0)),
        mountain_rgb=np.array([rng.uniform(0.3, 0.45), rng.uniform(0.38, 0.5), rng.uniform(0.5, 0.62)]),
        skyline=kind in (1, 2), skyline_height=np.deg2rad(rng.uniform(1.5, 4.0)),
        skyline_rgb=np.array([0.45, 0.5, 0.58]) * rng.uniform(0.8, 1.1),
        skyline_cell=np.deg2rad(rng.uniform(0.8, 2.5)), channel=int(rng.integers(0, 16)),
    )
    return light, sky


def sky_colour(dirs: np.ndarray, sky: Sky, light: Lighting, noise: NoiseBank) -> np.ndarray:
    """Radiance (M,3) of the sky and far structure seen along unit-ish directions (M,3) (road frame)."""
    d = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    el = np.arcsin(np.clip(d[:, 2], -1.0, 1.0))
    az = np.arctan2(d[:, 1], d[:, 0])
    h = np.clip(el / (np.pi / 2), 0.0, 1.0) ** 0.6
    col = sky.horizon[None] * (1 - h[:, None]) + sky.zenith[None] * h[:, None]
    # clouds: noise on a plane far above, fading towards the horizon
    up = np.maximum(d[:, 2], 0.02)
    cu, cv = d[:, 0] / up * 2.0, d[:, 1] / up * 2.0
    c = noise.fbm(cu, cv, 4, ch=sky.channel)
    cover = np.clip((c - (1.0 - sky.cloud_cover)) * 3.0, 0.0, 1.0) * np.clip(el / 0.15, 0.0, 1.0)
    col = col * (1 - cover[:, None]) + sky.cloud_rgb[None] * (0.8 + 0.2 * c[:, None]) * cover[:, None]
    # sun: glow and disc
    sd = light.sun_dir
    cs = np.clip(d[:, 0] * sd[0] + d[:, 1] * sd[1] + d[:, 2] * sd[2], -1.0, 1.0)
    glow = 0.35 * np.maximum(cs, 0.0) ** 24 + 2.0 * (cs > np.cos(np.deg2rad(0.8)))
    col = col + light.sun_rgb[None] * glow[:, None] * (1 - 0.7 * cover[:, None])
    # far structure (at infinity)
    a = (az + np.pi) / (2 * np.pi) * 256.0
    if sky.mountains:
        ridge = sky.mountain_base + sky.mountain_amp * noise.fbm(a * 0.25, 0.5, 4, ch=sky.channel + 3) ** 1.5
        m = el < ridge
        tex = 0.85 + 0.3 * noise.fbm(a * 4.0, el * 400.0, 2, ch=sky.channel + 5)
        haze = np.clip(el / np.maximum(ridge, 1e-6), 0, 1)[:, None] * 0.35 + 0.3
        mc = sky.mountain_rgb[None] * tex[:, None] * (1 - haze) + sky.horizon[None] * haze
        col = np.where(m[:, None], mc, col)
    if sky.skyline:
        k = np.floor((az + np.pi) / sky.skyline_cell)
        r1 = noise.cell(k, 7, ch=sky.channel + 7)
        tower = np.where(r1 < 0.25, 0.0, sky.skyline_height * (0.25 + 0.9 * noise.cell(k, 11, ch=sky.channel + 7)))
        s = el < tower
        lit = noise.cell(np.floor(az * 2500.0), np.floor(el * 1500.0), ch=sky.channel + 9) < 0.04
        sc = sky.skyline_rgb[None] * (0.9 + 0.1 * r1[:, None]) * np.where(lit, 1.25, 1.0)[:, None]
        col = np.where(s[:, None], sc, col)
    return col

"""Deterministic procedural noise: per-cell random values and smooth value noise.

Everything samples a bank of seeded random tiles (``CHANNELS`` tiles of ``SIZE``x``SIZE``),
so a texture is a pure function of its surface coordinates and the seed: the same world
point gets the same colour from any viewpoint, which is what exact ground truth needs.
"""

from __future__ import annotations

import numpy as np

SIZE = 256
MASK = SIZE - 1
CHANNELS = 16


def sub_rng(seed: int, name: str) -> np.random.Generator:
    """An independent generator for one part of the scene (``name``), stable across versions of
    the other parts: adding a tree never moves a building."""
    key = int.from_bytes(name.encode("utf-8")[:8].ljust(8, b"\0"), "little")
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, key & 0xFFFFFFFF, key >> 32])


class NoiseBank:
    """Seeded random tiles. ``cell`` gives a random value per integer cell, ``value`` smooth
    value noise (C1, smoothstep-interpolated), ``fbm`` a sum of octaves of it. Values in [0,1)."""

    def __init__(self, seed: int):
        self.flat = sub_rng(seed, "noise").random(CHANNELS * SIZE * SIZE)

    def cell(self, i, j, ch: int = 0) -> np.ndarray:
        """Random value of integer cell (i, j): arrays of any (equal) shape."""
        i = np.asarray(i, dtype=np.int64)
        j = np.asarray(j, dtype=np.int64)
        idx = (ch % CHANNELS) * SIZE * SIZE + (i & MASK) * SIZE + (j & MASK)
        return self.flat[idx]

    def value(self, u, v, ch: int = 0) -> np.ndarray:
        """Smooth value noise at continuous (u, v): one lattice cell per unit."""
        u = np.asarray(u, dtype=np.float64)
        v = np.asarray(v, dtype=np.float64)
        fu = np.floor(u)
        fv = np.floor(v)
        i = fu.astype(np.int64)
        j = fv.astype(np.int64)
        su = u - fu
        sv = v - fv
        su = su * su * (3.0 - 2.0 * su)
        sv = sv * sv * (3.0 - 2.0 * sv)
        base = (ch % CHANNELS) * SIZE * SIZE
        i0 = (i & MASK) * SIZE
        i1 = ((i + 1) & MASK) * SIZE
        j0 = j & MASK
        j1 = (j + 1) & MASK
        f = self.flat
        a = f[base + i0 + j0]
        b = f[base + i1 + j0]
        c = f[base + i0 + j1]
        d = f[base + i1 + j1]
        top = a + (b - a) * su
        bot = c + (d - c) * su
        return top + (bot - top) * sv

    def fbm(self, u, v, octaves: int = 3, ch: int = 0, gain: float = 0.5) -> np.ndarray:
        """Fractal sum of ``octaves`` value-noise octaves (frequency doubling), normalized to [0,1)."""
        u = np.asarray(u, dtype=np.float64)
        v = np.asarray(v, dtype=np.float64)
        total = np.zeros(np.broadcast(u, v).shape)
        amp, norm, freq = 1.0, 0.0, 1.0
        for k in range(octaves):
            # Offset and shear each octave so the lattices never line up.
            total += amp * self.value(u * freq + 17.31 * k, v * freq + 0.37 * u * (k > 0) + 5.17 * k, ch + k)
            norm += amp
            amp *= gain
            freq *= 2.03
        return total / norm

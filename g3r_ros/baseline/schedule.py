"""Learning-rate schedule and scene extent, as graphdeco 3DGS defines them."""

from __future__ import annotations

import logging
import math

import numpy as np

LOG = logging.getLogger(__name__)


def expon_lr(step: int, lr_init: float, lr_final: float, max_steps: int,
             delay_steps: int = 0, delay_mult: float = 1.0) -> float:
    """Log-linear decay from ``lr_init`` (step 0) to ``lr_final`` (step ``max_steps``, held after).

    ``lr(step) = delay(step) * exp((1-t) log lr_init + t log lr_final)``, ``t = clip(step /
    max_steps, 0, 1)``. With ``delay_steps > 0`` the rate is warmed up by
    ``delay(step) = delay_mult + (1 - delay_mult) sin(pi/2 clip(step / delay_steps, 0, 1))``
    (graphdeco's ``get_expon_lr_func``). Negative steps and an all-zero schedule give 0.
    """
    if step < 0 or (lr_init == 0.0 and lr_final == 0.0):
        return 0.0
    if lr_init <= 0.0 or lr_final <= 0.0:
        raise ValueError(f"expon_lr needs positive rates, got {lr_init}, {lr_final}")
    if delay_steps > 0:
        delay = delay_mult + (1.0 - delay_mult) * math.sin(0.5 * math.pi * min(max(step / delay_steps, 0.0), 1.0))
    else:
        delay = 1.0
    t = min(max(step / max(max_steps, 1), 0.0), 1.0)
    return delay * math.exp(math.log(lr_init) * (1.0 - t) + math.log(lr_final) * t)


def scene_extent(camera_centers: np.ndarray, factor: float = 1.1, fallback: float = 1.0) -> float:
    """``factor`` x the largest distance of the camera centres (M,3) from their mean.

    graphdeco's ``getNerfppNorm`` radius, which scales the position LR and the clone/split
    and world-size thresholds. When all centres coincide (a single view) the radius is 0,
    which would freeze the positions; ``fallback`` is returned instead, with a warning.
    """
    c = np.asarray(camera_centers, dtype=np.float64).reshape(-1, 3)
    if len(c) == 0 or not np.isfinite(c).all():
        raise ValueError("scene_extent needs at least one finite camera centre")
    radius = float(np.linalg.norm(c - c.mean(0), axis=1).max())
    extent = radius * factor
    if extent < 1e-6:
        LOG.warning("source cameras coincide (radius 0); using fallback scene extent %.3g", fallback)
        return float(fallback)
    return extent

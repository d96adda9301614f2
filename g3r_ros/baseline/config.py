"""Settings of the per-scene 3DGS baseline (mirrored by ``config/baseline_3dgs.yaml``).

Every default is the graphdeco reference value (``arguments/__init__.py`` and
``scene/gaussian_model.py`` of Kerbl et al. 2023) for a 30k-iteration run. Shorter runs
scale the iteration-valued fields with ``schedule_scale`` (see :meth:`Baseline3DGSConfig.resolved`
and docs/BASELINE.md).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass

LOG = logging.getLogger(__name__)

# 0-th order real spherical harmonic: graphdeco's rgb = SH_C0 * f_dc + 0.5.
SH_C0 = 0.28209479177387814

# Fields counted in iterations; ``schedule_scale`` multiplies them.
SCHEDULE_FIELDS = (
    "position_lr_max_steps",
    "position_lr_delay_steps",
    "densify_from_iter",
    "densify_until_iter",
    "densification_interval",
    "opacity_reset_interval",
)
# Of those, the ones that must stay >= 1 after scaling (periods and the LR horizon).
_MIN_ONE = ("position_lr_max_steps", "densification_interval", "opacity_reset_interval")


@dataclass
class Baseline3DGSConfig:
    """Hyper-parameters of the faithful 3DGS baseline (graphdeco defaults)."""

    # Length of the reference run the schedule below is written for.
    iterations: int = 30_000
    # Learning rates (Adam, per parameter group). Position LR is multiplied by the scene
    # extent and decays exponentially from init to final over position_lr_max_steps.
    position_lr_init: float = 1.6e-4
    position_lr_final: float = 1.6e-6
    position_lr_delay_mult: float = 0.01
    position_lr_delay_steps: int = 0          # graphdeco passes none: the delay is inactive
    position_lr_max_steps: int = 30_000
    feature_lr: float = 2.5e-3                # SH-DC learning rate; RGB gets feature_lr * SH_C0
    opacity_lr: float = 0.05                  # original release (0.025 in later graphdeco)
    scaling_lr: float = 5e-3
    rotation_lr: float = 1e-3
    adam_eps: float = 1e-15
    # Loss: (1 - lambda) L1 + lambda (1 - SSIM), SSIM with an 11x11 Gaussian window.
    lambda_dssim: float = 0.2
    ssim_window: int = 11
    ssim_sigma: float = 1.5
    # Densification and pruning.
    percent_dense: float = 0.01
    densification_interval: int = 100
    opacity_reset_interval: int = 3000
    densify_from_iter: int = 500
    densify_until_iter: int = 15_000
    densify_grad_threshold: float = 2e-4      # NDC units (pixel gradient * size / 2)
    min_opacity: float = 0.005
    max_screen_size: float = 20.0             # pixels; only after the first opacity reset
    max_world_size: float = 0.1               # fraction of the scene extent
    split_n: int = 2
    split_scale_divisor: float = 0.8          # split children get scale / (0.8 * split_n)
    opacity_reset_value: float = 0.01
    # graphdeco zeroes max_radii2D inside densification_postfix, before its prune test,
    # so its screen-size prune never fires. False reproduces that; True applies the test
    # as the paper describes (max radius seen since the last densification).
    screen_size_prune: bool = False
    # Scene extent: extent_factor * radius of the source camera centres (getNerfppNorm).
    extent_factor: float = 1.1
    fallback_extent: float = 1.0              # used when all source cameras coincide
    # Views and background.
    views_per_iter: int = 1                   # graphdeco: 1 random view, no repeat per epoch
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)   # graphdeco default: black
    random_background: bool = False
    # Deviations for short CPU runs (docs/BASELINE.md).
    schedule_scale: float | str = "auto"      # "auto": iters / iterations; or a number
    # Floor on a *scaled* densification_interval, in epochs of source views (never above the
    # unscaled value); opacity_reset_interval keeps its ratio to it. 0 disables.
    min_interval_epochs: float = 1.0
    max_gaussians: int = 0                    # 0 = unlimited (graphdeco); else cap growth

    def __post_init__(self):
        self.background = tuple(float(v) for v in self.background)

    def validate(self) -> None:
        if self.iterations < 1:
            raise ValueError("baseline.iterations must be >= 1")
        for name in ("position_lr_init", "position_lr_final", "feature_lr", "opacity_lr", "scaling_lr",
                     "rotation_lr", "adam_eps", "percent_dense", "densify_grad_threshold", "extent_factor",
                     "fallback_extent", "split_scale_divisor"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"baseline.{name} must be > 0, got {getattr(self, name)!r}")
        if not 0.0 <= self.lambda_dssim <= 1.0:
            raise ValueError(f"baseline.lambda_dssim must be in [0, 1], got {self.lambda_dssim}")
        if self.ssim_window < 1 or self.ssim_window % 2 == 0:
            raise ValueError(f"baseline.ssim_window must be a positive odd number, got {self.ssim_window}")
        if self.split_n < 2:
            raise ValueError(f"baseline.split_n must be >= 2, got {self.split_n}")
        if self.views_per_iter < 1:
            raise ValueError("baseline.views_per_iter must be >= 1")
        if len(tuple(self.background)) != 3:
            raise ValueError(f"baseline.background must have 3 values, got {self.background!r}")
        if not 0.0 < self.opacity_reset_value < 1.0 or not 0.0 <= self.min_opacity < 1.0:
            raise ValueError("baseline.opacity_reset_value must be in (0,1) and min_opacity in [0,1)")
        if self.min_interval_epochs < 0:
            raise ValueError("baseline.min_interval_epochs must be >= 0")
        if self.max_gaussians < 0:
            raise ValueError("baseline.max_gaussians must be >= 0 (0 = unlimited)")
        for name in SCHEDULE_FIELDS:
            if int(getattr(self, name)) < 0:
                raise ValueError(f"baseline.{name} must be >= 0")
        self.scale_for(self.iterations)  # checks schedule_scale

    def scale_for(self, iters: int) -> float:
        """The factor applied to the schedule for a run of ``iters`` iterations."""
        s = self.schedule_scale
        if isinstance(s, str):
            if s != "auto":
                raise ValueError(f"baseline.schedule_scale must be 'auto' or a number, got {s!r}")
            return max(int(iters), 1) / self.iterations
        s = float(s)
        if not s > 0:
            raise ValueError(f"baseline.schedule_scale must be > 0, got {s}")
        return s

    def resolved(self, iters: int, n_views: int | None = None) -> Baseline3DGSConfig:
        """A copy whose iteration-valued fields are scaled for a run of ``iters`` iterations.

        Each field in ``SCHEDULE_FIELDS`` becomes ``round(value * scale)`` (periods and the
        LR horizon at least 1); ``schedule_scale`` of the copy is 1.0. At ``iters ==
        iterations`` with ``"auto"`` this is the graphdeco schedule unchanged.

        When ``scale < 1`` and ``n_views`` (source views) is given, the scaled
        ``densification_interval`` is raised to ``min_interval_epochs`` epochs
        (``ceil(min_interval_epochs * n_views / views_per_iter)`` iterations) but never above
        its unscaled value, so that each densification round averages the gradient over the
        views; ``opacity_reset_interval`` is then kept at its graphdeco ratio (30x) to it.
        """
        scale = self.scale_for(iters)
        changes: dict = {"schedule_scale": 1.0, "iterations": max(int(iters), 1)}
        for name in SCHEDULE_FIELDS:
            v = round(int(getattr(self, name)) * scale)
            changes[name] = max(v, 1) if name in _MIN_ONE else v
        if scale < 1.0 and n_views and self.min_interval_epochs > 0:
            floor = math.ceil(self.min_interval_epochs * n_views / self.views_per_iter)
            interval = max(changes["densification_interval"], min(int(self.densification_interval), floor))
            if interval != changes["densification_interval"]:
                ratio = int(self.opacity_reset_interval) / max(int(self.densification_interval), 1)
                changes["opacity_reset_interval"] = max(changes["opacity_reset_interval"], round(interval * ratio))
                changes["densification_interval"] = interval
        out = dataclasses.replace(self, **changes)
        if scale != 1.0:
            LOG.info("3DGS schedule scaled by %.4g for %d iterations: %s", scale, iters,
                     {k: changes[k] for k in SCHEDULE_FIELDS})
        return out

"""Per-scene refinement of a G3R map: the "anytime" stage after the T learned steps.

G3R gives a map in seconds that stops improving after its T steps; per-scene 3DGS is slow to
start but keeps improving. :func:`refine` continues from G3R's output on the same source
views, with the same renderer and decomposition, for as long as a time and/or iteration
budget allows:

1. every component (background, actors in box-local frames, distant sphere) is decoded once
   by G3R's decoders into explicit Gaussians (means, log-scales, quaternions, RGB, opacity
   logits) in its own frame;
2. Adam optimizes them on random batches of source views (actors placed per stamp by their
   tracks) with the 3DGS photometric loss, at learning rates sized for an already fitted
   map, and with per-kind rules (``RefineConfig``); optional densification of the
   background clones/splits where the screen-space gradient says it pays (never an opacity
   reset);
3. the source PSNR of every epoch (one pass over the source views) is logged; the best
   state so far is kept, so a NaN or a drop of more than ``max_drop_db`` below the start
   stops refinement and returns the best state: G3R's result is never lost.

The refined map is a :class:`~g3r_ros.scene.NeuralScene` whose states hold the explicit
channels (latents zero), decoded by :data:`EXPLICIT_DECODERS` (no residual). docs/REFINE.md
records how this recipe was chosen, with the measurements.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .baseline.config import Baseline3DGSConfig
from .baseline.densify import add_densification_stats, densify_and_prune
from .baseline.loss import photometric_loss
from .baseline.schedule import expon_lr, scene_extent
from .baseline.state import TrainableGaussians
from .devices import resolve_device
from .gaussians import (
    COMPONENT_KINDS,
    EXPLICIT_CHANNELS,
    LATENT_CHANNELS,
    clamp_straight_through,
    normalize_quats,
    params_from_explicit,
    state_from_params,
)
from .geometry import CameraBatch
from .metrics import psnr_from_mse
from .progress import progress_bar
from .render import render
from .render.types import GaussianParams
from .scene import NeuralScene, place_params
from .views import image_to_tensor
from .window import SceneWindow

LOG = logging.getLogger(__name__)

# Decoders of a refined scene: its states hold the explicit channels themselves.
EXPLICIT_DECODERS = {kind: params_from_explicit for kind in COMPONENT_KINDS}

_GROUPS = ("means", "quats", "log_scales", "opacity_logits", "rgb")


@dataclass
class RefineConfig:
    """Settings of :func:`refine` (mirrored by ``config/refine.yaml``).

    seconds / iters: budgets (wall seconds of refinement, callbacks excluded / Adam
    iterations); None = unlimited, at least one must be set; refinement stops at the first
    reached. views_per_iter: source views per Adam step. lambda_dssim: weight of the D-SSIM
    term of the 3DGS loss ``(1-λ) L1 + λ (1-SSIM)``. lr_*: Adam learning rates per parameter
    group; ``lr_means`` is in units of the scene extent (as in 3DGS) and decays
    exponentially to ``lr_means_final`` over the budget. distant: which groups of the distant
    sphere are optimized: "all", "appearance" (rgb + opacity) or "none".
    densify_every: densify the background every this many epochs (0 = never); the rules are
    3DGS's (``densify_grad_threshold``, ``percent_dense``, pruning below ``min_opacity``),
    growth capped at ``max_growth`` x the initial count. max_drop_db: an epoch whose source PSNR
    falls more than this below the start ends refinement (diverged; the best state is kept).
    """

    seconds: float | None = 60.0
    iters: int | None = None
    device: str = "auto"
    backend: str = "auto"
    views_per_iter: int = 1
    loss: str = "l2"
    lambda_dssim: float = 0.0
    lr_means: float = 1.6e-5
    lr_means_final: float = 1.6e-6
    lr_quats: float = 1e-3
    lr_log_scales: float = 5e-3
    lr_opacity: float = 0.05
    lr_rgb: float = 2.5e-3
    adam_betas: tuple = (0.9, 0.999)
    distant: str = "appearance"
    densify_every: int = 0
    densify_grad_threshold: float = 2e-4
    percent_dense: float = 0.01
    min_opacity: float = 0.005
    max_growth: float = 2.0
    max_drop_db: float = 1.0
    background: tuple = (0.0, 0.0, 0.0)
    seed: int = 0

    def __post_init__(self):
        self.background = tuple(float(v) for v in self.background)
        self.adam_betas = tuple(float(v) for v in self.adam_betas)

    def validate(self) -> None:
        if self.seconds is None and self.iters is None:
            raise ValueError("refine needs a budget: set seconds and/or iters")
        if self.seconds is not None and not (isinstance(self.seconds, (int, float)) and self.seconds >= 0
                                             and math.isfinite(self.seconds)):
            raise ValueError(f"refine.seconds must be a finite number >= 0 or null, got {self.seconds!r}")
        if self.iters is not None and (not isinstance(self.iters, int) or isinstance(self.iters, bool)
                                       or self.iters < 0):
            raise ValueError(f"refine.iters must be an integer >= 0 or null, got {self.iters!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"refine.device must be auto, cpu or cuda, got {self.device!r}")
        if self.views_per_iter < 1:
            raise ValueError("refine.views_per_iter must be >= 1")
        if self.loss not in ("l1", "l2"):
            raise ValueError(f"refine.loss must be l1 or l2, got {self.loss!r}")
        if not 0.0 <= self.lambda_dssim <= 1.0:
            raise ValueError(f"refine.lambda_dssim must be in [0, 1], got {self.lambda_dssim}")
        for name in ("lr_means", "lr_means_final", "lr_quats", "lr_log_scales", "lr_opacity", "lr_rgb"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v >= 0 and math.isfinite(v)):
                raise ValueError(f"refine.{name} must be a finite number >= 0, got {v!r}")
        if len(self.adam_betas) != 2 or not all(0.0 <= b < 1.0 for b in self.adam_betas):
            raise ValueError(f"refine.adam_betas must be two numbers in [0, 1), got {self.adam_betas!r}")
        if self.distant not in ("all", "appearance", "none"):
            raise ValueError(f"refine.distant must be all, appearance or none, got {self.distant!r}")
        if self.densify_every < 0 or self.max_growth < 1.0:
            raise ValueError("refine.densify_every must be >= 0 and max_growth >= 1")
        if not self.max_drop_db > 0:
            raise ValueError(f"refine.max_drop_db must be > 0, got {self.max_drop_db}")
        if len(self.background) != 3:
            raise ValueError(f"refine.background must have 3 values, got {self.background!r}")


@dataclass
class RefineResult:
    """The refined map and its log.

    scene: the best state (explicit channels; decode with :data:`EXPLICIT_DECODERS`).
    log: one entry per epoch ``{iter, epoch, elapsed_s, psnr_source, n_gaussians}`` (entry 0
    is the start). stop_reason: "seconds", "iters", "cancelled" or "diverged". start_psnr /
    best_psnr: source PSNR of the start and of the best epoch (at iteration best_iter; 0 = the start).
    """

    scene: NeuralScene
    log: list[dict]
    stop_reason: str
    iterations: int
    total_s: float
    start_psnr: float
    best_psnr: float
    best_iter: int
    device: str

    @torch.no_grad()
    def params_at(self, stamp: float | None = None) -> GaussianParams:
        """Renderable Gaussians of all components in world at ``stamp`` (detached)."""
        return self.scene.params_at(EXPLICIT_DECODERS, stamp).detach()


def recipe(**overrides) -> RefineConfig:
    """The shipped recipe (``config/refine.yaml``) with ``overrides`` (field → value), validated."""
    from .config import config_path, from_dict, load_yaml

    cfg = from_dict(RefineConfig, {**load_yaml(config_path("refine.yaml")), **overrides}, where="refine")
    cfg.validate()
    return cfg


def explicit_scene(scene: NeuralScene, decoders=None) -> NeuralScene:
    """Decode every component once: a scene whose states hold the decoded explicit channels
    (latents zero), to be rendered with :data:`EXPLICIT_DECODERS`.

    decoders: kind → :class:`~g3r_ros.gaussians.GaussianDecoder` (e.g. ``model.decoders``), or
    None when the states already are explicit. Frames are unchanged (actors box-local).
    """
    states = []
    with torch.no_grad():
        for c in scene.components:
            decode = decoders is not None and len(c) > 0
            explicit = decoders[c.kind].decode_explicit(c.state) if decode else c.state[:, :EXPLICIT_CHANNELS]
            states.append(torch.cat([explicit, explicit.new_zeros(len(c), LATENT_CHANNELS)], 1))
    return scene.with_states(states)


@dataclass
class _View:
    camera: CameraBatch
    image: torch.Tensor      # (1,H,W,3) in [0,1]
    stamp: float


class _Model:
    """Per-component trainable Gaussians and how they render at a stamp."""

    def __init__(self, scene: NeuralScene, cfg: RefineConfig, extent: float, device):
        self.scene = scene
        self.extent = extent
        self.trainables: list[TrainableGaussians | None] = []
        for c in scene.components:
            if len(c) == 0:
                self.trainables.append(None)
                continue
            lrs = {"means": cfg.lr_means * extent, "quats": cfg.lr_quats, "log_scales": cfg.lr_log_scales,
                   "opacity_logits": cfg.lr_opacity, "rgb": cfg.lr_rgb}
            if c.kind == "distant" and cfg.distant != "all":
                for g in ("means", "quats", "log_scales"):
                    lrs[g] = 0.0
                if cfg.distant == "none":
                    lrs["opacity_logits"] = lrs["rgb"] = 0.0
            t = TrainableGaussians(EXPLICIT_DECODERS[c.kind](c.state), lrs, 1e-15, device)
            for group in t.optimizer.param_groups:
                group["betas"] = cfg.adam_betas
            self.trainables.append(t)
        self.base_lrs = [None if t is None else {g: t.lr(g) for g in _GROUPS} for t in self.trainables]

    def set_means_lr_factor(self, factor: float) -> None:
        for t, lrs in zip(self.trainables, self.base_lrs):
            if t is not None:
                t.set_lr("means", lrs["means"] * factor)

    def params_at(self, stamp: float | None) -> tuple[GaussianParams, list[tuple[int, int, int]]]:
        """World Gaussians at ``stamp`` and rows (component index, start, stop) of each part."""
        parts, rows, start = [], [], 0
        for i, (c, t) in enumerate(zip(self.scene.components, self.trainables)):
            if t is None or (c.kind == "actor" and stamp is None):
                continue
            g = t.gaussians()
            p = GaussianParams(g.means, normalize_quats(g.quats), g.log_scales, g.opacity_logits,
                               clamp_straight_through(g.rgb, 0.0, 1.0))
            if c.kind == "actor":
                p = place_params(p, c.track.pose_at(float(stamp)))
            parts.append(p)
            rows.append((i, start, start + len(p)))
            start += len(p)
        return (GaussianParams.cat(parts) if len(parts) > 1 else parts[0]), rows

    def snapshot(self) -> NeuralScene:
        """The current parameters as a detached scene of explicit states."""
        states = []
        for c, t in zip(self.scene.components, self.trainables):
            if t is None:
                states.append(c.state.detach().clone())
            else:
                g = t.gaussians()
                p = GaussianParams(*(x.detach().clone() for x in (g.means, g.quats, g.log_scales,
                                                                   g.opacity_logits, g.rgb)))
                states.append(state_from_params(p))
        return self.scene.with_states(states)

    def finite(self) -> bool:
        return all(t is None or all(torch.isfinite(t.params[g]).all() for g in _GROUPS) for t in self.trainables)

    def grads_finite(self) -> bool:
        return all(t is None or all(t.params[g].grad is None or torch.isfinite(t.params[g].grad).all()
                                    for g in _GROUPS) for t in self.trainables)

    def step(self) -> None:
        for t in self.trainables:
            if t is not None:
                t.optimizer.step()
                t.optimizer.zero_grad(set_to_none=True)

    def __len__(self) -> int:
        return sum(len(t) for t in self.trainables if t is not None)


def _source_views(window: SceneWindow, device) -> list[_View]:
    return [_View(CameraBatch.from_cameras([kf.camera], device=device), image_to_tensor(kf.image, device).unsqueeze(0),
                  float(kf.stamp)) for kf in window.source_keyframes]


class _Budget:
    """Wall time of refinement without the callbacks, and which budget (if any) is spent."""

    def __init__(self, cfg: RefineConfig, cancel: threading.Event | None):
        self.cfg, self.cancel = cfg, cancel
        self.t0 = time.perf_counter()
        self.excluded = 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0 - self.excluded

    def spent(self, it: int) -> str | None:
        """'iters', 'seconds' or 'cancelled' when refinement must stop before iteration ``it``."""
        if self.cfg.iters is not None and it >= self.cfg.iters:
            return "iters"
        if self.cfg.seconds is not None and self.elapsed() >= self.cfg.seconds:
            return "seconds"
        if self.cancel is not None and self.cancel.is_set():
            return "cancelled"
        return None

    def fraction(self, it: int) -> float:
        """How much of the budget is used, in [0, 1] (the larger of the two budgets' fractions)."""
        u = it / self.cfg.iters if self.cfg.iters else 0.0
        if self.cfg.seconds:
            u = max(u, self.elapsed() / self.cfg.seconds)
        return min(u, 1.0)

    def call(self, fn, *args) -> None:
        """Run ``fn(*args)`` outside the timed region."""
        t = time.perf_counter()
        try:
            fn(*args)
        finally:
            self.excluded += time.perf_counter() - t


class _ViewOrder:
    """Source views in random order without repetition; an epoch ends when every view was drawn."""

    def __init__(self, n: int, seed: int):
        self.n, self.rng, self.stack = n, random.Random(seed), []

    def draw(self, k: int) -> list[int]:
        if not self.stack:
            self.stack = list(range(self.n))
            self.rng.shuffle(self.stack)
        return [self.stack.pop() for _ in range(min(k, len(self.stack)))]

    @property
    def epoch_done(self) -> bool:
        return not self.stack


def refine(scene: NeuralScene, window: SceneWindow, config: RefineConfig | None = None, *, decoders=None,
           on_epoch: Callable[[int, NeuralScene, dict], None] | None = None, cancel: threading.Event | None = None,
           progress: bool = True) -> RefineResult:
    """Refine G3R's ``scene`` on the window's source views; returns the best state.

    scene: G3R's output (neural states, decoded by ``decoders``, e.g. ``result.model.decoders``)
    or an explicit scene (``decoders=None``). window: the same window (source keyframes).
    on_epoch(iteration, scene, entry): called at the start and after every epoch, outside the
    timed region (callers evaluate held-out views there); ``scene`` is the current state
    (explicit; render it with ``scene.params_at(EXPLICIT_DECODERS, stamp)``). cancel: when set,
    refinement stops before the next iteration and returns the best state so far
    (stop_reason "cancelled"). The input scene is never modified.
    """
    cfg = config or RefineConfig()
    cfg.validate()
    window.validate()
    device = resolve_device(cfg.device)
    budget = _Budget(cfg, cancel)
    start_scene = explicit_scene(scene.to(device), decoders)
    views = _source_views(window, device)
    extent = scene_extent(np.stack([kf.camera.center for kf in window.source_keyframes]))
    model = _Model(start_scene, cfg, extent, device)
    bg = torch.tensor(cfg.background, dtype=torch.float32, device=device)
    bg = bg if bool(bg.any()) else None
    order = _ViewOrder(len(views), cfg.seed)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    dcfg = Baseline3DGSConfig(densify_grad_threshold=cfg.densify_grad_threshold, percent_dense=cfg.percent_dense,
                              min_opacity=cfg.min_opacity)
    n_initial = [0 if t is None else len(t) for t in model.trainables]

    start_psnr = _source_psnr(model, views, cfg, bg)
    best = {"psnr": start_psnr, "scene": start_scene, "iter": 0}
    log = [{"iter": 0, "epoch": 0, "elapsed_s": budget.elapsed(), "psnr_source": start_psnr,
            "n_gaussians": len(model)}]
    if on_epoch is not None:
        budget.call(on_epoch, 0, start_scene, log[0])
    it, epoch_sse, epoch_n = 0, 0.0, 0
    stop = None
    bar = progress_bar(total=cfg.iters, desc="refine", unit="it", disable=not progress, leave=False)
    try:
        while (stop := budget.spent(it)) is None:
            factor = expon_lr(int(1000 * budget.fraction(it)), 1.0, cfg.lr_means_final / cfg.lr_means, 1000) \
                if cfg.lr_means > 0 else 0.0
            model.set_means_lr_factor(factor)
            batch = order.draw(cfg.views_per_iter)
            finite = True
            for vi in batch:
                sq_err, ok = _train_view(model, views[vi], cfg, bg, len(batch))
                epoch_sse += sq_err
                epoch_n += 1
                finite &= ok
            it += 1
            bar.update(1)
            if not finite or not model.grads_finite():
                stop = "diverged"
                LOG.warning("refine: non-finite loss or gradient at iteration %d; keeping the best state", it)
                break
            model.step()
            if not model.finite():
                stop = "diverged"
                LOG.warning("refine: non-finite parameters after iteration %d; keeping the best state", it)
                break
            if not order.epoch_done:
                continue
            # An epoch: every source view was seen once.
            psnr_epoch = psnr_from_mse(epoch_sse / max(epoch_n, 1))
            epoch_sse, epoch_n = 0.0, 0
            epoch = len(log)
            if cfg.densify_every and epoch % cfg.densify_every == 0:
                _densify(model, dcfg, n_initial, cfg.max_growth, gen)
            entry = {"iter": it, "epoch": epoch, "elapsed_s": budget.elapsed(), "psnr_source": psnr_epoch,
                     "n_gaussians": len(model)}
            log.append(entry)
            bar.set_postfix(psnr=f"{psnr_epoch:.2f}", n=len(model))
            if not math.isfinite(psnr_epoch) or psnr_epoch < start_psnr - cfg.max_drop_db:
                stop = "diverged"
                LOG.warning("refine: source PSNR %.2f dB fell more than %.1f dB below the start (%.2f); "
                            "keeping the best state", psnr_epoch, cfg.max_drop_db, start_psnr)
                break
            snap = model.snapshot() if (psnr_epoch >= best["psnr"] or on_epoch is not None) else None
            if psnr_epoch >= best["psnr"]:
                best = {"psnr": psnr_epoch, "scene": snap, "iter": it}
            if on_epoch is not None:
                budget.call(on_epoch, it, snap, entry)
    finally:
        bar.close()
    total_s = budget.elapsed()
    LOG.info("refine: %d iterations (%d epochs) in %.1fs, stop: %s, source PSNR %.2f -> best %.2f dB, %d Gaussians",
             it, len(log) - 1, total_s, stop, start_psnr, best["psnr"], best["scene"].num_points)
    return RefineResult(best["scene"], log, stop, it, total_s, start_psnr, best["psnr"], best["iter"], str(device))


@torch.no_grad()
def _source_psnr(model: _Model, views: list[_View], cfg: RefineConfig, bg) -> float:
    """PSNR of the current parameters over all source views (mean MSE)."""
    mses = []
    for v in views:
        params, _ = model.params_at(v.stamp)
        out = render(params, v.camera, backend=cfg.backend, background=bg, render_depth=False)
        mses.append(float((out.rgb.clamp(0, 1) - v.image).square().mean()))
    return psnr_from_mse(float(np.mean(mses)))


def _train_view(model: _Model, view: _View, cfg: RefineConfig, bg, batch_size: int) -> tuple[float, bool]:
    """Render one source view, backpropagate its loss / batch_size (gradients accumulate) and
    gather densification statistics. Returns (MSE of the render, whether the loss is finite)."""
    params, rows = model.params_at(view.stamp)
    out = render(params, view.camera, backend=cfg.backend, background=bg, render_depth=False)
    loss = _loss(out.rgb, view.image, cfg)
    (loss / batch_size).backward()
    with torch.no_grad():
        if cfg.densify_every and out.means2d is not None and out.means2d.grad is not None:
            for ci, a, b in rows:
                if model.scene.components[ci].kind == "background":
                    add_densification_stats(model.trainables[ci], out.means2d.grad[:, a:b], out.radii[:, a:b],
                                            view.camera.width, view.camera.height)
        return float((out.rgb.clamp(0, 1) - view.image).square().mean()), bool(torch.isfinite(loss))


def _loss(rgb: torch.Tensor, target: torch.Tensor, cfg: RefineConfig) -> torch.Tensor:
    """``(1-λ) data + λ (1-SSIM)`` of renders against images, both (C,H,W,3); data = mean L1 or MSE."""
    if cfg.loss == "l1":
        return photometric_loss(rgb, target, cfg.lambda_dssim)[0]
    mse = (rgb - target).square().mean()
    if cfg.lambda_dssim == 0.0:
        return mse
    dssim = photometric_loss(rgb, target, 1.0)[0]
    return (1.0 - cfg.lambda_dssim) * mse + cfg.lambda_dssim * dssim


def _densify(model: _Model, dcfg: Baseline3DGSConfig, n_initial: list[int], max_growth: float,
             gen: torch.Generator) -> None:
    """3DGS clone/split/prune on the background components (growth capped; no opacity reset)."""
    for i, (c, t) in enumerate(zip(model.scene.components, model.trainables)):
        if t is None or c.kind != "background":
            continue
        cap = dataclasses.replace(dcfg, max_gaussians=int(max_growth * n_initial[i]))
        report = densify_and_prune(t, cap, model.extent, None, gen)
        LOG.debug("refine densify %s: %s", c.name, report)


__all__ = ["EXPLICIT_DECODERS", "RefineConfig", "RefineResult", "explicit_scene", "refine"]

"""The per-scene 3DGS optimization loop (graphdeco ``train.py`` order of operations).

Each iteration: set the position LR, draw source view(s), render, loss, backward, then
(under ``densify_until_iter``) accumulate densification statistics, densify/prune every
``densification_interval`` after ``densify_from_iter``, reset opacities every
``opacity_reset_interval``; finally the Adam step. Wall time excludes evaluation, so the
log gives an honest PSNR-vs-time curve to compare with G3R.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ..config import from_dict
from ..devices import resolve_device
from ..geometry import CameraBatch
from ..progress import progress_bar as tqdm
from ..render.types import GaussianParams, RenderOutput
from ..window import SceneWindow
from .config import SH_C0, Baseline3DGSConfig
from .densify import add_densification_stats, densify_and_prune, reset_opacity
from .loss import photometric_loss, psnr
from .schedule import expon_lr, scene_extent
from .state import TrainableGaussians

LOG = logging.getLogger(__name__)

RenderFn = Callable[..., RenderOutput]


@dataclass
class BaselineResult:
    """Outcome of :func:`optimize_3dgs`.

    params: final Gaussians (detached; rgb clamped at 0 as the training renders used it).
    log: entries ``{iter, time_s, loss, psnr_source, n_gaussians, ...eval_fn results}``;
    iter 0 is the init (loss/PSNR over all source views), later entries are the training
    loss/PSNR of that iteration's view(s) before its step; ``time_s`` is training wall time
    (evaluation excluded) and ``n_gaussians`` the count, both at the end of the iteration. Densification / opacity-reset
    iterations always have an entry, with ``densify`` (counts) / ``opacity_reset`` keys.
    config: the schedule-resolved config actually used. extent: scene extent (m).
    stop_reason: "iters" or "time_budget". densify_events: ``{iter, n_before, cloned, split,
    pruned, n_after}`` per densification and ``{iter, opacity_reset: True}`` per reset.
    """

    params: GaussianParams
    log: list[dict]
    config: Baseline3DGSConfig
    extent: float
    stop_reason: str = "iters"
    iterations_run: int = 0
    train_time_s: float = 0.0
    eval_time_s: float = 0.0
    densify_events: list[dict] = field(default_factory=list)


@dataclass
class _View:
    camera: CameraBatch
    image: torch.Tensor          # (1,H,W,3) float [0,1]
    name: str


def _image_tensor(image: np.ndarray, width: int, height: int, where: str, device) -> torch.Tensor:
    """(H,W,3) uint8 (or float in [0,1]) → (1,H,W,3) float32 in [0,1]."""
    img = np.asarray(image)
    if img.shape != (height, width, 3):
        raise ValueError(f"{where}: image shape {img.shape} does not match its camera ({height},{width},3)")
    if img.dtype == np.uint8:
        t = torch.from_numpy(np.array(img, copy=True)).to(torch.float32) / 255.0
    else:
        t = torch.from_numpy(np.array(img, dtype=np.float32, copy=True))
        if not torch.isfinite(t).all() or t.min() < 0 or t.max() > 1:
            raise ValueError(f"{where}: float image must be finite and in [0,1]")
    return t.unsqueeze(0).to(device)


def _source_views(window: SceneWindow, device) -> list[_View]:
    if window is None or not getattr(window, "keyframes", None):
        raise ValueError(f"window '{getattr(window, 'name', '?')}' has no keyframes")
    sources = window.source_keyframes
    if not sources:
        raise ValueError(f"window '{window.name}' has no source keyframes (all held out)")
    views = []
    for kf in sources:
        cam = kf.camera
        where = f"window '{window.name}' keyframe {kf.index} ({kf.camera_name})"
        views.append(_View(CameraBatch.from_cameras([cam], device=device),
                           _image_tensor(kf.image, cam.width, cam.height, where, device), where))
    return views


def _check_init(init: GaussianParams) -> None:
    if not isinstance(init, GaussianParams):
        raise TypeError(f"init must be GaussianParams, got {type(init).__name__}")
    n = len(init)
    if n == 0:
        raise ValueError("init has no Gaussians")
    shapes = {"means": (n, 3), "quats": (n, 4), "log_scales": (n, 3), "opacity_logits": (n,), "rgb": (n, 3)}
    for name, shape in shapes.items():
        t = getattr(init, name)
        if tuple(t.shape) != shape:
            raise ValueError(f"init.{name} has shape {tuple(t.shape)}, expected {shape}")
        if not torch.isfinite(t).all():
            raise ValueError(f"init.{name} contains NaN or Inf")
    if (init.quats.norm(dim=-1) < 1e-12).any():
        raise ValueError("init.quats contains zero quaternions")


def _render_params(state: TrainableGaussians) -> GaussianParams:
    """What the renderer sees: RGB clamped at 0 (graphdeco clamps SH colour at 0)."""
    g = state.gaussians()
    return GaussianParams(g.means, g.quats, g.log_scales, g.opacity_logits, g.rgb.clamp_min(0.0))


def _snapshot(state: TrainableGaussians) -> GaussianParams:
    """A detached copy of the current render parameters (safe to hand to callers)."""
    with torch.no_grad():
        g = _render_params(state)
        return GaussianParams(*(t.detach().clone() for t in (g.means, g.quats, g.log_scales, g.opacity_logits,
                                                            g.rgb)))


def _default_render() -> RenderFn:
    try:
        from ..render import render
    except ImportError as e:  # pragma: no cover - depends on the renderer being installed
        raise ValueError(f"the renderer g3r_ros.render.render is not available: {e}") from e
    return render


class _ViewSampler:
    """graphdeco's camera stack: random order without replacement, refilled when empty."""

    def __init__(self, n: int, rng: random.Random):
        self.n, self.rng, self.stack = n, rng, []

    def draw(self, k: int) -> list[int]:
        out = []
        for _ in range(min(k, self.n)):
            if not self.stack:
                self.stack = list(range(self.n))
            out.append(self.stack.pop(self.rng.randint(0, len(self.stack) - 1)))
        return out


def _batch(views: list[_View], idx: list[int]) -> tuple[CameraBatch, torch.Tensor]:
    if len(idx) == 1:
        v = views[idx[0]]
        return v.camera, v.image
    sizes = {(views[i].camera.width, views[i].camera.height) for i in idx}
    if len(sizes) != 1:
        raise ValueError(f"views_per_iter > 1 needs source views of one size, got {sorted(sizes)}")
    cams = views[idx[0]].camera
    Ks = torch.cat([views[i].camera.Ks for i in idx])
    vms = torch.cat([views[i].camera.viewmats for i in idx])
    return CameraBatch(Ks, vms, cams.width, cams.height), torch.cat([views[i].image for i in idx])


def _init_entry(views: list[_View], render_view: Callable[[CameraBatch], RenderOutput], cfg: Baseline3DGSConfig,
                n_gaussians: int) -> dict:
    """Log entry of iteration 0: loss (mean) and PSNR (of the mean MSE) over all source views."""
    losses, mses = [], []
    with torch.no_grad():
        for v in views:
            out = render_view(v.camera)
            loss, _ = photometric_loss(out.rgb, v.image, cfg.lambda_dssim, cfg.ssim_window, cfg.ssim_sigma)
            losses.append(float(loss))
            mses.append(float(((out.rgb.clamp(0, 1) - v.image) ** 2).mean()))
    mse = float(np.mean(mses))
    return {"iter": 0, "time_s": 0.0, "loss": float(np.mean(losses)),
            "psnr_source": float("inf") if mse <= 0 else -10.0 * math.log10(mse), "n_gaussians": n_gaussians}


@torch.no_grad()
def _density_control(state: TrainableGaussians, cfg: Baseline3DGSConfig, it: int, out: RenderOutput,
                     cameras: CameraBatch, extent: float, gen: torch.Generator, white: bool) -> list[dict]:
    """graphdeco's per-iteration density control (call while ``it < densify_until_iter``).

    Accumulates the statistics of this iteration's render, then densifies/prunes and resets
    opacities when due. Returns the events as log fragments (``{"densify": counts}`` and/or
    ``{"opacity_reset": True}``).
    """
    if out.means2d is None or out.means2d.grad is None or out.radii is None:
        raise RuntimeError("renderer returned no means2d gradient / radii; 3DGS densification needs "
                           "RenderOutput.means2d (retain_grad) and radii")
    add_densification_stats(state, out.means2d.grad, out.radii, cameras.width, cameras.height)
    events = []
    if it > cfg.densify_from_iter and it % cfg.densification_interval == 0:
        size_threshold = cfg.max_screen_size if it > cfg.opacity_reset_interval else None
        events.append({"densify": densify_and_prune(state, cfg, extent, size_threshold, gen).as_dict()})
    if it % cfg.opacity_reset_interval == 0 or (white and it == cfg.densify_from_iter):
        reset_opacity(state, cfg.opacity_reset_value)
        events.append({"opacity_reset": True})
    return events


def optimize_3dgs(window: SceneWindow, init: GaussianParams, config: Baseline3DGSConfig | dict | None = None, *,
                  iters: int, device="cpu", time_budget_s: float | None = None, eval_every: int | None = None,
                  eval_every_s: float | None = None, eval_fn: Callable[[GaussianParams], dict] | None = None,
                  progress: bool = True, seed: int = 0, log_every: int = 1, backend: str = "auto",
                  render_fn: RenderFn | None = None, fill_budget: bool = False) -> BaselineResult:
    """Optimize ``init`` on the window's source views with the graphdeco 3DGS recipe.

    window: source keyframes (``held_out`` False) give images (H,W,3) uint8 and cameras.
    init: Gaussians in the world frame; never modified (copied to ``device``).
    config: a :class:`Baseline3DGSConfig`, a mapping of its fields, or None (defaults); its
    schedule is resolved for ``iters`` (``schedule_scale``). time_budget_s: stop once the
    training wall time (evaluation excluded) reaches it; with ``fill_budget`` the run does not
    stop after ``iters`` but goes on at the schedule's final values (final position LR, no
    densification or opacity reset) until the budget is spent, so an underestimated iteration
    count never leaves budget unused. eval_fn(params) -> dict of numbers
    is called on the init, every ``eval_every`` iterations and/or ``eval_every_s`` training
    seconds (neither given: every ``iters // 20``), and at the end; its results join that
    iteration's log entry. log_every: one entry per this many iterations (plus evaluation,
    densification, reset and final iterations). render_fn: the
    renderer (default ``g3r_ros.render.render``). Raises ``ValueError`` on an empty window,
    no source views or an invalid init.
    """
    if isinstance(config, dict):
        config = from_dict(Baseline3DGSConfig, config, where="baseline")
    cfg = (config or Baseline3DGSConfig())
    cfg.validate()
    if int(iters) < 0:
        raise ValueError(f"iters must be >= 0, got {iters}")
    iters = int(iters)
    if log_every < 1:
        raise ValueError("log_every must be >= 1")
    _check_init(init)
    dev = resolve_device(device)
    views = _source_views(window, dev)
    render_fn = render_fn or _default_render()
    cfg = cfg.resolved(iters, n_views=len(views))
    if eval_fn is not None and eval_every is None and eval_every_s is None:
        eval_every = max(1, iters // 20)  # about 20 points on the PSNR-vs-time curve

    centers = np.stack([kf.camera.center for kf in window.source_keyframes])
    extent = scene_extent(centers, cfg.extent_factor, cfg.fallback_extent)
    lrs = {"means": cfg.position_lr_init * extent, "quats": cfg.rotation_lr, "log_scales": cfg.scaling_lr,
           "opacity_logits": cfg.opacity_lr, "rgb": cfg.feature_lr * SH_C0}
    state = TrainableGaussians(init, lrs, cfg.adam_eps, dev)
    rng = random.Random(seed)
    gen = torch.Generator(device=dev).manual_seed(int(seed))
    sampler = _ViewSampler(len(views), rng)
    background = torch.tensor(cfg.background, dtype=torch.float32, device=dev)
    white = bool((background == 1.0).all())

    def do_render(cameras: CameraBatch, bg: torch.Tensor) -> RenderOutput:
        b = None if (not cfg.random_background and not bool(bg.any())) else bg
        return render_fn(_render_params(state), cameras, backend=backend, background=b, render_depth=False)

    log: list[dict] = []
    events: list[dict] = []
    train_time = eval_time = 0.0
    last_eval_iter, last_eval_time = 0, 0.0

    def run_eval(entry: dict) -> None:
        nonlocal eval_time, last_eval_iter, last_eval_time
        if eval_fn is None:
            return
        t0 = time.perf_counter()
        res = eval_fn(_snapshot(state))
        eval_time += time.perf_counter() - t0
        if res:
            entry.update(res)
        last_eval_iter, last_eval_time = entry["iter"], train_time

    # Iteration 0: the init over all source views (not counted as training time).
    t0 = time.perf_counter()
    entry0 = _init_entry(views, lambda cams: do_render(cams, background), cfg, len(state))
    eval_time += time.perf_counter() - t0
    run_eval(entry0)
    log.append(entry0)

    stop_reason = "iters"
    it = 0
    bar = tqdm(total=iters, desc="3DGS baseline", disable=not progress, leave=False)
    try:
        for it in itertools.count(1):
            if it > iters and not (fill_budget and time_budget_s is not None):
                it -= 1
                break
            if time_budget_s is not None and train_time >= time_budget_s:
                stop_reason = "time_budget"
                it -= 1
                break
            t_start = time.perf_counter()
            lr_means = expon_lr(it, cfg.position_lr_init * extent, cfg.position_lr_final * extent,
                                cfg.position_lr_max_steps, cfg.position_lr_delay_steps, cfg.position_lr_delay_mult)
            state.set_lr("means", lr_means)
            idx = sampler.draw(cfg.views_per_iter)
            cameras, gt = _batch(views, idx)
            bg = torch.rand(3, generator=gen, device=dev) if cfg.random_background else background
            out = do_render(cameras, bg)
            loss, _ = photometric_loss(out.rgb, gt, cfg.lambda_dssim, cfg.ssim_window, cfg.ssim_sigma)
            if not torch.isfinite(loss):
                raise RuntimeError(f"3DGS baseline: loss is {float(loss)} at iteration {it}")
            loss.backward()
            entry = {"iter": it, "loss": float(loss.detach()), "psnr_source": psnr(out.rgb, gt)}
            with torch.no_grad():
                if it < cfg.densify_until_iter:
                    for ev in _density_control(state, cfg, it, out, cameras, extent, gen, white):
                        entry.update(ev)
                        events.append({"iter": it, **ev.get("densify", ev)})
                state.optimizer.step()
                state.optimizer.zero_grad(set_to_none=True)
            del out, loss
            train_time += time.perf_counter() - t_start
            entry["time_s"] = train_time
            entry["n_gaussians"] = len(state)
            due = eval_fn is not None and (
                (eval_every is not None and it - last_eval_iter >= eval_every)
                or (eval_every_s is not None and train_time - last_eval_time >= eval_every_s))
            if due:
                run_eval(entry)
            event = "densify" in entry or "opacity_reset" in entry
            if due or event or it % log_every == 0 or it == iters:
                log.append(entry)
            bar.update(1)
            if it % 10 == 0 or it == iters:
                bar.set_postfix(loss=f"{entry['loss']:.4f}", psnr=f"{entry['psnr_source']:.2f}", n=len(state))
    finally:
        bar.close()

    # The final state: make sure the last entry is the last iteration run, with an evaluation.
    if it >= 1 and log[-1]["iter"] != it:
        log.append(entry)
    if eval_fn is not None and last_eval_iter != log[-1]["iter"]:
        run_eval(log[-1])
    LOG.info("3DGS baseline: %d iterations in %.1f s (+%.1f s eval), %d Gaussians, stop: %s",
             it, train_time, eval_time, len(state), stop_reason)
    return BaselineResult(_snapshot(state), log, cfg, extent, stop_reason, it, train_time, eval_time, events)


"""The offline job behind ``g3r reconstruct``: bag → window → G3R (+ 3DGS baseline) → files.

Outputs in ``out_dir`` (all written atomically):
- ``map.ply``: decoded Gaussians of all components (graphdeco 3DGS layout);
- ``views/``: ground truth, G3R render and error map for every held-out keyframe;
- ``compare.png``: held-out views, ground truth vs G3R vs baseline;
- ``psnr_vs_time.png``: held-out PSNR of G3R steps and baseline iterations on one time axis;
- ``metrics.json``: PSNR/SSIM per held-out view and means, stage times, counts, device.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .baseline import Baseline3DGSConfig, optimize_3dgs
from .config import config_path, from_dict, load_yaml
from .evaluate import evaluate_keyframes, mean_psnr, mean_ssim
from .export import write_ply
from .gaussians import GaussianDecoder
from .initialization import InitConfig, init_scene
from .metrics import error_map, lpips_available
from .model import G3RModel, load_model
from .reconstruct import ReconstructConfig, reconstruct, resolve_device
from .render.types import GaussianParams
from .report import contact_sheet, psnr_vs_time_plot, write_json, write_png
from .scene import NeuralScene
from .window import SceneWindow
from .window_builder import WindowConfig, window_from_bag

LOG = logging.getLogger(__name__)


@dataclass
class OfflineConfig:
    """Sections of an offline config YAML (``config/offline_*.yaml``)."""

    window: dict | str | None = None   # a mapping, or the name of a window YAML in config/
    init: dict | str = field(default_factory=dict)  # likewise, e.g. "init.yaml"
    reconstruct: dict = field(default_factory=dict)
    baseline: dict = field(default_factory=dict)

    @staticmethod
    def _section(value) -> dict:
        if isinstance(value, str):
            path = Path(value) if Path(value).is_file() else config_path(value)
            return load_yaml(path)
        return value or {}

    def window_config(self) -> WindowConfig | None:
        if self.window is None:
            return None
        return from_dict(WindowConfig, self._section(self.window), where="window")

    def init_config(self) -> InitConfig:
        return from_dict(InitConfig, self._section(self.init), where="init")

    def reconstruct_config(self) -> ReconstructConfig:
        return from_dict(ReconstructConfig, self.reconstruct, where="reconstruct")

    def baseline_config(self) -> Baseline3DGSConfig:
        return from_dict(Baseline3DGSConfig, self.baseline, where="baseline")


def load_offline_config(path=None) -> OfflineConfig:
    return from_dict(OfflineConfig, load_yaml(path) if path else {}, where=str(path or "offline"))


def identity_decoders(device) -> dict:
    """Decoders whose residual is zero: the explicit channels as they are (for the baseline init)."""
    decoders = {}
    for kind in ("background", "actor", "distant"):
        dec = GaussianDecoder()
        with torch.no_grad():
            for p in dec.parameters():
                p.zero_()
        decoders[kind] = dec.to(device)
    return decoders


def baseline_init(scene: NeuralScene, window: SceneWindow, device) -> GaussianParams:
    """The same LiDAR init as G3R, as plain Gaussians (actors frozen at the first source stamp)."""
    stamp = window.source_keyframes[0].stamp
    return scene.params_at(identity_decoders(device), stamp).detach()


def run_offline(bag, out_dir, *, config: OfflineConfig | None = None, model: G3RModel | None = None,
                model_path=None, steps: int | None = None, turbo: bool = False, device: str = "auto",
                baseline_iters: int = 0, progress: bool = True) -> dict:
    """Run the whole offline job and return the metrics dict (also written to metrics.json)."""
    config = config or OfflineConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rcfg = config.reconstruct_config()
    if steps is not None:
        rcfg.steps = steps
    rcfg.turbo = rcfg.turbo or turbo
    rcfg.device = device
    rcfg.validate()
    dev = resolve_device(device)

    t0 = time.perf_counter()
    window = window_from_bag(bag, config.window_config())
    window.validate()
    t_window = time.perf_counter() - t0
    LOG.info("window: %s", window.summary())
    if not window.target_keyframes:
        LOG.warning("window has no held-out keyframes: held-out metrics will be empty")
    if model is None:
        model = load_model(model_path, device=dev)
    model = model.to(dev).eval()
    bg = torch.tensor(rcfg.background, dtype=torch.float32, device=dev)
    targets = window.target_keyframes

    # --- G3R ---------------------------------------------------------------------------
    t_init0 = time.perf_counter()
    scene0 = init_scene(window, config.init_config(), device=dev)
    t_init = time.perf_counter() - t_init0
    g3r_curve = ([], [])

    def track_heldout(step, scene, entry):
        if targets:
            with torch.no_grad():
                scores = evaluate_keyframes(lambda s: scene.params_at(model.decoders, s), targets, background=bg,
                                            keep_renders=False)
            g3r_curve[0].append(t_init + entry["elapsed_s"])
            g3r_curve[1].append(mean_psnr(scores))

    with torch.no_grad():
        init_scores = evaluate_keyframes(lambda s: scene0.params_at(identity_decoders(dev), s), targets,
                                         background=bg, keep_renders=False)
    result = reconstruct(window, model, rcfg, scene=scene0, on_step=track_heldout, progress=progress)
    g3r_time = t_init + result.total_s
    g3r_scores = evaluate_keyframes(result.params_at, targets, background=bg)
    g3r_source = evaluate_keyframes(result.params_at, window.source_keyframes, background=bg, keep_renders=False)
    final_params = result.params_at(window.keyframes[0].stamp)
    write_ply(out / "map.ply", GaussianParams(*(t.detach().cpu() for t in (
        final_params.means, final_params.quats, final_params.log_scales, final_params.opacity_logits,
        final_params.rgb))))

    # --- 3DGS baseline -----------------------------------------------------------------
    base_scores, base_curve, base_log, base_time = [], ([], []), [], 0.0
    if baseline_iters > 0:
        init_params = baseline_init(scene0, window, dev)

        def eval_fn(params):
            scores = evaluate_keyframes(lambda s: params, targets, background=bg, keep_renders=False)
            return {"psnr_heldout": mean_psnr(scores)}

        bres = optimize_3dgs(window, init_params, config.baseline_config(), iters=baseline_iters, device=dev,
                             eval_fn=eval_fn if targets else None, progress=progress)
        base_log = bres.log
        for e in base_log:
            if e.get("psnr_heldout") is not None:
                base_curve[0].append(t_init + e["time_s"])
                base_curve[1].append(e["psnr_heldout"])
        base_time = t_init + (base_log[-1]["time_s"] if base_log else 0.0)
        base_scores = evaluate_keyframes(lambda s: bres.params, targets, background=bg)

    # --- pictures ------------------------------------------------------------------------
    views = out / "views"
    rows, labels = [], []
    for kf, g, b in zip(targets, g3r_scores, base_scores or [None] * len(targets)):
        gt = kf.image
        g_img = (g.render * 255 + 0.5).astype(np.uint8)
        err = error_map(torch.from_numpy(g.render), torch.from_numpy(gt.astype(np.float32) / 255.0))
        write_png(views / f"{kf.index:04d}_gt.png", gt)
        write_png(views / f"{kf.index:04d}_g3r.png", g_img)
        write_png(views / f"{kf.index:04d}_g3r_error.png", err)
        row = [gt, g_img]
        if b is not None:
            b_img = (b.render * 255 + 0.5).astype(np.uint8)
            write_png(views / f"{kf.index:04d}_baseline.png", b_img)
            row.append(b_img)
        rows.append(row)
        labels.append(f"kf {kf.index}")
    if rows:
        cols = ["ground truth", f"G3R ({result.log[-1]['step'] + 1} steps, {g3r_time:.0f}s)"]
        if base_scores:
            cols.append(f"3DGS baseline ({len(base_log)} it, {base_time:.0f}s)")
        contact_sheet(rows[:6], labels[:6], cols, out / "compare.png", title=f"held-out views of {window.name}")
    curves = {"G3R (steps)": g3r_curve}
    if base_curve[0]:
        curves["3DGS baseline (iterations)"] = base_curve
    if g3r_curve[0]:
        psnr_vs_time_plot(curves, out / "psnr_vs_time.png", title=f"{window.name}: held-out PSNR vs wall time",
                          markers={"LiDAR init": (max(t_init, 1e-2), mean_psnr(init_scores))} if init_scores else None)

    lp_ok, lp_reason = lpips_available()
    metrics = {
        "bag": str(bag),
        "device": str(dev),
        "window": window.summary(),
        "model": str(model_path) if model_path else "default",
        "num_gaussians": _counts(result.scene),
        "lpips": None if not lp_ok else "computed",
        "lpips_note": lp_reason,
        "times_s": {
            "window": t_window, "init": t_init, "g3r_steps": result.total_s, "g3r_total": g3r_time,
            "per_step_mean": float(np.mean([e["render_s"] + e["backward_s"] + e["network_s"] for e in result.log])),
            "render_per_step": float(np.mean([e["render_s"] for e in result.log])),
            "backward_per_step": float(np.mean([e["backward_s"] for e in result.log])),
            "network_per_step": float(np.mean([e["network_s"] for e in result.log])),
            "baseline_total": base_time,
        },
        "init": {"heldout_psnr": mean_psnr(init_scores)},
        "g3r": {
            "steps": len(result.log), "turbo": rcfg.turbo,
            "heldout": [{"keyframe": s.index, "psnr": s.psnr, "ssim": s.ssim} for s in g3r_scores],
            "heldout_psnr": mean_psnr(g3r_scores), "heldout_ssim": mean_ssim(g3r_scores),
            "source_psnr": mean_psnr(g3r_source),
            "log": result.log,
        },
        "baseline_3dgs": {
            "iters": len(base_log),
            "heldout": [{"keyframe": s.index, "psnr": s.psnr, "ssim": s.ssim} for s in base_scores],
            "heldout_psnr": mean_psnr(base_scores), "heldout_ssim": mean_ssim(base_scores),
            "config": asdict(config.baseline_config()),
        } if baseline_iters > 0 else None,
        "config": {"reconstruct": asdict(rcfg)},
    }
    write_json(out / "metrics.json", metrics)
    LOG.info("wrote %s (map.ply, views/, compare.png, psnr_vs_time.png, metrics.json)", out)
    return metrics


def _counts(scene: NeuralScene) -> dict:
    counts: dict[str, int] = {}
    for c in scene.components:
        counts[c.kind] = counts.get(c.kind, 0) + int(c.state.shape[0])
    return counts

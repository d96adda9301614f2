"""The offline job behind ``g3r reconstruct``: bag → window → G3R (→ refinement) (+ 3DGS baseline) → files.

Outputs in ``out_dir`` (all written atomically):
- ``map.ply``: the final map, decoded Gaussians of all components (graphdeco 3DGS layout):
  the refined map when refinement ran, else G3R's;
- ``map_g3r.ply``: G3R's map before refinement (only when refinement ran);
- ``views/``: ground truth, G3R render and error map (and refined / baseline renders) for
  every held-out keyframe;
- ``compare.png``: held-out views, ground truth vs G3R vs G3R + refinement vs baseline;
- ``psnr_vs_time.png``: held-out PSNR of G3R's steps, refinement and baseline iterations on
  one time axis;
- ``metrics.json``: PSNR/SSIM per held-out view and means, stage times, counts, device, and
  ``curves``: ``[wall seconds, held-out PSNR]`` lists per method.

The time axis of the curves starts when the scene initialization starts (building the
window from the bag is excluded); held-out evaluation is excluded from every method's time.
Views, compare.png and the plot need held-out keyframes: without a config, every
:data:`DEFAULT_HELD_OUT_EVERY`-th keyframe is held out.
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
from .devices import resolve_device
from .evaluate import evaluate_keyframes, mean_psnr, mean_ssim
from .export import write_ply
from .initialization import InitConfig, init_scene
from .metrics import error_map, lpips_available
from .model import G3RModel, load_model
from .reconstruct import ReconstructConfig, reconstruct
from .refine import EXPLICIT_DECODERS, RefineConfig, refine
from .render.types import GaussianParams
from .report import contact_sheet, psnr_vs_time_plot, write_json, write_png
from .scene import NeuralScene
from .window import SceneWindow
from .window_builder import WindowConfig, window_from_bag

LOG = logging.getLogger(__name__)

# Held-out keyframes when the window config does not say (every k-th keyframe is a target view).
DEFAULT_HELD_OUT_EVERY = 4


@dataclass
class OfflineConfig:
    """Sections of an offline config YAML (``config/offline_*.yaml``)."""

    window: dict | str | None = None   # a mapping, or the name of a window YAML in config/
    init: dict | str = field(default_factory=dict)  # likewise, e.g. "init.yaml"
    reconstruct: dict = field(default_factory=dict)
    baseline: dict = field(default_factory=dict)
    refine: dict | str = field(default_factory=dict)  # likewise, e.g. "refine.yaml"

    @staticmethod
    def _section(value) -> dict:
        if isinstance(value, str):
            path = Path(value) if Path(value).is_file() else config_path(value)
            return load_yaml(path)
        return value or {}

    def window_config(self) -> WindowConfig:
        """The window section; ``held_out_every`` defaults to :data:`DEFAULT_HELD_OUT_EVERY` (0 = none)."""
        section = {"held_out_every": DEFAULT_HELD_OUT_EVERY, **self._section(self.window)}
        return from_dict(WindowConfig, section, where="window")

    def init_config(self) -> InitConfig:
        return from_dict(InitConfig, self._section(self.init), where="init")

    def reconstruct_config(self) -> ReconstructConfig:
        return from_dict(ReconstructConfig, self.reconstruct, where="reconstruct")

    def baseline_config(self) -> Baseline3DGSConfig:
        return from_dict(Baseline3DGSConfig, self.baseline, where="baseline")

    def refine_config(self) -> RefineConfig:
        """The refine section over ``config/refine.yaml``'s recipe."""
        return from_dict(RefineConfig, {**load_yaml(config_path("refine.yaml")), **self._section(self.refine)},
                         where="refine")


def load_offline_config(path=None) -> OfflineConfig:
    return from_dict(OfflineConfig, load_yaml(path) if path else {}, where=str(path or "offline"))


def identity_decoders(device=None) -> dict:
    """Decoders whose residual is zero: the explicit channels as they are (for the baseline
    init). ``device`` is accepted for compatibility; these decoders have no weights."""
    return dict(EXPLICIT_DECODERS)


def baseline_init(scene: NeuralScene, window: SceneWindow, device) -> GaussianParams:
    """The same LiDAR init as G3R, as plain Gaussians (actors frozen at the first source stamp)."""
    stamp = window.source_keyframes[0].stamp
    return scene.params_at(identity_decoders(device), stamp).detach()


def apply_cli_overrides(rcfg: ReconstructConfig, *, steps: int | None, turbo: bool, device: str) -> ReconstructConfig:
    """``--steps`` / ``--turbo`` / ``--device`` on a reconstruct config: ``--steps`` sets the
    number of steps of the mode that runs (``turbo_steps`` in turbo mode), so the two compose."""
    rcfg.turbo = rcfg.turbo or turbo
    if steps is not None:
        if rcfg.turbo:
            rcfg.turbo_steps = steps
        else:
            rcfg.steps = steps
    rcfg.device = device
    rcfg.validate()
    return rcfg


def refine_overrides(rfcfg: RefineConfig, *, seconds: float | None, iters: int | None, device: str) -> RefineConfig:
    """The budget from ``--refine-seconds`` / ``--refine-iters``: the one given alone is the only limit."""
    rfcfg.seconds, rfcfg.iters, rfcfg.device = seconds, iters, device
    rfcfg.validate()
    return rfcfg


def _cpu(params: GaussianParams) -> GaussianParams:
    return GaussianParams(*(t.detach().cpu() for t in (params.means, params.quats, params.log_scales,
                                                      params.opacity_logits, params.rgb)))


def _to_uint8(render: np.ndarray) -> np.ndarray:
    return (np.clip(render, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def _scores_json(scores) -> list[dict]:
    return [{"keyframe": s.index, "psnr": s.psnr, "ssim": s.ssim} for s in scores]


def run_offline(bag, out_dir, *, config: OfflineConfig | None = None, model: G3RModel | None = None,
                model_path=None, steps: int | None = None, turbo: bool = False, device: str = "auto",
                baseline_iters: int = 0, refine_seconds: float | None = None, refine_iters: int | None = None,
                progress: bool = True) -> dict:
    """Run the whole offline job and return the metrics dict (also written to metrics.json).

    Refinement (:func:`g3r_ros.refine.refine`) runs when ``refine_seconds`` or ``refine_iters``
    is given (> 0); its recipe comes from the config's ``refine`` section over
    ``config/refine.yaml``.
    """
    config = config or OfflineConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rcfg = apply_cli_overrides(config.reconstruct_config(), steps=steps, turbo=turbo, device=device)
    do_refine = bool(refine_seconds) or bool(refine_iters)
    rfcfg = refine_overrides(config.refine_config(), seconds=refine_seconds or None, iters=refine_iters or None,
                             device=device) if do_refine else None
    dev = resolve_device(device)

    t0 = time.perf_counter()
    window = window_from_bag(bag, config.window_config())
    window.validate()
    t_window = time.perf_counter() - t0
    LOG.info("window: %s", window.summary())
    targets = window.target_keyframes
    if not targets:
        LOG.warning("window has no held-out keyframes: no held-out metrics, views, compare.png or plot")
    if model is None:
        model = load_model(model_path, device=dev)
    model = model.to(dev).eval()
    bg = torch.tensor(rcfg.background, dtype=torch.float32, device=dev)
    eval_gap_s = 0.0

    def heldout_psnr(params_at) -> float:
        with torch.no_grad():
            return mean_psnr(evaluate_keyframes(params_at, targets, background=bg, keep_renders=False))

    # --- G3R ---------------------------------------------------------------------------
    t_init0 = time.perf_counter()
    scene0 = init_scene(window, config.init_config(), device=dev)
    t_init = time.perf_counter() - t_init0
    init_psnr = heldout_psnr(lambda s: scene0.params_at(identity_decoders(), s)) if targets else float("nan")
    g3r_curve = [[t_init, init_psnr]] if targets else []

    def track_g3r(step, scene, entry):
        if targets:
            g3r_curve.append([t_init + entry["elapsed_s"], heldout_psnr(lambda s: scene.params_at(model.decoders, s))])

    result = reconstruct(window, model, rcfg, scene=scene0, on_step=track_g3r, progress=progress)
    g3r_time = t_init + result.total_s
    eval_gap_s = max(result.total_s / 8.0, 0.5)   # about 8 held-out evaluations per G3R time
    g3r_scores = evaluate_keyframes(result.params_at, targets, background=bg)
    g3r_source = evaluate_keyframes(result.params_at, window.source_keyframes, background=bg, keep_renders=False)
    stamp0 = window.keyframes[0].stamp
    written = []

    # --- refinement --------------------------------------------------------------------
    ref, ref_scores, ref_source, ref_curve = None, [], [], []
    if rfcfg is not None:
        ref_curve = [[g3r_time, g3r_curve[-1][1]]] if targets else []
        last_eval = {"t": 0.0}

        def track_refine(it, scene, entry):
            if targets and entry["elapsed_s"] - last_eval["t"] >= eval_gap_s:
                last_eval["t"] = entry["elapsed_s"]
                ref_curve.append([g3r_time + entry["elapsed_s"],
                                  heldout_psnr(lambda s: scene.params_at(EXPLICIT_DECODERS, s))])

        ref = refine(result.scene, window, rfcfg, decoders=model.decoders, on_epoch=track_refine, progress=progress)
        ref_scores = evaluate_keyframes(ref.params_at, targets, background=bg)
        ref_source = evaluate_keyframes(ref.params_at, window.source_keyframes, background=bg, keep_renders=False)
        if targets:
            ref_curve.append([g3r_time + ref.total_s, mean_psnr(ref_scores)])
        write_ply(out / "map_g3r.ply", _cpu(result.params_at(stamp0)))
        write_ply(out / "map.ply", _cpu(ref.params_at(stamp0)))
        written += ["map.ply (refined)", "map_g3r.ply"]
    else:
        write_ply(out / "map.ply", _cpu(result.params_at(stamp0)))
        written.append("map.ply")

    # --- 3DGS baseline -----------------------------------------------------------------
    base_scores, base_curve, base_log, base_time = [], [], [], 0.0
    if baseline_iters > 0:
        init_params = baseline_init(scene0, window, dev)

        def eval_fn(params):
            return {"psnr_heldout": heldout_psnr(lambda s: params)}

        bres = optimize_3dgs(window, init_params, config.baseline_config(), iters=baseline_iters, device=dev,
                             eval_fn=eval_fn if targets else None, progress=progress, eval_every_s=eval_gap_s)
        base_log = bres.log
        base_curve = [[t_init + e["time_s"], e["psnr_heldout"]] for e in base_log
                      if e.get("psnr_heldout") is not None]
        base_time = t_init + (base_log[-1]["time_s"] if base_log else 0.0)
        base_scores = evaluate_keyframes(lambda s: bres.params, targets, background=bg)

    # --- pictures ------------------------------------------------------------------------
    if targets:
        written += _write_views(out, window, result, g3r_time, g3r_scores, ref, ref_scores, base_scores,
                                len(base_log), base_time)
        curves = {"G3R (steps)": g3r_curve}
        if ref_curve:
            curves["G3R + refinement"] = ref_curve
        if base_curve:
            curves["3DGS from LiDAR init (iterations)"] = base_curve
        psnr_vs_time_plot({k: ([t for t, _ in v], [p for _, p in v]) for k, v in curves.items()},
                          out / "psnr_vs_time.png", title=f"{window.name}: held-out PSNR vs wall time",
                          markers={"LiDAR init": (max(t_init, 1e-2), init_psnr)})
        written.append("psnr_vs_time.png")

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
            "refine": ref.total_s if ref else 0.0,
            "g3r_refine_total": g3r_time + (ref.total_s if ref else 0.0),
            "baseline_total": base_time,
        },
        "curves": {
            "note": "[wall seconds since scene initialization started, mean held-out PSNR dB]; held-out "
                    "evaluation excluded from the time",
            "g3r": g3r_curve, "refine": ref_curve if ref else None,
            "baseline_3dgs": base_curve if baseline_iters > 0 else None,
        },
        "init": {"heldout_psnr": init_psnr},
        "g3r": {
            "steps": len(result.log), "turbo": rcfg.turbo,
            "heldout": _scores_json(g3r_scores),
            "heldout_psnr": mean_psnr(g3r_scores), "heldout_ssim": mean_ssim(g3r_scores),
            "source_psnr": mean_psnr(g3r_source),
            "log": result.log,
        },
        "refine": {
            "iterations": ref.iterations, "stop_reason": ref.stop_reason, "time_s": ref.total_s,
            "num_gaussians": _counts(ref.scene),
            "heldout": _scores_json(ref_scores),
            "heldout_psnr": mean_psnr(ref_scores), "heldout_ssim": mean_ssim(ref_scores),
            "source_psnr": mean_psnr(ref_source), "source_psnr_start": ref.start_psnr,
            "source_psnr_best_epoch": ref.best_psnr,
            "log": ref.log, "config": asdict(rfcfg),
        } if ref else None,
        "baseline_3dgs": {
            "iters": len(base_log),
            "heldout": _scores_json(base_scores),
            "heldout_psnr": mean_psnr(base_scores), "heldout_ssim": mean_ssim(base_scores),
            "config": asdict(config.baseline_config()),
        } if baseline_iters > 0 else None,
        "config": {"reconstruct": asdict(rcfg)},
    }
    write_json(out / "metrics.json", metrics)
    written.append("metrics.json")
    LOG.info("wrote %s: %s", out, ", ".join(written))
    return metrics


def _write_views(out: Path, window: SceneWindow, result, g3r_time: float, g3r_scores, ref, ref_scores,
                 base_scores, base_iters: int, base_time: float) -> list[str]:
    """views/ (per held-out keyframe: ground truth, renders, error maps) and compare.png."""
    views = out / "views"
    rows, labels = [], []
    n = len(g3r_scores)
    for kf, g, r, b in zip(window.target_keyframes, g3r_scores, ref_scores or [None] * n, base_scores or [None] * n):
        gt = kf.image
        row = [gt]
        write_png(views / f"{kf.index:04d}_gt.png", gt)
        for tag, score in (("g3r", g), ("refined", r), ("baseline", b)):
            if score is None:
                continue
            img = _to_uint8(score.render)
            write_png(views / f"{kf.index:04d}_{tag}.png", img)
            if tag != "baseline":
                err = error_map(torch.from_numpy(score.render), torch.from_numpy(gt.astype(np.float32) / 255.0))
                write_png(views / f"{kf.index:04d}_{tag}_error.png", err)
            row.append(img)
        rows.append(row)
        labels.append(f"kf {kf.index}")
    cols = ["ground truth", f"G3R ({len(result.log)} steps, {g3r_time:.0f}s)"]
    if ref is not None:
        cols.append(f"G3R + refinement ({ref.iterations} it, {g3r_time + ref.total_s:.0f}s)")
    if base_scores:
        cols.append(f"3DGS baseline ({base_iters} it, {base_time:.0f}s)")
    contact_sheet(rows[:6], labels[:6], cols, out / "compare.png", title=f"held-out views of {window.name}")
    return ["views/", "compare.png"]


def _counts(scene: NeuralScene) -> dict:
    counts: dict[str, int] = {}
    for c in scene.components:
        counts[c.kind] = counts.get(c.kind, 0) + int(c.state.shape[0])
    return counts

"""Time T G3R steps on one cached window (``python -m g3r_ros.benchmarks.window_steps``).

Reads a window cache (``g3r train-cache --full-window``), initializes the Gaussians, runs
``--steps`` G3R steps on ``--device`` with the shipped model, and prints one JSON: the
window, the Gaussian count, init and per-step seconds (render, backward, network), the
held-out PSNR before and after, and the peak GPU memory. Used by ``tools/gpu_train.sh check``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv=None) -> int:
    import torch

    from ..evaluate import evaluate_keyframes, mean_psnr
    from ..initialization import InitConfig, init_scene
    from ..model import load_model
    from ..offline import identity_decoders
    from ..reconstruct import ReconstructConfig, reconstruct, resolve_device
    from ..window_cache import load_windows

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", required=True)
    p.add_argument("--steps", type=int, default=24)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--max-points", type=int, default=200000)
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    (window,) = load_windows(args.cache)[:1]
    model = load_model(None, device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    scene = init_scene(window, InitConfig(max_points=args.max_points), device=device)
    t_init = time.perf_counter() - t0
    ident = identity_decoders(device)
    before = mean_psnr(evaluate_keyframes(lambda s: scene.params_at(ident, s), window.target_keyframes,
                                          keep_renders=False))
    res = reconstruct(window, model, ReconstructConfig(steps=args.steps, device=device.type), scene=scene,
                      progress=False)
    after = mean_psnr(evaluate_keyframes(res.params_at, window.target_keyframes, keep_renders=False))
    log = res.log
    out = {
        "window": window.summary(), "device": str(device), "gaussians": scene.counts(), "steps": len(log),
        "init_s": t_init, "g3r_s": res.total_s, "per_step_s": res.total_s / max(len(log), 1),
        "render_s_per_step": sum(e["render_s"] for e in log) / max(len(log), 1),
        "backward_s_per_step": sum(e["backward_s"] for e in log) / max(len(log), 1),
        "network_s_per_step": sum(e["network_s"] for e in log) / max(len(log), 1),
        "heldout_psnr_init": before, "heldout_psnr_g3r": after,
        "peak_gpu_memory_mb": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None,
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``g3r bench train``: seconds per scene iteration of a training config, against the earlier trainer.

Both trainers run the same scene iterations (same windows, sub-windows, step counts and
initial weights) in one process, alternating, so that machine load affects both alike:

- ``baseline``: the earlier trainer: a separate rendering pass lifts each step's gradient,
  the sparse convolutions scatter per kernel offset (``index_add_``), and the CPU rasterizer
  runs with its earlier knobs (8x8 tiles, 64-Gaussian blocks, 4M-element chunks);
- ``current``: the source renders of each training step also give the next step's gradient,
  the sparse convolutions are one gather + one matmul (``g3r_ros.sparse.conv``), and the
  rasterizer runs with its current defaults.

Prints JSON: per-iteration seconds for both, the mean ratio ``speedup`` (baseline / current)
and scene iterations per hour.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import torch

HELP = "seconds per training scene iteration: current trainer vs the earlier one, side by side (JSON)"


def add_arguments(p):
    p.add_argument("--config", default=None, help="training config (default config/train_cpu.yaml)")
    p.add_argument("--iterations", type=int, default=4, help="scene iterations per trainer")
    p.add_argument("--first", type=int, default=200, help="first iteration index (past the step warm-up)")
    p.add_argument("--steps", type=int, default=None, help="override T (default: the config's)")
    p.add_argument("--out", default=None, help="also write the JSON here")


def run(args) -> int:
    from ..config import config_path
    from ..render.torch_backend import PREVIOUS_KNOBS, rasterizer_knobs
    from ..report import write_json
    from ..sparse.conv import conv_algorithm
    from ..train import Trainer, load_train_config

    cfg = load_train_config(args.config or config_path("train_cpu.yaml"))
    cfg.device = "cpu" if not torch.cuda.is_available() else cfg.device
    if args.steps:
        cfg.steps = args.steps
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, tmp, progress=False)
        trainer.load_data()
        start_model = copy.deepcopy(trainer.model.state_dict())
        start_opt = copy.deepcopy(trainer.optimizer.state_dict())
        rows = []
        for i in range(args.iterations):
            it = args.first + i
            row = {"iteration": it}
            for name in ("baseline", "current"):
                trainer.model.load_state_dict(start_model)
                trainer.optimizer.load_state_dict(start_opt)
                knobs = PREVIOUS_KNOBS if name == "baseline" else {}
                with conv_algorithm("scatter" if name == "baseline" else "table"), rasterizer_knobs(**knobs):
                    e = trainer.train_iteration(it, reuse_renders=name == "current")
                row[name] = e["time_s"]
                row.update({k: e[k] for k in ("window", "real", "steps", "views", "image", "points")})
            rows.append(row)
        base = [r["baseline"] for r in rows]
        cur = [r["current"] for r in rows]
        out = {
            "benchmark": "train",
            "config": args.config or "config/train_cpu.yaml",
            "device": str(trainer.device),
            "torch_threads": torch.get_num_threads(),
            "iterations": rows,
            "baseline_s_per_iteration": float(np.mean(base)),
            "current_s_per_iteration": float(np.mean(cur)),
            "speedup": float(np.mean(base) / np.mean(cur)),
            "baseline_iterations_per_hour": 3600.0 / float(np.mean(base)),
            "current_iterations_per_hour": 3600.0 / float(np.mean(cur)),
            "note": "same scene iterations and initial weights for both; the ratio is what the target asks "
                    "(>= 2x the earlier rate)",
        }
    if args.out:
        write_json(args.out, out)
    print(json.dumps(out, indent=2))
    return 0


"""Time G3R steps under different CPU rasterizer knobs (tile size, K-block, chunk budget).

Reconstructs a held-out synthetic street (``config/train_cpu.yaml`` sizes) with the shipped
model for ``--steps`` steps per setting, interleaving the settings over ``--repeats`` rounds so
that machine load affects them alike, and prints one JSON with every time and the minimum per
setting. Settings are ``tile:k_block:chunk_log2`` strings, for example::

    python tools/raster_knob_sweep.py --settings 8:64:22 4:256:20 4:128:19

Run it on a quiet machine: it measures wall time.
"""

from __future__ import annotations

import argparse
import json
import time


def parse_setting(text: str) -> dict:
    tile, block, chunk = (int(x) for x in text.split(":"))
    return {"tile_size": tile, "k_block": block, "chunk_elements": 1 << chunk}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--settings", nargs="+", default=["8:64:22", "4:256:20"], help="tile:k_block:chunk_log2")
    p.add_argument("--seed", type=int, default=3000, help="synthetic scene seed (a held-out benchmark seed)")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)

    import torch

    from g3r_ros.config import config_path, from_dict
    from g3r_ros.initialization import InitConfig, init_scene
    from g3r_ros.model import load_model
    from g3r_ros.reconstruct import ReconstructConfig, reconstruct
    from g3r_ros.render.torch_backend import rasterizer_knobs
    from g3r_ros.train import load_train_config, synth_bag
    from g3r_ros.window_builder import WindowConfig, window_from_bag

    tcfg = load_train_config(config_path("train_cpu.yaml"))
    window = window_from_bag(synth_bag(args.seed, tcfg.data), from_dict(WindowConfig, tcfg.data.window))
    torch.manual_seed(0)
    scene = init_scene(window, from_dict(InitConfig, tcfg.init))
    model = load_model(None)
    reconstruct(window, model, ReconstructConfig(steps=2), scene=scene, progress=False)  # warm-up
    times: dict[str, list[float]] = {s: [] for s in args.settings}
    for _ in range(args.repeats):
        for s in args.settings:
            with rasterizer_knobs(**parse_setting(s)):
                t0 = time.perf_counter()
                reconstruct(window, model, ReconstructConfig(steps=args.steps), scene=scene, progress=False)
                times[s].append(time.perf_counter() - t0)
    print(json.dumps({"scene": f"synth-{args.seed}", "gaussians": scene.num_points, "steps": args.steps,
                      "torch_threads": torch.get_num_threads(), "times_s": times,
                      "min_s": {s: min(v) for s, v in times.items()}}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

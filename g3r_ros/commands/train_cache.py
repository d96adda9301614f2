"""``g3r train-cache``: prepare a training config's data ahead of training.

- ``--real --out FILE.npz``: the real training and validation windows of the config's split,
  pre-cut into one compact window cache (images PNG-encoded, LiDAR voxel-downsampled) that a
  GPU machine without the KITTI drive can train from (``data.window_cache``);
- ``--full-window FILE.npz``: the validation window at full image resolution (left camera), for
  timing G3R steps at real resolution on a GPU machine;
- ``--synth [--jobs N]``: generate (in parallel) every synthetic scene the config trains and
  validates on, into its cache directory, so that training starts at once.

Prints a JSON summary (sizes, counts, seconds).
"""

from __future__ import annotations

import json
import time

NAME = "train-cache"
HELP = "pre-cut real training windows into a compact cache file, and/or pre-generate synthetic scenes"


def add_arguments(p):
    p.add_argument("--config", required=True, help="training config YAML (e.g. config/train_gpu.yaml)")
    p.add_argument("--real", action="store_true", help="write the real train/val windows to --out")
    p.add_argument("--out", default=None, help="window cache file (.npz) for --real (default: data.window_cache)")
    p.add_argument("--voxel", type=float, default=0.1, help="LiDAR voxel size in the cache, metres")
    p.add_argument("--max-mb", type=float, default=40.0, help="refuse to leave a cache larger than this")
    p.add_argument("--full-window", default=None, metavar="FILE.npz",
                   help="also write the validation window at full image resolution (left camera) to this file")
    p.add_argument("--synth", action="store_true", help="generate the config's synthetic scenes")
    p.add_argument("--jobs", type=int, default=1, help="parallel generator processes for --synth")


def _generate(job):
    from ..config import from_dict
    from ..train import DataConfig, synth_bag

    data_dict, seed, synth = job
    return str(synth_bag(seed, from_dict(DataConfig, data_dict, where="data"), synth))


def synth_jobs(cfg) -> list[tuple]:
    """(data dict, seed, synth settings) for every synthetic scene of a training config."""
    import dataclasses

    d = cfg.data
    data_dict = dataclasses.asdict(d)
    jobs = [(data_dict, s, d.synth) for s in (*range(*d.synth_train_seeds), *range(*d.synth_val_seeds))]
    for extra in d.synth_extra:
        jobs += [(data_dict, s, {**d.synth, **extra.get("synth", {})}) for s in range(*extra["seeds"])]
    return jobs


def run(args) -> int:
    from pathlib import Path

    from ..train import load_real_windows, load_train_config

    if not (args.real or args.synth or args.full_window):
        raise ValueError("nothing to do: give --real, --full-window and/or --synth")
    cfg = load_train_config(args.config)
    out: dict = {"config": args.config}
    if args.synth:
        t0 = time.perf_counter()
        jobs = synth_jobs(cfg)
        if args.jobs > 1:
            from multiprocessing import get_context

            with get_context("spawn").Pool(args.jobs) as pool:
                bags = pool.map(_generate, jobs)
        else:
            bags = [_generate(j) for j in jobs]
        out["synth"] = {"scenes": len(bags), "seconds": time.perf_counter() - t0, "cache_dir": cfg.data.cache_dir}
    if args.real:
        from ..window_cache import save_windows

        t0 = time.perf_counter()
        d = cfg.data
        d.window_cache = ""  # read the sequence itself
        train, val, record = load_real_windows(d)
        if not train:
            raise FileNotFoundError("the config's real split has no sequence here (data.real.sequence)")
        path = Path(args.out or cfg.data.window_cache or "runs/train_cache.npz")
        save_windows(path, train + val, voxel_size=args.voxel, meta={"real_split": record, "config": args.config})
        mb = path.stat().st_size / 2**20
        if mb > args.max_mb:
            path.unlink()
            raise ValueError(f"window cache would be {mb:.1f} MB > --max-mb {args.max_mb}: lower the window image "
                             "scale or raise --voxel")
        out["real"] = {"file": str(path), "mb": round(mb, 2), "windows": [w.summary() for w in train + val],
                       "split": record, "seconds": time.perf_counter() - t0}
    if args.full_window:
        from ..real_split import range_window
        from ..window_cache import save_windows

        split = cfg.data.real_split()
        w = range_window(split, split.val_frames, cameras="left", name="val-full",
                         window_overrides={"image_scale": 1.0})
        path = save_windows(args.full_window, [w], meta={"real_split": split.to_record()})
        out["full_window"] = {"file": str(path), "mb": round(path.stat().st_size / 2**20, 2), "window": w.summary()}
    print(json.dumps(out, indent=2))
    return 0

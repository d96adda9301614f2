"""``g3r bench synth-gap``: how far synthetic drives are from real KITTI frames, per realism feature.

Prints ONE JSON object. The real side is the KITTI drive's **validation window** (frames 39-50
of ``../shared/data/kitti-odometry-04``, both colour cameras and the Velodyne); the benchmark
window (frames 0-11) is refused. The synthetic side is a few generator seeds outside every
reserved range (training 1000-1199, validation 2000-2009, benchmark 3000-4999), a few frames
each, recorded exactly as a bag records them (``render_truth(..., recorded=True)``,
``lidar_scan``).

Variants: ``plain`` (every realism feature off: generator 1.0), ``plain+F`` (one feature on),
``all`` (every realism feature on), ``all-F`` (one feature off), ``defaults``
(``SynthConfig()``) and ``kitti`` (the preset). Framing options (``config.OPTIONS``: the KITTI
aspect ratio) are not part of ``all``; their "drop" comparison is ``all`` → ``all+F``.
For each, the statistics of ``g3r_ros.benchmarks.gap_stats`` are computed at a common image
size (default 306x92: KITTI's 1226x370 at quarter scale; other sizes are area-resampled to it)
and their gaps to the real set. ``image_gap_score`` / ``lidar_gap_score`` are the means over
the statistics of (gap + spread) / (gap(plain) + spread), each capped at 3, where ``spread``
is how much the real frames differ among themselves (``gap_stats.image_spread``): 1 is
generator 1.0, smaller is closer to KITTI. ``features`` sums this up per feature: the score
before/after switching it on (``add``: from plain; ``drop``: from all) and which statistics
got closer or further by more than the real spread.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from . import gap_stats as gs

HELP = "distance of synthetic drives from real KITTI validation frames, per realism feature (JSON)"

BENCHMARK_WINDOW = range(0, 12)      # frames 0-11: the reconstruct benchmark's real window, never used here
VALIDATION_WINDOW = (39, 50)
RESERVED_SEEDS = {"training": range(1000, 1200), "validation": range(2000, 2010), "benchmark": range(3000, 5000)}
PHOTOMETRIC = ("blur_px_min", "blur_px_max", "exposure_ev_min", "exposure_ev_max", "exposure_frame_ev", "contrast_min",
               "contrast_max",
               "white_balance", "vignetting_min", "vignetting_max", "noise_read", "noise_shot", "jpeg_quality_min",
               "jpeg_quality_max")
CAMERA_ONLY = ("width", "height", "hfov_deg", "camera_height_min", "camera_height_max", "camera_pitch_min_deg",
               "camera_pitch_max_deg", "supersample")
# Which of the gaps a feature is meant to move (used for the per-feature summary's "score").
LIDAR_FEATURES = ("lidar_pattern", "lidar_dropout", "lidar_noise")
GEOMETRY_FEATURES = ("curves", "intersections")


def default_kitti_dir() -> Path:
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "kitti-odometry-04"


def parse_frames(text: str) -> list[int]:
    """'39-50' or '39,41,45' → frame indices; refuses any frame of the benchmark window."""
    try:
        if "-" in text:
            a, b = (int(v) for v in text.split("-"))
            frames = list(range(a, b + 1))
        else:
            frames = [int(v) for v in text.split(",")]
    except ValueError as e:
        raise ValueError(f"bad --frames {text!r}: expected A-B or a comma list") from e
    if not frames or min(frames) < 0:
        raise ValueError(f"bad --frames {text!r}")
    bad = sorted(set(frames) & set(BENCHMARK_WINDOW))
    if bad:
        raise ValueError(f"frames {bad} belong to the benchmark window (frames 0-11): never used for tuning")
    return frames


def check_seeds(seeds: list[int]) -> None:
    for s in seeds:
        for name, r in RESERVED_SEEDS.items():
            if s in r:
                raise ValueError(f"seed {s} is in the reserved {name} range [{r.start}, {r.stop})")
        if s < 0:
            raise ValueError(f"seed {s} must be >= 0")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kitti", default=None, help="KITTI odometry sequence folder (default ../shared/data/"
                        "kitti-odometry-04 beside the repository)")
    parser.add_argument("--frames", default=f"{VALIDATION_WINDOW[0]}-{VALIDATION_WINDOW[1]}",
                        help="real frames to compare with (default the validation window 39-50; 0-11 refused)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[5000, 5001, 5002, 5003, 5004, 5005],
                        help="generator seeds (not in 1000-1199, 2000-2009, 3000-4999)")
    parser.add_argument("--frames-per-seed", type=int, default=3, help="synthetic frames per seed, spread over 2 s")
    parser.add_argument("--size", default="306x92", help="common image size WxH for the image statistics")
    parser.add_argument("--features", nargs="+", default=None, help="features to measure (default: all)")
    parser.add_argument("--modes", nargs="+", choices=("add", "drop"), default=["add", "drop"],
                        help="add: plain + one feature; drop: all features - one")
    parser.add_argument("--out", default=None, help="also write the JSON here (atomically)")


# ---------------------------------------------------------------------------------------
# Real side
# ---------------------------------------------------------------------------------------
def real_features(kitti_dir: Path, frames: list[int], size: tuple[int, int]):
    """Summaries and spreads of the real images (both colour cameras) and scans of ``frames``."""
    from ..kitti import read_png_rgb, read_velodyne_bin

    kitti_dir = Path(kitti_dir)
    if not (kitti_dir / "velodyne").is_dir():
        raise ValueError(f"{kitti_dir}: not a KITTI odometry sequence folder (no velodyne/)")
    imgs, scans, steps = [], [], []
    for i in frames:
        for cam in ("image_2", "image_3"):
            path = kitti_dir / cam / f"{i:06d}.png"
            if path.is_file():
                imgs.append(gs.image_features(read_png_rgb(path), size))
        path = kitti_dir / "velodyne" / f"{i:06d}.bin"
        if not path.is_file():
            raise ValueError(f"{path} missing")
        pts, inten = read_velodyne_bin(path)
        scans.append(gs.scan_features(pts, inten))
        steps.append(gs.ordered_scan_rings(pts)[1])
    if not imgs:
        raise ValueError(f"{kitti_dir}: no images for frames {frames}")
    img, lid = gs.image_set_summary(imgs), gs.lidar_set_summary(scans)
    lid["azimuth_step_deg"] = float(np.median(steps))
    return img, lid, gs.image_spread(imgs, img), gs.lidar_spread(scans, lid)


# ---------------------------------------------------------------------------------------
# Synthetic side
# ---------------------------------------------------------------------------------------
def variants(features: list[str], modes: list[str]) -> dict[str, dict]:
    """Variant name → SynthConfig overrides."""
    from ..synthetic.config import FEATURES, OPTIONS, PRESETS

    plain = dict(PRESETS["plain"])
    every = dict(plain)
    for name in FEATURES:
        if name not in OPTIONS:
            every.update(FEATURES[name][1])
    out = {"plain": plain, "all": every, "defaults": {}, "kitti": dict(PRESETS["kitti"])}
    for f in features:
        if "add" in modes:
            out[f"plain+{f}"] = {**plain, **FEATURES[f][1]}
        if "drop" in modes:
            out[f"all+{f}" if f in OPTIONS else f"all-{f}"] = {**every, **FEATURES[f][0 if f not in OPTIONS else 1]}
    return out


def _drop_pair(results: dict, f: str) -> tuple[dict, dict]:
    """(before, after) of switching ``f`` on in the "all" setting."""
    from ..synthetic.config import OPTIONS

    return (results["all"], results[f"all+{f}"]) if f in OPTIONS else (results[f"all-{f}"], results["all"])


class SyntheticSampler:
    """Renders the synthetic frames of a variant, reusing radiance across variants that differ
    only in the camera response and scans across variants that differ only in the cameras."""

    def __init__(self, seeds: list[int], frames_per_seed: int, size: tuple[int, int]):
        self.seeds = seeds
        self.frames = sorted({int(round(v)) for v in np.linspace(0, 19, frames_per_seed)})
        self.size = size
        self._radiance: dict = {}
        self._scans: dict = {}

    @staticmethod
    def _key(cfg, drop) -> str:
        import dataclasses

        d = dataclasses.asdict(cfg)
        return json.dumps({k: v for k, v in d.items() if k not in drop}, sort_keys=True)

    def run(self, overrides: dict) -> tuple[dict, dict]:
        from ..synthetic import SynthConfig, lidar_scan, make_scene, render_radiance
        from ..synthetic.photometric import record

        base = {"frames": 20, "cameras": 1}
        cfg = SynthConfig(**{**base, **overrides})
        cfg.validate()
        ikey = self._key(cfg, PHOTOMETRIC + ("lidar", "lidar_pattern", "lidar_beams", "lidar_azimuth_steps",
                                             "lidar_noise_m", "lidar_dropout"))
        lkey = self._key(cfg, PHOTOMETRIC + CAMERA_ONLY)
        imgs, scans = [], []
        for seed in self.seeds:
            scene = make_scene(seed, cfg)
            for i in self.frames:
                stamp = scene.stamps[i]
                k = (ikey, seed, i)
                if k not in self._radiance:
                    self._radiance[k] = render_radiance(scene, scene.camera(0, stamp), stamp)
                img = record(scene.response, self._radiance[k], scene.tau(stamp), 0)
                imgs.append(gs.image_features(img, self.size))
                k = (lkey, seed, i)
                if k not in self._scans:
                    scan = lidar_scan(scene, stamp, i)
                    self._scans[k] = gs.scan_features(scan.points, scan.intensity)
                scans.append(self._scans[k])
        return gs.image_set_summary(imgs), gs.lidar_set_summary(scans)


def _compare(before: dict, after: dict, kind: str, spread: dict) -> dict:
    gb, ga = before[f"{kind}_gaps"], after[f"{kind}_gaps"]
    ok = [k for k in gb if np.isfinite(gb[k]) and np.isfinite(ga[k])]
    return {"score_before": before[f"{kind}_gap_score"], "score_after": after[f"{kind}_gap_score"],
            "closer": [k for k in ok if ga[k] < gb[k] - spread[k]],
            "further": [k for k in ok if ga[k] > gb[k] + spread[k]]}


def _round(x):
    if isinstance(x, dict):
        return {k: _round(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_round(v) for v in x]
    if isinstance(x, float):
        return round(x, 5) if np.isfinite(x) else None
    return x


def run(args) -> int:
    from ..atomic import atomic_write_text
    from ..synthetic.config import FEATURES, GENERATOR_VERSION

    frames = parse_frames(args.frames)
    check_seeds(args.seeds)
    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
    except ValueError as e:
        raise ValueError(f"bad --size {args.size!r}: expected WxH") from e
    if args.frames_per_seed < 1:
        raise ValueError("--frames-per-seed must be >= 1")
    features = args.features or list(FEATURES)
    unknown = sorted(set(features) - set(FEATURES))
    if unknown:
        raise ValueError(f"unknown features {unknown}; known: {sorted(FEATURES)}")
    kitti = Path(args.kitti) if args.kitti else default_kitti_dir()
    t0 = time.perf_counter()
    real_img, real_lidar, img_spread, lidar_spread = real_features(kitti, frames, (w, h))
    sampler = SyntheticSampler(list(args.seeds), args.frames_per_seed, (w, h))
    results = {}
    for name, overrides in variants(features, args.modes).items():
        t = time.perf_counter()
        img, lid = sampler.run(overrides)
        results[name] = {"overrides": overrides, "images": gs.image_values(img), "lidar": gs.lidar_values(lid),
                         "image_gaps": gs.image_gaps(img, real_img), "lidar_gaps": gs.lidar_gaps(lid, real_lidar),
                         "seconds": round(time.perf_counter() - t, 2)}
    ref = results["plain"]
    for r in results.values():
        r["image_gap_score"] = gs.gap_score(gs.relative_gaps(r["image_gaps"], ref["image_gaps"], img_spread))
        r["lidar_gap_score"] = gs.gap_score(gs.relative_gaps(r["lidar_gaps"], ref["lidar_gaps"], lidar_spread))
    summary = {}
    for f in features:
        kind = "lidar" if f in LIDAR_FEATURES else "image"
        entry = {"kind": kind}
        spread = lidar_spread if kind == "lidar" else img_spread
        if "add" in args.modes:
            entry["add"] = _compare(results["plain"], results[f"plain+{f}"], kind, spread)
        if "drop" in args.modes:
            entry["drop"] = _compare(*_drop_pair(results, f), kind, spread)
        if f in GEOMETRY_FEATURES:   # they move the LiDAR statistics too
            entry["lidar"] = {m: _compare(*(
                (results["plain"], results[f"plain+{f}"]) if m == "add" else _drop_pair(results, f)),
                "lidar", lidar_spread) for m in args.modes}
        summary[f] = entry
    out = {
        "benchmark": "synth-gap", "generator_version": GENERATOR_VERSION, "kitti": str(kitti),
        "real_frames": frames, "real_cameras": ["image_2", "image_3"], "seeds": list(args.seeds),
        "synthetic_frames": sampler.frames, "size": [w, h],
        "real": {"images": gs.image_values(real_img),
                 "lidar": {**gs.lidar_values(real_lidar), "azimuth_step_deg": real_lidar["azimuth_step_deg"]},
                 "image_spread": img_spread, "lidar_spread": lidar_spread},
        "features": summary, "variants": results,
        "notes": ["gaps: |mean difference| for per-image scalars, 1-D Wasserstein for pooled values, total "
                  "variation for the elevation histogram (0.2 deg bins); *_gap_score: mean over the statistics "
                  "of min((gap + spread) / (gap(plain) + spread), 3), 1 = generator 1.0, smaller = closer to KITTI",
                  "the LiDAR sees parts of the same street in every KITTI window: these are sensor and image "
                  "statistics, not a test on a new street"],
        "elapsed_s": round(time.perf_counter() - t0, 1),
    }
    text = json.dumps(_round(out), indent=2)
    if args.out:
        atomic_write_text(args.out, text + "\n")
    print(text)
    return 0

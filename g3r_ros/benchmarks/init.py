"""``g3r bench init``: initialization variants on the real validation window, per image band.

Where the LiDAR does not reach (above about +2° on KITTI's HDL-64E) and where its rings are
sparse (the road at a distance) the initialization decides what G3R can do. This benchmark
measures the options on the real validation window of a training config's split (KITTI
frames 39–50, left camera; never the benchmark frames) at one or more image scales:

- ``paper``: balls (identity rotation) with a 2-pixel footprint cap at 306x92 (0.65°), no
  points above the LiDAR — the previous initialization;
- ``discs``: discs tangent to the LiDAR surface, 1.2° cap;
- ``blind_spots``: ``paper`` plus curtain points above the LiDAR (``g3r_ros.blind_spots``);
- ``discs+blind_spots``: both (the default, ``config/init.yaml``);
- ``dense_distant``: the default with a 4x denser distant sphere (48 x 512).

For each: Gaussian count, init seconds and held-out PSNR (whole image and top / middle /
bottom thirds) of the init alone, and with ``--g3r`` after 24 G3R steps of the shipped model.
Prints one JSON object.
"""

from __future__ import annotations

import json
import time

HELP = "initialization variants on the real validation window: held-out PSNR per image band (JSON)"

VARIANTS = {
    "paper": {"orient_to_surface": False, "max_footprint_deg": 0.65, "blind_spots": {"enabled": False}},
    "discs": {"blind_spots": {"enabled": False}},
    "blind_spots": {"orient_to_surface": False, "max_footprint_deg": 0.65},
    "discs+blind_spots": {},
    "dense_distant": {"distant": {"n_lat": 48, "n_lon": 512}},
}


def add_arguments(p):
    p.add_argument("--config", default=None, help="training config whose real split to use "
                   "(default config/train_cpu.yaml)")
    p.add_argument("--scales", type=float, nargs="+", default=[0.25, 0.5], help="image scales of the window")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--g3r", action="store_true", help="also run 24 G3R steps of the shipped model per variant")
    p.add_argument("--model", default=None)


def run(args) -> int:
    import torch

    from ..config import config_path, from_dict, load_yaml
    from ..evaluate import evaluate_keyframes, mean_band_psnr, mean_psnr
    from ..initialization import InitConfig, init_scene
    from ..model import load_model
    from ..offline import identity_decoders
    from ..real_split import range_window
    from ..reconstruct import ReconstructConfig, reconstruct
    from ..train import load_train_config

    cfg = load_train_config(args.config or config_path("train_cpu.yaml"))
    split = cfg.data.real_split()
    if not split.enabled:
        raise ValueError("the config's real split has no KITTI sequence here")
    base = load_yaml(config_path("init.yaml"))
    model = load_model(args.model) if args.g3r else None
    ident = identity_decoders("cpu")
    out = {"benchmark": "init", "window_frames": split.val_frames, "threads": torch.get_num_threads(),
           "note": "real validation window (left camera), held-out views; init alone unless 'g3r' is given",
           "results": []}
    for scale in args.scales:
        window = range_window(split, split.val_frames, cameras="left", window_overrides={"image_scale": scale})
        size = [window.keyframes[0].camera.width, window.keyframes[0].camera.height]
        for name in args.variants:
            icfg = from_dict(InitConfig, _merge(base, VARIANTS[name]), where=f"init[{name}]")
            t0 = time.perf_counter()
            scene = init_scene(window, icfg)
            t_init = time.perf_counter() - t0
            scores = evaluate_keyframes(lambda s, sc=scene: sc.params_at(ident, s), window.target_keyframes,
                                        keep_renders=False)
            row = {"variant": name, "image": size, "gaussians": scene.counts(), "init_s": round(t_init, 2),
                   "init_psnr": mean_psnr(scores), "init_bands": mean_band_psnr(scores)}
            if model is not None:
                res = reconstruct(window, model, ReconstructConfig(steps=24, view_chunk=6), scene=scene,
                                  progress=False)
                s2 = evaluate_keyframes(res.params_at, window.target_keyframes, keep_renders=False)
                row |= {"g3r_psnr": mean_psnr(s2), "g3r_bands": mean_band_psnr(s2), "g3r_s": round(res.total_s, 1)}
            out["results"].append(row)
    print(json.dumps(out, indent=2))
    return 0


def _merge(a: dict, b: dict) -> dict:
    """Nested dict update (b wins)."""
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out

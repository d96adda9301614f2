"""``g3r reconstruct BAG --out DIR``: the offline G3R job (see ``g3r_ros.offline``)."""

from __future__ import annotations

NAME = "reconstruct"
HELP = "reconstruct a window of a rosbag2 with G3R (and optionally the 3DGS baseline)"


def add_arguments(p):
    p.add_argument("bag", help="rosbag2 directory (mcap or sqlite3)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--model", default=None, help="G3R model file (default: the shipped models/g3r_net.pt)")
    p.add_argument("--random-model", action="store_true",
                   help="use a freshly initialized (untrained) network instead of a model file (debugging)")
    p.add_argument("--steps", type=int, default=None, help="number of G3R steps (default 24, from config)")
    p.add_argument("--turbo", action="store_true", help="turbo mode: fewer steps and half the points")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--baseline-iters", type=int, default=0, help="also run per-scene 3DGS for N iterations")
    p.add_argument("--config", default=None, help="offline config YAML (sections window/init/reconstruct/baseline)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args) -> int:
    import json

    from ..model import G3RModel
    from ..offline import load_offline_config, run_offline

    model = G3RModel() if args.random_model else None
    metrics = run_offline(args.bag, args.out, config=load_offline_config(args.config), model=model,
                          model_path=args.model, steps=args.steps, turbo=args.turbo, device=args.device,
                          baseline_iters=args.baseline_iters, progress=not args.quiet)
    summary = {
        "out": args.out,
        "device": metrics["device"],
        "g3r_heldout_psnr": metrics["g3r"]["heldout_psnr"],
        "g3r_time_s": metrics["times_s"]["g3r_total"],
        "init_heldout_psnr": metrics["init"]["heldout_psnr"],
    }
    if metrics["baseline_3dgs"]:
        summary["baseline_heldout_psnr"] = metrics["baseline_3dgs"]["heldout_psnr"]
        summary["baseline_time_s"] = metrics["times_s"]["baseline_total"]
    print(json.dumps(summary, indent=2))
    return 0

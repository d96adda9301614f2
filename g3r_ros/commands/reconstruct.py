"""``g3r reconstruct BAG --out DIR``: the offline G3R job (see ``g3r_ros.offline``)."""

from __future__ import annotations

NAME = "reconstruct"
HELP = "reconstruct a window of a rosbag2 with G3R (then optionally refine it, and run the 3DGS baseline)"


def add_arguments(p):
    p.add_argument("bag", help="rosbag2 directory (mcap or sqlite3)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--model", default=None, help="G3R model file (default: the shipped models/g3r_net.pt)")
    p.add_argument("--random-model", action="store_true",
                   help="use a freshly initialized (untrained) network instead of a model file (debugging)")
    p.add_argument("--steps", type=int, default=None,
                   help="number of G3R steps (default from config: 24, or turbo_steps 12 with --turbo)")
    p.add_argument("--turbo", action="store_true",
                   help="turbo mode: half the points and turbo_steps steps (--steps sets that number)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--refine-seconds", type=float, default=None,
                   help="refine G3R's map per scene for this many seconds (map.ply is then the refined map, "
                        "map_g3r.ply G3R's)")
    p.add_argument("--refine-iters", type=int, default=None,
                   help="refine for at most this many iterations (with --refine-seconds: whichever comes first)")
    p.add_argument("--baseline-iters", type=int, default=0, help="also run per-scene 3DGS for N iterations")
    p.add_argument("--config", default=None,
                   help="offline config YAML (sections window/init/reconstruct/refine/baseline)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _check(args) -> None:
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    if args.refine_seconds is not None and not args.refine_seconds >= 0:
        raise ValueError(f"--refine-seconds must be >= 0, got {args.refine_seconds}")
    if args.refine_iters is not None and args.refine_iters < 0:
        raise ValueError(f"--refine-iters must be >= 0, got {args.refine_iters}")
    if args.baseline_iters < 0:
        raise ValueError(f"--baseline-iters must be >= 0, got {args.baseline_iters}")


def run(args) -> int:
    import json

    from ..model import G3RModel
    from ..offline import load_offline_config, run_offline
    from ..report import json_safe

    _check(args)
    model = G3RModel() if args.random_model else None
    metrics = run_offline(args.bag, args.out, config=load_offline_config(args.config), model=model,
                          model_path=args.model, steps=args.steps, turbo=args.turbo, device=args.device,
                          baseline_iters=args.baseline_iters, refine_seconds=args.refine_seconds,
                          refine_iters=args.refine_iters, progress=not args.quiet)
    summary = {
        "out": args.out,
        "device": metrics["device"],
        "held_out_views": metrics["window"]["held_out_views"],
        "g3r_heldout_psnr": metrics["g3r"]["heldout_psnr"],
        "g3r_time_s": metrics["times_s"]["g3r_total"],
        "init_heldout_psnr": metrics["init"]["heldout_psnr"],
    }
    if metrics["refine"]:
        summary["refined_heldout_psnr"] = metrics["refine"]["heldout_psnr"]
        summary["refined_time_s"] = metrics["times_s"]["g3r_refine_total"]
    if metrics["baseline_3dgs"]:
        summary["baseline_heldout_psnr"] = metrics["baseline_3dgs"]["heldout_psnr"]
        summary["baseline_time_s"] = metrics["times_s"]["baseline_total"]
    print(json.dumps(json_safe(summary), indent=2))
    return 0

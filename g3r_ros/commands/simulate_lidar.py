"""``g3r simulate-lidar MAP.ply --pose ... --preset kitti64 --out scan.bin``: one simulated LiDAR scan.

The map is any graphdeco-layout 3DGS PLY; the pose is that of the LiDAR frame (x forward,
y left, z up) in the PLY's world frame, ``--pose x,y,z,qw,qx,qy,qz`` (``T_world_lidar``). The
beam model is a preset (``kitti64``: the KITTI car's Velodyne HDL-64E; ``synth``: the
``g3r synth`` LiDAR) or ``generic`` with ``--elevations``, ``--azimuth-step`` and
``--max-range``. Rays are cast as ``g3r_ros.lidar_sim`` documents; returns below
``--min-opacity`` are dropped.

``--out`` ends in ``.bin`` (KITTI Velodyne format: float32 x, y, z, reflectance rows in the
LiDAR frame; reflectance 0, as intensity is not modelled; readable with
``g3r_ros.kitti.read_velodyne_bin`` and every KITTI tool) or ``.npy`` (a structured array
x, y, z, range, ring). Prints one JSON object describing the scan.
"""

from __future__ import annotations

from .render import _floats

NAME = "simulate-lidar"
HELP = "simulate one LiDAR scan of a 3DGS PLY map (KITTI .bin)"


def _float_list(text: str) -> list[float]:
    import argparse

    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        vals = []
    if not vals:
        raise argparse.ArgumentTypeError(f"expected comma-separated degrees, got {text!r}")
    return vals


def add_arguments(parser):
    from ..lidar_sim import PRESETS

    parser.add_argument("ply", metavar="MAP.ply", help="3DGS PLY file (graphdeco layout)")
    parser.add_argument("--pose", required=True, type=_floats(7, "--pose"), metavar="X,Y,Z,QW,QX,QY,QZ",
                        help="LiDAR pose in the map (T_world_lidar); write --pose=-1,... when the first value "
                        "is negative")
    parser.add_argument("--preset", default="kitti64", choices=list(PRESETS), help="beam model (default kitti64)")
    parser.add_argument("--elevations", type=_float_list, default=None, metavar="DEG,DEG,...",
                        help="generic: beam elevations in degrees")
    parser.add_argument("--azimuth-step", type=float, default=0.2, help="generic: azimuth step (deg)")
    parser.add_argument("--max-range", type=float, default=100.0, help="generic: maximum range (m)")
    parser.add_argument("--min-range", type=float, default=0.0, help="generic: minimum range (m)")
    parser.add_argument("--min-opacity", type=float, default=0.5, help="returns need this accumulated opacity")
    parser.add_argument("--out", required=True, help="scan file: .bin (KITTI) or .npy")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="torch device")


def run(args) -> int:
    import json
    import time
    from pathlib import Path

    import numpy as np
    import torch

    from ..atomic import atomic_write_with
    from ..export import read_ply
    from ..geometry import pose_to_transform
    from ..lidar_sim import CastConfig, beam_model, scan_fields, simulate_lidar, write_kitti_bin

    out = Path(args.out)
    if out.suffix.lower() not in (".bin", ".npy"):
        raise ValueError(f"--out must end in .bin (KITTI) or .npy, got {out.name!r}")
    if args.preset != "generic" and args.elevations is not None:
        raise ValueError("--elevations belongs to --preset generic")
    beams = beam_model(args.preset, elevations_deg=args.elevations or (), azimuth_step_deg=args.azimuth_step,
                       max_range=args.max_range, min_range=args.min_range)
    cast = CastConfig(min_opacity=args.min_opacity)
    cast.validate()
    q = np.asarray(args.pose[3:], dtype=np.float64)
    if np.linalg.norm(q) < 1e-9:
        raise ValueError("--pose: the quaternion is zero")
    T_world_lidar = pose_to_transform(args.pose[:3], q / np.linalg.norm(q))
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but CUDA is not available")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    params = read_ply(args.ply, device=device)
    t0 = time.perf_counter()
    scan = simulate_lidar(params, T_world_lidar, beams, config=cast)
    elapsed = time.perf_counter() - t0
    if out.suffix.lower() == ".bin":
        write_kitti_bin(out, scan.points)
    else:
        fields = scan_fields(scan)
        atomic_write_with(out, lambda f: np.save(f, fields))
    print(json.dumps({"out": str(out), "gaussians": len(params), "beams": beams.to_dict(), "rays": scan.rays,
                      "returns": len(scan), "drop_fraction": round(scan.drop_fraction, 4),
                      "median_range_m": round(float(np.median(scan.ranges)), 3) if len(scan) else None,
                      "simulate_s": round(elapsed, 3), "device": str(device)}))
    return 0

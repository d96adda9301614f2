"""``g3r render MAP.ply``: render any graphdeco-layout 3DGS PLY from one camera to a PNG.

The camera pose is that of the *optical* frame (x right, y down, z forward) in the PLY's
world frame: ``--pose x,y,z,qw,qx,qy,qz`` (``T_world_cam``), or ``--look-at`` an eye and a
target with ``--up`` (default +z). Prints one JSON object describing the render.

``--depth-out`` writes the surface depth (``g3r_ros.depth``: metres along the optical axis) in
the format its suffix names: ``.npy`` or ``.tif``/``.tiff`` hold float32 metres with NaN where
the accumulated opacity is below ``--min-opacity`` (the ``32FC1`` convention of
``~/novel_view/depth``); ``.png`` holds 16-bit millimetres with 0 there (and beyond 65.535 m).
Write a list that starts with a minus sign as ``--pose=-1,2,...`` (argparse would read
``-1,2,...`` as an option).
"""

from __future__ import annotations

NAME = "render"
HELP = "render a 3DGS PLY (graphdeco layout, from any tool) to a PNG"


def _floats(n: int, what: str):
    def parse(text: str) -> list[float]:
        try:
            vals = [float(v) for v in text.split(",")]
        except ValueError:
            vals = []
        if len(vals) != n:
            import argparse

            raise argparse.ArgumentTypeError(f"{what}: expected {n} comma-separated numbers, got {text!r}")
        return vals

    return parse


def add_arguments(parser):
    parser.add_argument("ply", metavar="MAP.ply", help="3DGS PLY file (graphdeco layout)")
    parser.add_argument("--intrinsics", required=True, type=_floats(4, "--intrinsics"), metavar="FX,FY,CX,CY",
                        help="pinhole intrinsics in pixels")
    parser.add_argument("--size", required=True, type=_floats(2, "--size"), metavar="W,H", help="image size")
    pose = parser.add_mutually_exclusive_group(required=True)
    pose.add_argument("--pose", type=_floats(7, "--pose"), metavar="X,Y,Z,QW,QX,QY,QZ",
                      help="optical-frame camera pose in the world (T_world_cam); write --pose=-1,... "
                      "when the first value is negative")
    pose.add_argument("--look-at", type=_floats(6, "--look-at"), metavar="EX,EY,EZ,TX,TY,TZ",
                      help="camera at eye E looking at target T (--look-at=-1,... if negative)")
    parser.add_argument("--up", type=_floats(3, "--up"), default=[0.0, 0.0, 1.0], metavar="UX,UY,UZ",
                        help="world up for --look-at (default 0,0,1)")
    parser.add_argument("--out", required=True, help="output PNG")
    parser.add_argument("--background", type=_floats(3, "--background"), default=[0.0, 0.0, 0.0],
                        metavar="R,G,B", help="background colour in [0,1] (default black)")
    parser.add_argument("--depth-out", default=None,
                        help="optional depth image: .npy/.tif = float32 metres, NaN where invalid; .png = 16-bit "
                        "millimetres, 0 where invalid")
    parser.add_argument("--min-opacity", type=float, default=0.5,
                        help="depth is invalid where the accumulated opacity is below this (default 0.5)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="torch device")


def _atomic_save_png(path, array) -> None:
    from pathlib import Path

    from PIL import Image

    from ..atomic import atomic_path

    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def run(args) -> int:
    import json
    import time
    from pathlib import Path

    import numpy as np
    import torch

    from ..depth import DEPTH_SUFFIXES, render_rgbd, write_depth
    from ..export import read_ply
    from ..geometry import PinholeCamera, look_at, pose_to_transform
    from ..metrics import to_uint8

    fx, fy, cx, cy = args.intrinsics
    w, h = args.size
    if w != int(w) or h != int(h) or w <= 0 or h <= 0:
        raise ValueError(f"--size must be two positive integers, got {args.size}")
    if fx <= 0 or fy <= 0:
        raise ValueError(f"focal lengths must be > 0, got fx={fx}, fy={fy}")
    if any(not 0.0 <= c <= 1.0 for c in args.background):
        raise ValueError(f"--background must be in [0,1], got {args.background}")
    if not 0.0 <= args.min_opacity <= 1.0:
        raise ValueError(f"--min-opacity must be in [0,1], got {args.min_opacity}")
    if args.depth_out is not None and Path(args.depth_out).suffix.lower() not in DEPTH_SUFFIXES:
        raise ValueError(f"--depth-out: unknown suffix {Path(args.depth_out).suffix!r}; use one of {DEPTH_SUFFIXES}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but CUDA is not available")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))

    if args.pose is not None:
        T_world_cam = pose_to_transform(args.pose[:3], args.pose[3:])
    else:
        T_world_cam = look_at(args.look_at[:3], args.look_at[3:], up=args.up)
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    cam = PinholeCamera(K, int(w), int(h), T_world_cam)

    params = read_ply(args.ply, device=device)
    # Our own files hold colours in [0,1]; other tools' DC colours may overshoot.
    params.rgb = params.rgb.clamp(0.0, 1.0)
    bg = torch.tensor(args.background, dtype=torch.float32, device=device)
    t0 = time.perf_counter()
    view = render_rgbd(params, [cam], min_opacity=args.min_opacity, depth=args.depth_out is not None,
                       background=bg)[0]
    elapsed = time.perf_counter() - t0
    _atomic_save_png(args.out, to_uint8(view.rgb))
    result = {"out": str(args.out), "gaussians": len(params), "width": int(w), "height": int(h),
              "device": str(device), "render_s": round(elapsed, 4),
              "coverage": round(float((view.alpha > 0.5).mean()), 4)}
    if args.depth_out is not None:
        write_depth(args.depth_out, view.depth)
        result["depth_out"] = str(args.depth_out)
        result["depth_valid"] = round(float(np.isfinite(view.depth).mean()), 4)
    print(json.dumps(result))
    return 0

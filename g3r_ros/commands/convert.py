"""``g3r convert {kitti-odometry,kitti-raw} SRC OUT``: KITTI → rosbag2 (prints a JSON summary)."""

from __future__ import annotations

import json

NAME = "convert"
HELP = "convert KITTI odometry sequences or raw drives into rosbag2 (mcap) bags"


def add_arguments(parser):
    sub = parser.add_subparsers(dest="source", metavar="SOURCE", required=True)
    for name, src, helptext in (
        ("kitti-odometry", "SEQ_DIR", "a KITTI odometry sequence (image_2, velodyne, calib/times/poses.txt)"),
        ("kitti-raw", "DRIVE_DIR", "a KITTI raw drive, synced layout (image_02/03, velodyne_points, oxts)"),
    ):
        p = sub.add_parser(name, help=helptext, description=helptext)
        p.add_argument("src", metavar=src)
        p.add_argument("out", metavar="OUT", help="output bag directory (must not exist)")
        p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
        p.add_argument("--first-frame", type=int, default=0, help="index of the first frame to convert")
        p.add_argument("--max-frames", type=int, default=None, help="convert at most this many frames")
        p.add_argument("--stride", type=int, default=1, help="keep every n-th frame")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from g3r_ros import kitti

    fn = kitti.convert_kitti_odometry if args.source == "kitti-odometry" else kitti.convert_kitti_raw
    summary = fn(args.src, args.out, storage=args.storage, max_frames=args.max_frames, stride=args.stride,
                 first_frame=args.first_frame, progress=not args.no_progress)
    print(json.dumps(summary.to_dict(), indent=2))
    return 0

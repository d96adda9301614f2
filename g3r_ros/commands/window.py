"""``g3r window BAG [--config YAML]``: build the first scene window of a bag, print its summary JSON."""

from __future__ import annotations

import json

NAME = "window"
HELP = "build a scene window from a rosbag2 (mcap/sqlite3) and print its summary as JSON"


def add_arguments(parser):
    parser.add_argument("bag", metavar="BAG", help="rosbag2 directory")
    parser.add_argument("--config", default=None, help="WindowConfig YAML (e.g. config/window_kitti.yaml); "
                                                       "topics left empty are auto-detected")
    parser.add_argument("--section", default=None, help="top-level YAML section holding the window config")
    parser.add_argument("--all", action="store_true", help="summarize every consecutive window, not just the first")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from g3r_ros.config import load_config
    from g3r_ros.window_builder import WindowConfig, window_from_bag, windows_from_bag

    cfg = load_config(WindowConfig, args.config, section=args.section) if args.config else None
    if args.all:
        out = [w.summary() for w in windows_from_bag(args.bag, cfg, progress=not args.no_progress)]
    else:
        out = window_from_bag(args.bag, cfg, progress=not args.no_progress).summary()
    print(json.dumps(out, indent=2))
    return 0

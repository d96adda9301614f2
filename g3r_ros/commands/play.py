"""``g3r play BAG``: publish a rosbag2 over ROS 2 with rclpy (no ``ros2 bag`` needed)."""

from __future__ import annotations

import json
import os

NAME = "play"
HELP = "play a rosbag2 (mcap/sqlite3) over ROS 2: recorded CDR bytes, recorded QoS and timing, optional /clock"


def add_arguments(parser) -> None:
    parser.add_argument("bag", help="rosbag2 directory (with metadata.yaml)")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1.0)")
    parser.add_argument("--clock", action="store_true", help="publish /clock with the bag time")
    parser.add_argument("--clock-hz", type=float, default=40.0, help="/clock rate between messages (default 40)")
    parser.add_argument("--loop", action="store_true", help="replay until interrupted")
    parser.add_argument("--topics", nargs="+", default=None, metavar="TOPIC", help="play only these topics")
    parser.add_argument("--wait-for-subscribers", type=float, default=0.0, metavar="S",
                        help="wait up to S seconds for subscribers: until every topic has one, or some have and "
                        "no more appeared for 1 s (topics nobody subscribes are not waited for)")
    parser.add_argument("--delay", type=float, default=0.0, metavar="S", help="sleep S seconds before playing")
    parser.add_argument("--no-large-data", action="store_true",
                        help="keep Fast DDS's default 0.5 MB shared-memory segment (by default a 64 MB one is "
                        "configured unless FASTDDS_DEFAULT_PROFILES_FILE is set: large best-effort images are "
                        "lost otherwise)")


def run(args) -> int:
    from ..ros.player import PlayConfig, play_bag

    config = PlayConfig(rate=args.rate, clock=args.clock, clock_hz=args.clock_hz, loop=args.loop,
                        topics=args.topics, wait_for_subscribers=args.wait_for_subscribers, start_delay=args.delay)
    config.validate()
    if not os.path.exists(args.bag):
        raise FileNotFoundError(f"bag not found: {args.bag}")
    stats = play_bag(args.bag, config, large_data=not args.no_large_data)
    print(json.dumps(stats.as_dict()))
    return 0

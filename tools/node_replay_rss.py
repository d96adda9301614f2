"""Memory of reconstruct_node over a long looped replay (docs/ROS.md, "Anytime maps"): prints ONE JSON object.

Starts ``python -m g3r_ros.ros.node`` with ``--params-file`` (plus ``-p name:=value`` overrides),
waits for it, replays ``BAG`` with ``g3r play --loop``, samples the node's RSS (VmRSS) every
``--every`` seconds for ``--seconds``, then stops the player and the node (SIGINT) and reports
the RSS series (start / median / max / end, MiB) and the counters of the node's log (maps,
refinements, pre-emptions). The node's log is written to ``--log``.

    nice -n 19 env OMP_NUM_THREADS=1 ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_DOMAIN_ID=42 \\
        .venv/bin/python tools/node_replay_rss.py out/kitti04 --params config/kitti.yaml --seconds 600 \\
        -p refine.seconds:=60.0 -p reconstruction.every:=30
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from g3r_ros.ros.benchmark_node import rss_mb  # noqa: E402

COUNTED = {"maps": r"map \d+ from window", "refinements": r"refined for [\d.]+ s",
           "preempted": r"stop: preempted", "windows_dropped": r"dropping the oldest"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bag")
    ap.add_argument("--params", required=True, help="node parameter file")
    ap.add_argument("-p", dest="overrides", action="append", default=[], help="name:=value (repeatable)")
    ap.add_argument("--seconds", type=float, default=600.0, help="replay duration (s)")
    ap.add_argument("--every", type=float, default=10.0, help="RSS sampling period (s)")
    ap.add_argument("--log", default="node_replay.log")
    args = ap.parse_args()

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    node_cmd = [sys.executable, "-m", "g3r_ros.ros.node", "--ros-args", "--params-file", args.params]
    for o in args.overrides:
        node_cmd += ["-p", o]
    log = open(args.log, "w")  # noqa: SIM115 - open for the node's lifetime
    node = subprocess.Popen(node_cmd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    player = None
    samples: list[tuple[float, float]] = []
    stop = threading.Event()  # SIGTERM / SIGINT end the replay early; the report covers what was sampled
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        time.sleep(5.0)
        if node.poll() is not None:
            raise SystemExit(f"the node exited with {node.returncode}; see {args.log}")
        player = subprocess.Popen([sys.executable, "-m", "g3r_ros", "play", args.bag, "--loop",
                                   "--wait-for-subscribers", "30"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        t0 = time.monotonic()
        while (t := time.monotonic() - t0) <= args.seconds and node.poll() is None and not stop.is_set():
            samples.append((round(t, 1), round(rss_mb(node.pid), 1)))
            stop.wait(max(0.0, args.every - (time.monotonic() - t0 - t)))
    finally:
        for proc in (player, node):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # the node saves its map and exits 0 on SIGTERM
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        log.close()
    text = Path(args.log).read_text(errors="replace")
    rss = np.array([r for _, r in samples], dtype=float)
    out = {"seconds": round(samples[-1][0], 1) if samples else 0.0, "samples": len(samples),
           "node_exit": node.returncode,
           "rss_mb": {"start": rss[0], "median": float(np.median(rss)), "max": float(rss.max()), "end": rss[-1]}
           if rss.size else {}, "series": samples,
           **{k: len(re.findall(p, text)) for k, p in COUNTED.items()}}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

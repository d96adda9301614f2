"""``g3r bench {render,reconstruct,train,init,synth-gap,sim,node}``: benchmarks that print one JSON object.

Each benchmark is a module with ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``:
``g3r_ros.benchmarks.<name>`` for the ROS-free ones, ``g3r_ros.ros.benchmark_node`` for the
node (it drives rclpy, so it lives in the adapter).
"""

from __future__ import annotations

import importlib

NAME = "bench"
HELP = "benchmarks (print JSON; ratios against a baseline measured in the same run)"
BENCHMARKS = {"render": "g3r_ros.benchmarks.render", "reconstruct": "g3r_ros.benchmarks.reconstruct",
              "train": "g3r_ros.benchmarks.train", "init": "g3r_ros.benchmarks.init",
              "synth-gap": "g3r_ros.benchmarks.synth_gap", "sim": "g3r_ros.benchmarks.sim",
              "node": "g3r_ros.ros.benchmark_node"}


def add_arguments(parser):
    sub = parser.add_subparsers(dest="bench", metavar="BENCHMARK", required=True)
    for name, module in BENCHMARKS.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_bench_run=mod.run)


def run(args) -> int:
    return args._bench_run(args)

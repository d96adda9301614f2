"""``g3r bench {render,reconstruct,node}``: benchmarks that print one JSON object.

Each benchmark lives in ``g3r_ros.benchmarks.<name>`` with ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import importlib

NAME = "bench"
HELP = "benchmarks (print JSON; ratios against a baseline measured in the same run)"
BENCHMARKS = ("render", "reconstruct", "node")


def add_arguments(parser):
    sub = parser.add_subparsers(dest="bench", metavar="BENCHMARK", required=True)
    for name in BENCHMARKS:
        try:
            mod = importlib.import_module(f"g3r_ros.benchmarks.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"g3r_ros.benchmarks.{name}":
                raise
            continue
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_bench_run=mod.run)


def run(args) -> int:
    return args._bench_run(args)

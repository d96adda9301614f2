"""Timing of the default G3R-Net and of one sparse conv; prints one JSON object.

Run: ``python -m g3r_ros.sparse.benchmark --points 20000 100000`` (set
``OMP_NUM_THREADS=2 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=4294967296`` first). It
follows the ``g3r bench`` module interface (``HELP``, ``add_arguments``, ``run``).

Layouts of the points:
- ``street``: synthetic LiDAR-like street (ground, two facades, cars, poles), denser near
  the origin, like an accumulated scan;
- ``surface``: one point per voxel on a ground plane and a wall, so voxels == points;
- ``scan``: a KITTI velodyne ``.bin`` file (``--scan``), randomly subsampled.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

HELP = "time G3R-Net forward+backward and one sparse conv: neighbour table (current) vs per-offset scatter (earlier)"


def street_points(n: int, seed: int = 0) -> torch.Tensor:
    """(n,3) metres: ground, facades at y=+-15 m, car boxes and poles; density ~ 1/r."""
    rng = np.random.default_rng(seed)
    parts = []
    n_ground, n_wall, n_obj = int(0.5 * n), int(0.35 * n), n - int(0.5 * n) - int(0.35 * n)
    r = 3.0 + 47.0 * rng.random(n_ground) ** 2  # more samples near the ego
    a = rng.uniform(-np.pi, np.pi, n_ground)
    g = np.stack([r * np.cos(a), np.clip(r * np.sin(a), -15, 15), rng.normal(0, 0.03, n_ground)], 1)
    parts.append(g)
    x = np.sign(rng.random(n_wall) - 0.5) * 50.0 * rng.random(n_wall) ** 1.5
    side = np.where(rng.random(n_wall) < 0.5, -15.0, 15.0)
    parts.append(np.stack([x, side + rng.normal(0, 0.05, n_wall), 12.0 * rng.random(n_wall) ** 1.3], 1))
    centres = rng.uniform([-45, -10, 0], [45, 10, 0], (40, 3))
    k = rng.integers(0, 40, n_obj)
    parts.append(centres[k] + rng.uniform([-2.2, -0.9, 0.0], [2.2, 0.9, 1.6], (n_obj, 3)))
    return torch.from_numpy(np.concatenate(parts)).float()


def surface_points(n: int, voxel_size: float, seed: int = 0) -> torch.Tensor:
    """(n,3) metres, one point per voxel: a square ground patch plus a wall."""
    rng = np.random.default_rng(seed)
    n_ground = int(0.75 * n)
    side = int(np.ceil(np.sqrt(n_ground)))
    i = np.arange(n_ground)
    ground = np.stack([i % side, i // side, np.zeros(n_ground)], 1)
    n_wall = n - n_ground
    j = np.arange(n_wall)
    wall = np.stack([j % side, np.full(n_wall, side + 1), 1 + j // side], 1)
    cells = np.concatenate([ground, wall]).astype(np.float64)
    return torch.from_numpy((cells + rng.uniform(0.05, 0.95, cells.shape)) * voxel_size).float()


def scan_points(path: str, n: int, seed: int = 0) -> torch.Tensor:
    pts = np.fromfile(path, dtype=np.float32).reshape(-1, 4)[:, :3]
    pts = pts[np.linalg.norm(pts, axis=1) > 3.0]
    idx = np.random.default_rng(seed).permutation(len(pts))[:n]
    return torch.from_numpy(pts[idx].copy())


def _timed(fn, repeats: int) -> list[float]:
    fn()  # warm up
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _stats(ts: list[float]) -> dict:
    return {"min_s": round(min(ts), 4), "median_s": round(statistics.median(ts), 4)}


def bench_network(points: torch.Tensor, repeats: int, seed: int = 0) -> dict:
    """The default background network, forward alone and forward + backward, with the current
    sparse conv ("table") and side by side with the earlier one ("scatter", the baseline)."""
    from g3r_ros.net import G3RNet
    from g3r_ros.sparse import voxelize
    from g3r_ros.sparse.conv import conv_algorithm

    torch.manual_seed(seed)
    net = G3RNet()  # background defaults
    n = points.shape[0]
    state = torch.randn(n, net.config.state_channels)
    state[:, :3] = points
    state.requires_grad_(True)
    grad = torch.randn(n, net.config.state_channels).clamp(-1, 1)
    vox = voxelize(points, net.voxel_size)
    levels = [vox.manager.num_voxels(2 ** i) for i in range(len(net.config.channels))]

    def fwd():
        with torch.no_grad():
            net(points, state, grad, 3, 24)

    def fwd_bwd():
        net.zero_grad(set_to_none=True)
        state.grad = None
        delta = net(points, state, grad, 3, 24)
        (delta * 0.5).sum().backward()

    out = {"points": n, "voxels_per_level": levels}
    for name in ("scatter", "table"):
        with conv_algorithm(name):
            out[name] = {"forward": _stats(_timed(fwd, repeats)), "forward_backward": _stats(_timed(fwd_bwd, repeats))}
    out["speedup_forward_backward"] = round(out["scatter"]["forward_backward"]["min_s"]
                                            / out["table"]["forward_backward"]["min_s"], 3)
    return out


def bench_conv(points: torch.Tensor, voxel_size: float, channels: int, repeats: int) -> dict:
    """One 3x3x3 submanifold conv (C -> C) forward+backward: neighbour table (current), per-offset
    scatter (earlier) and plain autograd."""
    from g3r_ros.sparse import sparse_conv, sparse_conv_reference, voxelize
    from g3r_ros.sparse.conv import conv_algorithm

    vox = voxelize(points, voxel_size)
    kmap = vox.manager.submanifold(1, 3)
    feats = torch.randn(vox.num_voxels, channels, requires_grad=True)
    weight = torch.randn(27, channels, channels, requires_grad=True)

    def run(fn):
        def go():
            feats.grad = weight.grad = None
            fn(feats, weight, kmap).sum().backward()
        return _stats(_timed(go, repeats))

    t0 = time.perf_counter()
    vox.manager._maps.clear()
    vox.manager.submanifold(1, 3)
    map_s = time.perf_counter() - t0
    with conv_algorithm("scatter"):
        scatter = run(sparse_conv)
    return {"voxels": vox.num_voxels, "channels": channels, "pairs": kmap.num_pairs,
            "kernel_map_s": round(map_s, 4), "table": run(sparse_conv), "scatter": scatter,
            "plain_autograd": run(sparse_conv_reference)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--points", type=int, nargs="+", default=[20000, 100000])
    parser.add_argument("--layout", choices=("street", "surface", "scan"), default="street")
    parser.add_argument("--scan", help="KITTI velodyne .bin (layout scan)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--conv", action="store_true", help="also time one 3^3 conv (table, scatter, plain autograd)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: as set)")


def run(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.layout == "scan" and not args.scan:
        raise ValueError("--layout scan needs --scan FILE")
    results = []
    for n in args.points:
        if args.layout == "street":
            pts = street_points(n)
        elif args.layout == "surface":
            pts = surface_points(n, 0.4)
        else:
            pts = scan_points(args.scan, n)
        entry = {"layout": args.layout, **bench_network(pts, args.repeats)}
        if args.conv:
            entry["conv32"] = bench_conv(pts, 0.4, 32, args.repeats)
        results.append(entry)
    print(json.dumps({"benchmark": "g3r_net", "device": "cpu", "threads": torch.get_num_threads(),
                      "torch": torch.__version__, "results": results}, indent=1))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=HELP)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())

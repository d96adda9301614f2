"""``g3r bench sim``: how close the simulated sensors are to real ones, and how fast they run.

In one process, on one device:

- **real** (the KITTI benchmark window, frames 0-11 by default, never trained or validated on):
  the window's left camera is reconstructed with the shipped model (``config/offline_kitti.yaml``;
  or ``--map`` gives the map), and at each held-out keyframe the simulated LiDAR
  (``kitti64`` preset, at the frame's Velodyne pose) is compared with the real scan of that
  frame (``g3r_ros.sim_fidelity.compare_scan``: median absolute range error, fraction within
  0.5 m, drop and ghost rates), and the depth image of the held-out camera with the real scan
  projected into it (median relative error, fraction within 5 %). The scans of the held-out
  frames are not in the map (the window accumulates every 2nd scan: frames 0, 2, 4, ...).
  The same figures for the LiDAR initialization alone (no G3R step) and for the returns
  inside the source cameras' view (the map only covers what the cameras saw) are reported
  beside them.
- **synthetic** (held-out ``g3r synth`` seeds, exact truth): the same comparisons against the
  generator's exact scan on the same beam pattern (ghost tolerance 0 cells) and its exact depth.
- **speed**: poses per second of the pose-stream simulator (``pose_stream.SensorSimulator``,
  the node's code path: bounded queue, worker thread, colour + depth of each rig camera, and
  the rig's LiDAR) on the real map, for the recorded camera at 306x92 and the full 1226x370,
  with and without LiDAR, and without the depth image.

Headline keys: ``real.lidar_median_abs_error_m``, ``real.lidar_within_0_5m``,
``real.depth_median_rel_error``, ``camera_hz_306x92``; ``targets`` says which are met.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from pathlib import Path

import numpy as np
import torch

HELP = "simulated LiDAR and depth vs real/exact sensors, and pose-stream speed (JSON)"
LOG = logging.getLogger(__name__)
SYNTH_SEEDS = (3000, 3001)  # held-out seeds (g3r bench reconstruct's; never in any training range)
RANGE_BANDS = ((0, 10), (10, 20), (20, 40), (40, 200))


def add_arguments(p):
    p.add_argument("--kitti", default="auto", help="KITTI odometry sequence dir; 'auto': ../shared/data/"
                   "kitti-odometry-04 when present; 'none'")
    p.add_argument("--kitti-frames", default="0:12", help="frames [start:stop) of the real window")
    p.add_argument("--map", default=None, help="use this PLY as the real window's map instead of reconstructing")
    p.add_argument("--model", default=None, help="model file (default: shipped models/g3r_net.pt)")
    p.add_argument("--synth-seeds", default=",".join(map(str, SYNTH_SEEDS)), help="held-out synthetic seeds "
                   "(comma-separated; '' = none)")
    p.add_argument("--config", default=None, help="training config whose synthetic sizes to use "
                   "(default config/train_cpu.yaml)")
    p.add_argument("--speed-poses", type=int, default=6, help="poses per speed measurement")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out", default="out/bench_sim", help="per-case JSON, the map and the pictures")
    p.add_argument("--figure", default=None, help="also write the simulated-over-real scan picture here "
                   "(it plots real KITTI scans: keep it out of the repository)")
    p.add_argument("--synth-figure", default=None, help="also write the simulated-over-exact scan picture of the "
                   "first synthetic seed here (synthetic data only: fine to commit)")
    p.add_argument("--quiet", action="store_true")


def _r(v, nd=4):
    return None if v is None else round(float(v), nd)


def _mean(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(vals)) if vals else None


def _clean(d: dict) -> dict:
    return {k: (_r(v) if isinstance(v, float) else v) for k, v in d.items() if k != "_"}


# ---------------------------------------------------------------------------------------
# The real window
# ---------------------------------------------------------------------------------------
def _real_window(args):
    from ..real_split import RealSplit, check_benchmark_frames, default_kitti_sequence, range_window
    from .reconstruct import model_real_split

    if args.kitti == "none":
        return None, None
    seq = Path(args.kitti) if args.kitti != "auto" else default_kitti_sequence()
    if not (seq / "poses.txt").exists():
        if args.kitti != "auto":
            raise ValueError(f"KITTI sequence not found: {seq}")
        LOG.info("no KITTI data at %s: the real window is skipped", seq)
        return None, None
    a, b = (int(x) for x in str(args.kitti_frames).split(":"))
    check_benchmark_frames([a, b], model_real_split(args.model))
    window = range_window(RealSplit(sequence=str(seq)), [a, b], cameras="left",
                          name=f"kitti-{seq.name.split('-')[-1]}-{a}-{b}")
    return window, seq


def _reconstruct(window, model, init_cfg, rcfg, device, g3r: bool = True):
    """The window's LiDAR init (params) and, with ``g3r``, its G3R reconstruction (an output with
    ``params_at``, else None), and the seconds both took."""
    from ..initialization import init_scene
    from ..offline import identity_decoders
    from ..reconstruct import reconstruct

    torch.manual_seed(0)
    t0 = time.perf_counter()
    scene = init_scene(window, init_cfg, device=device)
    with torch.no_grad():
        init_params = scene.params_at(identity_decoders(device), window.keyframes[0].stamp).detach()
    result = reconstruct(window, model, rcfg, scene=scene, progress=False) if g3r else None
    return result, init_params, time.perf_counter() - t0


def _kitti_frames(seq: Path):
    from ..kitti import ODOMETRY_EPOCH, odometry_base_poses, read_odometry_calib, read_odometry_poses

    calib = read_odometry_calib(seq / "calib.txt")
    T_map_velo = odometry_base_poses(read_odometry_poses(seq / "poses.txt"), calib)  # base_link = velodyne
    stamps = np.loadtxt(seq / "times.txt", ndmin=1).reshape(-1) + ODOMETRY_EPOCH
    return T_map_velo, stamps, calib


def _lidar_case(smap, T_world_lidar, real_points, beams, tolerance, source_keyframes=None) -> dict:
    from ..geometry import transform_points
    from ..initialization import in_any_view
    from ..lidar_sim import simulate_lidar
    from ..sim_fidelity import compare_scan, range_metrics

    t0 = time.perf_counter()
    scan = simulate_lidar(smap, T_world_lidar, beams)
    sim_s = time.perf_counter() - t0
    res = compare_scan(smap, T_world_lidar, real_points, scan, tolerance_cells=tolerance)
    res["simulate_s"] = sim_s
    raw = res["_"]
    res["by_range"] = {}
    for lo, hi in RANGE_BANDS:
        band = (raw["real_ranges"] >= lo) & (raw["real_ranges"] < hi)
        m = range_metrics(raw["real_ranges"][band], raw["sim_ranges"][band])
        res["by_range"][f"{lo:g}-{hi:g}m"] = {k: _r(m[k]) if isinstance(m[k], float) else m[k] for k in
                                             ("real_returns", "median_abs_error_m", "within_0_5m", "drop_rate")}
    if source_keyframes:
        raw = res["_"]
        inside = in_any_view(transform_points(T_world_lidar, raw["points"]), source_keyframes)
        res["in_source_views"] = _clean(range_metrics(raw["real_ranges"][inside], raw["sim_ranges"][inside]))
    res["scan"] = scan
    return res


def _real_block(args, out: Path, device, model) -> tuple[dict | None, dict | None]:
    """The real-window figures, and what the speed test and the picture need."""
    from ..config import config_path
    from ..depth import render_rgbd
    from ..export import read_ply, write_ply
    from ..geometry import transform_points
    from ..kitti import read_velodyne_bin
    from ..lidar_sim import kitti_hdl64
    from ..offline import load_offline_config
    from ..sim_fidelity import compare_depth
    from ..surface import surface_map

    window, seq = _real_window(args)
    if window is None:
        return None, None
    LOG.info("real window %s: %s", window.name, window.summary())
    cfg = load_offline_config(config_path("offline_kitti.yaml"))
    rcfg = cfg.reconstruct_config()
    rcfg.device = str(device)
    result, init_params, recon_s = _reconstruct(window, model, cfg.init_config(), rcfg, device, g3r=not args.map)
    if args.map:
        params, source = read_ply(args.map, device=device), str(args.map)
    else:
        params, source = result.params_at(window.keyframes[0].stamp).detach(), "G3R (shipped model)"
        write_ply(out / f"{window.name}_map.ply", params)
    T_map_velo, stamps, calib = _kitti_frames(seq)
    beams = kitti_hdl64()
    maps = {"g3r": surface_map(params), "init_only": surface_map(init_params)}
    rows: dict[str, list] = {k: [] for k in maps}
    depth_rows, pictures = [], []
    for kf in window.target_keyframes:
        f = int(np.argmin(np.abs(stamps - kf.stamp)))
        real_pts, _ = read_velodyne_bin(seq / "velodyne" / f"{f:06d}.bin")
        for name, smap in maps.items():
            res = _lidar_case(smap, T_map_velo[f], real_pts, beams, 1, window.source_keyframes)
            scan = res.pop("scan")
            if name == "g3r":
                pictures.append((f, real_pts, scan, res["_"]))
            rows[name].append({"frame": f, **_clean(res)})
        t0 = time.perf_counter()
        view = render_rgbd(maps["g3r"], [kf.camera])[0]
        d = compare_depth(view.depth, kf.camera, transform_points(T_map_velo[f], real_pts))
        depth_rows.append({"frame": f, "render_s": time.perf_counter() - t0, **_clean(d)})
    g = rows["g3r"]
    block = {
        "window": window.summary(), "map": source, "map_gaussians": len(params), "reconstruct_s": _r(recon_s, 2),
        "beams": beams.to_dict(),
        "lidar_median_abs_error_m": _mean(g, "median_abs_error_m"), "lidar_within_0_5m": _mean(g, "within_0_5m"),
        "lidar_within_0_2m": _mean(g, "within_0_2m"), "lidar_drop_rate": _mean(g, "drop_rate"),
        "lidar_ghost_rate": _mean(g, "ghost_rate"),
        "lidar_in_source_views": {k: _mean([r["in_source_views"] for r in g], k) for k in
                                  ("median_abs_error_m", "within_0_5m", "drop_rate")},
        "lidar_within_0_5m_by_range": {band: _r(_mean([r["by_range"][band] for r in g], "within_0_5m"))
                                       for band in g[0]["by_range"]} if g else {},
        "depth_median_rel_error": _mean(depth_rows, "median_rel_error"),
        "depth_median_abs_error_m": _mean(depth_rows, "median_abs_error_m"),
        "depth_within_5pct": _mean(depth_rows, "within_5pct"), "depth_coverage": _mean(depth_rows, "coverage"),
        "init_only": {k: _mean(rows["init_only"], k) for k in ("median_abs_error_m", "within_0_5m", "drop_rate",
                                                                "ghost_rate")},
        "held_out_frames": [r["frame"] for r in g], "lidar": g, "lidar_init_only": rows["init_only"],
        "depth": depth_rows,
        "note": "held-out frames' scans are not in the map (every 2nd scan is accumulated); the map covers only "
                "what the source cameras saw, and moving cars (no tracks in KITTI odometry) leave trails in it",
    }
    ctx = {"window": window, "params": params, "smap": maps["g3r"], "pictures": pictures, "seq": seq,
           "T_map_velo": T_map_velo, "stamps": stamps, "calib": calib}
    return {k: (_r(v) if isinstance(v, float) else v) for k, v in block.items()}, ctx


# ---------------------------------------------------------------------------------------
# Synthetic scenes (exact truth)
# ---------------------------------------------------------------------------------------
def _synth_block(args, model, device, figure=None) -> list[dict]:
    """Fidelity on held-out synthetic seeds; ``figure``: path of the first seed's scan picture."""
    from ..config import config_path, from_dict
    from ..depth import render_rgbd
    from ..geometry import transform_points
    from ..initialization import InitConfig
    from ..lidar_sim import synthetic_beams
    from ..reconstruct import ReconstructConfig
    from ..sim_fidelity import compare_depth
    from ..surface import surface_map
    from ..synthetic import lidar_scan, render_truth_depth, scene_from_bag
    from ..train import load_train_config, synth_bag
    from ..window_builder import WindowConfig, window_from_bag

    seeds = [int(s) for s in str(args.synth_seeds).split(",") if s.strip()]
    if not seeds:
        return []
    tcfg = load_train_config(args.config or config_path("train_cpu.yaml"))
    used = [range(*tcfg.data.synth_train_seeds), range(*tcfg.data.synth_val_seeds)]
    used += [range(*e["seeds"]) for e in tcfg.data.synth_extra]
    if any(s in r for s in seeds for r in used):
        raise ValueError(f"synthetic seeds {seeds} overlap the training/validation seeds")
    wcfg = from_dict(WindowConfig, tcfg.data.window, where="data.window") if tcfg.data.window else None
    init_cfg = from_dict(InitConfig, tcfg.init, where="init")
    rows = []
    for seed in seeds:
        bag = synth_bag(seed, tcfg.data)
        window = window_from_bag(bag, wcfg)
        window.name = f"synth-{seed}"
        scene = scene_from_bag(bag)
        # the exact scan: no range noise, no per-beam calibration bias
        scene.lidar = dataclasses.replace(scene.lidar, noise_m=0.0, beam_bias=np.zeros_like(scene.lidar.beam_bias))
        beams = synthetic_beams(scene.config)
        result, _, recon_s = _reconstruct(window, model, init_cfg, ReconstructConfig(device=str(device)), device)
        lidar, depth = [], []
        for kf in window.target_keyframes:
            frame = int(np.argmin(np.abs(np.asarray(scene.stamps) - kf.stamp)))
            smap = surface_map(result.params_at(kf.stamp))
            T = scene.lidar_pose(kf.stamp)
            truth = lidar_scan(scene, kf.stamp, frame)
            res = _lidar_case(smap, T, truth.points, beams, 0)
            scan = res.pop("scan")
            if figure and seed == seeds[0] and not lidar:
                scan_picture(truth.points, scan, res["_"], figure, truth_label="exact synthetic scan",
                             title=f"g3r synth seed {seed} (held out), keyframe {kf.index}: simulated {beams.name} "
                                   "scan from the G3R map over the generator's exact scan")
            lidar.append({"keyframe": kf.index, **_clean(res)})
            view = render_rgbd(smap, [kf.camera])[0]
            d = compare_depth(view.depth, kf.camera, transform_points(T, truth.points.astype(np.float64)))
            exact = render_truth_depth(scene, kf.camera, kf.stamp)
            both = np.isfinite(exact) & np.isfinite(view.depth)
            rel = np.abs(view.depth[both] - exact[both]) / exact[both]
            depth.append({"keyframe": kf.index, **_clean(d),
                          "exact_depth_median_rel_error": _r(np.median(rel)) if rel.size else None,
                          "exact_depth_within_5pct": _r(np.mean(rel <= 0.05)) if rel.size else None})
        rows.append({"seed": seed, "window": window.summary(), "reconstruct_s": _r(recon_s, 2),
                     "beams": beams.name,
                     "lidar_median_abs_error_m": _r(_mean(lidar, "median_abs_error_m")),
                     "lidar_within_0_5m": _r(_mean(lidar, "within_0_5m")),
                     "lidar_drop_rate": _r(_mean(lidar, "drop_rate")),
                     "lidar_ghost_rate": _r(_mean(lidar, "ghost_rate")),
                     "depth_median_rel_error": _r(_mean(depth, "median_rel_error")),
                     "depth_within_5pct": _r(_mean(depth, "within_5pct")),
                     "exact_depth_median_rel_error": _r(_mean(depth, "exact_depth_median_rel_error")),
                     "lidar": lidar, "depth": depth})
    return rows


# ---------------------------------------------------------------------------------------
# Speed: the pose-stream simulator on the real map
# ---------------------------------------------------------------------------------------
def pose_stream_hz(state, rig, poses: list[np.ndarray], *, lidar: bool, depth: bool = True, beams=None) -> dict:
    """Poses per second through a :class:`~g3r_ros.pose_stream.SensorSimulator` (its worker
    thread renders every rig camera, colour and (``depth``) depth, and the rig's LiDAR when ``lidar``): all
    ``poses`` (T_world_base, 4x4) are offered at once into a queue that holds them all, and the
    rate is poses / (first offer → last frame)."""
    from ..lidar_sim import CastConfig
    from ..pose_stream import PoseSample, SensorSimulator, SimConfig

    done = threading.Event()
    frames = []

    def on_frame(frame):
        frames.append(frame)
        if len(frames) == len(poses):
            done.set()

    sim = SensorSimulator(SimConfig(queue_size=len(poses), lidar=lidar, depth=depth, cast=CastConfig()),
                          current_map=lambda: state, resolve=lambda frame, T, stamp: T, rig_for=lambda s: rig,
                          lidar_beams=beams, on_frame=on_frame)
    state.surface()  # normals once per map, as the node does on its first request
    sim.start()
    try:
        t0 = time.perf_counter()
        for i, T in enumerate(poses):
            sim.offer_pose(PoseSample("map", T, 0.0, i))
        if not done.wait(timeout=60.0 * len(poses)):
            raise RuntimeError(f"the simulator rendered {len(frames)} of {len(poses)} poses")
        elapsed = time.perf_counter() - t0
        status = sim.status_values()
    finally:
        sim.close()
    return {"poses": len(poses), "hz": len(poses) / elapsed, "frame_ms_p50": status["render_ms_p50"],
            "poses_dropped": status["poses_dropped"], "image_size": [rig.cameras[0].width, rig.cameras[0].height],
            "lidar": lidar, "depth": depth}


def _speed_block(ctx, n_poses: int) -> dict:
    from PIL import Image

    from ..geometry import PinholeCamera, invert_transform
    from ..lidar_sim import kitti_hdl64
    from ..pose_stream import Rig, RigCamera, RigLidar, StaticMap
    from ..streaming import MapState

    window, T_map_velo, seq = ctx["window"], ctx["T_map_velo"], ctx["seq"]
    kf = window.keyframes[0]
    frame = int(np.argmin(np.abs(ctx["stamps"] - kf.stamp)))
    T_base_cam = invert_transform(T_map_velo[frame]) @ kf.camera.T_world_cam  # the recorded extrinsics
    w_full, h_full = Image.open(next((seq / "image_2").glob("*.png"))).size
    small = RigCamera("left", kf.camera_name, kf.camera.with_pose(T_base_cam))
    full = RigCamera("left", kf.camera_name, PinholeCamera(ctx["calib"].K2, w_full, h_full, T_base_cam))
    lidar = RigLidar("velodyne", np.eye(4), kitti_hdl64())
    state = MapState(1, StaticMap(ctx["params"]), window, window.keyframes[-1].stamp, kf.camera)
    state._surface = ctx["smap"]
    first = int(np.argmin(np.abs(ctx["stamps"] - window.keyframes[0].stamp)))
    poses = [T_map_velo[first + int(i)] for i in np.linspace(0, len(window.keyframes) - 1, n_poses).round()]
    out = {}
    for cam in (small, full):
        for key_tail, with_lidar, depth in (("", False, True), ("_lidar", True, True), ("_no_depth", False, False)):
            key = f"{cam.width}x{cam.height}{key_tail}"
            out[key] = pose_stream_hz(state, Rig([cam], lidar), poses, lidar=with_lidar, depth=depth)
            LOG.info("pose stream %s: %.2f Hz", key, out[key]["hz"])
    return out


# ---------------------------------------------------------------------------------------
# The picture
# ---------------------------------------------------------------------------------------
def scan_picture(real_points: np.ndarray, scan, compared: dict, path, title: str,
                 truth_label: str = "real HDL-64E scan") -> Path:
    """Left: bird's-eye view of a simulated scan (red) over the reference one (black: the real scan,
    or the generator's exact one), sensor frame. Right: simulated against reference range along every
    reference return (``compared``: the ``"_"`` of :func:`~g3r_ros.sim_fidelity.compare_scan`), as a
    2-D histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    from ..report import save_figure

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.6), gridspec_kw={"width_ratios": [1.3, 1]})
    ax = axes[0]
    for pts, colour, label, alpha in ((real_points, "k", truth_label, 0.8),
                                      (scan.points, "tab:red", "simulated from the G3R map", 0.35)):
        keep = (pts[:, 0] > -10) & (pts[:, 0] < 40) & (np.abs(pts[:, 1]) < 20)
        ax.scatter(pts[keep, 0], pts[keep, 1], s=0.25, c=colour, alpha=alpha, linewidths=0, label=label,
                   rasterized=True)
    ax.set_aspect("equal")
    ax.set_xlabel("x forward [m]")
    ax.set_ylabel("y left [m]")
    ax.legend(markerscale=20, loc="lower left", fontsize=8)
    ax.set_title("top view (the map covers what the front camera saw)")
    ax = axes[1]
    real_r, sim_r = compared["real_ranges"], compared["sim_ranges"]
    hit = np.isfinite(sim_r)
    lim = 60.0
    ax.hist2d(real_r[hit], sim_r[hit], bins=120, range=[[0, lim], [0, lim]], norm=LogNorm(), cmap="magma_r")
    ax.plot([0, lim], [0, lim], "c-", lw=0.8)
    ref = truth_label.split()[0]
    ax.set_xlabel(f"{ref} range [m]")
    ax.set_ylabel("simulated range along the same ray [m]")
    ax.set_title(f"per {ref} return ({hit.sum()} with a simulated return, {(~hit).sum()} dropped)", fontsize=9)
    ax.set_aspect("equal")
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


# ---------------------------------------------------------------------------------------
def run(args) -> int:
    from ..model import load_model
    from ..reconstruct import resolve_device
    from ..report import write_json

    if args.speed_poses < 2:
        raise ValueError("--speed-poses must be >= 2")
    device = resolve_device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = load_model(args.model, device=device).eval()
    t_start = time.perf_counter()
    real, ctx = _real_block(args, out, device, model)
    synth = _synth_block(args, model, device, figure=getattr(args, "synth_figure", None))
    speed = _speed_block(ctx, args.speed_poses) if ctx is not None else {}
    if ctx is not None and ctx["pictures"]:
        f, real_pts, scan, compared = ctx["pictures"][0]
        a, b = (int(x) for x in args.kitti_frames.split(":"))
        title = (f"KITTI 04 frame {f} (held out; its scan is not in the map): simulated HDL-64E from the G3R "
                 f"map of frames {a}-{b - 1} over the real scan")
        scan_picture(real_pts, scan, compared, out / "sim_lidar_kitti.png", title)
        if args.figure:
            scan_picture(real_pts, scan, compared, args.figure, title)
    summary = {
        "benchmark": "sim", "device": str(device), "torch_threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in _loadavg()],
        "real": real, "synthetic": synth,
        "synthetic_mean": {k: _r(_mean(synth, k)) for k in ("lidar_median_abs_error_m", "lidar_within_0_5m",
                                                             "lidar_drop_rate", "lidar_ghost_rate",
                                                             "depth_median_rel_error", "exact_depth_median_rel_error")},
        "speed": {k: {kk: (_r(vv, 3) if isinstance(vv, float) else vv) for kk, vv in v.items()}
                  for k, v in speed.items()},
        "camera_hz_306x92": _r(speed.get("306x92", {}).get("hz"), 3),
        "camera_hz_1226x370": _r(speed.get("1226x370", {}).get("hz"), 3),
        "camera_lidar_hz_306x92": _r(speed.get("306x92_lidar", {}).get("hz"), 3),
        "camera_lidar_hz_1226x370": _r(speed.get("1226x370_lidar", {}).get("hz"), 3),
        "camera_no_depth_hz_306x92": _r(speed.get("306x92_no_depth", {}).get("hz"), 3),
        "wall_time_s": _r(time.perf_counter() - t_start, 1),
        "out": str(out),
    }
    if real is not None:
        summary["real.lidar_median_abs_error_m"] = real["lidar_median_abs_error_m"]
        summary["real.lidar_within_0_5m"] = real["lidar_within_0_5m"]
        summary["real.depth_median_rel_error"] = real["depth_median_rel_error"]
        summary["targets"] = {
            "real.lidar_median_abs_error_m<=0.2": (real["lidar_median_abs_error_m"] or 1e9) <= 0.2,
            "real.lidar_within_0_5m>=0.85": (real["lidar_within_0_5m"] or 0) >= 0.85,
            "real.depth_median_rel_error<=0.05": (real["depth_median_rel_error"] or 1e9) <= 0.05,
            "camera_hz_306x92>=10": (summary["camera_hz_306x92"] or 0) >= 10.0,
        }
    write_json(out / "summary.json", summary)
    print(json.dumps(summary, indent=2))
    return 0


def _loadavg() -> tuple:
    try:
        import os

        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3

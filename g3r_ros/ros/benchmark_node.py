"""``g3r bench node``: load test of reconstruct_node over real DDS (prints ONE JSON object).

This process publishes ``--cameras`` image streams (``--width`` x ``--height`` rgb8, with
CameraInfo), a ``--points`` LiDAR cloud and /tf at ``--rate`` Hz for ``--seconds``; the node
runs in a second process. Messages are serialized once and re-stamped in place (the header
stamp is the wall time at publishing), so the publisher costs little CPU and the node's
stamp-to-callback latency is the transport + executor delay.

Reported: published vs received per topic (received = the node's callback count from
``~/status``; the difference is lost in DDS: best-effort sensor QoS drops rather than
blocks), messages dropped by the node's own bounded input queue, callback latency p50/p95,
the node's RSS at start/middle/end of publishing (windows must be released: it should stay
flat), and reconstruction throughput. ``--reconstructor g3r`` (default) runs the shipped
model; ``points`` is a bench-only stand-in (Gaussians straight from the window's LiDAR, no
learning) that measures the adapter without the G3R cost.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HELP = "reconstruct_node load test: N cameras + a LiDAR over DDS into the node in another process (JSON)"
ENV_DEFAULTS = {"OMP_NUM_THREADS": "2", "MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "4294967296",
                "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
NODE = "/reconstruct_node"


def add_arguments(parser) -> None:
    parser.add_argument("--seconds", type=float, default=60.0, help="publishing duration (default 60)")
    parser.add_argument("--cameras", type=int, default=6)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--points", type=int, default=100_000, help="LiDAR points per scan")
    parser.add_argument("--rate", type=float, default=10.0, help="Hz of every sensor stream")
    parser.add_argument("--reconstruct-every", type=int, default=2, help="reconstruction.every of the node")
    parser.add_argument("--window-seconds", type=float, default=2.0)
    parser.add_argument("--reconstructor", default="g3r",
                        help="g3r (the shipped model) | points (bench-only stand-in) | module:factory")
    parser.add_argument("--device", default="auto", help="reconstruction.device (auto | cuda | cpu)")
    parser.add_argument("--model", default="", help="G3R model file ('' = the shipped one)")
    parser.add_argument("--no-turbo", action="store_true", help="full G3R (--steps steps, all points) instead of "
                        "turbo (12 steps, half the points)")
    parser.add_argument("--steps", type=int, default=24, help="G3R steps with --no-turbo")
    parser.add_argument("--qos", default="sensor_data", choices=("sensor_data", "reliable"))
    parser.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID (default: env or 77)")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    parser.add_argument("--node-malloc-tuning", action="store_true",
                        help="pass MALLOC_MMAP_MAX_/MALLOC_TRIM_THRESHOLD_ to the node (faster CPU rendering, but "
                        "RSS then only grows: it becomes a high-water mark)")
    parser.add_argument("--no-large-data", action="store_true",
                        help="keep Fast DDS's default 0.5 MB shared-memory segment (large best-effort samples "
                        "are then lost: shows the problem)")


# ---------------------------------------------------------------------------------------
# Bench-only stand-in reconstructor (selected with --reconstructor points)
# ---------------------------------------------------------------------------------------
class _PointsOutput:
    def __init__(self, params, metrics):
        self._params, self.metrics = params, metrics

    def params_at(self, stamp):
        return self._params


class PointsReconstructor:
    """BENCH-ONLY stand-in, not G3R: one grey isotropic Gaussian per window LiDAR point."""

    def __init__(self, config=None):
        self.config = config

    def __call__(self, window, cancel):
        import torch

        from ..render.types import GaussianParams

        t0 = time.perf_counter()
        pts = torch.as_tensor(np.asarray(window.points, np.float32))
        n = len(pts)
        params = GaussianParams(pts, torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1), torch.full((n, 3), -2.0),
                                torch.full((n,), 2.0), torch.full((n, 3), 0.5))
        return _PointsOutput(params, {"time_s": time.perf_counter() - t0, "device": "cpu", "gaussians": n})


def make_points_reconstructor(config):
    return PointsReconstructor(config)


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------
def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (NaN when it cannot be read)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def _stamp_into(raw: bytearray, t: float) -> None:
    """Overwrite the header stamp of a little-endian CDR message that starts with a Header."""
    sec = int(t)
    struct.pack_into("<iI", raw, 4, sec, int((t - sec) * 1e9))


def _node_params(args, out_dir: Path) -> dict:
    cams = [f"/bench/cam{i}/image_raw" for i in range(args.cameras)]
    impl = {"g3r": "", "points": f"{__name__}:make_points_reconstructor"}.get(args.reconstructor,
                                                                               args.reconstructor)
    return {
        "cameras": cams, "lidar_topic": "/bench/lidar/points", "world_frame": "map", "qos.sensor": args.qos,
        "qos.depth": 5, "window.seconds": args.window_seconds, "window.keyframe_seconds": 0.45,
        "window.held_out_every": 0, "window.image_scale": 0.25, "window.max_points": 30000,
        "window.voxel_size": 0.3, "window.min_range": 2.0, "window.max_range": 80.0, "window.lidar_every": 2,
        "reconstruction.implementation": impl, "reconstruction.device": args.device,
        "reconstruction.every": args.reconstruct_every, "reconstruction.turbo": not args.no_turbo,
        "reconstruction.model": args.model, "reconstruction.steps": args.steps,
        "novel_view.lateral_offsets": [], "output_dir": str(out_dir), "save_on_shutdown": False,
        "status_period": 0.5,
    }


class _Publisher:
    """Pre-serialized sensor messages, re-stamped and published raw at a fixed rate."""

    def __init__(self, node, args):
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from rclpy.serialization import serialize_message
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2
        from tf2_msgs.msg import TFMessage

        from ..geometry import R_BODY_OPTICAL, make_transform
        from ..ros.convert import (
            camera_info_to_msg,
            image_to_msg,
            matrix_to_transform_stamped,
            structured_to_pointcloud2,
        )

        rng = np.random.default_rng(0)
        self.node, self.args = node, args
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT if args.qos == "sensor_data"
                         else ReliabilityPolicy.RELIABLE)
        w, h = args.width, args.height
        f = w / 2.0 / np.tan(np.deg2rad(40))
        K = np.array([[f, 0, w / 2.0], [0, f, h / 2.0], [0, 0, 1]])
        self.streams = []  # (publisher, bytearray, topic)
        statics = []
        for i in range(args.cameras):
            img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            frame = f"cam{i}_optical"
            yaw = 2 * np.pi * i / max(args.cameras, 1)
            R = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]]) @ R_BODY_OPTICAL
            statics.append(matrix_to_transform_stamped(make_transform(R, [0.0, 0.0, 1.6]), 0.0, "base_link", frame))
            for topic, msg, cls in ((f"/bench/cam{i}/image_raw", image_to_msg(img, 0.0, frame), Image),
                                    (f"/bench/cam{i}/camera_info", camera_info_to_msg(K, w, h, 0.0, frame),
                                     CameraInfo)):
                self.streams.append((node.create_publisher(cls, topic, qos), bytearray(serialize_message(msg)),
                                     topic))
        r = rng.uniform(3, 60, args.points)
        az = rng.uniform(-np.pi, np.pi, args.points)
        el = rng.uniform(-0.4, 0.05, args.points)
        cloud = np.zeros(args.points, [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4")])
        cloud["x"], cloud["y"], cloud["z"] = r * np.cos(el) * np.cos(az), r * np.cos(el) * np.sin(az), r * np.sin(el)
        statics.append(matrix_to_transform_stamped(make_transform(None, [0, 0, 1.9]), 0.0, "base_link", "lidar"))
        self.streams.append((node.create_publisher(PointCloud2, "/bench/lidar/points", qos),
                             bytearray(serialize_message(structured_to_pointcloud2(cloud, 0.0, "lidar"))),
                             "/bench/lidar/points"))
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        node.create_publisher(TFMessage, "/tf_static", latched).publish(TFMessage(transforms=statics))
        self.tf_pub = node.create_publisher(TFMessage, "/tf", QoSProfile(depth=100))
        self._tf_cls, self._tf = TFMessage, matrix_to_transform_stamped
        self._make_transform = make_transform
        self.published = {t: 0 for _, _, t in self.streams}
        self.published["/tf"] = 0
        self.late_ticks = 0
        self.publish_s: list[float] = []

    def tick(self, t: float, ego_x: float) -> None:
        t0 = time.perf_counter()
        self.tf_pub.publish(self._tf_cls(transforms=[self._tf(self._make_transform(None, [ego_x, 0, 0]), t,
                                                              "map", "base_link")]))
        self.published["/tf"] += 1
        for pub, raw, topic in self.streams:
            _stamp_into(raw, time.time())
            pub.publish(bytes(raw))
            self.published[topic] += 1
        self.publish_s.append(time.perf_counter() - t0)


def _status_probe(ctx, domain_id):
    """A node in this process collecting the reconstruct node's ~/status."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor

    node = rclpy.create_node("bench_node_probe", context=ctx)
    latest: dict = {}
    node.create_subscription(DiagnosticArray, f"{NODE}/status", lambda m: latest.update(msg=m), 10)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    thread = threading.Thread(target=lambda: _spin_quietly(ex), daemon=True)
    thread.start()
    return node, ex, latest, thread


def _spin_quietly(executor) -> None:
    try:
        executor.spin()
    except Exception:  # noqa: BLE001,S110 - the context is shut down at the end of the benchmark
        pass


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


# ---------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------
def run(args) -> int:
    for k, v in ENV_DEFAULTS.items():
        os.environ.setdefault(k, v)
    if args.seconds <= 0 or args.cameras < 1 or args.points < 1 or args.rate <= 0:
        raise ValueError("--seconds, --cameras, --points and --rate must be positive")
    domain = args.domain_id if args.domain_id is not None else int(os.environ.get("ROS_DOMAIN_ID", "77"))
    from ..ros.convert import diagnostic_values
    from ..ros.params import write_params_file
    from ..ros.player import apply_large_data_profile

    if args.no_large_data:
        os.environ["G3R_DDS_PROFILE"] = "0"
    profile = apply_large_data_profile()  # before rclpy.init; inherited by the node process
    import rclpy

    work = Path(tempfile.mkdtemp(prefix="g3r_bench_node_"))
    params = write_params_file(work / "params.yaml", _node_params(args, work / "out"))
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), PYTHONUNBUFFERED="1")
    if not args.node_malloc_tuning:  # glibc then returns freed memory: RSS shows live memory, not a high-water mark
        for k in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_"):
            env.pop(k, None)
    node_log = open(work / "node.log", "w")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen([sys.executable, "-m", "g3r_ros.ros.node", "--ros-args", "--params-file", str(params)],
                            env=env, stdout=node_log, stderr=subprocess.STDOUT)
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain)
    pub_node = rclpy.create_node("bench_node_publisher", context=ctx)
    probe, ex, latest, spin_thread = _status_probe(ctx, domain)
    result: dict = {}
    try:
        deadline = time.monotonic() + 120
        while "msg" not in latest and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if "msg" not in latest:
            node_log.flush()
            tail = (work / "node.log").read_text().strip().splitlines()[-3:]
            raise ValueError(f"the node did not start (exit {proc.poll()}): {' | '.join(tail)}")
        publisher = _Publisher(pub_node, args)
        while any(p.get_subscription_count() == 0 for p, _, _ in publisher.streams) and time.monotonic() < deadline:
            time.sleep(0.1)
        rss = {"start": rss_mb(proc.pid)}
        timeline: list[float] = []  # every 5 s
        period = 1.0 / args.rate
        n_ticks = round(args.seconds * args.rate)
        t_start = time.perf_counter()
        for k in range(n_ticks):
            target = t_start + k * period
            delay = target - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            elif delay < -period:
                publisher.late_ticks += 1
            publisher.tick(time.time(), 5.0 * k * period)  # ego at 5 m/s along x
            if k == n_ticks // 2:
                rss["middle"] = rss_mb(proc.pid)
            if k % max(1, round(5 * args.rate)) == 0:
                timeline.append(round(rss_mb(proc.pid), 1))
            if proc.poll() is not None:
                raise RuntimeError(f"the node exited during the benchmark; log: {work / 'node.log'}")
        wall = time.perf_counter() - t_start
        rss["end"] = rss_mb(proc.pid)
        time.sleep(3.0)  # let the node drain its queue and publish a final status
        status = diagnostic_values(latest["msg"])
        inputs, recon = status["g3r_ros: input"], status["g3r_ros: reconstruction"]
        topics = {}
        for topic, sent in publisher.published.items():
            got = int(inputs.get(f"received:{topic}", 0))
            topics[topic] = {"published": sent, "received": got, "lost_in_dds": sent - got,
                             "dropped_by_node_queue": int(inputs.get(f"dropped:{topic}", 0))}
        drops = sum(v["lost_in_dds"] + v["dropped_by_node_queue"] for v in topics.values())
        n_rec = int(recon["reconstructions"])
        result = {
            "benchmark": "node", "seconds": round(wall, 2), "rate_hz": args.rate, "cameras": args.cameras,
            "image": [args.width, args.height], "lidar_points": args.points, "qos": args.qos,
            "reconstructor": args.reconstructor, "reconstruct_every": args.reconstruct_every,
            "model": args.model or "shipped", "turbo": not args.no_turbo,
            "window_seconds": args.window_seconds, "ros_domain_id": domain,
            "fastdds_profile": str(profile) if profile else os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE", "default"),
            "topics": topics, "callback_drops_total": drops,
            "callback_latency_ms": {"p50": _num(inputs["latency_p50_ms"]), "p95": _num(inputs["latency_p95_ms"])},
            "builder_queue_wait_p95_ms": _num(inputs["queue_wait_p95_ms"]),
            "node_rss_mb": {k: round(v, 1) for k, v in rss.items()}, "node_rss_mb_every_5s": timeline,
            "node_malloc_tuning": bool(args.node_malloc_tuning),
            "reconstruction": {
                "windows_built": int(status["g3r_ros: window"]["windows_built"]), "reconstructions": n_rec,
                "per_minute": round(n_rec * 60.0 / wall, 2), "windows_dropped": int(recon["windows_dropped"]),
                "windows_skipped_by_policy": int(recon["windows_skipped_by_policy"]), "failed": int(recon["failed"]),
                "last_time_s": _num(recon["last_time_s"]), "device": recon["device"],
                "gaussians": _num(recon["gaussians"]), "busy_at_end": recon["busy"] == "true"},
            "publisher": {"late_ticks": publisher.late_ticks,
                          "tick_ms_p50": round(float(np.median(publisher.publish_s)) * 1e3, 2)},
            "target_zero_drops_met": drops == 0,
            "node_log": str(work / "node.log"),
        }
    finally:
        if proc.poll() is None:
            proc.send_signal(2)  # SIGINT: the node cancels a running reconstruction and exits
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        node_log.close()
        # Order matters: wake and end the spinning thread before the nodes go, or the process can
        # abort at exit ("terminate called without an active exception").
        rclpy.try_shutdown(context=ctx)
        ex.shutdown(timeout_sec=5.0)
        spin_thread.join(timeout=5.0)
        probe.destroy_node()
        pub_node.destroy_node()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0

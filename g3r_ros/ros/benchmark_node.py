"""``g3r bench node``: load test of reconstruct_node (prints ONE JSON object).

This process sends ``--cameras`` image streams (``--width`` x ``--height`` rgb8, with
CameraInfo), a ``--points`` LiDAR cloud and /tf at ``--rate`` Hz for ``--seconds``. Messages are
serialized once (rosbags CDR) and re-stamped in place (the header stamp is the wall time at
sending), so the sender costs little CPU and the stamp-to-callback latency is the transport delay.

``--transport dds`` (default): the node runs in a second process and the messages cross real
DDS. ``--transport inprocess``: the same streams go straight into a
``g3r_ros.streaming.StreamingSession`` (the node's engine) in this process, configured from
the same node parameters: no rclpy at all. It is the baseline that isolates the cost of DDS and
the adapter (run both and compare; RSS is then this process's).

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

HELP = ("reconstruct_node load test: N cameras + a LiDAR over DDS into the node in another process, or into its "
        "streaming session in this process (JSON)")
ENV_DEFAULTS = {"OMP_NUM_THREADS": "2", "MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "4294967296",
                "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
NODE = "/reconstruct_node"


def add_arguments(parser) -> None:
    parser.add_argument("--seconds", type=float, default=60.0, help="publishing duration (default 60)")
    parser.add_argument("--transport", default="dds", choices=("dds", "inprocess"),
                        help="dds: the node in another process over DDS (default); inprocess: its streaming "
                        "session in this process, no DDS (the baseline)")
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
        "window.flush_on_idle_s": 0.0,
        "reconstruction.implementation": impl, "reconstruction.device": args.device,
        "reconstruction.every": args.reconstruct_every, "reconstruction.turbo": not args.no_turbo,
        "reconstruction.model": args.model, "reconstruction.steps": args.steps,
        "novel_view.lateral_offsets": [], "output_dir": str(out_dir), "save_on_shutdown": False,
        "status_period": 0.5,
    }


class SensorStreams:
    """The benchmark's sensors as pre-serialized CDR messages (rosbags, no rclpy), re-stamped per tick.

    ``streams``: (topic, message type, bytearray) per camera image, CameraInfo and the LiDAR;
    ``static``: the /tf_static message; :meth:`tf` builds the /tf message of a tick."""

    def __init__(self, args):
        from ..bag import make_camera_info, make_image, make_pointcloud, make_tf_message, typestore
        from ..geometry import R_BODY_OPTICAL, make_transform

        ts = typestore()
        rng = np.random.default_rng(0)
        w, h = args.width, args.height
        f = w / 2.0 / np.tan(np.deg2rad(40))
        K = np.array([[f, 0, w / 2.0], [0, f, h / 2.0], [0, 0, 1]])
        self.streams: list[tuple[str, str, bytearray]] = []
        statics = []
        for i in range(args.cameras):
            frame = f"cam{i}_optical"
            yaw = 2 * np.pi * i / max(args.cameras, 1)
            R = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]]) @ R_BODY_OPTICAL
            statics.append(("base_link", frame, make_transform(R, [0.0, 0.0, 1.6])))
            img = make_image(0.0, frame, rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
            info = make_camera_info(0.0, frame, K, w, h)
            for topic, msg in ((f"/bench/cam{i}/image_raw", img), (f"/bench/cam{i}/camera_info", info)):
                self.streams.append((topic, msg.__msgtype__, bytearray(ts.serialize_cdr(msg, msg.__msgtype__))))
        r = rng.uniform(3, 60, args.points)
        az = rng.uniform(-np.pi, np.pi, args.points)
        el = rng.uniform(-0.4, 0.05, args.points)
        xyz = np.stack([r * np.cos(el) * np.cos(az), r * np.cos(el) * np.sin(az), r * np.sin(el)], 1)
        cloud = make_pointcloud(0.0, "lidar", xyz, intensity=np.zeros(args.points))
        self.streams.append(("/bench/lidar/points", cloud.__msgtype__,
                             bytearray(ts.serialize_cdr(cloud, cloud.__msgtype__))))
        statics.append(("base_link", "lidar", make_transform(None, [0, 0, 1.9])))
        tf_static = make_tf_message(0.0, statics)
        self.tf_type = tf_static.__msgtype__
        self.static = bytes(ts.serialize_cdr(tf_static, self.tf_type))
        self._tf = lambda t, x: ts.serialize_cdr(make_tf_message(t, [("map", "base_link",
                                                                     make_transform(None, [x, 0, 0]))]), self.tf_type)

    def tf(self, t: float, ego_x: float) -> bytes:
        return bytes(self._tf(t, ego_x))

    def tick(self):
        """Each sensor message of one tick, stamped now: (topic, message type, CDR bytes)."""
        for topic, msgtype, raw in self.streams:
            _stamp_into(raw, time.time())
            yield topic, msgtype, bytes(raw)


class _DdsTransport:
    """The node in its own process; messages cross DDS; ~/status read by a probe node."""

    name = "dds"

    def __init__(self, args, params_file: Path, streams: SensorStreams, domain: int, work: Path):
        env = dict(os.environ, ROS_DOMAIN_ID=str(domain), PYTHONUNBUFFERED="1")
        if not args.node_malloc_tuning:  # glibc then returns freed memory: RSS shows live memory, not a high-water mark
            for k in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_"):
                env.pop(k, None)
        self.log_path = work / "node.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen([sys.executable, "-m", "g3r_ros.ros.node", "--ros-args", "--params-file",
                                      str(params_file)], env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        self.ctx = self.pub_node = self.probe = None
        try:
            self._connect(args, streams, domain)
        except BaseException:
            self.close()  # never leave the node process or a spinning thread behind
            raise

    def _connect(self, args, streams: SensorStreams, domain: int) -> None:
        import rclpy
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

        from .player import message_class

        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=domain)
        self.pub_node = rclpy.create_node("bench_node_publisher", context=self.ctx)
        self.probe, self.executor, self.latest, self.spin_thread = _status_probe(self.ctx)
        deadline = time.monotonic() + 120
        while "msg" not in self.latest and self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if "msg" not in self.latest:
            self._log.flush()
            tail = self.log_path.read_text().strip().splitlines()[-3:]
            raise ValueError(f"the node did not start (exit {self.proc.poll()}): {' | '.join(tail)}")
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT if args.qos == "sensor_data"
                         else ReliabilityPolicy.RELIABLE)
        self.pubs = {topic: self.pub_node.create_publisher(message_class(msgtype), topic, qos)
                     for topic, msgtype, _ in streams.streams}
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        tf_cls = message_class(streams.tf_type)
        self.pub_node.create_publisher(tf_cls, "/tf_static", latched).publish(streams.static)
        self.pubs["/tf"] = self.pub_node.create_publisher(tf_cls, "/tf", QoSProfile(depth=100))
        while any(p.get_subscription_count() == 0 for p in self.pubs.values()) and time.monotonic() < deadline:
            time.sleep(0.1)

    def send(self, topic: str, msgtype: str, raw: bytes) -> None:
        self.pubs[topic].publish(raw)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def status(self) -> dict:
        from .convert import diagnostic_values

        return diagnostic_values(self.latest["msg"])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(2)  # SIGINT: the node cancels a running reconstruction and exits
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()
        if self.ctx is None:
            return
        # Order matters: wake and end the spinning thread before the nodes go, or the process can
        # abort at exit ("terminate called without an active exception").
        import rclpy

        rclpy.try_shutdown(context=self.ctx)
        if self.probe is not None:
            self.executor.shutdown(timeout_sec=5.0)
            self.spin_thread.join(timeout=5.0)
            self.probe.destroy_node()
        if self.pub_node is not None:
            self.pub_node.destroy_node()


class _InProcessTransport:
    """The node's streaming session in this process, configured from the same parameters; no DDS."""

    name = "inprocess"

    def __init__(self, args, params_file: Path, streams: SensorStreams, domain: int, work: Path):
        from ..streaming import StreamingSession
        from .params import load_params_file, node_config_from_params

        cfg = node_config_from_params(load_params_file(params_file))
        self.log_path = None
        self.pid = os.getpid()
        self.session = StreamingSession(cfg.stream_config(), cfg.reconstructor()).start()
        self.session.offer("/tf_static", streams.tf_type, streams.static)

    def send(self, topic: str, msgtype: str, raw: bytes) -> None:
        self.session.offer(topic, msgtype, raw)

    def alive(self) -> bool:
        return True

    def status(self) -> dict:
        return self.session.status_values()

    def close(self) -> None:
        self.session.close("benchmark over")


def _status_probe(ctx):
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
    """A status value as a number when it is one (NaN → None: JSON has no NaN)."""
    if isinstance(v, bool):
        return v
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v
    return None if f != f else f


# ---------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------
def run(args) -> int:
    for k, v in ENV_DEFAULTS.items():
        os.environ.setdefault(k, v)
    if args.seconds <= 0 or args.cameras < 1 or args.points < 1 or args.rate <= 0:
        raise ValueError("--seconds, --cameras, --points and --rate must be positive")
    domain = args.domain_id if args.domain_id is not None else int(os.environ.get("ROS_DOMAIN_ID", "77"))
    from .params import write_params_file

    profile = None
    if args.transport == "dds":
        from .player import apply_large_data_profile

        if args.no_large_data:
            os.environ["G3R_DDS_PROFILE"] = "0"
        profile = apply_large_data_profile()  # before rclpy.init; inherited by the node process
    work = Path(tempfile.mkdtemp(prefix="g3r_bench_node_"))
    params = write_params_file(work / "params.yaml", _node_params(args, work / "out"))
    streams = SensorStreams(args)
    transport = (_DdsTransport if args.transport == "dds" else _InProcessTransport)(args, params, streams, domain,
                                                                                     work)
    published = {t: 0 for t, _, _ in streams.streams} | {"/tf": 0}
    late_ticks, send_s = 0, []
    try:
        rss = {"start": rss_mb(transport.pid)}
        timeline: list[float] = []  # every 5 s
        period = 1.0 / args.rate
        n_ticks = round(args.seconds * args.rate)
        t_start = time.perf_counter()
        for k in range(n_ticks):
            delay = t_start + k * period - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            elif delay < -period:
                late_ticks += 1
            t0 = time.perf_counter()
            transport.send("/tf", streams.tf_type, streams.tf(time.time(), 5.0 * k * period))  # ego at 5 m/s
            published["/tf"] += 1
            for topic, msgtype, raw in streams.tick():
                transport.send(topic, msgtype, raw)
                published[topic] += 1
            send_s.append(time.perf_counter() - t0)
            if k == n_ticks // 2:
                rss["middle"] = rss_mb(transport.pid)
            if k % max(1, round(5 * args.rate)) == 0:
                timeline.append(round(rss_mb(transport.pid), 1))
            if not transport.alive():
                raise RuntimeError(f"the node exited during the benchmark; log: {transport.log_path}")
        wall = time.perf_counter() - t_start
        rss["end"] = rss_mb(transport.pid)
        time.sleep(3.0)  # let the node drain its queue and publish a final status
        result = _report(args, transport, transport.status(), published, rss, timeline, wall, domain, profile)
        result["publisher"] = {"late_ticks": late_ticks, "tick_ms_p50": round(float(np.median(send_s)) * 1e3, 2)}
    finally:
        transport.close()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


def _report(args, transport, status, published, rss, timeline, wall, domain, profile) -> dict:
    inputs, recon = status["g3r_ros: input"], status["g3r_ros: reconstruction"]
    topics = {}
    for topic, sent in published.items():
        got = int(inputs.get(f"received:{topic}", 0))
        topics[topic] = {"published": sent, "received": got, "lost_in_dds": sent - got,
                         "dropped_by_node_queue": int(inputs.get(f"dropped:{topic}", 0))}
    drops = sum(v["lost_in_dds"] + v["dropped_by_node_queue"] for v in topics.values())
    n_rec = int(recon["reconstructions"])
    return {
        "benchmark": "node", "transport": transport.name, "seconds": round(wall, 2), "rate_hz": args.rate,
        "cameras": args.cameras, "image": [args.width, args.height], "lidar_points": args.points, "qos": args.qos,
        "reconstructor": args.reconstructor, "reconstruct_every": args.reconstruct_every,
        "model": args.model or "shipped", "turbo": not args.no_turbo, "window_seconds": args.window_seconds,
        "ros_domain_id": domain if transport.name == "dds" else None,
        "fastdds_profile": (str(profile) if profile else os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE", "default"))
        if transport.name == "dds" else None,
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
            "gaussians": _num(recon["gaussians"]), "busy_at_end": _num(recon["busy"]) in (True, "true")},
        "target_zero_drops_met": drops == 0,
        "node_log": str(transport.log_path) if transport.log_path else None,
    }

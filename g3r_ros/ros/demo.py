"""Stage 4 of ``g3r demo``: a synthetic bag through ``reconstruct_node`` over ROS 2, checked against truth.

:func:`run_ros_demo` starts ``python -m g3r_ros.ros.node`` (parameters from
``config/reconstruct.yaml`` plus ``-p`` overrides), replays the bag with ``g3r play --clock``,
and talks to the node from an rclpy probe in this process, exactly as any ROS client would:

1. waits for the node's first ``~/status`` and plays the bag; the window length is set above
   the bag's span, so one window holds the whole drive, and the node closes it by itself once
   no input arrived for ``window.flush_on_idle_s`` (no service call); the keyframe to look at
   comes from :func:`g3r_ros.streaming.preview_window`, the node's own window builder fed
   from the bag in this process;
2. waits for ``~/gaussian_map``; publishes on ``~/render_pose`` the camera optical-frame pose
   of a held-out keyframe moved 2 m sideways (``lane_shifted_camera``) and receives the view
   on ``~/novel_view/image``;
3. renders the generator's exact image of that pose (``render_truth``), writes both PNGs and
   a side-by-side sheet, and computes the PSNR;
4. calls ``~/save_map`` and records the PLY path and the node's ``~/status`` values.

Every process runs with ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` (DDS stays on loopback).
The node and the player are always stopped (SIGINT, then SIGKILL after a grace period), also
on errors. Importing this module fails with ``ImportError`` when rclpy or the tf2 messages the
node needs are missing (``g3r demo`` then reports the stage as skipped).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import rclpy  # an ImportError here tells the caller the ROS 2 adapter is unavailable
import tf2_msgs.msg  # noqa: F401 - the node subscribes /tf with it (tools/build_tf2_msgs.sh)

LOG = logging.getLogger(__name__)

NODE = "/reconstruct_node"
DEFAULT_DOMAIN_ID = 57          # used when ROS_DOMAIN_ID is not set
LANE_SHIFT_M = 2.0              # + = left (REP-103 +y), see lane_shifted_camera
KEYFRAME_WIDTH = 160            # keyframes are scaled to at most this width (the model's training size)
REQUEST_STAMP_OFFSET_S = 1e-3   # the request's stamp differs from the keyframe's: offset views use that one
STATUS_PERIOD_S = 0.5
IDLE_FLUSH_S = 3.0              # the bag is over when nothing arrived for this long


class RosDemoError(RuntimeError):
    """The ROS stage failed; the message names the step and points at the node's log."""


# ---------------------------------------------------------------------------------------
# The probe: an rclpy client of reconstruct_node, spinning in a thread
# ---------------------------------------------------------------------------------------
class _Probe:
    def __init__(self, domain_id: int):
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseStamped
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from rclpy.signals import SignalHandlerOptions
        from sensor_msgs.msg import Image, PointCloud2

        self.ctx = rclpy.Context()
        # no rclpy signal handlers: Ctrl-C stays a KeyboardInterrupt, so run_ros_demo's cleanup runs
        rclpy.init(context=self.ctx, domain_id=domain_id, signal_handler_options=SignalHandlerOptions.NO)
        self.node = None
        self.executor = None
        self.thread = None
        try:
            self.node = rclpy.create_node("g3r_demo_probe", context=self.ctx)
            self.lock = threading.Lock()
            self.maps: list = []
            self.views: list = []
            self.status = None
            self.status_count = 0
            latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
            n = self.node
            n.create_subscription(PointCloud2, f"{NODE}/gaussian_map", self._append(self.maps), latched)
            n.create_subscription(Image, f"{NODE}/novel_view/image", self._append(self.views), QoSProfile(depth=100))
            n.create_subscription(DiagnosticArray, f"{NODE}/status", self._on_status, QoSProfile(depth=10))
            self.pose_pub = n.create_publisher(PoseStamped, f"{NODE}/render_pose", QoSProfile(depth=10))
            self.executor = SingleThreadedExecutor(context=self.ctx)
            self.executor.add_node(n)
            self.thread = threading.Thread(target=self._spin, name="g3r-demo-probe", daemon=True)
            self.thread.start()
        except BaseException:
            self.close()
            raise

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception as e:  # noqa: BLE001 - the context is shut down at close()
            LOG.debug("probe executor stopped: %s", e)

    def _append(self, lst: list):
        def cb(msg):
            with self.lock:
                lst.append(msg)
        return cb

    def _on_status(self, msg) -> None:
        from .convert import diagnostic_values

        values = diagnostic_values(msg)
        with self.lock:
            self.status = values
            self.status_count += 1

    def latest_status(self) -> dict:
        with self.lock:
            return dict(self.status or {})

    def call_trigger(self, name: str, timeout: float):
        from std_srvs.srv import Trigger

        client = self.node.create_client(Trigger, f"{NODE}/{name}")
        try:
            if not client.wait_for_service(timeout_sec=max(timeout, 0.1)):
                raise RosDemoError(f"service {NODE}/{name} is not available")
            future = client.call_async(Trigger.Request())
            deadline = time.monotonic() + timeout
            while not future.done() and time.monotonic() < deadline:
                time.sleep(0.05)
            if not future.done():
                raise RosDemoError(f"service {NODE}/{name} did not answer within {timeout:.0f} s")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(timeout_sec=2.0)
        if self.node is not None:
            self.node.destroy_node()
        rclpy.try_shutdown(context=self.ctx)
        if self.thread is not None:
            self.thread.join(timeout=2.0)


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------
def _number(v: str):
    """A ~/status value (text) as bool / int / float when it is one."""
    if v in ("true", "false", "True", "False"):
        return v.lower() == "true"
    for cast in (int, float):
        try:
            return cast(v)
        except (TypeError, ValueError):
            pass
    return v


def _typed_status(values: dict) -> dict:
    return {group: {k: _number(v) for k, v in kv.items()} for group, kv in values.items()}


def _ros_value(v) -> str:
    """A ``-p name:=value`` value: JSON is YAML, so strings stay strings (quoted) and numbers numbers."""
    if isinstance(v, (list, tuple)) and not v:
        raise ValueError("an empty list cannot be passed with -p (its type is unknown); use a params file")
    return json.dumps(v)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


def _stop_process(proc: subprocess.Popen | None, name: str, grace_s: float) -> int | None:
    """SIGINT, wait ``grace_s``, then SIGKILL; returns the exit code (None if never started)."""
    if proc is None:
        return None
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            LOG.warning("%s (pid %d) did not stop within %.0f s of SIGINT: killing it", name, proc.pid, grace_s)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout=10)
    return proc.returncode


@contextlib.contextmanager
def _loopback_env():
    """``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` in this process while the probe lives (rclpy reads it
    at init), restored afterwards."""
    key = "ROS_AUTOMATIC_DISCOVERY_RANGE"
    old = os.environ.get(key)
    if old not in (None, "LOCALHOST"):
        LOG.info("%s=%s overridden with LOCALHOST for the demo (DDS stays on loopback)", key, old)
    os.environ[key] = "LOCALHOST"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def _resolve_model(model_path, out_dir: Path) -> tuple[Path, bool]:
    """(model file, untrained?): ``model_path``, else the shipped model, else a fresh untrained one."""
    from ..model import G3RModel, default_model_path, save_model

    if model_path is not None:
        path = Path(model_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"model file not found: {path}")
        return path.resolve(), False
    path = default_model_path()
    if path.is_file():
        return path.resolve(), False
    path = out_dir / "untrained_g3r_net.pt"
    LOG.warning("NO TRAINED MODEL at %s: the ROS node runs an UNTRAINED G3R network (%s); its maps and "
                "novel views show the initialization, not G3R. Train one with `g3r train` or pass --model.",
                default_model_path(), path)
    import torch

    with torch.random.fork_rng(devices=[]):  # a reproducible untrained network, global RNG untouched
        torch.manual_seed(0)
        save_model(G3RModel(), path)
    return path.resolve(), True


# ---------------------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------------------
def run_ros_demo(bag, out_dir, model_path=None, timeout_s: float = 900, *, params: dict | None = None,
                 domain_id: int | None = None) -> dict:
    """Replay ``bag`` (made by ``g3r synth``) through ``reconstruct_node`` and check a novel view.

    ``model_path``: the G3R model file (default: the shipped ``models/g3r_net.pt``; when that
    is missing an untrained model is written to ``out_dir`` and ``untrained_model`` is true).
    ``timeout_s`` bounds the whole stage. ``params``: extra node parameters (dotted ROS names),
    applied last. ``domain_id``: ROS domain (default ``ROS_DOMAIN_ID``, else 57).

    Returns a JSON-ready dict (map path, Gaussians, novel-view PNGs, PSNR vs the exact truth,
    the node's status values, timings, ``untrained_model``). Raises :class:`RosDemoError`
    (or ``TimeoutError``) when a step fails; the node and the player are stopped either way.
    """
    from ..bag import bag_message_count, bag_topics
    from ..config import share_dir
    from ..synthetic import scene_from_bag
    from ..window_builder import camera_info_topic
    from .params import load_params_file, node_config_from_params

    t_start = time.monotonic()
    deadline = t_start + float(timeout_s)

    def left(cap: float | None = None) -> float:
        rest = deadline - time.monotonic()
        if rest <= 0:
            raise TimeoutError(f"the ROS demo ran out of its {timeout_s:.0f} s budget")
        return rest if cap is None else min(rest, cap)

    bag = Path(bag).resolve()
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    params_file = share_dir() / "config" / "reconstruct.yaml"
    domain = int(domain_id if domain_id is not None else os.environ.get("ROS_DOMAIN_ID") or DEFAULT_DOMAIN_ID)
    model, untrained = _resolve_model(model_path, out)

    # ---- node parameters: the shipped file, then the demo's overrides (whole bag in one window) ----
    scene = scene_from_bag(bag)
    span = float(scene.stamps[-1] - scene.stamps[0])
    overrides = {
        "output_dir": str(out),
        "reconstruction.model": str(model),
        "window.seconds": round(span + 1.0, 3),  # never full: the idle flush closes it once the bag is over
        "window.flush_on_idle_s": IDLE_FLUSH_S,
        "window.image_scale": min(1.0, KEYFRAME_WIDTH / float(scene.config.width)),
        "qos.sensor": "reliable", "qos.depth": 50,  # a replay must not lose messages
        "status_period": STATUS_PERIOD_S,
        "use_sim_time": True,  # the player publishes /clock
    }
    overrides.update(params or {})
    values = {**load_params_file(params_file), **overrides}
    cfg = node_config_from_params(values, validate=False)  # the node validates (and reports) them itself

    topics = bag_topics(bag)
    node_topics = [*cfg.cameras, cfg.lidar_topic, "/tf", "/tf_static", *(camera_info_topic(t) for t in cfg.cameras)]
    if cfg.tracks_topic:
        node_topics.append(cfg.tracks_topic)
    play_topics = sorted({t for t in node_topics if t in topics})
    expected = {t: bag_message_count(bag, [t]) for t in [*cfg.cameras, cfg.lidar_topic] if t in topics}
    missing = [t for t in [*cfg.cameras, cfg.lidar_topic] if t not in topics]
    if missing:
        raise RosDemoError(f"topics {missing} of {params_file} are not in the bag {bag} (topics: {sorted(topics)})")

    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_DOMAIN_ID=str(domain),
               PYTHONUNBUFFERED="1")
    repo_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo_root, env.get("PYTHONPATH", "")) if p)
    node_cmd = [sys.executable, "-m", "g3r_ros.ros.node", "--ros-args", "--params-file", str(params_file)]
    for k, v in overrides.items():
        node_cmd += ["-p", f"{k}:={_ros_value(v)}"]
    node_log_path, player_log_path = out / "node.log", out / "player.log"
    result: dict = {
        "bag": str(bag), "out": str(out), "ros_domain_id": domain, "params_file": str(params_file),
        "node_overrides": overrides, "model": str(model), "untrained_model": untrained,
        "node_log": str(node_log_path), "player_log": str(player_log_path),
    }
    if untrained:
        result["warning"] = ("UNTRAINED MODEL: no trained model was found, so the node ran a randomly initialized "
                             "G3R network; the map and PSNR show the initialization, not G3R")
    timings: dict = {}
    result["timings_s"] = timings

    node = player = probe = None
    node_log = open(node_log_path, "w")  # noqa: SIM115 - closed in finally
    player_log = open(player_log_path, "w")  # noqa: SIM115
    try:
        with _loopback_env():
            LOG.info("starting reconstruct_node (ROS_DOMAIN_ID=%d, log %s)", domain, node_log_path)
            node = subprocess.Popen(node_cmd, cwd=out, env=env, stdout=node_log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
            probe = _Probe(domain)

            # the window the node will build (its session's builder, fed from the bag) and the pose to request
            from ..streaming import preview_window

            window = preview_window(bag, cfg.stream_config())
            held_out = window.target_keyframes
            kf = held_out[len(held_out) // 2] if held_out else window.keyframes[len(window.keyframes) // 2]
            if not held_out:
                LOG.warning("the window has no held-out keyframe: the novel view shifts a source keyframe")

            def node_alive():
                if node.poll() is not None:
                    raise RosDemoError(f"reconstruct_node exited with code {node.returncode}; "
                                       f"log {node_log_path}:\n{_tail(node_log_path)}")

            def wait(predicate, cap: float, what: str) -> None:
                end = time.monotonic() + left(cap)
                while time.monotonic() < end:
                    node_alive()
                    if predicate():
                        return
                    time.sleep(0.1)
                node_alive()
                raise TimeoutError(f"timed out after {cap:.0f} s waiting for {what}; last status: "
                                   f"{probe.latest_status()}; node log {node_log_path}:\n{_tail(node_log_path)}")

            t0 = time.monotonic()
            wait(lambda: probe.status_count > 0, 180, "the node's first ~/status")
            timings["node_start"] = time.monotonic() - t0

            # ---- play the bag ----
            t0 = time.monotonic()
            player_cmd = [sys.executable, "-m", "g3r_ros", "play", str(bag), "--clock", "--wait-for-subscribers",
                          "30", "--topics", *play_topics]
            LOG.info("playing %s (%d topics, %.1f s of drive)", bag, len(play_topics), span)
            player = subprocess.Popen(player_cmd, cwd=out, env=env, stdout=player_log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL)
            try:
                player.wait(timeout=left(span + 120.0))
            except subprocess.TimeoutExpired:
                raise TimeoutError(f"the player did not finish; log {player_log_path}:\n"
                                   f"{_tail(player_log_path)}") from None
            if player.returncode != 0:
                raise RosDemoError(f"the player failed (exit {player.returncode}); log {player_log_path}:\n"
                                   f"{_tail(player_log_path)}")
            timings["play"] = time.monotonic() - t0

            # ---- everything received and ingested; the node closes the window when the input stops ----
            def received_all() -> bool:
                s = probe.latest_status().get("g3r_ros: input", {})
                got = all(int(s.get(f"received:{t}", 0)) >= n for t, n in expected.items())
                return got and int(s.get("inbox_depth", 1)) == 0

            t0 = time.monotonic()
            try:
                wait(received_all, 60, "the node to receive and ingest every camera and LiDAR message")
            except TimeoutError:
                LOG.warning("the node did not receive every message of the bag; its map covers what it got")
            inputs = probe.latest_status().get("g3r_ros: input", {})
            result["messages"] = {t: {"in_bag": n, "received": int(inputs.get(f"received:{t}", 0))}
                                  for t, n in expected.items()}

            # ---- the map ----
            def map_or_failure() -> bool:
                with probe.lock:
                    if probe.maps:
                        return True
                r = probe.latest_status().get("g3r_ros: reconstruction", {})
                if int(r.get("failed", 0)) or int(r.get("cancelled", 0)):
                    raise RosDemoError(f"the reconstruction failed: {r}; log {node_log_path}:\n"
                                       f"{_tail(node_log_path)}")
                return False

            wait(map_or_failure, timeout_s, "~/gaussian_map")
            timings["play_end_to_map"] = time.monotonic() - t0
            with probe.lock:
                map_msg = probe.maps[-1]
            result["map_gaussians_received"] = int(map_msg.width) * int(map_msg.height)
            result["map_frame_id"] = str(map_msg.header.frame_id)

            # ---- a novel view at a lane-shifted held-out pose ----
            from geometry_msgs.msg import PoseStamped

            from ..synthetic import lane_shifted_camera, render_truth
            from .convert import image_msg_to_array, make_header, matrix_to_pose, sec_from_time

            camera = lane_shifted_camera(kf.camera, LANE_SHIFT_M)
            stamp = kf.stamp + REQUEST_STAMP_OFFSET_S

            def view_msg():
                with probe.lock:
                    for m in probe.views:
                        if abs(sec_from_time(m.header.stamp) - stamp) < 1e-6:
                            return m
                return None

            t0 = time.monotonic()
            request = PoseStamped(header=make_header(stamp, cfg.world_frame), pose=matrix_to_pose(camera.T_world_cam))
            next_send = 0.0
            end = time.monotonic() + left(120)
            while view_msg() is None:
                node_alive()
                if time.monotonic() > end:
                    raise TimeoutError(f"no novel view for the requested pose within 120 s; node log "
                                       f"{node_log_path}:\n{_tail(node_log_path)}")
                if time.monotonic() >= next_send:  # resent until served (the first may race discovery)
                    probe.pose_pub.publish(request)
                    next_send = time.monotonic() + 2.0
                time.sleep(0.05)
            timings["novel_view_request_to_image"] = time.monotonic() - t0
            got = image_msg_to_array(view_msg())
            t0 = time.monotonic()
            truth = render_truth(scene, camera, stamp)
            timings["ground_truth_render"] = time.monotonic() - t0
            result["novel_view"] = _novel_view_outputs(out, got, truth, kf, stamp, bool(held_out), untrained)

            # ---- save the map ----
            t0 = time.monotonic()
            res = probe.call_trigger("save_map", left(60))
            if not res.success:
                raise RosDemoError(f"~/save_map failed: {res.message}")
            timings["save_map"] = time.monotonic() - t0
            result["map_ply"] = res.message
            try:
                wait(lambda: probe.latest_status().get("g3r_ros: outputs", {}).get("last_saved_map") == res.message,
                     5 * STATUS_PERIOD_S + 2, "a ~/status after ~/save_map")
            except TimeoutError:
                LOG.warning("no ~/status after ~/save_map: reporting the last one")
            status = _typed_status(probe.latest_status())
            result["node_status"] = status
            recon = status.get("g3r_ros: reconstruction", {})
            timings["node_reconstruction"] = recon.get("last_time_s")
            timings["node_reconstruction_wall"] = recon.get("last_wall_s")
            result["device"] = recon.get("device")
    finally:
        if player is not None:
            _stop_process(player, "the player", 10.0)
        if node is not None:
            code = _stop_process(node, "reconstruct_node", 60.0)
            result["node_exit_code"] = code
        if probe is not None:
            probe.close()
        node_log.close()
        player_log.close()
        timings["total"] = time.monotonic() - t_start
    log_text = node_log_path.read_text(errors="replace")
    if "saved the last map to" in log_text:
        result["map_ply_on_shutdown"] = log_text.split("saved the last map to")[-1].strip().splitlines()[0]
    if result.get("node_exit_code") not in (0, None):
        LOG.warning("reconstruct_node exited with code %s (log %s)", result["node_exit_code"], node_log_path)
    LOG.info("ROS demo: map of %s Gaussians, novel view PSNR %.2f dB vs exact truth%s",
             result.get("map_gaussians_received"), result["novel_view"]["psnr_db"],
             " (UNTRAINED MODEL)" if untrained else "")
    return result


def _novel_view_outputs(out: Path, got: np.ndarray, truth: np.ndarray, kf, stamp: float, held_out: bool,
                        untrained: bool) -> dict:
    """PNGs (received, truth, side by side with the error) and the PSNR of the received view."""
    import torch

    from ..metrics import error_map, psnr
    from ..report import contact_sheet, write_png

    if got.shape != truth.shape:
        raise RosDemoError(f"the novel view is {got.shape}, the ground truth {truth.shape}")
    a = torch.from_numpy(got.astype(np.float32) / 255.0)
    b = torch.from_numpy(truth.astype(np.float32) / 255.0)
    value = float(psnr(a, b))
    mean = b.reshape(-1, 3).mean(0).expand_as(b)
    received_png = write_png(out / "ros_novel_view_received.png", got)
    truth_png = write_png(out / "ros_novel_view_truth.png", truth)
    title = f"ROS novel view, {LANE_SHIFT_M:+.1f} m lane shift of keyframe {kf.index}: PSNR {value:.2f} dB"
    row = f"keyframe {kf.index}" + (" (held out)" if held_out else "")
    sheet = contact_sheet([[got, truth, error_map(a, b)]], [row],
                          ["~/novel_view/image", "exact ground truth", "|error| (0-0.25)"],
                          out / "ros_novel_view.png", title=title + (" (UNTRAINED MODEL)" if untrained else ""))
    return {"png": str(sheet), "received_png": str(received_png), "truth_png": str(truth_png),
            "psnr_db": value, "psnr_mean_colour_db": float(psnr(mean, b)),
            "keyframe_index": int(kf.index), "keyframe_held_out": held_out, "lane_shift_m": LANE_SHIFT_M,
            "stamp": stamp, "size": [int(got.shape[1]), int(got.shape[0])]}

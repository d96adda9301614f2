"""``reconstruct_node``: sensors in, Gaussian maps and rendered novel views out.

Wiring only. The work is done by a :class:`g3r_ros.streaming.StreamingSession` (builder
thread, bounded window queue, reconstruction worker, render thread, status; see its module
doc); this node declares the parameters (``g3r_ros.ros.params``), subscribes, converts
messages (``g3r_ros.ros.convert``), publishes and serves:

- sensor subscriptions are *raw* (the CDR bytes): callbacks hand the bytes to the session
  and return, so a live stream and a bag go through the same core decoders;
- ``~/gaussian_map`` (transient local) on every new map (with ``refine.seconds``: G3R's map of a
  window, then its refined versions; docs/ROS.md "Anytime maps"), ``~/novel_view/{image,depth,camera_info}``
  for every ``~/render_pose`` request and the lane-shifted views of each map's keyframes,
  ``~/status`` (``DiagnosticArray``) every ``status_period`` seconds of wall clock;
- sensor simulation (a :class:`g3r_ros.pose_stream.SensorSimulator`): ``~/sim/lidar``
  (``PointCloud2``) answers every ``~/sim/lidar_pose`` request; with ``sim.pose_topic`` every
  base-frame pose yields ``~/sim/<camera>/{image,depth,camera_info}`` per rig camera (and the
  rig's LiDAR on ``~/sim/lidar`` with ``sim.lidar``), stamped with the pose;
- ``~/reconstruct`` closes the current window now, ``~/save_map`` writes the map as a PLY.

Novel-view pose convention: a ``~/render_pose`` PoseStamped is the pose of the *camera optical
frame* (x right, y down, z forward; REP-103 optical) in ``header.frame_id``, at
``header.stamp`` (zero stamp: the latest transform). The image uses the first camera's
intrinsics (as in the keyframes, after ``window.image_scale``) and carries the request's
header stamp, with ``frame_id = novel_view.frame_id``. ``~/novel_view/depth`` is ``32FC1``, metres
along the optical axis, NaN where the accumulated opacity is below ``novel_view.depth_min_opacity``.
A ``~/sim/lidar_pose`` PoseStamped is the pose of a LiDAR frame (x forward, z up); the scan's
points are in that frame, with ``frame_id = sim.lidar_frame_id`` and the request's stamp.

While the node runs, the core's Python log lines go through the node's ROS logger (they
reach ``/rosout``). SIGINT and SIGTERM both cancel a running reconstruction (logged with the
signal), save the last map (``save_on_shutdown``) and exit 0.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path

from rclpy.node import Node

from ..pose_stream import PoseSample, SensorSimulator, rig_for_session
from ..streaming import StreamingSession, ViewRequest, status_levels
from ..window_builder import camera_info_topic
from .logs import plain_console, route_to_node
from .params import declare_and_load, watch_parameters

NODE_NAME = "reconstruct_node"
RECONFIGURABLE = ("reconstruction.steps", "reconstruction.turbo")  # need the reconstructor's configure()
SIM_STATUS = "g3r_ros: sim"


class ReconstructNode(Node):
    """The reconstruct node. ``reconstructor`` overrides the configured one (tests, embedding).

    Raises ``ValueError`` at construction for invalid parameters, a missing model or an
    unavailable device (``main`` turns that into exit code 2 with the message).
    """

    def __init__(self, *, reconstructor=None, node_name: str = NODE_NAME, **kwargs):
        super().__init__(node_name, **kwargs)
        self._logs = route_to_node(self)  # from here on, core log lines reach /rosout
        try:
            self.cfg = cfg = declare_and_load(self)
            if cfg.reconstruction_threads:
                import torch

                torch.set_num_threads(cfg.reconstruction_threads)  # process-wide: reconstruction and renders
            self.reconstructor = reconstructor or cfg.reconstructor()
        except BaseException:
            self._logs.close()
            raise
        self.session = StreamingSession(cfg.stream_config(), self.reconstructor, now=self._now_s,
                                        on_map=self._publish_map, on_view=self._publish_view,
                                        on_status=self._publish_status)
        self.rig_for = rig_for_session(self.session, cfg.sim_rig, cfg.sim_base_frame, cfg.lidar_beams())
        self.sim = SensorSimulator(cfg.sim_config(), current_map=lambda: self.session.map,
                                   resolve=self.session.resolve, rig_for=self.rig_for, lidar_beams=cfg.lidar_beams(),
                                   on_frame=self._publish_sim_frame, on_lidar=self._publish_sim_scan)
        self._make_interfaces()
        watch_parameters(self, lambda: self.cfg, self._apply_parameters, self._refuse_parameters)
        self.session.start()
        self.sim.start()
        self.get_logger().info(
            f"reconstructing windows of {cfg.window_seconds:g} s from cameras {cfg.cameras} "
            f"({cfg.image_transport}), LiDAR {cfg.lidar_topic}, world frame '{cfg.world_frame}'; reconstruction "
            f"every {cfg.reconstruction_every} window(s); idle flush after {cfg.window_flush_on_idle_s:g} s; "
            f"maps saved to {self.session.output_dir}")

    # ------------------------------------------------------------------ ROS interfaces
    def _make_interfaces(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseStamped
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
        from std_srvs.srv import Trigger
        from tf2_msgs.msg import TFMessage
        from visualization_msgs.msg import MarkerArray

        cfg = self.cfg
        if cfg.qos_sensor == "sensor_data":
            sensor_qos = QoSProfile(depth=cfg.qos_depth, reliability=qos_profile_sensor_data.reliability,
                                    durability=qos_profile_sensor_data.durability)
        else:
            sensor_qos = QoSProfile(depth=cfg.qos_depth, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)

        def raw_sub(cls, topic, qos):
            msgtype = f"{cls.__module__.split('.')[0]}/msg/{cls.__name__}"
            self.create_subscription(cls, topic, lambda raw: self.session.offer(topic, msgtype, raw), qos, raw=True)

        image_cls = CompressedImage if cfg.image_transport == "compressed" else Image
        info_topics = []
        for image_topic in cfg.cameras:
            raw_sub(image_cls, cfg.image_subscription_topic(image_topic), sensor_qos)
            info = camera_info_topic(image_topic)
            if info not in info_topics:
                info_topics.append(info)
                raw_sub(CameraInfo, info, sensor_qos)
        raw_sub(PointCloud2, cfg.lidar_topic, sensor_qos)
        raw_sub(TFMessage, "/tf", QoSProfile(depth=100))
        raw_sub(TFMessage, "/tf_static", QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                                                    durability=DurabilityPolicy.TRANSIENT_LOCAL))
        if cfg.tracks_topic:
            raw_sub(MarkerArray, cfg.tracks_topic, sensor_qos)

        self.map_pub = self.create_publisher(PointCloud2, "~/gaussian_map", latched)
        self.view_pub = self.create_publisher(Image, "~/novel_view/image", QoSProfile(depth=10))
        self.view_depth_pub = self.create_publisher(Image, "~/novel_view/depth", QoSProfile(depth=10))
        self.view_info_pub = self.create_publisher(CameraInfo, "~/novel_view/camera_info", QoSProfile(depth=10))
        self.status_pub = self.create_publisher(DiagnosticArray, "~/status", QoSProfile(depth=5))
        self.create_subscription(PoseStamped, "~/render_pose", self._on_render_pose, QoSProfile(depth=10))
        self.create_service(Trigger, "~/reconstruct", self._srv_reconstruct)
        self.create_service(Trigger, "~/save_map", self._srv_save_map)
        self._make_sim_interfaces()

    def _make_sim_interfaces(self) -> None:
        from geometry_msgs.msg import PoseStamped
        from rclpy.qos import QoSProfile
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2

        cfg = self.cfg
        self.sim_lidar_pub = self.create_publisher(PointCloud2, "~/sim/lidar", QoSProfile(depth=5))
        self.create_subscription(PoseStamped, "~/sim/lidar_pose", self._on_lidar_pose, QoSProfile(depth=10))
        self.sim_pubs = {}
        if not cfg.sim_pose_topic:
            return
        for name in self.rig_for.camera_names(cfg.cameras):
            self.sim_pubs[name] = (self.create_publisher(Image, f"~/sim/{name}/image", QoSProfile(depth=5)),
                                   self.create_publisher(Image, f"~/sim/{name}/depth", QoSProfile(depth=5)),
                                   self.create_publisher(CameraInfo, f"~/sim/{name}/camera_info", QoSProfile(depth=5)))
        if cfg.sim_pose_type == "odometry":
            from nav_msgs.msg import Odometry

            self.create_subscription(Odometry, cfg.sim_pose_topic, self._on_sim_pose, QoSProfile(depth=10))
        else:
            self.create_subscription(PoseStamped, cfg.sim_pose_topic, self._on_sim_pose, QoSProfile(depth=10))

    def _now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # ------------------------------------------------------------------ requests (never block)
    def _on_render_pose(self, msg) -> None:
        from .convert import pose_to_matrix, sec_from_time

        try:
            T_frame_cam = pose_to_matrix(msg.pose)
        except ValueError as e:
            self.session.count_skip("render_request", str(e))
            return
        frame = str(msg.header.frame_id).lstrip("/") or self.cfg.world_frame
        self.session.request_view(ViewRequest(frame, T_frame_cam, sec_from_time(msg.header.stamp), msg.header.stamp))

    def _pose_sample(self, msg, pose, kind: str) -> PoseSample | None:
        from .convert import pose_to_matrix, sec_from_time

        try:
            T = pose_to_matrix(pose)
        except ValueError as e:
            self.session.count_skip(kind, str(e))
            return None
        frame = str(msg.header.frame_id).lstrip("/") or self.cfg.world_frame
        return PoseSample(frame, T, sec_from_time(msg.header.stamp), msg.header.stamp)

    def _on_sim_pose(self, msg) -> None:
        """A PoseStamped or an Odometry (``pose.pose``) of the base frame: never blocks."""
        pose = msg.pose.pose if hasattr(msg, "child_frame_id") else msg.pose
        sample = self._pose_sample(msg, pose, "sim_pose")
        if sample is not None:
            self.sim.offer_pose(sample)

    def _on_lidar_pose(self, msg) -> None:
        sample = self._pose_sample(msg, msg.pose, "sim_lidar_pose")
        if sample is not None:
            self.sim.request_lidar(sample)

    def _srv_reconstruct(self, request, response):
        response.success, response.message = self.session.request_reconstruct()
        return response

    def _srv_save_map(self, request, response):
        try:
            response.success, response.message = True, str(self.save_map())
        except (ValueError, OSError) as e:
            response.success, response.message = False, str(e)
        return response

    def save_map(self, name: str | None = None) -> Path:
        """Write the current map as a graphdeco 3DGS PLY into ``output_dir``; returns its absolute path."""
        return self.session.save_map(name)

    # ------------------------------------------------------------------ session outputs (its threads)
    def _publish_map(self, state) -> None:
        from ..export import pointcloud_fields
        from .convert import structured_to_pointcloud2

        params = state.output.params_at(state.stamp)
        self.map_pub.publish(structured_to_pointcloud2(pointcloud_fields(params), state.stamp, self.cfg.world_frame))

    def _publish_view(self, camera, rgb, stamp, depth) -> None:
        """``rgb`` (H,W,3) uint8 and ``depth`` (H,W) float32 metres seen by ``camera``, stamped
        ``stamp`` (float s, or a builtin_interfaces/Time copied verbatim)."""
        from .convert import camera_info_to_msg, image_to_msg

        frame = self.cfg.novel_view_frame_id
        self.view_pub.publish(image_to_msg(rgb, stamp, frame))
        self.view_depth_pub.publish(image_to_msg(depth, stamp, frame, encoding="32FC1"))
        self.view_info_pub.publish(camera_info_to_msg(camera.K, camera.width, camera.height, stamp, frame))

    def _publish_sim_frame(self, frame) -> None:
        """Every rig camera's image, depth and camera_info (and the rig's scan) of one pose."""
        from .convert import camera_info_to_msg, image_to_msg

        for v in frame.views:
            pubs = self.sim_pubs.get(v.rig_camera.name)
            if pubs is None:
                continue
            fid, cam = v.rig_camera.frame_id, v.camera
            pubs[0].publish(image_to_msg(v.rgb, frame.reply_stamp, fid))
            if v.depth is not None:
                pubs[1].publish(image_to_msg(v.depth, frame.reply_stamp, fid, encoding="32FC1"))
            pubs[2].publish(camera_info_to_msg(cam.K, cam.width, cam.height, frame.reply_stamp, fid))
        if frame.scan is not None:
            self._publish_sim_scan(frame.scan, frame.reply_stamp, frame.lidar_frame)

    def _publish_sim_scan(self, scan, stamp, frame_id: str | None = None) -> None:
        from ..lidar_sim import scan_fields
        from .convert import structured_to_pointcloud2

        self.sim_lidar_pub.publish(structured_to_pointcloud2(scan_fields(scan), stamp,
                                                             frame_id or self.cfg.sim_lidar_frame_id))

    def _publish_status(self, values: dict) -> None:
        from .convert import diagnostic_array, diagnostic_status

        values = {**values, SIM_STATUS: self.sim.status_values()}
        levels = status_levels(values)
        statuses = [diagnostic_status(name, vals, level=levels[name], hardware_id=self.get_name())
                    for name, vals in values.items()]
        self.status_pub.publish(diagnostic_array(statuses, max(self._now_s(), 0.0)))

    def status_values(self) -> dict[str, dict]:
        """``{status name: {key: value}}`` as published on ``~/status``."""
        return {**self.session.status_values(), SIM_STATUS: self.sim.status_values()}

    # ------------------------------------------------------------------ run-time parameters
    def _refuse_parameters(self, names: set[str]) -> str | None:
        if names & set(RECONFIGURABLE) and not callable(getattr(self.reconstructor, "configure", None)):
            return (f"the configured reconstructor ({type(self.reconstructor).__name__}) cannot change "
                    f"{sorted(names & set(RECONFIGURABLE))} while running")
        return None

    def _apply_parameters(self, cfg, names: set[str]) -> None:
        self.cfg = cfg
        self.session.reconfigure(cfg.stream_config())
        self.sim.reconfigure(cfg.sim_config())
        if names & set(RECONFIGURABLE):
            self.reconstructor.configure(steps=cfg.reconstruction_steps, turbo=cfg.reconstruction_turbo)
        self.get_logger().info("parameters changed: " + ", ".join(
            f"{n}={getattr(cfg, n.replace('.', '_'))}" for n in sorted(names)))

    # ------------------------------------------------------------------ shutdown
    def shutdown(self, reason: str = "shutdown", timeout: float = 10.0) -> Path | None:
        """Stop the session (cancelling a running reconstruction, logged with ``reason``) and save
        the last map when ``save_on_shutdown``; returns the saved path (None if nothing was saved)."""
        try:
            self.sim.close()
            return self.session.close(reason, timeout)
        finally:
            self._logs.close()  # before the node (and its rosout publisher) goes away

    def destroy_node(self) -> None:
        self._logs.close()
        super().destroy_node()


def main(args=None) -> int:
    """``ros2 run g3r_ros reconstruct_node`` / ``python -m g3r_ros.ros.node [--ros-args ...]``.

    Exit codes: 0 after SIGINT/SIGTERM (map saved), 2 for an invalid configuration."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    from .player import apply_large_data_profile

    plain_console()
    log = logging.getLogger("g3r_ros.ros.node")
    if "ROS_AUTOMATIC_DISCOVERY_RANGE" not in os.environ and "ROS_LOCALHOST_ONLY" not in os.environ:
        log.info("ROS_AUTOMATIC_DISCOVERY_RANGE is not set: DDS discovery uses the default range")
    if (profile := apply_large_data_profile()) is not None:  # maps of many Gaussians are MBs
        log.info("Fast DDS profile with a large shared-memory segment: %s (G3R_DDS_PROFILE=0 to disable)", profile)
    stop = threading.Event()
    reason = ["shutdown"]

    def on_signal(signum, frame):  # SIGINT and SIGTERM alike: leave the loop, then shut down in order
        reason[0] = signal.Signals(signum).name
        stop.set()

    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    node = None
    try:
        try:
            node = ReconstructNode()
        except ValueError as e:  # invalid parameters, missing model, unavailable device
            print(f"reconstruct_node: invalid configuration: {e}", file=sys.stderr, flush=True)
            return 2
        # One thread: callbacks only enqueue, and a multi-threaded executor can reorder a topic's messages.
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
        node.get_logger().info(f"{reason[0]}: shutting down")
        saved = node.shutdown(reason[0])
        if saved is not None:
            print(f"reconstruct_node: saved the last map to {saved}", flush=True)
        executor.shutdown()
        return 0
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        for s, handler in previous.items():
            signal.signal(s, handler)


if __name__ == "__main__":
    sys.exit(main())

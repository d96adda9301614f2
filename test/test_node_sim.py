"""reconstruct_node's sensor simulation in real rclpy processes: ``~/novel_view/depth``,
``~/sim/lidar`` for ``~/sim/lidar_pose``, the pose-stream rig under ``~/sim/<camera>/`` and a
bounded queue under a pose flood.

The node runs with the test double of ``toy_drive`` (one Gaussian per LiDAR point of a wall at
x = 10 m) fed by ``g3r play``; a probe node publishes poses and checks stamps, frames,
encodings and the geometry (depth and ranges to the wall plane).
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
from ros_domains import claim_domain_id

rclpy = pytest.importorskip("rclpy", reason="rclpy (ros-rclpy wheels) is not installed")
pytest.importorskip("tf2_msgs.msg", reason="tf2_msgs is not built (tools/build_tf2_msgs.sh)")

from test_node import NODE, Probe, _stop, node_params, ros_env  # noqa: E402
from toy_drive import WALL_X, H, K, W, write_drive_bag  # noqa: E402

from g3r_ros.geometry import R_BODY_OPTICAL, make_transform  # noqa: E402

POSE_TOPIC = "/sim_test/base_pose"
ELEVATIONS = [float(e) for e in np.arange(-20.0, 10.1, 2.5)]


def sim_params(tmp, **overrides) -> dict:
    values = node_params(tmp, **{
        "cameras": ["/cam/image_raw"], "novel_view.lateral_offsets": [],
        "sim.pose_topic": POSE_TOPIC, "sim.lidar": True, "sim.lidar_preset": "generic",
        "sim.lidar_elevations_deg": ELEVATIONS, "sim.lidar_azimuth_step_deg": 2.0, "sim.lidar_max_range": 30.0,
        "sim.queue_size": 2})
    values.update(overrides)
    return values


class SimProbe(Probe):
    """The node-test probe plus the simulation topics."""

    def __init__(self, domain_id: int):
        super().__init__(domain_id)
        from geometry_msgs.msg import PoseStamped
        from rclpy.qos import QoSProfile
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2

        n = self.node
        self.depths, self.scans, self.sim_images, self.sim_depths, self.sim_infos = [], [], [], [], []
        n.create_subscription(Image, f"{NODE}/novel_view/depth", self._add(self.depths), QoSProfile(depth=100))
        n.create_subscription(PointCloud2, f"{NODE}/sim/lidar", self._add(self.scans), QoSProfile(depth=100))
        n.create_subscription(Image, f"{NODE}/sim/cam/image", self._add(self.sim_images), QoSProfile(depth=100))
        n.create_subscription(Image, f"{NODE}/sim/cam/depth", self._add(self.sim_depths), QoSProfile(depth=100))
        n.create_subscription(CameraInfo, f"{NODE}/sim/cam/camera_info", self._add(self.sim_infos),
                              QoSProfile(depth=100))
        self.lidar_pose_pub = n.create_publisher(PoseStamped, f"{NODE}/sim/lidar_pose", QoSProfile(depth=10))
        self.base_pose_pub = n.create_publisher(PoseStamped, POSE_TOPIC, QoSProfile(depth=1000))


def _at(msgs, stamp: float):
    from g3r_ros.ros.convert import sec_from_time

    return next((m for m in msgs if abs(sec_from_time(m.header.stamp) - stamp) < 1e-6), None)


def _pose(stamp: float, frame: str, T: np.ndarray):
    from geometry_msgs.msg import PoseStamped

    from g3r_ros.ros.convert import make_header, matrix_to_pose

    return PoseStamped(header=make_header(stamp, frame), pose=matrix_to_pose(T))


def _until(probe, publish, ready, timeout: float, what: str):
    """Publish (again) until ``ready()``: the first message may race discovery."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        publish()
        t_end = time.monotonic() + 1.0
        while time.monotonic() < t_end:
            with probe.lock:
                if ready():
                    return
            time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last status: {probe.latest_status()}")


@pytest.fixture(scope="module")
def sim_session(tmp_path_factory):
    from g3r_ros.ros.params import write_params_file

    tmp = tmp_path_factory.mktemp("node_sim")
    write_drive_bag(tmp / "drive", bad_input=False)
    params = write_params_file(tmp / "params.yaml", sim_params(tmp))
    domain = claim_domain_id()
    env = dict(ros_env(), ROS_DOMAIN_ID=str(domain))
    probe = SimProbe(domain)
    node = subprocess.Popen([sys.executable, "-m", "g3r_ros.ros.node", "--ros-args", "--params-file", str(params)],
                            cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    info = {"probe": probe, "node": node}
    try:
        probe.wait(lambda: probe.status or node.poll() is not None, 60, "the node's first ~/status")
        assert node.poll() is None, node.communicate()[1][-3000:]
        player = subprocess.run([sys.executable, "-m", "g3r_ros", "play", str(tmp / "drive"),
                                 "--wait-for-subscribers", "30"], cwd=tmp, env=env, capture_output=True, text=True,
                                timeout=120, check=False)
        assert player.returncode == 0, player.stderr[-3000:]
        probe.wait(lambda: probe.maps, 60, "a map")
        yield info
    finally:
        info["exit"] = _stop(node)
        probe.close()


def test_novel_views_carry_depth(sim_session):
    from g3r_ros.ros.convert import image_msg_to_array

    probe = sim_session["probe"]
    stamp = 5001.25
    T_world_optical = make_transform(R_BODY_OPTICAL, [0.5, 0.0, 1.5])  # facing the wall at x = 10
    _until(probe, lambda: probe.pose_pub.publish(_pose(stamp, "map", T_world_optical)),
           lambda: _at(probe.depths, stamp) is not None and _at(probe.views, stamp) is not None, 60, "a depth image")
    with probe.lock:
        depth_msg, image_msg = _at(probe.depths, stamp), _at(probe.views, stamp)
    assert depth_msg.encoding == "32FC1" and (depth_msg.width, depth_msg.height) == (W, H)
    assert depth_msg.header.frame_id == image_msg.header.frame_id == "g3r_novel_view_optical"
    assert (depth_msg.header.stamp.sec, depth_msg.header.stamp.nanosec) == (5001, 250_000_000)
    depth = image_msg_to_array(depth_msg)
    seen = np.isfinite(depth)
    assert 0.2 < seen.mean() < 0.95, "the wall, NaN beside and above it"
    np.testing.assert_allclose(np.median(depth[seen]), WALL_X - 0.5, atol=0.1)  # metres along the optical axis
    rgb = image_msg_to_array(image_msg)
    assert not (seen & (rgb.max(axis=2) == 0)).any()


def test_lidar_pose_request_is_answered_in_the_lidar_frame(sim_session):
    from g3r_ros.ros.convert import pointcloud2_to_structured

    probe = sim_session["probe"]
    stamp = 5003.5
    T_map_lidar = make_transform(None, [0.5, 0.0, 2.0])  # x forward towards the wall, z up
    _until(probe, lambda: probe.lidar_pose_pub.publish(_pose(stamp, "map", T_map_lidar)),
           lambda: _at(probe.scans, stamp) is not None, 60, "~/sim/lidar for the request")
    with probe.lock:
        msg = _at(probe.scans, stamp)
    assert msg.header.frame_id == "g3r_sim_lidar"
    assert [f.name for f in msg.fields] == ["x", "y", "z", "range", "ring"]
    pts = pointcloud2_to_structured(msg)
    ahead = (np.abs(pts["y"]) < 3) & (pts["x"] > 0)
    assert ahead.sum() > 20 and pts["ring"].max() < len(ELEVATIONS)
    np.testing.assert_allclose(np.median(pts["x"][ahead]), WALL_X - 0.5, atol=0.1)  # points in the LiDAR frame
    np.testing.assert_allclose(np.hypot(np.hypot(pts["x"], pts["y"]), pts["z"]), pts["range"], rtol=1e-5)


def test_pose_stream_publishes_the_recorded_rig(sim_session):
    """A base_link pose → the recorded camera's image (rgb8), depth (32FC1) and camera_info, and the
    recorded LiDAR's scan, each stamped with the pose and framed with the recorded frame ids."""
    from g3r_ros.ros.convert import image_msg_to_array, pointcloud2_to_structured

    probe = sim_session["probe"]
    stamp, base_x = 5005.0, 2.0
    _until(probe, lambda: probe.base_pose_pub.publish(_pose(stamp, "map", make_transform(None, [base_x, 0, 0]))),
           lambda: all(_at(m, stamp) is not None for m in (probe.sim_images, probe.sim_depths, probe.sim_infos,
                                                              probe.scans)), 60, "the rig's outputs")
    with probe.lock:
        image, depth, info, scan = (_at(m, stamp) for m in (probe.sim_images, probe.sim_depths, probe.sim_infos,
                                                             probe.scans))
    assert image.encoding == "rgb8" and depth.encoding == "32FC1"
    assert image.header.frame_id == depth.header.frame_id == info.header.frame_id == "cam"  # recorded frame ids
    assert scan.header.frame_id == "lidar"
    np.testing.assert_allclose(np.asarray(info.k).reshape(3, 3), K)
    assert (info.width, info.height) == (W, H)
    d = image_msg_to_array(depth)
    # the camera is 1.5 m up at the base, facing +x: the wall is 10 - 2 m ahead
    np.testing.assert_allclose(np.nanmedian(d[H // 2 - 4:H // 2 + 4, W // 2 - 4:W // 2 + 4]), WALL_X - base_x, atol=0.1)
    assert image_msg_to_array(image).max() > 10
    pts = pointcloud2_to_structured(scan)
    ahead = (np.abs(pts["y"]) < 3) & (pts["x"] > 0)
    np.testing.assert_allclose(np.median(pts["x"][ahead]), WALL_X - base_x, atol=0.1)


def test_a_pose_flood_is_dropped_oldest_first_and_counted(sim_session):
    probe, node = sim_session["probe"], sim_session["node"]
    t0 = 6000.0
    for i in range(300):
        probe.base_pose_pub.publish(_pose(t0 + 0.01 * i, "map", make_transform(None, [0.01 * i, 0.0, 0.0])))

    def settled():  # every pose that reached the simulator is rendered or dropped
        s = {k: int(v) for k, v in probe.latest_status().get("g3r_ros: sim", {}).items() if v.lstrip("-").isdigit()}
        return (s.get("poses_received", 0) >= 50 and s.get("pose_queue", 1) == 0
                and s["poses_rendered"] + s["poses_dropped"] + s["poses_failed"] == s["poses_received"])

    probe.wait(settled, 90, "the flood dropped and drained")
    s = probe.latest_status()["g3r_ros: sim"]
    # (DDS keeps the last 10 on the node's subscription, so not all 300 reach the simulator)
    assert int(s["pose_queue_high_water"]) <= int(s["pose_queue_capacity"]) == 2, s
    assert int(s["poses_dropped"]) > 0 and int(s["poses_failed"]) == 0, s
    assert node.poll() is None
    with probe.lock:
        last = max(m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in probe.sim_images)
    assert abs(last - (t0 + 2.99)) < 1e-6, "the newest pose is rendered (keep-last delivers it; the oldest drop)"
    levels = {st.name: st.level for st in probe.status[-1].status}
    assert levels["g3r_ros: sim"] == b"\x01"  # WARN: poses were dropped


def test_odometry_pose_stream_in_process(tmp_path):
    """sim.pose_type odometry subscribes nav_msgs/Odometry and takes pose.pose in header.frame_id."""
    from nav_msgs.msg import Odometry
    from rclpy.parameter import Parameter
    from toy_drive import LidarColourStandIn

    from g3r_ros.ros.convert import make_header, matrix_to_pose
    from g3r_ros.ros.node import ReconstructNode

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=claim_domain_id())
    values = sim_params(tmp_path, **{"sim.pose_type": "odometry"})
    node = ReconstructNode(reconstructor=LidarColourStandIn(), context=ctx,
                           parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])
    try:
        subs = {s.topic_name: s.msg_type.__name__ for s in node.subscriptions}
        assert subs[POSE_TOPIC] == "Odometry" and subs[f"{NODE}/sim/lidar_pose"] == "PoseStamped"
        pubs = {p.topic_name for p in node.publishers}
        assert {f"{NODE}/sim/cam/image", f"{NODE}/sim/cam/depth", f"{NODE}/sim/cam/camera_info",
                f"{NODE}/sim/lidar", f"{NODE}/novel_view/depth"} <= pubs
        msg = Odometry(header=make_header(7.5, "odom"), child_frame_id="base_link")
        msg.pose.pose = matrix_to_pose(make_transform(None, [1.0, 2.0, 0.0]))
        node._on_sim_pose(msg)
        sample = node.sim.poses.get_nowait()
        assert sample.frame == "odom" and sample.stamp == 7.5 and sample.T_frame_x[1, 3] == 2.0
        bad = Odometry(header=make_header(8.0, "odom"))
        bad.pose.pose.orientation.w = 0.0  # zero quaternion: counted, not queued
        node._on_sim_pose(bad)
        assert node.sim.poses.get_nowait() is None
        assert node.status_values()["g3r_ros: window"]["skipped:sim_pose"] == 1
    finally:
        node.shutdown(timeout=5.0)
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)


def test_bad_sim_parameters_are_rejected_at_startup(tmp_path):
    from g3r_ros.ros.params import write_params_file

    for override, message in (({"sim.rig": str(tmp_path / "none.yaml")}, "rig file not found"),
                              ({"sim.lidar_elevations_deg": []}, "needs elevation angles"),
                              ({"sim.pose_type": "twist"}, "'sim.pose_type' must be one of")):
        params = write_params_file(tmp_path / "p.yaml", sim_params(tmp_path, **override))
        r = subprocess.run([sys.executable, "-m", "g3r_ros.ros.node", "--ros-args", "--params-file", str(params)],
                           cwd=tmp_path, env=ros_env(), capture_output=True, text=True, timeout=90, check=False)
        assert r.returncode == 2 and message in r.stderr, r.stderr[-2000:]



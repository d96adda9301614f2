"""``g3r play``: a real player process publishes a small bag; this process receives it over DDS.

Checks: every message arrives byte-identical to the bag's CDR, in order per topic; each
topic is offered with its recorded QoS (``/tf_static`` transient local and kept for late
joiners); ``--clock`` publishes the bag time; bad arguments fail clearly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ros_domains import claim_domain_id

rclpy = pytest.importorskip("rclpy", reason="rclpy (ros-rclpy wheels) is not installed")
pytest.importorskip("tf2_msgs.msg", reason="tf2_msgs is not built (tools/build_tf2_msgs.sh)")

from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from g3r_ros.bag import DriveBagWriter, bag_topics, iter_bag_messages
from g3r_ros.geometry import make_transform
from g3r_ros.ros.player import message_class

DOMAIN_ID = claim_domain_id()  # held by this process only
REPO = Path(__file__).resolve().parents[1]


def ros_env() -> dict:
    env = dict(os.environ)
    env.update(ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_DOMAIN_ID=str(DOMAIN_ID), PYTHONUNBUFFERED="1")
    return env


@pytest.fixture(scope="module")
def small_bag(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bags") / "small"
    rng = np.random.default_rng(0)
    K = np.array([[20.0, 0, 8], [0, 20.0, 6], [0, 0, 1]])
    with DriveBagWriter(path) as w:
        w.write_tf(100.0, [("base_link", "cam", make_transform(translation=[1, 0, 1.5]))], static=True)
        w.write_tf(100.0, [("base_link", "lidar", make_transform(translation=[0, 0, 2]))], static=True)
        for i in range(4):
            t = 100.0 + 0.1 * i
            w.write_tf(t, [("map", "base_link", make_transform(translation=[i, 0, 0]))])
            w.write_image("/cam/image_raw", t, "cam", rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
            w.write_camera_info("/cam/camera_info", t, "cam", K, 16, 12)
            w.write_pointcloud("/lidar/points", t, "lidar", rng.normal(size=(200, 3)).astype(np.float32))
    return path


def _spin_until(executor, predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
        if predicate():
            return True
    return predicate()


@pytest.fixture()
def ros_node():
    ctx = rclpy.Context()
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    rclpy.init(context=ctx, domain_id=DOMAIN_ID)
    node = rclpy.create_node("player_test", context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    try:
        yield node, ex
    finally:
        ex.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)


def _same_payload(got: bytes, sent: bytes) -> bool:
    """The bytes received equal the bytes sent. Fast DDS pads every serialized payload to a
    multiple of 4 bytes with zeros (RTPS alignment), so a 357-byte CameraInfo arrives as 360
    bytes: the sent bytes, then at most 3 zero bytes. Nothing else may differ."""
    pad = got[len(sent):]
    return got[: len(sent)] == sent and len(pad) < 4 and not any(pad) and (len(pad) == 0 or len(got) % 4 == 0)


def _diffs(got: list[bytes], want: list[bytes]) -> list:
    """(message index, length got/want, first differing byte offsets) for a readable failure."""
    out = []
    for i, (a, b) in enumerate(zip(got, want)):
        if a != b:
            out.append((i, len(a), len(b), [j for j, (x, y) in enumerate(zip(a, b)) if x != y][:8]))
    return out


def _player(bag, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "g3r_ros", "play", str(bag), *args], cwd=REPO, env=ros_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_player_publishes_bag_bytes_with_recorded_qos(small_bag, ros_node):
    node, ex = ros_node
    expected: dict[str, list[bytes]] = {}
    types: dict[str, str] = {}
    for m in iter_bag_messages(small_bag, deserialize=False):
        expected.setdefault(m.topic, []).append(m.rawdata)
        types[m.topic] = m.msgtype
    received: dict[str, list[bytes]] = {t: [] for t in expected}
    for topic, msgtype in types.items():
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL if topic == "/tf_static"
                         else DurabilityPolicy.VOLATILE)
        node.create_subscription(message_class(msgtype), topic, lambda raw, t=topic: received[t].append(raw),
                                 qos, raw=True)
    clock_stamps = []
    from rosgraph_msgs.msg import Clock

    node.create_subscription(Clock, "/clock", lambda m: clock_stamps.append(m.clock.sec + m.clock.nanosec * 1e-9),
                             10)
    proc = _player(small_bag, "--rate", "0.5", "--clock", "--wait-for-subscribers", "15")
    offered = {}

    def done():
        for topic in expected:
            if topic not in offered:
                infos = node.get_publishers_info_by_topic(topic)
                if infos:
                    offered[topic] = infos[0].qos_profile
        return all(len(received[t]) >= len(expected[t]) for t in expected)

    try:
        ok = _spin_until(ex, done, 40.0)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert ok, {t: (len(received[t]), len(expected[t])) for t in expected}
    for topic, sent in expected.items():  # byte-identical, in recorded order (see _same_payload)
        assert len(received[topic]) == len(sent), topic
        assert all(_same_payload(a, b) for a, b in zip(received[topic], sent)), (topic, _diffs(received[topic], sent))
    assert offered["/tf_static"].durability == DurabilityPolicy.TRANSIENT_LOCAL
    assert offered["/cam/image_raw"].durability == DurabilityPolicy.VOLATILE
    assert offered["/cam/image_raw"].reliability == ReliabilityPolicy.RELIABLE
    assert clock_stamps and 99.99 <= min(clock_stamps) and max(clock_stamps) <= 100.3 + 1e-6
    assert '"published"' in out and '"/lidar/points": 4' in out


def test_player_loop_keeps_tf_static_for_late_joiners_and_stops_on_sigint(small_bag, ros_node):
    node, ex = ros_node
    images = []
    for topic, msgtype in bag_topics(small_bag).items():  # --wait-for-subscribers waits for every topic
        qos = QoSProfile(depth=10, durability=DurabilityPolicy.TRANSIENT_LOCAL if topic == "/tf_static"
                         else DurabilityPolicy.VOLATILE)
        cb = images.append if topic == "/cam/image_raw" else (lambda raw: None)
        node.create_subscription(message_class(msgtype), topic, cb, qos, raw=True)
    proc = _player(small_bag, "--loop", "--rate", "2", "--wait-for-subscribers", "15")
    try:
        # --loop: more images than one pass holds
        assert _spin_until(ex, lambda: len(images) > 6, 30.0), len(images)
        late = []
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
        node.create_subscription(message_class("tf2_msgs/msg/TFMessage"), "/tf_static", late.append, qos, raw=True)
        # both recorded /tf_static messages are kept for a subscriber that joins late
        assert _spin_until(ex, lambda: len(late) >= 2, 15.0), len(late)
        time.sleep(0.3)
        ex.spin_once(timeout_sec=0.1)
        assert len(late) % 2 == 0  # whole passes only: 2 per loop
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    stats = json.loads(out.strip().splitlines()[-1])
    assert stats["loops"] >= 2 and stats["published"]["/cam/image_raw"] >= 7


def test_player_rejects_bad_arguments(small_bag, tmp_path, caplog, monkeypatch):
    from g3r_ros.cli import main

    monkeypatch.setenv("G3R_DDS_PROFILE", "0")  # in-process: leave this process's DDS environment alone

    assert main(["play", str(tmp_path / "nope")]) == 1
    assert "bag not found" in caplog.text
    assert main(["play", str(small_bag), "--rate", "0"]) == 1
    assert "--rate must be > 0" in caplog.text
    assert main(["play", str(small_bag), "--topics", "/nope"]) == 1
    assert "not in the bag" in caplog.text


def test_recorded_qos_defaults():
    from g3r_ros.bag import offered_qos_for
    from g3r_ros.ros.player import recorded_qos

    q = recorded_qos(offered_qos_for("/tf_static"), "/tf_static", message_count=3)
    assert q.durability == DurabilityPolicy.TRANSIENT_LOCAL and q.depth == 3
    q = recorded_qos([], "/points")
    assert q.durability == DurabilityPolicy.VOLATILE and q.reliability == ReliabilityPolicy.RELIABLE
    mixed = offered_qos_for("/tf_static") + offered_qos_for("/x")  # publishers disagreed: permissive choice
    assert recorded_qos(mixed, "/t").durability == DurabilityPolicy.VOLATILE
    with pytest.raises(ValueError, match="not a message type"):
        message_class("sensor_msgs/Image")


def test_large_data_profile_is_opt_out_and_respects_user_choice(tmp_path):
    from g3r_ros.ros.player import apply_large_data_profile

    env = {}
    path = apply_large_data_profile(env, segment_mb=8)
    assert env["FASTDDS_DEFAULT_PROFILES_FILE"] == str(path)
    assert "<segment_size>8388608</segment_size>" in path.read_text()
    assert apply_large_data_profile({"FASTRTPS_DEFAULT_PROFILES_FILE": "/mine.xml"}) is None
    assert apply_large_data_profile({"G3R_DDS_PROFILE": "0"}) is None
    assert apply_large_data_profile({"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}) is None


class _FakeClock:
    """Simulated time for BagPlayer.wait_for_subscribers: ``wait`` advances it instead of sleeping."""

    def __init__(self):
        self.t = 0.0

    def perf_counter(self) -> float:
        return self.t

    def wait(self, dt: float) -> bool:
        self.t += dt
        return False

    def is_set(self) -> bool:
        return False


class _FakePublisher:
    def __init__(self, clock, subscribed_at: float | None):
        self.clock, self.subscribed_at = clock, subscribed_at

    def get_subscription_count(self) -> int:
        return int(self.subscribed_at is not None and self.clock.t >= self.subscribed_at)


@pytest.mark.parametrize("subscribed_at,all_matched,waited", [
    ({"/cam": 4.0, "/lidar": 4.0, "/synth/scene": None}, False, 4.0 + 1.0 + 1.0),  # nobody needs /synth/scene
    ({"/cam": 4.0, "/lidar": 4.2}, True, 4.2 + 1.0),                                  # everything subscribed
    ({"/cam": None, "/lidar": None}, False, 30.0),                                    # no subscriber: full wait
])
def test_wait_for_subscribers_does_not_wait_for_unneeded_topics(monkeypatch, subscribed_at, all_matched, waited):
    """With a 30-s limit the player starts about 1 s after the last subscriber appeared, not after 30 s
    (simulated clock: no real waiting, no timing in the test)."""
    from g3r_ros.ros import player as player_mod

    clock = _FakeClock()
    monkeypatch.setattr(player_mod.time, "perf_counter", clock.perf_counter)
    player = player_mod.BagPlayer.__new__(player_mod.BagPlayer)
    player.publishers = {t: _FakePublisher(clock, at) for t, at in subscribed_at.items()}
    assert player.wait_for_subscribers(30.0, clock) is all_matched
    assert clock.t == pytest.approx(waited, abs=0.11)  # within two 0.05-s polls

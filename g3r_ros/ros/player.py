"""A rosbag2 player for machines without ``ros2 bag``: rosbags reads, rclpy publishes.

Messages are published as their recorded CDR bytes (``publisher.publish(raw)``), so a
subscriber receives them byte-identical. Each topic is offered with its recorded QoS
(``/tf_static`` and other transient-local topics keep every recorded message for late
joiners). Timing follows the bag's log times scaled by ``rate``; ``/clock`` carries the bag
time when enabled, so nodes with ``use_sim_time`` follow the bag.
"""

from __future__ import annotations

import importlib
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import atomic_write_text
from ..bag import bag_message_count, bag_topics, iter_bag_messages, topic_qos

LOG = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------
# DDS transport for large messages
# ---------------------------------------------------------------------------------------
# Fast DDS's default shared-memory segment is ~0.5 MB per participant: a burst of camera images
# (0.7 MB each at 640x384) and LiDAR clouds (1.6 MB at 100k points) does not fit, and
# best-effort samples are silently lost (measured: 60-90 % of 6 camera streams at 10 Hz). A
# larger segment for the *publishing* participant fixes it (measured: 0 lost). The builtin
# transports (UDP for other hosts) stay enabled.
_LARGE_DATA_XML = """<?xml version="1.0" encoding="UTF-8" ?>
<dds xmlns="http://www.eprosima.com">
  <profiles>
    <transport_descriptors>
      <transport_descriptor>
        <transport_id>g3r_shm_large</transport_id>
        <type>SHM</type>
        <segment_size>{segment}</segment_size>
        <port_queue_capacity>1024</port_queue_capacity>
      </transport_descriptor>
    </transport_descriptors>
    <participant profile_name="g3r_ros_large_data" is_default_profile="true">
      <rtps>
        <userTransports>
          <transport_id>g3r_shm_large</transport_id>
        </userTransports>
        <useBuiltinTransports>true</useBuiltinTransports>
      </rtps>
    </participant>
  </profiles>
</dds>
"""
PROFILE_ENV = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")


def apply_large_data_profile(env=None, segment_mb: int = 64) -> Path | None:
    """Point Fast DDS at a profile with a ``segment_mb`` shared-memory segment, in ``env``
    (default ``os.environ``; call before ``rclpy.init``). Does nothing, returning None, when
    the user chose a profile already, the RMW is not Fast DDS, or ``G3R_DDS_PROFILE=0``."""
    env = os.environ if env is None else env
    rmw = env.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    if env.get("G3R_DDS_PROFILE", "1") == "0" or "fast" not in rmw or any(env.get(k) for k in PROFILE_ENV):
        return None
    path = Path(tempfile.gettempdir()) / f"g3r_ros_fastdds_shm{segment_mb}mb_{os.getuid()}.xml"
    text = _LARGE_DATA_XML.format(segment=int(segment_mb) * 1024 * 1024)
    if not path.is_file() or path.read_text() != text:
        atomic_write_text(path, text)
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(path)
    return path


SUBSCRIBER_SETTLE_S = 1.0  # see BagPlayer.wait_for_subscribers
ACK_TIMEOUT_S = 10.0  # see BagPlayer.wait_for_acks


@dataclass
class PlayConfig:
    """rate: playback speed factor (> 0). clock: publish /clock at ``clock_hz`` with bag time.
    loop: replay forever (until stopped). topics: only these (None = all).
    wait_for_subscribers: seconds to wait at most, before starting, for subscribers (see
    :meth:`BagPlayer.wait_for_subscribers`; 0 = do not wait). start_delay: extra seconds to sleep
    before the first message."""

    rate: float = 1.0
    clock: bool = False
    clock_hz: float = 40.0
    loop: bool = False
    topics: list[str] | None = None
    wait_for_subscribers: float = 0.0
    start_delay: float = 0.0

    def validate(self) -> None:
        if not (self.rate > 0 and self.rate < float("inf")):
            raise ValueError(f"--rate must be > 0, got {self.rate}")
        if not self.clock_hz > 0:
            raise ValueError(f"clock rate must be > 0, got {self.clock_hz}")
        if self.wait_for_subscribers < 0 or self.start_delay < 0:
            raise ValueError("waits and delays must be >= 0")


@dataclass
class PlayStats:
    published: dict[str, int] = field(default_factory=dict)
    skipped_topics: dict[str, str] = field(default_factory=dict)
    loops: int = 0
    wall_s: float = 0.0
    bag_s: float = 0.0
    max_late_s: float = 0.0

    def as_dict(self) -> dict:
        return {"published": dict(self.published), "skipped_topics": dict(self.skipped_topics),
                "loops": self.loops, "wall_s": round(self.wall_s, 3), "bag_s": round(self.bag_s, 3),
                "max_late_s": round(self.max_late_s, 4)}


def message_class(msgtype: str):
    """``pkg/msg/Name`` → the rclpy message class (``pkg.msg.Name``); ``ValueError`` if absent."""
    parts = msgtype.split("/")
    if len(parts) != 3 or parts[1] != "msg":
        raise ValueError(f"not a message type name: {msgtype!r}")
    try:
        return getattr(importlib.import_module(f"{parts[0]}.msg"), parts[2])
    except (ImportError, AttributeError) as e:
        raise ValueError(f"message type {msgtype} is not importable here ({e})") from None


def recorded_qos(profiles: list, topic: str, message_count: int = 1):
    """rclpy ``QoSProfile`` from the offered profiles recorded for ``topic`` (rosbags ``Qos``).

    Like rosbag2: a policy is kept when every recorded publisher agreed on it, otherwise the
    permissive choice is used (volatile, best effort). Without a record: reliable, volatile,
    depth 10 (``/tf_static``: transient local). Transient-local topics get a depth that holds
    every recorded message, so late subscribers receive all of them.
    """
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    def names(attr):
        return {getattr(getattr(p, attr), "name", str(getattr(p, attr))) for p in profiles}

    if profiles:
        rel = names("reliability")
        dur = names("durability")
        reliable = rel == {"RELIABLE"}
        transient = dur == {"TRANSIENT_LOCAL"}
        depth = max((int(getattr(p, "depth", 0) or 0) for p in profiles), default=0) or 10
    else:
        reliable, transient, depth = True, topic == "/tf_static", 10
    if transient:
        depth = max(depth, int(message_count))
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if transient else DurabilityPolicy.VOLATILE,
    )


class BagPlayer:
    """Publish a bag on ``node``. Create it, then call :meth:`play` (blocking; ``stop`` ends it)."""

    def __init__(self, node, bag_path, config: PlayConfig | None = None):
        self.node = node
        self.bag_path = bag_path
        self.config = config or PlayConfig()
        self.config.validate()
        types = bag_topics(bag_path)
        wanted = list(types) if self.config.topics is None else list(self.config.topics)
        missing = [t for t in wanted if t not in types]
        if missing:
            raise ValueError(f"topic(s) {missing} are not in the bag; it has {sorted(types)}")
        qos = topic_qos(bag_path)
        self.stats = PlayStats()
        self.publishers: dict[str, object] = {}
        for topic in wanted:
            try:
                cls = message_class(types[topic])
            except ValueError as e:
                LOG.warning("not playing %s: %s", topic, e)
                self.stats.skipped_topics[topic] = str(e)
                continue
            profile = recorded_qos(qos.get(topic, []), topic, bag_message_count(bag_path, [topic]))
            self.publishers[topic] = node.create_publisher(cls, topic, profile)
            self.stats.published[topic] = 0
        if not self.publishers:
            raise ValueError(f"no playable topic in {bag_path}")
        self._clock_pub = None
        if self.config.clock:
            from rclpy.qos import QoSProfile
            from rosgraph_msgs.msg import Clock

            self._clock_cls = Clock
            self._clock_pub = node.create_publisher(Clock, "/clock", QoSProfile(depth=1))

    # -- helpers --------------------------------------------------------------------------
    def _publish_clock(self, bag_time: float) -> None:
        from builtin_interfaces.msg import Time

        ns = max(0, round(bag_time * 1e9))
        self._clock_pub.publish(self._clock_cls(clock=Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)))

    def _sleep_until(self, wall_target: float, bag_at, stop: threading.Event) -> bool:
        """Sleep until ``wall_target`` (perf_counter), ticking /clock; False when stopped."""
        period = 1.0 / self.config.clock_hz
        while True:
            if stop.is_set():
                return False
            now = time.perf_counter()
            if now >= wall_target:
                return True
            if self._clock_pub is not None:
                self._publish_clock(bag_at(now))
                stop.wait(min(period, wall_target - now))
            else:
                stop.wait(min(0.1, wall_target - now))

    def wait_for_subscribers(self, timeout: float, stop: threading.Event) -> bool:
        """Wait (at most ``timeout`` s) until the subscribers are there; True when every topic has one.

        "There" means every topic has a subscriber, or some have and no further topic gained one
        for ``SUBSCRIBER_SETTLE_S``: a node creates its subscriptions together, and topics that
        nobody subscribes (a bag's ground-truth topic, say) are not waited for. Discovery is
        asymmetric: the publisher can count a subscriber before that subscriber has matched the
        publisher, and a message sent in that gap is lost even on a reliable topic. So once
        subscribers are there, wait ``SUBSCRIBER_SETTLE_S`` more before playing."""
        deadline = time.perf_counter() + timeout
        matched: set[str] = set()
        changed = time.perf_counter()
        while time.perf_counter() < deadline and not stop.is_set():
            now = time.perf_counter()
            current = {t for t, p in self.publishers.items() if p.get_subscription_count() > 0}
            if current != matched:
                matched, changed = current, now
            if len(matched) == len(self.publishers) or (matched and now - changed >= SUBSCRIBER_SETTLE_S):
                break
            stop.wait(0.05)
        if matched:
            stop.wait(SUBSCRIBER_SETTLE_S)
        lonely = sorted(set(self.publishers) - matched)
        if lonely:
            LOG.info("playing without subscribers on %s", lonely)
        return not lonely

    # -- main loop ------------------------------------------------------------------------
    def play(self, stop: threading.Event | None = None) -> PlayStats:
        """Publish the bag (again and again with ``loop``) until done or ``stop`` is set."""
        stop = stop or threading.Event()
        cfg = self.config
        if cfg.wait_for_subscribers > 0:
            self.wait_for_subscribers(cfg.wait_for_subscribers, stop)
        if cfg.start_delay > 0:
            stop.wait(cfg.start_delay)
        topics = list(self.publishers)
        t_wall0 = time.perf_counter()
        offset = 0.0  # bag seconds already played in earlier loops
        while not stop.is_set():
            first = last = None
            for m in iter_bag_messages(self.bag_path, topics, deserialize=False):
                if first is None:
                    first = m.stamp
                    loop_wall0 = t_wall0 + offset / cfg.rate

                def bag_at(now, first=first, loop_wall0=loop_wall0):
                    return first + (now - loop_wall0) * cfg.rate

                target = loop_wall0 + (m.stamp - first) / cfg.rate
                if not self._sleep_until(target, bag_at, stop):
                    break
                self.stats.max_late_s = max(self.stats.max_late_s, time.perf_counter() - target)
                if self._clock_pub is not None:
                    self._publish_clock(m.stamp)
                self.publishers[m.topic].publish(m.rawdata)
                self.stats.published[m.topic] += 1
                last = m.stamp
            if first is None:
                LOG.warning("bag %s has no messages on %s", self.bag_path, topics)
                break
            span = (last if last is not None else first) - first
            self.stats.bag_s += span
            self.stats.loops += 1
            offset += span + 1.0 / cfg.clock_hz  # a small gap between loops keeps stamps apart in wall time
            if not cfg.loop:
                break
        self.stats.wall_s = time.perf_counter() - t_wall0
        if not stop.is_set():  # stopped early: do not hold the caller up
            self.wait_for_acks(ACK_TIMEOUT_S)
        return self.stats

    def wait_for_acks(self, timeout: float) -> bool:
        """Block until every reliable subscriber has acknowledged what was published (or ``timeout`` s).

        Without this the process can exit while the last samples still await retransmission, and a
        busy subscriber loses them even on a reliable topic. True when all were acknowledged."""
        from rclpy.duration import Duration

        deadline = time.perf_counter() + timeout
        ok = True
        for topic, pub in self.publishers.items():
            left = max(0.0, deadline - time.perf_counter())
            if not pub.wait_for_all_acked(Duration(nanoseconds=int(left * 1e9))):
                LOG.warning("%s: not every subscriber acknowledged the last messages within %.0f s", topic, timeout)
                ok = False
        return ok


def play_bag(bag, config: PlayConfig, large_data: bool = True) -> PlayStats:
    """Init rclpy, play ``bag`` until done or Ctrl-C, shut down; returns ``PlayStats``."""
    if large_data and (profile := apply_large_data_profile()) is not None:
        LOG.info("Fast DDS profile with a large shared-memory segment: %s", profile)
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    if "ROS_AUTOMATIC_DISCOVERY_RANGE" not in os.environ and "ROS_LOCALHOST_ONLY" not in os.environ:
        LOG.info("ROS_AUTOMATIC_DISCOVERY_RANGE is not set: DDS discovery uses the default range (SUBNET)")
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)  # Ctrl-C → KeyboardInterrupt, handled below
    node = rclpy.create_node("g3r_player")
    stop = threading.Event()
    try:
        player = BagPlayer(node, bag, config)
        try:
            return player.play(stop)
        except KeyboardInterrupt:
            stop.set()
            LOG.info("interrupted")
            return player.stats
    finally:
        node.destroy_node()
        rclpy.try_shutdown()

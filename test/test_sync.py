"""ApproximateTimeSynchronizer: jitter, drops, out-of-order arrival, queue bounds, threads."""

from __future__ import annotations

import random
import sys
import threading
from types import SimpleNamespace

import pytest

from g3r_ros.sync import ApproximateTimeSynchronizer


class Collector:
    def __init__(self):
        self.sets = []

    def __call__(self, *msgs):
        self.sets.append(msgs)


def stream(name, n, period, offset, jitter, seed, skip=()):
    """[(stamp, msg)] at ``offset + i*period`` ± jitter; msg = (name, i)."""
    rng = random.Random(seed)
    return [(offset + i * period + rng.uniform(-jitter, jitter), (name, i)) for i in range(n) if i not in skip]


def feed_merged(sync, streams, arrival_noise=0.0, seed=0):
    """Interleave streams by (noisy) arrival time and add every message."""
    rng = random.Random(seed)
    events = [(s + rng.uniform(0, arrival_noise), k, s, m) for k, st in enumerate(streams) for s, m in st]
    for _, k, s, m in sorted(events):
        sync.add(k, s, m)


def test_pairs_with_jitter():
    out = Collector()
    sync = ApproximateTimeSynchronizer(2, queue_size=5, slop=0.05, callback=out)
    cam = stream("cam", 50, 0.1, 0.0, 0.01, seed=1)
    lidar = stream("lidar", 50, 0.1, 0.02, 0.01, seed=2)
    feed_merged(sync, [cam, lidar])
    assert len(out.sets) == 50 and sync.stats.emitted == 50
    assert all(a[1] == b[1] and a[0] == "cam" and b[0] == "lidar" for a, b in out.sets)
    assert sync.pending() == [0, 0] and sync.stats.received == 100


def test_drops_leave_unmatched_messages_out():
    out = Collector()
    sync = ApproximateTimeSynchronizer(2, queue_size=3, slop=0.03, callback=out)
    missing = {3, 4, 10, 30}
    feed_merged(sync, [stream("cam", 40, 0.1, 0.0, 0.005, 3), stream("lidar", 40, 0.1, 0.01, 0.005, 4, missing)])
    got = [a[1] for a, _ in out.sets]
    assert got == [i for i in range(40) if i not in missing]
    assert all(a[1] == b[1] for a, b in out.sets)
    # the unmatched camera frames stayed queued until newer ones pushed them out
    assert sync.stats.dropped >= 1 and sync.stats.dropped + sync.pending()[0] == len(missing)
    assert sync.pending()[1] == 0


def test_out_of_order_arrival_gives_the_same_sets():
    cam = stream("cam", 60, 0.1, 0.0, 0.01, 5)
    lidar = stream("lidar", 60, 0.1, 0.015, 0.01, 6, skip={7, 8})
    imu = stream("imu", 60, 0.1, -0.01, 0.01, 7, skip={20})
    ref = Collector()
    feed_merged(ApproximateTimeSynchronizer(3, 10, 0.06, ref), [cam, lidar, imu])
    out = Collector()
    feed_merged(ApproximateTimeSynchronizer(3, 10, 0.06, out), [cam, lidar, imu], arrival_noise=0.35, seed=9)
    key = sorted(tuple(m[1] for m in s) for s in out.sets)
    assert key == sorted(tuple(m[1] for m in s) for s in ref.sets)
    assert all(len(set(k)) == 1 for k in key) and len(key) == 57


def test_closest_partner_wins_and_slop_is_strict():
    out = Collector()
    sync = ApproximateTimeSynchronizer(2, 10, 0.1, out)
    sync.add(1, 0.97, "far")
    sync.add(1, 1.01, "near")
    assert sync.add(0, 1.0, "a") is True
    assert out.sets == [("a", "near")] and sync.pending() == [0, 1]
    # spread == slop is not a set (message_filters compares with <); just below is
    sync.add(0, 2.0, "b")
    assert sync.add(1, 2.1, "c") is False
    assert sync.add(1, 2.0999, "d") is True and out.sets[-1] == ("b", "d")


def test_only_arrivals_complete_sets_and_all_pairs_must_agree():
    out = Collector()
    sync = ApproximateTimeSynchronizer(3, 10, 0.1, out)
    sync.add(0, 1.00, "a0")
    sync.add(1, 1.09, "b0")
    # c at 0.95 is within slop of a (0.05) but b-c spans 0.14: no set
    assert sync.add(2, 0.95, "c0") is False
    # c at 1.05 is within slop of both
    assert sync.add(2, 1.05, "c1") is True and out.sets == [("a0", "b0", "c1")]
    assert sync.pending() == [0, 0, 1]


def test_queue_bound_drops_oldest_stamp():
    out = Collector()
    sync = ApproximateTimeSynchronizer(2, 3, 0.05, out)
    for i in [5, 1, 4, 2, 3]:  # out of order: the oldest *stamps* go
        sync.add(0, float(i), i)
    assert sync.pending() == [3, 0] and sync.stats.dropped == 2
    assert sync.add(1, 1.0, "x") is False  # its partner was dropped
    assert sync.add(1, 2.0, "w") is False  # dropped too (not the first arrival, 5)
    assert sync.add(1, 3.0, "y") is True and out.sets == [(3, "y")]
    assert sync.add(1, 5.0, "z") is True and out.sets[-1] == (5, "z")
    # a message older than a full queue is dropped at once and completes nothing
    sync.add(0, 10.0, 10)
    sync.add(0, 11.0, 11)
    sync.add(0, 12.0, 12)
    assert sync.add(0, 0.5, "old") is False and sync.stats.dropped == 4
    sync.add(0, 11.0, "again")  # same stamp, same input: replaced
    assert sync.stats.replaced == 1


def test_stamps_as_time_messages_and_clear():
    out = Collector()
    sync = ApproximateTimeSynchronizer(2, 4, 0.01, out)
    sync.add(0, SimpleNamespace(sec=1_700_000_000, nanosec=5), "a")
    sync.add(1, 1_700_000_000.004, "b")
    assert out.sets == [("a", "b")]
    sync.add(0, SimpleNamespace(nanoseconds=2_000_000_000), "rclpy-time")
    assert sync.add(1, 2.005, "e") is True and out.sets[-1] == ("rclpy-time", "e")
    sync.add(0, 5.0, "c")
    sync.clear()
    assert sync.pending() == [0, 0]


def test_bad_arguments():
    with pytest.raises(ValueError, match="slop"):
        ApproximateTimeSynchronizer(2, 5, 0.0, print)
    with pytest.raises(ValueError, match="queue_size"):
        ApproximateTimeSynchronizer(2, 0, 0.1, print)
    with pytest.raises(ValueError, match="n_inputs"):
        ApproximateTimeSynchronizer(0, 5, 0.1, print)
    with pytest.raises(TypeError, match="callable"):
        ApproximateTimeSynchronizer(2, 5, 0.1, None)
    sync = ApproximateTimeSynchronizer(2, 5, 0.1, print)
    with pytest.raises(ValueError, match="index 2 out of range"):
        sync.add(2, 1.0, "x")
    with pytest.raises(ValueError, match="non-finite"):
        sync.add(0, float("nan"), "x")


def test_single_input_passes_through():
    out = Collector()
    sync = ApproximateTimeSynchronizer(1, 2, 0.1, out)
    for i in range(5):
        sync.add(0, i * 0.1, i)
    assert [s[0] for s in out.sets] == list(range(5))


def test_thread_safe_from_concurrent_callbacks():
    out = Collector()
    lock = threading.Lock()

    def cb(*msgs):
        with lock:
            out.sets.append(msgs)

    n = 2000
    sync = ApproximateTimeSynchronizer(2, n, 0.005, cb)  # no drops: every pair must come out exactly once

    def producer(k):
        for i in range(n):
            sync.add(k, i * 0.1, (k, i))

    threads = [threading.Thread(target=producer, args=(k,)) for k in range(2)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so that races would show
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert len(out.sets) == sync.stats.emitted
    assert all(a == (0, a[1]) and b == (1, a[1]) for a, b in out.sets)
    assert sync.stats.emitted == n and sync.stats.dropped == 0 and sync.pending() == [0, 0]
    assert sorted(a[1] for a, _ in out.sets) == list(range(n))

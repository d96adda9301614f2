"""Approximate-time synchronization of several message streams.

Same policy as the Python ``message_filters.ApproximateTimeSynchronizer`` of ROS 2:

- each input keeps a queue of messages keyed by stamp (a second message with the same
  stamp on the same input replaces the first), bounded by ``queue_size``: beyond it the
  message with the *oldest stamp* is dropped;
- only the arrival of a message can complete a set, and that set contains it: the other
  inputs' queued messages within ``slop`` of its stamp are tried closest-first
  (lexicographically over inputs), and the first combination whose stamps span strictly
  less than ``slop`` is emitted and removed from the queues;
- messages that never find partners stay queued until pushed out by newer ones.

Out-of-order arrival is therefore handled naturally (queues are keyed by stamp, not by
arrival). It is usable from ROS callbacks (a lock guards the queues) and from a bag
reader (call :meth:`ApproximateTimeSynchronizer.add` in log order).
"""

from __future__ import annotations

import itertools
import math
import threading
from dataclasses import dataclass


@dataclass
class SyncStats:
    """Counters: ``received`` messages, ``emitted`` sets, ``dropped`` messages pushed out of a
    full queue, ``replaced`` messages overwritten by one with the same stamp and input."""

    received: int = 0
    emitted: int = 0
    dropped: int = 0
    replaced: int = 0


def _to_ns(stamp) -> int:
    """Float seconds, a builtin_interfaces Time (sec/nanosec) or an rclpy Time → integer nanoseconds."""
    if hasattr(stamp, "sec") and hasattr(stamp, "nanosec"):
        return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
    if hasattr(stamp, "nanoseconds"):
        return int(stamp.nanoseconds)
    t = float(stamp)
    if not math.isfinite(t):
        raise ValueError(f"non-finite stamp {stamp}")
    sec = math.floor(t)
    return int(sec) * 1_000_000_000 + round((t - sec) * 1e9)


class ApproximateTimeSynchronizer:
    """Group one message per input whose stamps lie within ``slop`` seconds.

    n_inputs: number of streams (>= 1). queue_size: messages kept per input (>= 1).
    slop: seconds (> 0); a set is emitted when its stamps span strictly less than slop.
    callback: called as ``callback(msg_0, ..., msg_{n-1})`` in input order, on the thread
    that called :meth:`add`, after the internal lock is released.
    """

    def __init__(self, n_inputs: int, queue_size: int, slop: float, callback):
        if int(n_inputs) < 1:
            raise ValueError(f"n_inputs must be >= 1, got {n_inputs}")
        if int(queue_size) < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if not (math.isfinite(slop) and slop > 0):
            raise ValueError(f"slop must be a positive number of seconds, got {slop}")
        if not callable(callback):
            raise TypeError("callback must be callable")
        self.n_inputs = int(n_inputs)
        self.queue_size = int(queue_size)
        self.slop = float(slop)
        self._slop_ns = _to_ns(slop)
        self.callback = callback
        self.stats = SyncStats()
        self._queues: list[dict[int, object]] = [{} for _ in range(self.n_inputs)]
        self._lock = threading.Lock()

    def add(self, index: int, stamp, msg) -> bool:
        """Queue ``msg`` (stamp in seconds, or a builtin_interfaces Time) on input ``index``.

        Returns True when this message completed a set (the callback was then called).
        """
        if not 0 <= int(index) < self.n_inputs:
            raise ValueError(f"input index {index} out of range [0, {self.n_inputs})")
        index = int(index)
        t = _to_ns(stamp)
        with self._lock:
            self.stats.received += 1
            q = self._queues[index]
            if t in q:
                self.stats.replaced += 1
            q[t] = msg
            while len(q) > self.queue_size:
                del q[min(q)]
                self.stats.dropped += 1
            if t not in q:  # this message itself was the oldest and got dropped
                return False
            chosen = self._match(index, t)
            if chosen is None:
                return False
            msgs = [self._queues[i].pop(s) for i, s in enumerate(chosen)]
            self.stats.emitted += 1
        self.callback(*msgs)
        return True

    def _match(self, index: int, t: int) -> list[int] | None:
        """Stamps (one per input) of the first valid set containing (index, t), or None."""
        candidates = []
        for i, q in enumerate(self._queues):
            if i == index:
                candidates.append([t])
                continue
            near = sorted((abs(s - t), s) for s in q if abs(s - t) <= self._slop_ns)
            if not near:
                return None
            candidates.append([s for _, s in near])
        for combo in itertools.product(*candidates):
            if max(combo) - min(combo) < self._slop_ns:
                return list(combo)
        return None

    def pending(self) -> list[int]:
        """Number of queued messages per input."""
        with self._lock:
            return [len(q) for q in self._queues]

    def clear(self) -> None:
        """Drop every queued message (e.g. after a time jump when a bag loops)."""
        with self._lock:
            for q in self._queues:
                q.clear()

"""ROS_DOMAIN_IDs for tests that cannot cross-talk with concurrent test runs on the same machine.

Every rclpy process of the tests stays on loopback (conftest), but two test runs at once (two
checkouts, two CI jobs) would still meet on the same domain. :func:`claim_domain_id` hands out
a domain id that no other test process on this machine holds: it takes an exclusive ``flock``
on ``<tmp>/g3r_ros_test_domains/<id>.lock`` and keeps it until the process exits (the kernel
releases it even after a crash). Ids are tried from a start derived from the process id, over
1..101 (the range whose DDS ports stay below the ephemeral ports), skipping the
``ROS_DOMAIN_ID`` the test run was started with (a developer's own nodes may use it).
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

FIRST, LAST = 1, 101
_held: dict[int, int] = {}  # domain id → open lock file descriptor (kept for the process lifetime)
_AVOID = os.environ.get("ROS_DOMAIN_ID", "")


def claim_domain_id() -> int:
    """A ROS domain id held by this process only (among processes that claim ids this way)."""
    lock_dir = Path(tempfile.gettempdir()) / "g3r_ros_test_domains"
    lock_dir.mkdir(mode=0o777, exist_ok=True)
    span = LAST - FIRST + 1
    start = os.getpid() % span
    for k in range(span):
        domain = FIRST + (start + k) % span
        if domain in _held or str(domain) == _AVOID:
            continue
        fd = os.open(lock_dir / f"{domain}.lock", os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        _held[domain] = fd
        return domain
    raise RuntimeError(f"no free ROS domain id in {FIRST}..{LAST} (all held by other test processes)")

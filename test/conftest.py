"""Shared pytest configuration for g3r_ros.

- Every rclpy process started by a test stays on loopback: ``ROS_AUTOMATIC_DISCOVERY_RANGE``
  is forced to LOCALHOST at import, before any test module can import rclpy, and
  ``ROS_DOMAIN_ID`` is set to a domain no other test process on the machine holds
  (``ros_domains.claim_domain_id``; ROS test modules claim their own the same way), so
  concurrent test runs in other checkouts never cross-talk.
- The ``slow`` marker: deselect with ``-m "not slow"``.
- ``shared_data``: the KITTI odometry drive beside the repository, or a skip with the reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ros_domains import claim_domain_id  # noqa: E402 - test/ is on sys.path (rootdir conftest)

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["ROS_DOMAIN_ID"] = str(claim_domain_id())

# ../shared/data beside the repository root.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
KITTI_ODOMETRY = SHARED_DATA / "kitti-odometry-04"


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a test that takes more than a few seconds (deselect with -m 'not slow')")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ``../shared/data/kitti-odometry-04``; skips the test when it is absent."""
    if not KITTI_ODOMETRY.is_dir():
        pytest.skip(f"shared data not found at {KITTI_ODOMETRY} (expected ../shared beside the repository)")
    return KITTI_ODOMETRY


@pytest.fixture
def one_torch_thread():
    """Run a test on one torch thread: tiny ops pay more for waking a second OpenMP thread than
    they gain (severe when other processes share the 2 cores: 60 s instead of 11 s measured)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

"""``g3r bench node`` end to end: streams → reconstruct_node (over DDS, or its session in-process) → JSON.

A few seconds of small streams with the bench-only ``points`` reconstructor; checks the report's
contract (counts per topic add up, latency and RSS measured, a reconstruction ran), not speed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from ros_domains import claim_domain_id

DOMAIN_ID = claim_domain_id()  # held by this process only
SMALL = ["--seconds", "5", "--rate", "4", "--cameras", "2", "--width", "160", "--height", "96", "--points", "5000",
         "--window-seconds", "1.0", "--reconstructor", "points"]


def _bench(tmp_path, *args) -> dict:
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "g3r_ros", "bench", "node", *SMALL, *args]
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def _check_report(report: dict, transport: str) -> None:
    assert report["benchmark"] == "node" and report["transport"] == transport
    topics = report["topics"]
    assert {"/bench/cam0/image_raw", "/bench/cam1/camera_info", "/bench/lidar/points", "/tf"} <= set(topics)
    for name, t in topics.items():
        assert t["published"] > 0, name
        assert t["received"] + t["lost_in_dds"] == t["published"], (name, t)
        assert t["received"] > 0, (name, t)
    lat = report["callback_latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"]
    assert all(report["node_rss_mb"][k] > 50 for k in ("start", "middle", "end"))
    recon = report["reconstruction"]
    assert recon["windows_built"] >= 1 and recon["reconstructions"] >= 1 and recon["failed"] == 0
    assert recon["device"] == "cpu"


def test_bench_node_over_dds_reports_counts_latency_and_reconstructions(tmp_path):
    pytest.importorskip("rclpy", reason="rclpy (ros-rclpy wheels) is not installed")
    report = _bench(tmp_path, "--domain-id", str(DOMAIN_ID))
    _check_report(report, "dds")
    assert report["ros_domain_id"] == DOMAIN_ID


def test_bench_node_in_process_runs_the_streaming_session_without_dds(tmp_path):
    report = _bench(tmp_path, "--transport", "inprocess")
    _check_report(report, "inprocess")
    assert report["ros_domain_id"] is None and report["callback_drops_total"] == 0  # nothing crosses DDS

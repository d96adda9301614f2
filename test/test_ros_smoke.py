"""Two-process rclpy smoke test: a TFMessage and a PointCloud2 cross a real DDS link.

One process publishes, another subscribes and decodes with ``g3r_ros.messages``; this test
checks what the subscriber decoded. Both run with ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``
(no traffic off loopback), a ROS_DOMAIN_ID held by this test process only and unique topic names, so concurrent
runs on one machine cannot cross-talk. Every wait is bounded.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from ros_domains import claim_domain_id

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("rclpy", "sensor_msgs", "tf2_msgs")),
    reason="rclpy, sensor_msgs or tf2_msgs is not importable (install the ROS 2 wheels: make setup)",
)

N_POINTS = 100
STAMP = (1_700_000_000, 123_456_789)
TRANSLATION = (1.5, -2.0, 0.25)
YAW = math.pi / 2

NODE_SCRIPT = r'''
import json, math, sys, threading, time
import numpy as np
import rclpy
from geometry_msgs.msg import TransformStamped
from sensor_msgs.msg import PointCloud2, PointField
from tf2_msgs.msg import TFMessage

role, prefix, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
N, STAMP, TRANS, YAW = %(n)d, %(stamp)r, %(trans)r, %(yaw)r


def cloud():
    i = np.arange(N)
    dt = np.dtype({"names": ["x", "y", "z", "intensity", "ring"], "formats": ["<f4"] * 4 + ["<u2"],
                   "offsets": [0, 4, 8, 16, 20], "itemsize": 24})  # 12..16 and 22..24: padding
    pts = np.zeros(N, dt)
    pts["x"], pts["y"], pts["z"] = i * 0.5, -i, np.sin(i)
    pts["intensity"], pts["ring"] = i / N, i %% 32
    pts["x"][7] = np.nan
    msg = PointCloud2(height=1, width=N, point_step=24, row_step=24 * N, is_bigendian=False, is_dense=False,
                      data=pts.tobytes())
    msg.fields = [PointField(name=n, offset=o, datatype=7, count=1) for n, o in zip("xyz", (0, 4, 8))]
    msg.fields += [PointField(name="intensity", offset=16, datatype=7, count=1),
                   PointField(name="ring", offset=20, datatype=4, count=1)]
    msg.header.frame_id = "velodyne"
    msg.header.stamp.sec, msg.header.stamp.nanosec = STAMP
    return msg


def tf():
    t = TransformStamped()
    t.header.frame_id, t.child_frame_id = "/map", "velodyne"
    t.header.stamp.sec, t.header.stamp.nanosec = STAMP
    t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = TRANS
    t.transform.rotation.z, t.transform.rotation.w = math.sin(YAW / 2), math.cos(YAW / 2)
    return TFMessage(transforms=[t])


rclpy.init()
node = rclpy.create_node("g3r_smoke_" + role)
deadline = time.monotonic() + timeout
if role == "pub":
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    tf_pub = node.create_publisher(TFMessage, prefix + "/tf", 10)
    pc_pub = node.create_publisher(PointCloud2, prefix + "/points", 10)
    sent = 0
    while not stop.is_set() and time.monotonic() < deadline:
        if tf_pub.get_subscription_count() and pc_pub.get_subscription_count():
            tf_pub.publish(tf())
            pc_pub.publish(cloud())
            sent += 1
        stop.wait(0.1)
    print(json.dumps({"sent": sent, "stopped": stop.is_set()}), flush=True)
else:
    from g3r_ros.messages import decode_pointcloud2, decode_tf_message, header_stamp, pointcloud_xyz
    got = {}
    node.create_subscription(TFMessage, prefix + "/tf", lambda m: got.setdefault("tf", m), 10)
    node.create_subscription(PointCloud2, prefix + "/points", lambda m: got.setdefault("pc", m), 10)
    while len(got) < 2 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    out = {"received": sorted(got)}
    if "tf" in got:
        out["tf"] = [dict(parent=r.parent, child=r.child, stamp=r.stamp, T=r.T.tolist())
                     for r in decode_tf_message(got["tf"], strict=True)]
    if "pc" in got:
        pc = got["pc"]
        out["pc"] = dict(frame_id=pc.header.frame_id, stamp=header_stamp(pc), is_dense=bool(pc.is_dense),
                         xyzi=pointcloud_xyz(pc, with_intensity=True).tolist(),
                         ring=decode_pointcloud2(pc)["ring"].tolist(), data_type=type(pc.data).__name__)
    print(json.dumps(out), flush=True)
node.destroy_node()
rclpy.try_shutdown()
'''


def _env(domain_id: int) -> dict:
    env = dict(os.environ)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"  # never multicast onto the network
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def _expected_cloud():
    i = np.arange(N_POINTS)
    xyzi = np.stack([i * 0.5, -i, np.sin(i), i / N_POINTS], 1).astype(np.float32)
    keep = i != 7
    return xyzi[keep], (i % 32)


@pytest.mark.timeout(120)
def test_two_process_tf_and_pointcloud(tmp_path):
    script = tmp_path / "smoke_node.py"
    script.write_text(NODE_SCRIPT % {"n": N_POINTS, "stamp": STAMP, "trans": TRANSLATION, "yaw": YAW})
    domain = claim_domain_id()
    prefix = f"/g3r_smoke_{uuid.uuid4().hex[:12]}"
    env = _env(domain)
    common = {"env": env, "cwd": str(tmp_path), "stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    sub = subprocess.Popen([sys.executable, str(script), "sub", prefix, "45"], **common)
    pub = subprocess.Popen([sys.executable, str(script), "pub", prefix, "60"], stdin=subprocess.PIPE, **common)
    try:
        sub_out, sub_err = sub.communicate(timeout=75)
        pub_out, pub_err = pub.communicate(input="", timeout=20)  # closing stdin stops the publisher
    finally:
        for p in (sub, pub):
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
    assert sub.returncode == 0, f"subscriber failed:\n{sub_err[-3000:]}"
    assert pub.returncode == 0, f"publisher failed:\n{pub_err[-3000:]}"
    result = json.loads(sub_out.strip().splitlines()[-1])
    pub_result = json.loads(pub_out.strip().splitlines()[-1])
    assert result["received"] == ["pc", "tf"], f"subscriber timed out; got {result['received']} (pub: {pub_result})"
    assert pub_result["sent"] >= 1 and pub_result["stopped"]

    stamp = STAMP[0] + STAMP[1] * 1e-9
    (rec,) = result["tf"]
    assert (rec["parent"], rec["child"]) == ("map", "velodyne") and rec["stamp"] == pytest.approx(stamp, abs=1e-6)
    T = np.array(rec["T"])
    np.testing.assert_allclose(T[:3, 3], TRANSLATION)
    np.testing.assert_allclose(T[:3, :3], [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-12)

    pc = result["pc"]
    assert pc["frame_id"] == "velodyne" and pc["stamp"] == pytest.approx(stamp, abs=1e-6) and not pc["is_dense"]
    assert pc["data_type"] == "array"  # rclpy hands over array.array, decoded without copies to bytes
    xyzi, ring = _expected_cloud()
    np.testing.assert_array_equal(np.array(pc["xyzi"], np.float32), xyzi)
    assert pc["ring"] == ring.tolist()

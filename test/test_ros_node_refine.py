"""Anytime maps in reconstruct_node (real rclpy processes): ``~/gaussian_map`` right after the
reconstruction, then again while refining and at the end; ``~/status`` shows the stage.

The node runs the refinable stand-in test double (``toy_drive.make_refinable_stand_in``: one
Gaussian per LiDAR point) in place of G3R, and the real per-scene refinement
(``g3r_ros.refine``) for a few seconds on one short window.
"""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

pytest.importorskip("rclpy", reason="rclpy (ros-rclpy wheels) is not installed")
pytest.importorskip("tf2_msgs.msg", reason="tf2_msgs is not built (tools/build_tf2_msgs.sh)")

from test_node import Probe, _stop, node_params, ros_env  # noqa: E402 - after the skips
from toy_drive import write_drive_bag  # noqa: E402

from g3r_ros.ros import params  # noqa: E402

REFINE = {"reconstruction.implementation": "toy_drive:make_refinable_stand_in", "refine.seconds": 3.0,
          "refine.publish_every_s": 0.01, "cameras": ["/cam/image_raw"], "window.seconds": 10.0,
          "window.flush_on_idle_s": 1.0, "novel_view.lateral_offsets": [1.0], "status_period": 1.0}


@pytest.fixture(scope="module")
def refining_node(tmp_path_factory):
    """A 1.2-s bag (one window, closed by the idle flush) into a node that refines each map for 3 s."""
    tmp = tmp_path_factory.mktemp("refine")
    write_drive_bag(tmp / "drive", frames=12, bad_input=False)
    path = params.write_params_file(tmp / "params.yaml", node_params(tmp, **REFINE))
    probe = Probe()
    node = subprocess.Popen([sys.executable, "-m", "g3r_ros.ros.node", "--ros-args", "--params-file", str(path)],
                            cwd=tmp, env=ros_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    info = {"tmp": tmp, "probe": probe, "node": node}
    try:
        probe.wait(lambda: probe.status or node.poll() is not None, 60, "the node's first ~/status")
        assert node.poll() is None, node.communicate()[1][-3000:]
        player = subprocess.run([sys.executable, "-m", "g3r_ros", "play", str(tmp / "drive"),
                                 "--wait-for-subscribers", "30"], cwd=tmp, env=ros_env(), capture_output=True,
                                text=True, timeout=120, check=False)
        assert player.returncode == 0, player.stderr[-3000:]
        yield info
    finally:
        info.setdefault("exit", _stop(node))
        probe.close()


def stages(probe) -> list[str]:
    """The stages of the received statuses, repeats collapsed."""
    from g3r_ros.ros.convert import diagnostic_values

    with probe.lock:
        seq = [diagnostic_values(m)["g3r_ros: reconstruction"]["stage"] for m in probe.status]
    return [s for i, s in enumerate(seq) if i == 0 or s != seq[i - 1]]


def test_map_is_published_after_g3r_and_again_while_and_after_refining(refining_node):
    from g3r_ros.ros.convert import pointcloud2_to_structured

    probe = refining_node["probe"]
    probe.wait(lambda: "idle" in stages(probe)[stages(probe).index("refine"):] if "refine" in stages(probe)
               else False, 120, "refinement to start and end")
    # the stage went g3r -> refine -> idle, each change published as it happened
    seq = stages(probe)
    assert seq[-3:] == ["g3r", "refine", "idle"], seq
    recon = probe.latest_status()["g3r_ros: reconstruction"]  # strings (DiagnosticStatus values)
    n = {k: float(recon[k]) for k in ("reconstructions", "refinements", "refinements_failed", "refine_s",
                                       "map_revision", "refine_publishes", "refine_psnr_start", "refine_psnr_best")}
    assert n["reconstructions"] == 1 and n["refinements"] == 1 and recon["refine_stop"] == "seconds"
    assert n["refine_s"] >= 3.0 and n["map_revision"] >= 1 and n["refinements_failed"] == 0
    assert n["refine_psnr_best"] >= n["refine_psnr_start"] and math.isfinite(n["refine_psnr_start"])
    assert n["refine_publishes"] == n["map_revision"] >= 2  # at least one while refining, and the end
    probe.wait(lambda: len(probe.maps) >= 2, 30, "a second ~/gaussian_map")
    with probe.lock:
        maps = list(probe.maps)
    # one window: every map is stamped with its last keyframe; the same Gaussians, refined
    assert len({(m.header.stamp.sec, m.header.stamp.nanosec) for m in maps}) == 1
    assert len({m.width for m in maps}) == 1 and maps[0].width > 100
    first, last = (pointcloud2_to_structured(m) for m in (maps[0], maps[-1]))
    assert (first["rgb"] != last["rgb"]).any()  # refinement changed the colours


def test_save_map_writes_the_newest_refined_map(refining_node):
    from g3r_ros.export import read_ply

    probe = refining_node["probe"]
    probe.wait(lambda: stages(probe)[-1:] == ["idle"] and probe.latest_status()["g3r_ros: reconstruction"]
               ["refinements"] == "1", 120, "the end of refinement")
    r = probe.call_trigger("save_map")
    assert r.success, r.message
    probe.wait(lambda: any("saved map 1 revision" in m.msg for m in probe.rosout), 30, "the save_map log line")
    with probe.lock:
        line = next(m.msg for m in probe.rosout if "saved map 1 revision" in m.msg)
    assert int(line.split("revision")[1].split()[0]) >= 1, line  # a refined map, not G3R's (revision 0)
    assert len(read_ply(r.message).means) > 100


@pytest.mark.parametrize("name", ["refine.seconds", "refine.publish_every_s"])
def test_negative_refine_parameters_are_refused(name, tmp_path):
    with pytest.raises(ValueError, match=f"'{name}' must be >= 0"):
        params.node_config_from_params({name: -1.0, "reconstruction.implementation": "stand:in"})
    path = params.write_params_file(tmp_path / "p.yaml", node_params(tmp_path, **{name: -5.0}))
    r = subprocess.run([sys.executable, "-m", "g3r_ros.ros.node", "--ros-args", "--params-file", str(path)],
                       cwd=tmp_path, env=ros_env(), capture_output=True, text=True, timeout=90, check=False)
    assert r.returncode == 2 and f"'{name}' must be >= 0" in r.stderr, r.stderr[-2000:]

"""``g3r demo`` stage 4 (``g3r_ros.ros.demo.run_ros_demo``) on a tiny synthetic bag.

The real path (node process, ``g3r play --clock``, probe, the idle flush, ``~/render_pose``,
``~/save_map``, SIGINT) with a tiny untrained G3R model, 2 steps and a small init budget, so
it runs in well under a minute; the shipped-model quality is the slow test in test_node.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from ros_domains import claim_domain_id

pytest.importorskip("rclpy", reason="rclpy (ros-rclpy wheels) is not installed")
pytest.importorskip("tf2_msgs.msg", reason="tf2_msgs is not built (tools/build_tf2_msgs.sh)")

DOMAIN_ID = claim_domain_id()  # held by this process only
TINY_NET = {"channels": [8, 16], "time_embed_dim": 16, "point_channels": 8, "head_channels": 16}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    from g3r_ros.config import from_dict
    from g3r_ros.model import COMPONENT_KINDS, G3RModel, save_model
    from g3r_ros.net import NetSetConfig
    from g3r_ros.synthetic import SynthConfig, generate_drive

    tmp = tmp_path_factory.mktemp("ros_demo")
    generate_drive(tmp / "bag", 7, SynthConfig(frames=4, width=64, height=40, actors=1, supersample=1),
                   progress=False)
    torch.manual_seed(0)
    save_model(G3RModel(from_dict(NetSetConfig, {k: TINY_NET for k in COMPONENT_KINDS})), tmp / "tiny.pt")
    settings = tmp / "settings.yaml"
    settings.write_text(yaml.safe_dump({
        "init": {"max_points": 1500, "actor_max_points": 150, "distant": {"n_lat": 4, "n_lon": 32}},
        "reconstruct": {"view_chunk": 2}}))
    params = {"reconstruction.settings_file": str(settings), "reconstruction.turbo": False,
              "reconstruction.steps": 2, "reconstruction.device": "cpu", "reconstruction.threads": 1,
              "window.keyframe_seconds": 0.0, "window.held_out_every": 2, "novel_view.max_per_window": 2}
    return {"tmp": tmp, "bag": tmp / "bag", "model": tmp / "tiny.pt", "params": params}


def test_ros_demo_on_a_tiny_bag(tiny):
    from g3r_ros.export import read_ply
    from g3r_ros.ros.demo import run_ros_demo

    out = tiny["tmp"] / "ros"
    r = run_ros_demo(tiny["bag"], out, model_path=tiny["model"], timeout_s=300, params=tiny["params"],
                     domain_id=DOMAIN_ID)
    assert r["untrained_model"] is False and r["model"] == str(tiny["model"].resolve())
    assert r["node_exit_code"] == 0, Path(r["node_log"]).read_text()[-3000:]
    # every message arrives: the player waits for the subscribers' acknowledgements before it exits
    assert all(m["in_bag"] == 4 and m["received"] == 4 for m in r["messages"].values()), r["messages"]
    # the map on ~/gaussian_map, saved by ~/save_map (and again on SIGINT)
    status = r["node_status"]
    recon = status["g3r_ros: reconstruction"]
    assert recon["reconstructions"] == 1 and recon["failed"] == 0 and recon["device"] == "cpu"
    # reconstruction.threads = 1: on a CPU shared with another torch process, 2 OpenMP threads made this
    # tiny reconstruction take 50-170 s instead of 0.4 s (threads waiting at barriers for a descheduled peer)
    assert recon["torch_threads"] == 1
    assert status["g3r_ros: window"]["windows_built"] == 1  # one window: the whole bag
    assert r["map_gaussians_received"] > 100
    ply = Path(r["map_ply"])
    assert ply.parent == out.resolve() and len(read_ply(ply)) == r["map_gaussians_received"]
    assert status["g3r_ros: outputs"]["last_saved_map"] == str(ply)
    assert Path(r["map_ply_on_shutdown"]).is_file()
    # the novel view: a held-out keyframe (4 keyframes, every 2nd held out) shifted 2 m, vs the exact truth
    nv = r["novel_view"]
    assert nv["keyframe_held_out"] and nv["keyframe_index"] in (1, 3) and nv["lane_shift_m"] == 2.0
    assert nv["size"] == [64, 40]
    assert status["g3r_ros: outputs"]["render_requests_served"] >= 1
    for key in ("png", "received_png", "truth_png"):
        assert Path(nv[key]).is_file()
    # a wrong pose convention, frame or intrinsics puts structure in the wrong place: no better than a flat image
    assert np.isfinite(nv["psnr_db"]) and nv["psnr_db"] > nv["psnr_mean_colour_db"] + 1.0, nv
    assert {"node_start", "play", "play_end_to_map", "novel_view_request_to_image", "save_map",
            "total"} <= set(r["timings_s"])


def test_ros_demo_reports_a_node_that_fails_to_start(tiny):
    from g3r_ros.ros.demo import RosDemoError, run_ros_demo

    out = tiny["tmp"] / "bad"
    with pytest.raises(RosDemoError, match="'window.seconds' must be > 0"):
        run_ros_demo(tiny["bag"], out, model_path=tiny["model"], timeout_s=120,
                     params={**tiny["params"], "window.seconds": -1.0}, domain_id=DOMAIN_ID)
    with pytest.raises(FileNotFoundError, match="model file not found"):
        run_ros_demo(tiny["bag"], out, model_path=tiny["tmp"] / "missing.pt", domain_id=DOMAIN_ID)

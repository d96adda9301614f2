"""``g3r bench sim`` end to end on small data: the real KITTI window (map given), a tiny synthetic
scene with a tiny untrained model, and the pose-stream speed figures."""

from __future__ import annotations

import argparse
import json

import pytest
from surface_scenes import plane_scene
from test_bench_reconstruct import DATA, tiny_model, tiny_train_config

from g3r_ros.benchmarks import sim as bench


@pytest.mark.slow
def test_bench_sim_prints_the_headline_figures(tmp_path, capsys):
    if not (DATA / "poses.txt").exists():
        pytest.skip(f"KITTI odometry data not found at {DATA}")
    from g3r_ros.export import write_ply

    cfg = tiny_train_config(tmp_path)
    ply = write_ply(tmp_path / "map.ply", plane_scene(spacing=0.5, extent=20.0))  # a stand-in map: the pipeline
    args = argparse.Namespace(kitti="auto", kitti_frames="0:12", map=str(ply), model=str(tiny_model(tmp_path / "m.pt")),
                              synth_seeds="3000", config=str(cfg), speed_poses=2, device="cpu",
                              out=str(tmp_path / "out"), figure=str(tmp_path / "fig.png"),
                              synth_figure=str(tmp_path / "synth.png"), quiet=True)
    assert bench.run(args) == 0
    s = json.loads(capsys.readouterr().out)
    for key in ("real.lidar_median_abs_error_m", "real.lidar_within_0_5m", "real.depth_median_rel_error",
                "camera_hz_306x92", "camera_hz_1226x370", "camera_lidar_hz_306x92", "camera_lidar_hz_1226x370"):
        assert isinstance(s[key], float), key
    assert 0 <= s["real.lidar_within_0_5m"] <= 1 and s["camera_hz_306x92"] > 0
    real = s["real"]
    assert real["held_out_frames"] == [5, 11] and real["beams"]["name"] == "kitti64" and real["map"] == str(ply)
    assert set(real["lidar_within_0_5m_by_range"]) == {"0-10m", "10-20m", "20-40m", "40-200m"}
    assert 0 <= real["lidar_drop_rate"] <= 1 and 0 <= real["lidar_ghost_rate"] <= 1
    assert real["init_only"]["median_abs_error_m"] is not None
    assert set(s["targets"]) == {"real.lidar_median_abs_error_m<=0.2", "real.lidar_within_0_5m>=0.85",
                                 "real.depth_median_rel_error<=0.05", "camera_hz_306x92>=10"}
    assert set(s["speed"]) == {"306x92", "306x92_lidar", "306x92_no_depth", "1226x370", "1226x370_lidar",
                               "1226x370_no_depth"}
    assert all(v["poses"] == 2 and v["poses_dropped"] == 0 for v in s["speed"].values())
    (syn,) = s["synthetic"]
    assert syn["seed"] == 3000 and syn["beams"] == "synth" and syn["lidar"] and syn["depth"]
    assert syn["lidar"][0]["ghost_rate"] is not None
    assert (tmp_path / "fig.png").is_file() and (tmp_path / "out" / "sim_lidar_kitti.png").is_file()
    assert (tmp_path / "synth.png").is_file()
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["camera_hz_306x92"] == s["camera_hz_306x92"]


def test_bench_sim_refuses_training_seeds(tmp_path):
    args = argparse.Namespace(kitti="none", kitti_frames="0:12", map=None, model=None, synth_seeds="1000",
                              config=None, speed_poses=2, device="cpu", out=str(tmp_path), figure=None, quiet=True)
    with pytest.raises(ValueError, match="overlap"):
        bench.run(args)

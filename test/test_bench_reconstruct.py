"""``g3r bench reconstruct`` end to end on tiny data, and its real (KITTI) window."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import yaml

from g3r_ros.benchmarks import reconstruct as bench
from g3r_ros.model import G3RModel, save_model
from g3r_ros.net import NetSetConfig

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kitti-odometry-04"
TINY_NET = {"channels": [8, 16], "time_embed_dim": 16, "point_channels": 8, "head_channels": 16}
SPLIT = {"sequence": "kitti-odometry-04", "benchmark_frames": [0, 12], "val_frames": [39, 51],
         "train_frames": [14, 37]}


def tiny_model(path: Path) -> Path:
    from g3r_ros.config import from_dict

    model = G3RModel(from_dict(NetSetConfig, {k: TINY_NET for k in ("background", "actor", "distant")}))
    save_model(model, path, extra={"iterations": 0, "real_split": json.dumps(SPLIT)})
    return path


def tiny_train_config(tmp_path: Path) -> Path:
    """A training config with tiny synthetic scenes (4 frames of 48x32) and init budgets."""
    cfg = {"data": {"synth_train_seeds": [1000, 1001], "synth_val_seeds": [2000, 2001],
                    "synth": {"frames": 4, "width": 48, "height": 32, "cameras": 1, "actors": 1, "supersample": 1},
                    "window": {"held_out_every": 4, "max_points": 20000}, "cache_dir": str(tmp_path / "cache")},
           "init": {"max_points": 500, "actor_max_points": 60, "distant": {"n_lat": 4, "n_lon": 16},
                    "blind_spots": {"max_points": 100}}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path / "cfg.yaml"


@pytest.mark.slow
def test_benchmark_runs_and_writes_the_readme_section(tmp_path, capsys):
    tiny_train_config(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{bench.START}\nold\n{bench.END}\n\ntail\n")
    args = argparse.Namespace(scenes=1, seed_start=3000, rig_seed=-1, config=str(tmp_path / "cfg.yaml"),
                              model=str(tiny_model(tmp_path / "m.pt")), device="cpu", steps=2, baseline_factor=2.0,
                              kitti="none", kitti_frames="0:12", out=str(tmp_path / "out"), readme=str(readme),
                              quiet=True)
    assert bench.run(args) == 0
    summary = json.loads(capsys.readouterr().out)
    scene = json.loads((tmp_path / "out" / "synth-3000.json").read_text())
    for m in ("init_only", "g3r", "g3r_turbo"):
        bands = scene[m]["heldout"]["bands"]
        assert set(bands) == {"top", "middle", "bottom"} and all(v > 0 for v in bands.values())
    assert "lane_shift" in scene["g3r"] and "g3r_minus_3dgs_10x_db" in scene
    assert summary["real"] is None and set(summary["mean"]["bands"]) == {"init_only", "g3r", "baseline_3dgs"}
    text = readme.read_text()
    assert "old" not in text and text.endswith("tail\n") and "per image band" in text and "synth-3000" in text
    assert (tmp_path / "docs" / "results" / "psnr_vs_time.png").is_file()
    assert scene["fingerprint"]["steps"] == 2 and scene["wall_s"] > 0 and summary["reused_windows"] == []

    # --resume: the window measured under the same fingerprint is reused, not measured again
    args.resume = True
    assert bench.run(args) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["reused_windows"] == ["synth-3000"]
    assert json.loads((tmp_path / "out" / "synth-3000.json").read_text())["measured_at"] == scene["measured_at"]
    assert "measured by an earlier run" in readme.read_text() and "--resume" in readme.read_text()


def test_resume_reuses_only_rows_of_the_same_fingerprint(tmp_path):
    fp = {"model_sha256": "ab", "steps": 24, "baseline_factor": 10.0, "refine": True, "device": "cpu",
          "torch_threads": 2, "g3r_ros_version": "0.1.0"}
    row = tmp_path / "w.json"
    row.write_text(json.dumps({"fingerprint": fp, "g3r": {}}))
    assert bench.reusable_row(row, fp) == {"fingerprint": fp, "g3r": {}}
    assert bench.reusable_row(row, {**fp, "steps": 12}) is None
    assert bench.reusable_row(row, {**fp, "model_sha256": "cd"}) is None
    row.write_text('{"fingerprint": ')  # cut short by a crash
    assert bench.reusable_row(row, fp) is None
    assert bench.reusable_row(tmp_path / "missing.json", fp) is None


def test_benchmark_refuses_seeds_the_model_trained_on(tmp_path):
    args = argparse.Namespace(scenes=1, seed_start=1000, rig_seed=-1, config=None, model=None, device="cpu",
                              steps=2, baseline_factor=2.0, kitti="none", kitti_frames="0:12", out=str(tmp_path),
                              readme=None, quiet=True)
    with pytest.raises(ValueError, match="overlap"):
        bench.run(args)


def test_real_window_is_left_only_with_right_camera_stereo_views():
    if not (DATA / "poses.txt").exists():
        pytest.skip(f"KITTI odometry data not found at {DATA}")
    args = argparse.Namespace(kitti="auto", kitti_frames="0:6")
    window, stereo = bench._kitti_window(args, SPLIT)
    assert {k.camera_name for k in window.keyframes} == {"camera_color_left"} and len(window.keyframes) == 6
    assert [k.index for k in window.keyframes] == list(range(6))
    sources = {k.stamp for k in window.source_keyframes}
    assert {k.camera_name for k in stereo} == {"camera_color_right"} and {k.stamp for k in stereo} == sources
    assert all(k.held_out for k in stereo)
    right, left = stereo[0].camera.center, window.source_keyframes[0].camera.center
    assert 0.5 < float(((right - left) ** 2).sum() ** 0.5) < 0.58  # the 0.54 m stereo baseline
    with pytest.raises(ValueError, match="train_frames"):
        bench._kitti_window(argparse.Namespace(kitti="auto", kitti_frames="10:20"), SPLIT)


def test_anytime_margin_uses_best_so_far_curves():
    refine = ([10.0, 20.0, 40.0], [20.0, 21.0, 20.5])   # dips at 40 s: best-so-far stays 21
    base = ([1.0, 15.0, 30.0, 50.0], [15.0, 19.0, 21.5, 22.0])
    # at 10: 20-15=5; 15: 20-19=1; 20: 21-19=2; 30: 21-21.5=-0.5; 40: 21-21.5; 50 is past the end
    assert bench.anytime_margin(refine, base, 10.0, 45.0) == pytest.approx(-0.5)
    assert bench.anytime_margin(refine, base, 10.0, 25.0) == pytest.approx(1.0)
    assert bench.anytime_margin(([5.0], [None]), base, 10.0, 20.0) is None

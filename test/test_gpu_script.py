"""CPU dry run of tools/gpu_train.sh (the one-shot GPU script): both modes, tiny data made here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from g3r_ros.config import from_dict
from g3r_ros.train import DataConfig, synth_bag
from g3r_ros.window_builder import WindowConfig, window_from_bag

ROOT = Path(__file__).resolve().parents[1]
TINY_NET = {"channels": [8, 16], "time_embed_dim": 16, "point_channels": 8, "head_channels": 16}
SYNTH = {"frames": 4, "width": 48, "height": 32, "cameras": 1, "actors": 1, "supersample": 1}


@pytest.mark.slow
def test_gpu_train_script_dry_run(tmp_path):
    from g3r_ros.window_cache import save_windows

    cache_dir = tmp_path / "cache"
    data = {"synth_train_seeds": [1000, 1001], "synth_val_seeds": [2000, 2001], "synth": SYNTH,
            "window": {"held_out_every": 4, "max_points": 20000}, "cache_dir": str(cache_dir)}
    # "real" windows for the cache: two tiny synthetic drives stand in for the KITTI windows
    dc = from_dict(DataConfig, data, where="data")
    wcfg = from_dict(WindowConfig, data["window"], where="window")
    train_w = window_from_bag(synth_bag(5000, dc), wcfg)
    val_w = window_from_bag(synth_bag(5001, dc), wcfg)
    train_w.name, val_w.name = "train:stand-in", "val:stand-in"
    record = {"sequence": "stand-in", "benchmark_frames": [0, 12], "val_frames": [39, 51], "train_frames": [14, 37]}
    save_windows(tmp_path / "train_cache.npz", [train_w, val_w], meta={"real_split": record})
    save_windows(tmp_path / "full.npz", [val_w])
    cfg = {
        "data": {**data, "window_cache": str(tmp_path / "train_cache.npz"), "real_fraction": 0.5,
                 "subwindow": {"enabled": True, "span": [4, 4], "source_views": 3, "target_views": 1}},
        "init": {"max_points": 600, "actor_max_points": 80, "distant": {"n_lat": 4, "n_lon": 16},
                 "blind_spots": {"max_points": 200}},
        "net": {k: TINY_NET for k in ("background", "actor", "distant")},
        "steps": 2, "steps_start": 2, "warmup_iters": 0, "iterations": 50, "checkpoint_every": 1, "val_every": 50,
        "lr": 1e-3, "device": "cpu",
    }
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", str(ROOT / "tools" / "gpu_train.sh"), "all", str(out), "--device", "cpu",
                           "--config", str(tmp_path / "tiny.yaml"), "--iterations", "2", "--quick",
                           "--kitti-cache", str(tmp_path / "full.npz")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    check = json.loads((out / "check.json").read_text())
    assert check["parity_tests"]["rc"] == 0 and check["parity_tests"]["tests"] >= 1  # CUDA ones skip on CPU
    assert check["bench_render"]["cases"][0]["name"] == "96x64/2k"
    assert check["kitti_steps"]["steps"] == 2 and check["kitti_steps"]["heldout_psnr_g3r"] > 5
    train = json.loads((out / "train.json").read_text())
    assert train["iterations"] == 2 and train["validation"] is not None  # validated at the last iteration
    for f in ("g3r_net.pt", "g3r_net_best.pt", "train_log.jsonl", "MODEL_CARD.md"):
        assert (out / f).is_file(), f
    assert not (out / "run").exists()  # checkpoints with optimizer state stay behind
    card = (out / "MODEL_CARD.md").read_text()
    assert "stand-in" in card and "training frames 14–36" in card

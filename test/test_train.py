"""The trainer: steps warm-up, checkpoint/resume exactness, and DDP (gloo) weight sync."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from g3r_ros.train import TrainConfig, flatness_loss, load_checkpoint, load_train_config, steps_at

TINY_NET = {"channels": [8, 16], "time_embed_dim": 16, "point_channels": 8, "head_channels": 16}


def tiny_config(tmp_path: Path, cache: Path, iterations=3) -> Path:
    cfg = {
        "data": {
            "synth_train_seeds": [1000, 1002], "synth_val_seeds": [2000, 2001],
            "synth": {"frames": 4, "width": 48, "height": 32, "cameras": 1, "actors": 1, "supersample": 1},
            "window": {"held_out_every": 4, "max_points": 20000}, "cache_dir": str(cache),
        },
        "init": {"max_points": 600, "actor_max_points": 80, "distant": {"n_lat": 4, "n_lon": 16}},
        "net": {k: TINY_NET for k in ("background", "actor", "distant")},
        "steps": 3, "steps_start": 2, "warmup_iters": 2, "iterations": iterations,
        "checkpoint_every": 1, "val_every": 2, "lr": 1e-3, "device": "cpu",
    }
    path = tmp_path / "train_tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def test_shipped_configs_load():
    root = Path(__file__).resolve().parents[1] / "config"
    for name in ("train_cpu.yaml", "train_gpu.yaml"):
        cfg = load_train_config(root / name)
        assert cfg.steps == 24 and cfg.lr > 0
    small = load_train_config(root / "train_cpu.yaml")
    assert small.data.synth["width"] * small.data.synth["height"] <= 160 * 96
    assert small.init["max_points"] <= 30000


def test_warmup_of_the_step_count():
    cfg = TrainConfig(steps=24, steps_start=4, warmup_iters=100)
    assert steps_at(cfg, 0) == 4 and steps_at(cfg, 50) == 14 and steps_at(cfg, 100) == 24 and steps_at(cfg, 500) == 24


def test_flatness_pushes_only_the_smallest_scale_above_eps():
    ls = torch.log(torch.tensor([[0.5, 0.5, 0.01], [0.5, 0.5, 0.3]]))
    assert float(flatness_loss(ls, 0.02)) == pytest.approx((0.3 - 0.02) / 2)


def _run(args, env=None, timeout=600):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    out = subprocess.run([sys.executable, "-m", "g3r_ros", *args], check=False, capture_output=True, text=True, env=env,
                         timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


@pytest.mark.slow
def test_resume_continues_exactly(tmp_path, cache):
    cfg = tiny_config(tmp_path, cache, iterations=3)
    _run(["train", "--config", str(cfg), "--out", str(tmp_path / "straight"), "--quiet"])
    _run(["train", "--config", str(cfg), "--out", str(tmp_path / "resumed"), "--quiet", "--iterations", "2"])
    _run(["train", "--config", str(cfg), "--out", str(tmp_path / "resumed"), "--quiet", "--resume"])
    a, _, it_a, _ = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    b, _, it_b, _ = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")
    assert it_a == it_b == 3
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), k
    logs = (tmp_path / "resumed" / "train_log.jsonl").read_text().splitlines()
    assert len(logs) == 3 and (tmp_path / "resumed" / "training_curves.png").exists()


@pytest.mark.slow
def test_ddp_two_gloo_processes_stay_in_sync(tmp_path, cache):
    cfg = tiny_config(tmp_path, cache, iterations=2)
    script = tmp_path / "ddp_check.py"
    script.write_text(textwrap.dedent(f"""
        import torch, torch.distributed as dist
        from g3r_ros.train import Trainer, load_train_config
        cfg = load_train_config({str(cfg)!r})
        cfg.val_every = 0
        t = Trainer(cfg, {str(tmp_path / 'ddp')!r}, progress=False)
        assert t.distributed and t.world == 2
        if t.rank == 0:
            torch.save(t.model.state_dict(), {str(tmp_path)!r} + "/init.pt")
        t.fit()
        torch.save(t.model.state_dict(), {str(tmp_path)!r} + f"/rank{{t.rank}}.pt")
        dist.destroy_process_group()
    """))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr",
                          "127.0.0.1", "--master_port", "29517", str(script)], check=False, capture_output=True,
                         text=True,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    init = torch.load(tmp_path / "init.pt", weights_only=True)
    for k in r0:
        assert torch.equal(r0[k], r1[k]), f"{k} differs between ranks"
    assert any(not torch.equal(r0[k], init[k]) for k in r0), "training did not change the weights"
    saved = load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")[0].state_dict()
    assert all(torch.equal(saved[k], r0[k]) for k in r0)


def test_step_reuses_its_renders_for_the_next_lifted_gradient(tmp_path, cache):
    """The gradient a training step hands to the next step equals a separate lifting pass on the
    updated states (the trainer renders the source views once per step, not twice)."""
    from g3r_ros.initialization import init_scene
    from g3r_ros.reconstruct import lift_gradients, step_size
    from g3r_ros.train import Trainer
    from g3r_ros.views import make_chunks

    cfg = load_train_config(tiny_config(tmp_path, cache))
    tr = Trainer(cfg, tmp_path / "run", progress=False)
    tr.load_data()
    w = tr.synth_windows[0]
    torch.manual_seed(0)
    scene = init_scene(w, tr.init_cfg)
    src = make_chunks(w.source_keyframes, chunk_size=4, per_stamp=scene.has_actors)
    tgt = make_chunks(w.target_keyframes, chunk_size=4, per_stamp=scene.has_actors)
    g0 = lift_gradients(tr.model, scene, src).grads
    loss, new_states, _, g1 = tr.step_module(scene, g0, 0, 3, step_size(0, 3, 1.0, 0.1), src, tgt)
    assert loss.requires_grad and g1 is not None
    ref = lift_gradients(tr.model, scene.with_states([s.detach() for s in new_states]), src).grads
    for a, b in zip(g1, ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6 * float(b.abs().max()))
    *_, none = tr.step_module(scene, g0, 2, 3, 0.1, src, tgt, lift_next=False)
    assert none is None


def test_bench_train_times_both_trainers_side_by_side(tmp_path, cache, capsys, monkeypatch):
    """``g3r bench train``: the earlier trainer (scatter convolutions, separate lifting render, earlier
    rasterizer knobs) and the current one on the same scene iteration; the knobs are restored."""
    import argparse
    import json

    from g3r_ros.benchmarks import train as bench
    from g3r_ros.render import torch_backend as tb

    knobs = (tb.TILE_SIZE, tb.K_BLOCK, tb.CHUNK_ELEMENTS)
    seen, render_torch = [], tb.render_torch

    def recording(*a, **kw):  # the knobs each render of the two trainers ran with
        seen.append((tb.TILE_SIZE, tb.K_BLOCK, tb.CHUNK_ELEMENTS))
        return render_torch(*a, **kw)

    monkeypatch.setattr(tb, "render_torch", recording)
    args = argparse.Namespace(config=str(tiny_config(tmp_path, cache)), iterations=1, first=0, steps=None,
                              out=str(tmp_path / "bench.json"))
    assert bench.run(args) == 0
    earlier = tuple(tb.PREVIOUS_KNOBS[k] for k in ("tile_size", "k_block", "chunk_elements"))
    assert seen[0] == earlier and seen[-1] == knobs and set(seen) == {earlier, knobs}
    out = json.loads(capsys.readouterr().out)
    assert out["baseline_s_per_iteration"] > 0 and out["current_s_per_iteration"] > 0
    assert json.loads((tmp_path / "bench.json").read_text())["iterations"] == out["iterations"]
    assert (tb.TILE_SIZE, tb.K_BLOCK, tb.CHUNK_ELEMENTS) == knobs

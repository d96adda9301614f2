"""``g3r reconstruct`` end to end on a tiny synthetic bag: refinement curves, plot and both
PLYs; defaults without a config; valid JSON (null, never NaN); --steps with --turbo."""

from __future__ import annotations

import json

import pytest
import torch

from g3r_ros.cli import main
from g3r_ros.config import from_dict
from g3r_ros.export import read_ply
from g3r_ros.model import COMPONENT_KINDS, G3RModel
from g3r_ros.net import NetSetConfig
from g3r_ros.offline import DEFAULT_HELD_OUT_EVERY, OfflineConfig, apply_cli_overrides, run_offline
from g3r_ros.reconstruct import ReconstructConfig
from g3r_ros.synthetic import SynthConfig, generate_drive

TINY_NET = {"channels": [8, 16], "time_embed_dim": 16, "point_channels": 8, "head_channels": 16}
SMALL = {"init": {"max_points": 1500, "actor_max_points": 150, "distant": {"n_lat": 4, "n_lon": 32}}}


def strict_json(text: str):
    def no_constants(name):
        raise AssertionError(f"invalid JSON constant {name}")

    return json.loads(text, parse_constant=no_constants)


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("synth") / "bag"
    generate_drive(path, 77, SynthConfig(frames=8, width=64, height=40, actors=1, supersample=1), progress=False)
    return path


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return G3RModel(from_dict(NetSetConfig, {k: TINY_NET for k in COMPONENT_KINDS}))


def test_refine_writes_curves_plot_and_both_maps(bag, tmp_path, tiny_model, one_torch_thread):
    out = tmp_path / "r"
    config = OfflineConfig(**SMALL, reconstruct={"steps": 2}, refine={"views_per_iter": 1})
    m = run_offline(bag, out, config=config, model=tiny_model, refine_iters=12, baseline_iters=4, progress=False)
    for name in ("map.ply", "map_g3r.ply", "psnr_vs_time.png", "compare.png", "metrics.json"):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in (out / "views").glob("0003_*")) == [
        "0003_baseline.png", "0003_g3r.png", "0003_g3r_error.png", "0003_gt.png", "0003_refined.png",
        "0003_refined_error.png"]
    metrics = strict_json((out / "metrics.json").read_text())
    curves = metrics["curves"]
    for key in ("g3r", "refine", "baseline_3dgs"):
        pts = curves[key]
        assert len(pts) >= 2 and all(len(p) == 2 for p in pts), key
        times = [t for t, _ in pts]
        assert times == sorted(times), key
    g3r_end = curves["g3r"][-1]
    # refinement continues G3R's curve: from G3R's end (wall time after its last step's callback)
    assert curves["refine"][0][1] == g3r_end[1]
    assert curves["refine"][0][0] == pytest.approx(metrics["times_s"]["g3r_total"])
    assert curves["refine"][0][0] >= g3r_end[0]
    assert curves["refine"][-1][0] == pytest.approx(metrics["times_s"]["g3r_refine_total"])
    assert curves["refine"][-1][1] == pytest.approx(metrics["refine"]["heldout_psnr"])
    assert metrics["refine"]["iterations"] == 12 and metrics["refine"]["stop_reason"] == "iters"
    assert m["refine"]["source_psnr"] > m["g3r"]["source_psnr"]
    # map.ply is the refined map, map_g3r.ply G3R's: same count, different Gaussians
    refined, g3r = read_ply(out / "map.ply"), read_ply(out / "map_g3r.ply")
    assert len(refined) == len(g3r) > 0
    assert not torch.allclose(refined.rgb, g3r.rgb)


def test_defaults_without_config_hold_out_views_and_write_what_they_claim(bag, tmp_path, tiny_model,
                                                                          one_torch_thread, caplog):
    out = tmp_path / "d"
    with caplog.at_level("INFO", logger="g3r_ros.offline"):
        m = run_offline(bag, out, config=OfflineConfig(init=SMALL["init"], reconstruct={"steps": 1}),
                        model=tiny_model, progress=False)
    assert m["window"]["held_out_views"] == 8 // DEFAULT_HELD_OUT_EVERY
    assert (out / "compare.png").is_file() and (out / "psnr_vs_time.png").is_file()
    assert (out / "views" / "0003_g3r.png").is_file()
    assert not (out / "map_g3r.ply").exists()           # no refinement: map.ply is G3R's
    claim = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("wrote "))
    for name in ("map.ply", "views/", "compare.png", "psnr_vs_time.png", "metrics.json"):
        assert name in claim
    assert m["curves"]["refine"] is None and m["curves"]["baseline_3dgs"] is None


def test_no_held_out_views_claims_no_pictures_and_writes_null(bag, tmp_path, tiny_model, one_torch_thread, caplog):
    out = tmp_path / "n"
    config = OfflineConfig(**SMALL, window={"held_out_every": 0}, reconstruct={"steps": 1})
    with caplog.at_level("INFO", logger="g3r_ros.offline"):
        run_offline(bag, out, config=config, model=tiny_model, progress=False)
    claim = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("wrote "))
    assert "compare.png" not in claim and not (out / "compare.png").exists()
    metrics = strict_json((out / "metrics.json").read_text())
    assert metrics["g3r"]["heldout_psnr"] is None and metrics["init"]["heldout_psnr"] is None


def test_cli_prints_valid_json_and_composes_steps_with_turbo(bag, tmp_path, capsys, one_torch_thread):
    cfg = tmp_path / "offline.yaml"
    cfg.write_text(json.dumps({**SMALL, "window": {"held_out_every": 0}}))   # JSON is YAML
    rc = main(["reconstruct", str(bag), "--out", str(tmp_path / "c"), "--random-model", "--steps", "2", "--turbo",
               "--config", str(cfg), "--quiet"])
    assert rc == 0
    printed = strict_json(capsys.readouterr().out)
    assert printed["g3r_heldout_psnr"] is None          # no held-out views: null, not NaN
    metrics = strict_json((tmp_path / "c" / "metrics.json").read_text())
    assert metrics["g3r"]["steps"] == 2 and metrics["g3r"]["turbo"] is True


def test_steps_and_turbo_compose():
    r = apply_cli_overrides(ReconstructConfig(), steps=5, turbo=True, device="cpu")
    assert r.turbo and r.num_steps == 5
    r = apply_cli_overrides(ReconstructConfig(), steps=5, turbo=False, device="cpu")
    assert not r.turbo and r.num_steps == 5
    r = apply_cli_overrides(ReconstructConfig(), steps=None, turbo=True, device="cpu")
    assert r.num_steps == ReconstructConfig().turbo_steps


def test_bad_refine_flags_are_clear_errors(bag, tmp_path):
    assert main(["reconstruct", str(bag), "--out", str(tmp_path / "x"), "--refine-seconds", "-1"]) == 1
    assert main(["reconstruct", str(bag), "--out", str(tmp_path / "x"), "--refine-iters", "-3"]) == 1
    assert main(["reconstruct", str(bag), "--out", str(tmp_path / "x"), "--steps", "0"]) == 1

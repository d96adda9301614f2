"""Simulated LiDAR (g3r_ros.lidar_sim): beam models, ray casting through Gaussians, KITTI .bin."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from surface_scenes import GROUND_Z, WALL_X, plane_scene, true_range

from g3r_ros.geometry import make_transform
from g3r_ros.lidar_sim import (
    BeamModel,
    CastConfig,
    beam_model,
    cast_rays,
    generic_beams,
    kitti_hdl64,
    scan_fields,
    simulate_lidar,
    synthetic_beams,
    write_kitti_bin,
)
from g3r_ros.surface import surface_map

COARSE = generic_beams(np.linspace(1.0, -20.0, 22), 1.0, 60.0, 0.5)  # 22 beams, 1 deg apart: fast


@pytest.fixture(scope="module")
def tilted_map():
    """Ground + wall of discs tilted up to 20 deg (as G3R leaves them), prepared once."""
    return surface_map(plane_scene(spacing=0.3, extent=20.0, tilt_deg=20.0))


def test_presets():
    k = kitti_hdl64()
    assert k.n_beams == 64 and k.elevations_deg[0] == 2.0 and k.elevations_deg[-1] == pytest.approx(-24.9)
    assert abs(k.beam_spacing_deg - 26.9 / 63) < 1e-9 and k.n_azimuth == 2083 and k.max_range == 120.0
    assert "HDL-64E" in k.source
    from g3r_ros.synthetic import SynthConfig, make_scene

    s = synthetic_beams()
    mount = make_scene(0, SynthConfig(frames=2)).lidar
    np.testing.assert_allclose(np.deg2rad(s.elevations_deg), mount.elevations)
    assert s.name == "synth" and s.n_beams == 64
    assert s.n_azimuth == mount.azimuth_steps and s.max_range == mount.max_range
    g = beam_model("generic", elevations_deg=[-5, 3, 0], azimuth_step_deg=0.5, max_range=50)
    assert g.elevations_deg == (3.0, 0.0, -5.0) and g.n_azimuth == 720
    assert beam_model("kitti64") == k


@pytest.mark.parametrize("kwargs,message", [
    ({"preset": "hdl32"}, "unknown LiDAR preset"),
    ({"preset": "generic"}, "needs elevation angles"),
    ({"preset": "generic", "elevations_deg": [1, 1]}, "distinct"),
    ({"preset": "generic", "elevations_deg": [80]}, "(-75, 75)"),
    ({"preset": "generic", "elevations_deg": [0], "azimuth_step_deg": 0}, "azimuth step"),
    ({"preset": "generic", "elevations_deg": [0], "max_range": -1}, "min_range < max_range"),
])
def test_bad_beam_models_are_refused(kwargs, message):
    preset = kwargs.pop("preset")
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        beam_model(preset, **kwargs)
    with pytest.raises(ValueError, match="strictly descending"):
        BeamModel("x", (0.0, 1.0), 1.0, 10.0)


def test_ranges_on_planes_match_the_geometry(tilted_map):
    """Every beam that meets the ground or the wall returns its true range; tilted discs do not
    bias it (the planes come from the neighbours' centres, not the discs' own axes)."""
    scan = simulate_lidar(tilted_map, np.eye(4), COARSE)
    truth = true_range(scan.points / scan.ranges[:, None])
    err = scan.ranges - truth
    assert len(scan) > 0.5 * scan.rays
    assert np.median(np.abs(err)) < 0.03 and np.mean(np.abs(err) < 0.2) > 0.95, np.percentile(np.abs(err), [50, 90])
    near = scan.ranges < 10
    assert np.all(np.abs(err[near]) < 0.15)
    # frames and ordering: azimuth-major, ring 0 = top beam, points = direction x range
    assert np.all(np.diff(scan.azimuth_index) >= 0) and scan.ring.min() >= 0 and scan.ring.max() < COARSE.n_beams
    el = np.degrees(np.arcsin(scan.points[:, 2] / scan.ranges))
    np.testing.assert_allclose(el, np.asarray(COARSE.elevations_deg)[scan.ring], atol=1e-3)
    wall_hits = np.abs(scan.points[:, 0] - WALL_X) < 0.1
    ground_hits = np.abs(scan.points[:, 2] - GROUND_Z) < 0.1
    assert wall_hits.sum() > 100 and ground_hits.sum() > 1000


def test_beams_that_meet_nothing_and_faint_surfaces_are_dropped():
    smap = surface_map(plane_scene(spacing=0.3, extent=20.0, wall_opacity=0.2))
    scan = simulate_lidar(smap, np.eye(4), COARSE)
    up = np.asarray(COARSE.elevations_deg)[scan.ring] > 0
    assert not up.any(), "beams above the horizon meet nothing (no wall-top, no sky)"
    def on_wall(s):  # above the ground where it meets the wall
        return (np.abs(s.points[:, 0] - WALL_X) < 0.3) & (s.points[:, 2] > GROUND_Z + 0.3)

    assert not on_wall(scan).any(), "a wall of opacity 0.2 (~0.35 accumulated) gives no return at 0.5"
    faint_ok = simulate_lidar(smap, np.eye(4), COARSE, config=CastConfig(min_opacity=0.15))
    assert on_wall(faint_ok).sum() > 50, "with a lower threshold it does"
    far = simulate_lidar(smap, make_transform(None, [0.0, 0.0, 500.0]), COARSE)
    assert len(far) == 0 and far.drop_fraction == 1.0


def test_cast_rays_moves_with_the_sensor(tilted_map):
    """A sensor 2 m further along x sees the wall 2 m closer; rays are given in its own frame."""
    dirs = np.array([[1.0, 0.0, -0.02], [1.0, 0.3, 0.0], [0.3, 0.0, -1.0]])
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    a = cast_rays(tilted_map, np.eye(4), dirs, max_range=60)
    b = cast_rays(tilted_map, make_transform(None, [2.0, 0.0, 0.0]), dirs, max_range=60)
    np.testing.assert_allclose(a.ranges[:2] - b.ranges[:2], 2.0 / dirs[:2, 0], atol=0.1)
    np.testing.assert_allclose(a.ranges, true_range(dirs), atol=0.1)
    yawed = make_transform(np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), None)  # x looks along +y
    c = cast_rays(tilted_map, yawed, np.array([[0.0, -1.0, -0.02]]) / np.hypot(1, 0.02), max_range=60)
    np.testing.assert_allclose(c.ranges, a.ranges[:1], atol=0.1)


def test_bad_inputs_are_refused(tilted_map):
    with pytest.raises(ValueError, match="finite"):
        cast_rays(tilted_map, np.full((4, 4), np.nan), np.array([[1.0, 0, 0]]), max_range=10)
    with pytest.raises(ValueError, match="non-zero"):
        cast_rays(tilted_map, np.eye(4), np.zeros((2, 3)), max_range=10)
    with pytest.raises(ValueError, match="SurfaceMap, GaussianParams"):
        simulate_lidar("map.ply", np.eye(4), COARSE)
    with pytest.raises(ValueError, match="min_opacity"):
        simulate_lidar(tilted_map, np.eye(4), COARSE, config=CastConfig(min_opacity=0.0))
    assert cast_rays(tilted_map, np.eye(4), np.zeros((0, 3)), max_range=10).ranges.shape == (0,)


def test_kitti_bin_round_trips_through_the_kitti_reader(tmp_path, tilted_map):
    from g3r_ros.kitti import read_velodyne_bin

    scan = simulate_lidar(tilted_map, np.eye(4), COARSE)
    path = write_kitti_bin(tmp_path / "scan.bin", scan.points)
    pts, refl = read_velodyne_bin(path)
    np.testing.assert_array_equal(pts, scan.points)
    assert refl.shape == (len(scan),) and not refl.any()
    fields = scan_fields(scan)
    assert fields.dtype.names == ("x", "y", "z", "range", "ring") and len(fields) == len(scan)
    with pytest.raises(ValueError, match="finite"):
        write_kitti_bin(tmp_path / "bad.bin", np.full((2, 3), np.nan))


def test_simulate_lidar_command_writes_a_kitti_bin(tmp_path, capsys, caplog):
    from g3r_ros.cli import main
    from g3r_ros.export import write_ply
    from g3r_ros.kitti import read_velodyne_bin

    ply = write_ply(tmp_path / "map.ply", plane_scene(spacing=0.4, extent=15.0))
    out = tmp_path / "scan.bin"
    assert main(["simulate-lidar", str(ply), "--pose", "0,0,0,1,0,0,0", "--preset", "generic",
                 "--elevations", "0,-4,-8,-12,-16", "--azimuth-step", "2", "--max-range", "40",
                 "--out", str(out), "--device", "cpu"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    pts, _ = read_velodyne_bin(out)
    assert info["returns"] == len(pts) > 200 and info["rays"] == 5 * 180
    r = np.linalg.norm(pts, axis=1)
    truth = true_range(pts / r[:, None])
    hit = np.isfinite(truth)  # a few returns come from the blurred edge of the 15 m ground
    assert hit.mean() > 0.95 and np.median(np.abs(r[hit] - truth[hit])) < 0.05
    assert main(["simulate-lidar", str(ply), "--pose", "0,0,0,1,0,0,0", "--out", str(tmp_path / "scan.txt")]) == 1
    assert main(["simulate-lidar", str(ply), "--pose", "0,0,0,0,0,0,0", "--out", str(out)]) == 1
    assert ".bin (KITTI) or .npy" in caplog.text and "quaternion is zero" in caplog.text


def test_actors_follow_params_at(tilted_map):
    """A map with params_at(stamp) (a reconstruction output) is cast at the requested stamp."""
    p = plane_scene(spacing=0.3, extent=20.0)

    class Moving:
        def params_at(self, stamp):
            shifted = torch.tensor([float(stamp), 0.0, 0.0])
            return type(p)(p.means + shifted, p.quats, p.log_scales, p.opacity_logits, p.rgb)

    dirs = np.array([[1.0, 0.0, 0.0]])
    assert cast_rays(Moving().params_at(0.0), np.eye(4), dirs, max_range=60).ranges[0] == pytest.approx(WALL_X, abs=0.1)
    scan = simulate_lidar(Moving(), np.eye(4), generic_beams([0.0], 5.0, 60.0), stamp=3.0)
    ahead = scan.azimuth_index == 0
    assert scan.ranges[ahead][0] == pytest.approx(WALL_X + 3.0, abs=0.1)

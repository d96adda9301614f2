"""``g3r bench synth-gap`` and its statistics (g3r_ros.benchmarks.gap_stats)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from g3r_ros.benchmarks import gap_stats as gs
from g3r_ros.benchmarks import synth_gap


def test_area_resampling():
    w = gs.area_weights(7, 3)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    img = np.arange(4 * 6 * 3, dtype=float).reshape(4, 6, 3)
    half = gs.resize_area(img, 3, 2)
    np.testing.assert_allclose(half, img.reshape(2, 2, 3, 2, 3).mean(axis=(1, 3)))
    np.testing.assert_allclose(gs.resize_area(np.full((37, 51), 0.3), 13, 5), 0.3)
    with pytest.raises(ValueError):
        gs.area_weights(0, 3)


def test_distances():
    rng = np.random.default_rng(0)
    a = rng.normal(size=5000)
    assert gs.w1(a, a) == 0.0
    assert abs(gs.w1(a, a + 0.7) - 0.7) < 1e-9
    bins = np.linspace(-5, 5, 41)
    assert gs.tv_distance(a, a, bins) == 0.0
    assert gs.tv_distance(a - 10, a + 10, np.linspace(-20, 20, 81)) == 1.0


def _power_law_image(beta: float, seed: int = 0, size: int = 128) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f = np.hypot(np.fft.fftfreq(size)[:, None], np.fft.fftfreq(size)[None, :])
    f[0, 0] = 1.0
    spec = (rng.normal(size=(size, size)) + 1j * rng.normal(size=(size, size))) * f ** (-beta)
    img = np.real(np.fft.ifft2(spec))
    return (img - img.min()) / np.ptp(img)


@pytest.mark.parametrize("beta", [0.8, 1.0, 1.3])
def test_spectrum_slope_of_power_law_noise(beta):
    """Amplitude ~ f^-beta gives power ~ f^-2beta."""
    slopes = [gs.spectrum_slope(_power_law_image(beta, s)) for s in range(4)]
    assert abs(np.mean(slopes) + 2 * beta) < 0.2


def test_noise_sigma_and_blockiness():
    rng = np.random.default_rng(1)
    flat = np.full((90, 300), 0.5)
    sigma = 3.0 / 255.0
    assert abs(gs.noise_sigma(flat + rng.normal(0, sigma, flat.shape)) - 3.0) < 0.3
    smooth = _power_law_image(1.2, 3, 256)
    img = np.clip(np.stack([smooth] * 3, axis=-1) * 255, 0, 255).astype(np.uint8)
    from g3r_ros.synthetic.photometric import jpeg_roundtrip

    y = gs.luminance(img / 255.0)
    yj = gs.luminance(jpeg_roundtrip(img, 20) / 255.0)
    assert abs(gs.blockiness(y) - 1.0) < 0.05 and gs.blockiness(yj) > 1.1


def test_lidar_ground_statistics():
    """Rings of a sensor 1.7 m high: spacings come back; range noise along the beams comes back."""
    h = 1.7
    el = -np.deg2rad(np.linspace(3.0, 15.0, 37))                  # 1/3 deg steps
    az = np.deg2rad(np.linspace(-10, 10, 200))
    E, A = np.meshgrid(el, az, indexing="ij")
    r = h / np.sin(-E)
    pts = np.stack([r * np.cos(E) * np.cos(A), r * np.cos(E) * np.sin(A), r * np.sin(E)], -1).reshape(-1, 3)
    got = gs.ground_ring_spacing(pts)
    x = h / np.tan(-el)
    for band, (lo, hi) in zip(got, gs.RING_BANDS):
        mid = 0.5 * (x[1:] + x[:-1])
        want = -np.diff(x)[(mid >= lo) & (mid < hi)]
        if len(want):
            assert abs(got[band] / np.median(want) - 1) < 0.05, band
    assert gs.road_range_residual(pts) < 1e-6
    rng = np.random.default_rng(2)
    noisy = pts * (1 + rng.normal(0, 0.03, len(pts)) / np.linalg.norm(pts, axis=1))[:, None]
    assert abs(gs.road_range_residual(noisy) - 0.03) < 0.005


def test_ordered_scan_rings():
    """A scan stored laser by laser in azimuth order, as KITTI's .bin files: rings and step back."""
    az = np.deg2rad(np.arange(-180.0, 180.0, 0.18))[::-1]
    el = np.deg2rad(np.linspace(2.0, -24.0, 8))
    pts = np.concatenate([np.stack([np.cos(e) * np.cos(az), np.cos(e) * np.sin(az), np.full_like(az, np.sin(e))], 1)
                          * 10.0 for e in el])
    n, step = gs.ordered_scan_rings(pts)
    assert n == 8 and abs(step - 0.18) < 1e-6


def test_relative_gaps_and_score():
    rel = gs.relative_gaps({"a": 1.0, "b": 0.0, "c": 100.0}, {"a": 1.0, "b": 1.0, "c": 1.0},
                           {"a": 0.0, "b": 1.0, "c": 0.0})
    assert rel == {"a": 1.0, "b": 0.5, "c": 3.0}
    assert gs.gap_score(rel) == pytest.approx(1.5)


def test_split_and_seed_rules():
    assert synth_gap.parse_frames("39-50") == list(range(39, 51))
    assert synth_gap.parse_frames("40,45") == [40, 45]
    for bad in ("0-11", "10-14", "5", "x"):
        with pytest.raises(ValueError):
            synth_gap.parse_frames(bad)
    synth_gap.check_seeds([5000, 17])
    for s in (1000, 1199, 2005, 3000, 4999):
        with pytest.raises(ValueError, match="reserved"):
            synth_gap.check_seeds([s])
    v = synth_gap.variants(["texture", "kitti_aspect"], ["add", "drop"])
    assert set(v) == {"plain", "all", "defaults", "kitti", "plain+texture", "all-texture", "plain+kitti_aspect",
                      "all+kitti_aspect"}
    assert v["all-texture"]["texture_detail"] == 0.0 and v["all"]["texture_detail"] == 1.0
    assert v["all"]["width"] == 320 and v["all+kitti_aspect"]["width"] == 306


def test_cli_synth_gap_on_the_validation_window(shared_data, tmp_path, capsys, caplog):
    from g3r_ros.cli import main

    out = tmp_path / "gap.json"
    rc = main(["bench", "synth-gap", "--kitti", str(shared_data), "--frames", "45-46", "--seeds", "5000",
               "--frames-per-seed", "1", "--features", "sensor_noise", "lidar_noise", "--modes", "add",
               "--out", str(out)])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc == json.loads(out.read_text())
    assert doc["real_frames"] == [45, 46] and doc["real"]["images"]["n"] == 4 and doc["real"]["lidar"]["n"] == 2
    v = doc["variants"]
    assert set(v) == {"plain", "all", "defaults", "kitti", "plain+sensor_noise", "plain+lidar_noise"}
    assert v["plain"]["image_gap_score"] == 1.0 and v["plain"]["lidar_gap_score"] == 1.0
    assert set(v["plain"]["image_gaps"]) == set(gs.IMAGE_STATS) and set(v["plain"]["lidar_gaps"]) == set(gs.LIDAR_STATS)
    # range noise moves the road residual towards KITTI's (about 5 cm along the beams)
    assert v["plain+lidar_noise"]["lidar_gaps"]["road_residual"] < v["plain"]["lidar_gaps"]["road_residual"]
    assert doc["features"]["lidar_noise"]["kind"] == "lidar"
    assert main(["bench", "synth-gap", "--kitti", str(shared_data), "--frames", "0-3"]) == 1
    assert "benchmark window" in caplog.text

"""The real-data split (benchmark / validation / training frames) is enforced by code, and the
window cache carries real windows intact."""

from pathlib import Path

import numpy as np
import pytest

from g3r_ros.config import config_path
from g3r_ros.real_split import RealSplit, check_benchmark_frames, range_window
from g3r_ros.train import DataConfig, TrainConfig, load_real_windows, load_train_config
from g3r_ros.window_cache import WindowCacheError, load_windows, read_header, save_windows

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kitti-odometry-04"
TIMES = DATA / "times.txt"


def test_overlapping_ranges_are_refused():
    RealSplit().validate()
    with pytest.raises(ValueError, match="overlap"):
        RealSplit(benchmark_frames=[0, 15]).validate()  # reaches into the training frames
    with pytest.raises(ValueError, match="overlap"):
        RealSplit(val_frames=[30, 45]).validate()
    with pytest.raises(ValueError, match="start < stop"):
        RealSplit(train_frames=[20, 20]).validate()
    with pytest.raises(ValueError, match="overlap"):  # the trainer checks the split before reading data
        TrainConfig(data=DataConfig(real={"benchmark_frames": [10, 20]})).validate()


def test_shipped_training_configs_keep_the_issue_split():
    for name in ("train_cpu.yaml", "train_gpu.yaml"):
        split = load_train_config(config_path(name)).data.real_split()
        assert split.benchmark_frames == [0, 12] and split.val_frames == [39, 51]
        assert 14 <= split.train_frames[0] and split.train_frames[1] <= 37


def test_benchmark_refuses_frames_a_model_saw():
    record = RealSplit().to_record()
    check_benchmark_frames([0, 12], record)
    check_benchmark_frames([0, 12], None)  # a model trained without real data
    with pytest.raises(ValueError, match="train_frames"):
        check_benchmark_frames([10, 22], record)
    with pytest.raises(ValueError, match="val_frames"):
        check_benchmark_frames([45, 50], record)


@pytest.fixture(scope="module")
def real_windows(tmp_path_factory):
    if not (DATA / "poses.txt").exists():
        pytest.skip(f"KITTI odometry data not found at {DATA} (../shared/data beside the repository)")
    cache = tmp_path_factory.mktemp("cache")
    data = DataConfig(real={"sequence": str(DATA), "train_frames": [14, 20], "val_frames": [39, 42],
                            "cache_dir": str(cache)})
    return load_real_windows(data)


def test_training_and_validation_windows_stay_inside_their_frames(real_windows):
    train, val, record = real_windows
    stamps = np.loadtxt(TIMES) + 1.0e9
    (t,), (v,) = train, val
    got_t = sorted({k.stamp for k in t.keyframes})
    np.testing.assert_allclose(got_t, stamps[14:20], atol=1e-6)  # frames 14..19, nothing else
    assert {k.camera_name for k in t.keyframes} == {"camera_color_left", "camera_color_right"}
    np.testing.assert_allclose(sorted({k.stamp for k in v.keyframes}), stamps[39:42], atol=1e-6)
    assert {k.camera_name for k in v.source_keyframes} == {"camera_color_left"}  # right views: held out only
    assert {k.camera_name for k in v.keyframes if k.camera_name.endswith("right")} and all(
        k.held_out for k in v.keyframes if k.camera_name.endswith("right"))
    assert record["train_frames"] == [14, 20] and record["sequence"] == DATA.name
    check_benchmark_frames([0, 12], record)


def test_window_cache_round_trip_and_damage(real_windows, tmp_path):
    train, val, record = real_windows
    path = save_windows(tmp_path / "c.npz", train + val, image_scale=0.5, meta={"real_split": record})
    assert read_header(path)["meta"]["real_split"] == record
    back = load_windows(path)
    assert [w.name for w in back] == [w.name for w in train + val]
    a, b = train[0], back[0]
    assert len(a.keyframes) == len(b.keyframes)
    ka, kb = a.keyframes[3], b.keyframes[3]
    assert kb.image.shape == (round(ka.image.shape[0] / 2), round(ka.image.shape[1] / 2), 3)
    np.testing.assert_allclose(kb.camera.K[0, 0], ka.camera.K[0, 0] * kb.camera.width / ka.camera.width)
    np.testing.assert_allclose(kb.camera.T_world_cam, ka.camera.T_world_cam)
    assert (kb.stamp, kb.camera_name, kb.held_out) == (ka.stamp, ka.camera_name, ka.held_out)
    np.testing.assert_allclose(b.points, a.points.astype(np.float32))
    data = DataConfig(window_cache=str(path))
    t2, v2, rec2 = load_real_windows(data)
    assert len(t2) == 1 and len(v2) == 1 and rec2 == record
    # damage: truncated, foreign, missing
    raw = path.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(WindowCacheError):
        load_windows(tmp_path / "trunc.npz")
    np.savez(tmp_path / "foreign.npz", header=np.frombuffer(b'{"format": "other"}', dtype=np.uint8))
    with pytest.raises(WindowCacheError, match="not a g3r_ros window cache"):
        load_windows(tmp_path / "foreign.npz")
    with pytest.raises(FileNotFoundError):
        load_windows(tmp_path / "missing.npz")


def test_range_window_refuses_unknown_camera_choice(real_windows):
    with pytest.raises(ValueError, match="cameras"):
        range_window(RealSplit(sequence=str(DATA)), [14, 16], cameras="stereo")

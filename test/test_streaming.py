"""g3r_ros.streaming: the ROS-free session behind reconstruct_node, fed straight from a bag.

The toy drive of ``toy_drive`` (with one bad message of each kind) goes through
``StreamingSession.offer`` as CDR bytes, as the node's raw subscriptions deliver them; the
reconstructor is the stand-in test double (one Gaussian per LiDAR point), or one that blocks
until cancelled.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time

import numpy as np
import pytest
from toy_drive import FRAMES, T0, WALL_X, LidarColourStandIn, write_drive_bag

from g3r_ros.bag import iter_bag_messages
from g3r_ros.geometry import R_BODY_OPTICAL, make_transform
from g3r_ros.streaming import StreamConfig, StreamingSession, ViewRequest, preview_window, status_levels
from g3r_ros.window_builder import WindowConfig, window_name


@pytest.fixture(scope="module")
def drive(tmp_path_factory):
    path = tmp_path_factory.mktemp("stream") / "drive"
    return path, write_drive_bag(path)


def stream_config(tmp_path, **changes) -> StreamConfig:
    window = WindowConfig(camera_topics=["/cam/image_raw", "/cam2/image_raw"], lidar_topic="/lidar/points",
                          tracks_topic=None, window_seconds=0.95, keyframe_seconds=0.0, voxel_size=0.1,
                          min_range=1.0, max_range=60.0, tf_wait_s=0.3)
    cfg = StreamConfig(window=window, inbox_size=2000, status_period=0.05, output_dir=tmp_path / "maps",
                       lateral_offsets=[-1.0, 1.0], max_offset_views=3, live_stamps=False)
    return dataclasses.replace(cfg, **changes)


class Collector:
    def __init__(self):
        self.maps, self.views, self.status = [], [], []
        self.lock = threading.Lock()

    def on_map(self, state):
        with self.lock:
            self.maps.append(state)

    def on_view(self, camera, rgb, stamp, depth):
        with self.lock:
            self.views.append((camera, rgb, stamp, depth))

    def on_status(self, values):
        with self.lock:
            self.status.append(values)


def feed(session, bag, topics=None) -> int:
    n = 0
    for m in iter_bag_messages(bag, topics, deserialize=False):
        session.offer(m.topic, m.msgtype, m.rawdata)
        n += 1
    return n


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_windows_maps_views_and_status_from_a_bag(drive, tmp_path, monkeypatch):
    bag, bad = drive
    monkeypatch.chdir(tmp_path)
    got = Collector()
    cfg = stream_config(tmp_path, output_dir="maps")  # relative: resolved once, against the working directory
    session = StreamingSession(cfg, LidarColourStandIn(), on_map=got.on_map, on_view=got.on_view,
                               on_status=got.on_status)
    assert session.output_dir == (tmp_path / "maps").resolve()
    session.start()
    try:
        feed(session, bag)
        recon = lambda: session.status_values()["g3r_ros: reconstruction"]  # noqa: E731
        wait_for(lambda: recon()["reconstructions"] >= 3, 30, "three maps")
        names = [s.window.name for s in got.maps]
        assert names[:3] == [window_name("", i, s.window.keyframes[0].stamp) for i, s in enumerate(got.maps[:3])]
        assert names[0] == f"w000_t{T0:.2f}"
        np.testing.assert_allclose(np.asarray(got.maps[0].output.params_at(None).means)[:, 0], WALL_X, atol=0.11)
        wait_for(lambda: len(got.views) >= 9, 30, "3 offset views per map")
        status = session.status_values()
        window = status["g3r_ros: window"]
        assert all(window[f"skipped:{k}"] >= v for k, v in bad.items()), window
        assert status["g3r_ros: input"]["received:/cam/image_raw"] >= FRAMES
        assert status["g3r_ros: reconstruction"]["failed"] == 0
        assert status["g3r_ros: outputs"]["offset_views_published"] >= 9
        assert status_levels(status)["g3r_ros: reconstruction"] == "ok" and got.status

        # a view request in the world frame, answered with the request's reply stamp
        T_world_optical = make_transform(R_BODY_OPTICAL, [0.5, 0.0, 1.5])  # facing the wall
        session.request_view(ViewRequest("map", T_world_optical, 0.0, reply_stamp="request-7"))
        wait_for(lambda: any(v[2] == "request-7" for v in got.views), 30, "the requested view")
        rgb, depth = next((v[1], v[3]) for v in got.views if v[2] == "request-7")
        assert rgb.dtype == np.uint8 and (rgb.max(axis=2) > 10).mean() > 0.25
        # depth: metres along the optical axis to the wall plane (x = WALL_X, camera at x = 0.5), NaN off it
        assert depth.dtype == np.float32 and depth.shape == rgb.shape[:2]
        seen = np.isfinite(depth)
        assert 0.25 < seen.mean() < 0.9 and np.all((rgb.max(axis=2) > 10) | ~seen)
        np.testing.assert_allclose(np.median(depth[seen]), WALL_X - 0.5, atol=0.05)
        session.request_view(ViewRequest("no_such_frame", np.eye(4), 0.0, reply_stamp="bad"))
        wait_for(lambda: session.status_values()["g3r_ros: window"].get("skipped:render_request", 0) >= 1, 30,
                 "the refused request counted")

        path = session.save_map()
        assert path.is_absolute() and path.parent == session.output_dir and path.is_file()
        umask = os.umask(0)
        os.umask(umask)
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # readable by others, like any ROS tool's output
    finally:
        saved = session.close("test over")
    assert saved is not None and saved.name.endswith("_shutdown.ply")


def test_flush_on_idle_reconstructs_a_short_bag_without_a_request(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="g3r_ros")
    bag = tmp_path / "short"
    write_drive_bag(bag, frames=12, bad_input=False)  # 1.1 s of drive, windows of 10 s
    got = Collector()
    cfg = stream_config(tmp_path, flush_on_idle_s=0.3, save_on_shutdown=False)
    cfg.window.window_seconds = 10.0
    session = StreamingSession(cfg, LidarColourStandIn(), on_map=got.on_map).start()
    try:
        feed(session, bag)
        wait_for(lambda: got.maps, 30, "the idle flush to reconstruct the partial window")
        assert len(got.maps[0].window.keyframes) == 12
        assert "no input for 0.3 s (window.flush_on_idle_s)" in caplog.text
        time.sleep(0.6)  # idle again: nothing left to flush, no second map
        assert len(got.maps) == 1 and session.status_values()["g3r_ros: window"]["windows_built"] == 1
    finally:
        assert session.close() is None  # save_on_shutdown off


class BlockUntilCancelled:
    """Never finishes by itself: returns (raises) only when cancelled."""

    def __init__(self):
        self.started = threading.Event()

    def __call__(self, window, cancel):
        self.started.set()
        cancel.wait(30)
        raise RuntimeError("stopped")


def test_cancellation_is_logged_with_its_reason(drive, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="g3r_ros")
    bag, _ = drive
    blocker = BlockUntilCancelled()
    cfg = stream_config(tmp_path, flush_on_idle_s=0.0)
    cfg.window.window_seconds = 100.0
    session = StreamingSession(cfg, blocker).start()
    try:
        ok, message = session.request_reconstruct()
        assert not ok and "no keyframe" in message
        feed(session, bag)
        wait_for(lambda: session.status_values()["g3r_ros: window"]["keyframes"] > 0, 30, "keyframes")
        wait_for(lambda: session.request_reconstruct()[0], 30, "an accepted ~/reconstruct")
        assert blocker.started.wait(30)
        assert session.status_values()["g3r_ros: reconstruction"]["busy"] is True
    finally:
        t0 = time.monotonic()
        assert session.close("SIGTERM") is None  # no map to save
    assert time.monotonic() - t0 < 5
    assert "reconstruction of w000_t" in caplog.text and "cancelled after" in caplog.text
    assert "s: SIGTERM" in caplog.text
    assert session.status_values()["g3r_ros: reconstruction"]["cancelled"] == 1


def test_a_time_jump_restarts_the_stream_with_unique_window_names(drive, tmp_path):
    bag, _ = drive
    earlier = tmp_path / "earlier"
    write_drive_bag(earlier, bad_input=False, t0=T0 - 30.0)  # a restarted log: stamps jump back 30 s
    got = Collector()
    session = StreamingSession(stream_config(tmp_path, lateral_offsets=[], save_on_shutdown=False, queue_limit=10),
                               LidarColourStandIn(), on_map=got.on_map).start()
    try:
        feed(session, bag)
        wait_for(lambda: session.status_values()["g3r_ros: window"]["windows_built"] >= 3, 30, "windows")
        feed(session, earlier)
        wait_for(lambda: session.status_values()["g3r_ros: reconstruction"]["reconstructions"] >= 6, 60, "maps")
    finally:
        session.close()
    status = session.status_values()
    names = [s.window.name for s in got.maps]
    assert len(set(names)) == len(names), names
    assert status["g3r_ros: window"]["time_resets"] >= 1


def test_a_short_bag_played_in_a_loop_restarts_the_stream(tmp_path):
    bag = tmp_path / "short"
    write_drive_bag(bag, frames=24, bad_input=False)  # 2.3 s: its loop jumps back less than time_jump_s
    cfg = stream_config(tmp_path, lateral_offsets=[], save_on_shutdown=False, queue_limit=10)
    assert cfg.time_jump_s > 2.3
    session = StreamingSession(cfg, LidarColourStandIn()).start()
    try:
        feed(session, bag)
        wait_for(lambda: session.status_values()["g3r_ros: window"]["windows_built"] >= 2, 30, "windows")
        feed(session, bag)  # the same stamps again, as `g3r play --loop` sends them
        wait_for(lambda: session.status_values()["g3r_ros: window"]["windows_built"] >= 4, 30, "windows of loop 2")
    finally:
        session.close()
    assert session.status_values()["g3r_ros: window"]["time_resets"] == 1


def test_reconfigure_applies_runtime_fields_only(tmp_path):
    cfg = stream_config(tmp_path)
    session = StreamingSession(cfg, LidarColourStandIn())
    new = stream_config(tmp_path, reconstruct_every=3, flush_on_idle_s=1.5, lateral_offsets=[2.0], inbox_size=7)
    new.window.window_seconds = 5.0
    new.window.voxel_size = 1.0  # not a run-time field
    session.reconfigure(new)
    assert (session.config.reconstruct_every, session.config.flush_on_idle_s, session.config.lateral_offsets) == \
        (3, 1.5, [2.0])
    assert session.config.window.window_seconds == 5.0 and session._builder.config.window_seconds == 5.0
    assert session.config.inbox_size == 2000 and session._builder.config.voxel_size == 0.1


def test_preview_window_is_the_window_the_session_builds(drive, tmp_path):
    bag, _ = drive
    got = Collector()
    cfg = stream_config(tmp_path, flush_on_idle_s=0.2, save_on_shutdown=False)
    cfg.window.window_seconds = 100.0
    cfg.window.keyframe_seconds = 0.45  # shed in offer(): only every 5th image is queued
    preview = preview_window(bag, cfg)
    session = StreamingSession(cfg, LidarColourStandIn(), on_map=got.on_map).start()
    try:
        feed(session, bag)
        wait_for(lambda: got.maps, 30, "the map of the whole drive")
    finally:
        session.close()
    built = got.maps[0].window
    assert [k.stamp for k in preview.keyframes] == [k.stamp for k in built.keyframes]
    assert session.status_values()["g3r_ros: window"]["note:image_shed"] > 0

"""Anytime maps in the ROS-free StreamingSession: G3R's map first, then per-scene refinement of
it, pre-empted by the next window (the best state is kept as that window's map).

The reconstructor is the refinable stand-in test double of ``toy_drive`` (one Gaussian per
LiDAR point, as one explicit background component); refinement is ``g3r_ros.refine.refine``.
"""

from __future__ import annotations

import math

import pytest
from test_streaming import Collector, stream_config, wait_for
from toy_drive import T0, RefinableStandIn, write_drive_bag

from g3r_ros.bag import iter_bag_messages
from g3r_ros.refine import recipe
from g3r_ros.streaming import RefinedOutput, StreamingSession, _BestTracker


def feed_between(session, bag, lo: float, hi: float) -> None:
    """Offer the bag's messages logged in [lo, hi) s (TF static included in the first part)."""
    for m in iter_bag_messages(bag, None, deserialize=False):
        if lo <= m.stamp < hi:
            session.offer(m.topic, m.msgtype, m.rawdata)


def recon(session) -> dict:
    return session.status_values()["g3r_ros: reconstruction"]


def test_a_new_window_preempts_refinement_and_the_best_refined_map_is_kept(tmp_path, one_torch_thread):
    bag = tmp_path / "drive"
    write_drive_bag(bag, bad_input=False)  # 3.5 s: windows of 0.95 s
    got = Collector()
    cfg = stream_config(tmp_path, flush_on_idle_s=0.0, lateral_offsets=[], refine_seconds=3600.0,
                        refine_publish_every_s=0.0, refine=recipe(device="cpu"))
    session = StreamingSession(cfg, RefinableStandIn(), on_map=got.on_map, on_status=got.on_status).start()
    try:
        feed_between(session, bag, 0.0, T0 + 1.3)  # the first window closes; the second is incomplete
        wait_for(lambda: recon(session)["stage"] == "refine", 60, "the refinement of the first map")
        wait_for(lambda: math.isfinite(recon(session)["refine_psnr_start"]), 60, "the start PSNR")
        first = got.maps[0]
        assert first.index == 1 and first.revision == 0 and not isinstance(first.output, RefinedOutput)
        assert recon(session)["reconstructions"] == 1 and recon(session)["refine_publishes"] == 0
        start_psnr = recon(session)["refine_psnr_start"]
        feed_between(session, bag, T0 + 1.3, float("inf"))  # the next window is ready: refinement stops
        wait_for(lambda: recon(session)["reconstructions"] >= 2, 60, "the map of the second window")
        with got.lock:
            maps = list(got.maps)
        second = next(i for i, s in enumerate(maps) if s.index == 2)
        kept = maps[second - 1]  # what window 1 ended with: its best refined state, published before window 2's
        assert kept.index == 1 and kept.window is first.window and kept.revision == 1
        assert isinstance(kept.output, RefinedOutput) and kept.metrics["refined"] is True
        assert kept.metrics["refine_psnr_best"] >= start_psnr  # the best state, never below G3R's
        assert kept.output.scene.num_points == first.output.params_at(None).means.shape[0]
        status = recon(session)
        assert status["refinements_preempted"] >= 1 and status["refinements_failed"] == 0
        assert status["refinements"] >= 1
        # every stage change was published as it happened, in order
        stages = [s["g3r_ros: reconstruction"]["stage"] for s in got.status]
        changes = [a for a, b in zip(stages, [None, *stages]) if a != b]
        assert changes[0] in ("idle", "g3r"), changes  # idle before the first window
        changes = changes[changes.index("g3r"):]
        assert changes[:4] == ["g3r", "refine", "idle", "g3r"], changes
        wait_for(lambda: recon(session)["stage"] == "refine" and recon(session)["queued_windows"] == 0, 60,
                 "the refinement of the last map")
    finally:
        saved = session.close("test over")
    # the last window's refinement was stopped by the shutdown: its best state is what was saved
    assert saved is not None and saved.is_file()
    assert session.map.revision >= 1 and isinstance(session.map.output, RefinedOutput)
    assert session.status_values()["g3r_ros: reconstruction"]["refine_stop"] == "shutdown"


def test_refinement_is_off_by_default_and_for_outputs_that_cannot_be_refined(tmp_path):
    from toy_drive import LidarColourStandIn

    assert stream_config(tmp_path).refine_seconds == 0.0
    bag = tmp_path / "short"
    write_drive_bag(bag, frames=12, bad_input=False)
    got = Collector()
    cfg = stream_config(tmp_path, flush_on_idle_s=0.3, save_on_shutdown=False, lateral_offsets=[],
                        refine_seconds=5.0)
    cfg.window.window_seconds = 10.0
    session = StreamingSession(cfg, LidarColourStandIn(), on_map=got.on_map).start()
    try:
        feed_between(session, bag, 0.0, float("inf"))
        wait_for(lambda: got.maps and recon(session)["stage"] == "idle", 60, "the map, then idle")
        assert len(got.maps) == 1 and recon(session)["refinements"] == 0
    finally:
        session.close()


@pytest.mark.parametrize("every,expected", [(0.0, []), (1.0, [2, 4])])
def test_best_tracker_publishes_improvements_at_most_every_interval(every, expected):
    tracker = _BestTracker(every)
    entries = [(0, 20.0, 0.0), (1, 21.0, 0.6), (2, 21.5, 1.1), (3, 21.2, 1.9), (4, 22.0, 2.2), (5, 22.1, 2.5)]
    due = [it for it, psnr, t in entries
           if tracker.offer(f"scene{it}", {"iter": it, "psnr_source": psnr, "elapsed_s": t})]
    assert due == expected
    assert tracker.best == "scene5" and tracker.best_psnr == 22.1

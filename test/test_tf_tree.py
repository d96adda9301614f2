"""TransformTree: interpolation, traversal in both directions, static + dynamic, errors, horizon."""

from __future__ import annotations

import logging
import math
import threading

import numpy as np
import pytest
from scipy.spatial.transform import Rotation, Slerp

from g3r_ros.geometry import invert_transform, make_transform
from g3r_ros.messages import TransformRecord
from g3r_ros.tf_tree import TransformError, TransformTree


def rot_z(yaw):
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def T(yaw=0.0, t=(0.0, 0.0, 0.0)):
    return make_transform(rot_z(yaw), t)


def rec(parent, child, stamp, M):
    return TransformRecord(parent=parent, child=child, stamp=stamp, T=M)


T_MAP_ODOM = T(0.3, (10.0, -5.0, 0.0))
T_BASE_VELO = T(0.0, (0.5, 0.0, 1.8))
T_BASE_CAM = make_transform(Rotation.from_euler("xyz", [-90, 0, -90], degrees=True).as_matrix(), (1.2, 0.1, 1.5))


def drive_tree(**kw) -> TransformTree:
    """map -static-> odom -dynamic-> base_link -static-> {velodyne, camera}; odom->base at t=0..2."""
    tree = TransformTree(**kw)
    tree.add(rec("map", "odom", 0.0, T_MAP_ODOM), static=True)
    tree.add_records([rec("base_link", "velodyne", 0.0, T_BASE_VELO), rec("base_link", "camera", 0.0, T_BASE_CAM)],
                     static=True)
    for s in (0.0, 1.0, 2.0):  # drives forward 2 m/s while yawing 45°/s
        tree.add(rec("odom", "base_link", s, T(s * math.pi / 4, (2.0 * s, 0.0, 0.0))))
    return tree


def test_exact_stamp_returns_exact_composition():
    tree = drive_tree()
    got = tree.lookup("map", "velodyne", 1.0)
    np.testing.assert_allclose(got, T_MAP_ODOM @ T(math.pi / 4, (2.0, 0, 0)) @ T_BASE_VELO, atol=1e-12)


def test_interpolation_lerp_and_slerp_against_scipy():
    tree = TransformTree()
    R0 = Rotation.from_euler("xyz", [10, -20, 30], degrees=True)
    R1 = Rotation.from_euler("xyz", [40, 15, -60], degrees=True)
    tree.add(rec("odom", "base", 3.0, make_transform(R0.as_matrix(), (1.0, 2.0, 3.0))))
    tree.add(rec("odom", "base", 5.0, make_transform(R1.as_matrix(), (5.0, -2.0, 3.0))))
    ref = Slerp([3.0, 5.0], Rotation.concatenate([R0, R1]))
    for s in (3.0, 3.5, 4.0, 4.9, 5.0):
        got = tree.lookup("odom", "base", s)
        u = (s - 3.0) / 2.0
        np.testing.assert_allclose(got[:3, 3], (1 - u) * np.array([1.0, 2, 3]) + u * np.array([5.0, -2, 3]),
                                   atol=1e-12)
        np.testing.assert_allclose(got[:3, :3], ref([s]).as_matrix()[0], atol=1e-9)


def test_interpolated_chain_and_inverse_traversal():
    tree = drive_tree()
    mid = T(math.pi / 8, (1.0, 0.0, 0.0))  # odom->base at t=0.5
    expect = T_MAP_ODOM @ mid @ T_BASE_VELO
    np.testing.assert_allclose(tree.lookup("map", "velodyne", 0.5), expect, atol=1e-12)
    # the other direction walks every edge backwards
    np.testing.assert_allclose(tree.lookup("velodyne", "map", 0.5), invert_transform(expect), atol=1e-12)
    # siblings meet at base_link: time-independent
    sib = invert_transform(T_BASE_CAM) @ T_BASE_VELO
    for s in (0.5, 100.0):
        np.testing.assert_allclose(tree.lookup("camera", "velodyne", s), sib, atol=1e-12)
    np.testing.assert_allclose(tree.lookup("odom", "odom", 7.0), np.eye(4))
    # a point in the velodyne frame, mapped to the camera and back through the world
    p = np.array([3.0, 1.0, -0.5, 1.0])
    via_map = tree.lookup("camera", "map", 1.5) @ tree.lookup("map", "velodyne", 1.5) @ p
    np.testing.assert_allclose(via_map, sib @ p, atol=1e-9)


def test_static_edges_are_time_independent_and_leading_slash_ignored():
    tree = drive_tree()
    np.testing.assert_allclose(tree.lookup("/map", "/odom", -1e6), T_MAP_ODOM)
    np.testing.assert_allclose(tree.lookup("map", "odom", None), T_MAP_ODOM)
    assert tree.time_range("odom") is None and tree.time_range("base_link") == (0.0, 2.0)
    assert tree.parent("velodyne") == "base_link" and tree.parent("map") is None
    assert tree.frames == ["base_link", "camera", "map", "odom", "velodyne"]


def test_precise_errors():
    tree = drive_tree()
    tree.add(rec("base_link", "velodyne", 11.9, T_BASE_VELO))  # now a dynamic edge (warned)
    tree.add(rec("odom", "base_link", 12.0, T()))
    with pytest.raises(TransformError) as e:
        tree.lookup("map", "velodyne", 12.3)
    assert str(e.value).startswith("no transform from velodyne to map at t=12.300000: newest is 11.900000")
    assert "base_link -> velodyne" in str(e.value)
    with pytest.raises(TransformError, match=r"no transform from base_link to map at t=-0\.500000: oldest is "
                                             r"0\.000000 \(edge odom -> base_link\)"):
        tree.lookup("map", "base_link", -0.5)
    tree.add(rec("world", "other", 0.0, T()), static=True)
    with pytest.raises(TransformError, match=r"frames other and map are not connected \(source root world, target "
                                             "root map; known frames: base_link, camera, map, odom, other, velodyne, "
                                             r"world\)"):
        tree.lookup("map", "other", 0.0)
    with pytest.raises(TransformError, match="unknown source frame 'radar'"):
        tree.lookup("map", "radar", 1.0)
    with pytest.raises(TransformError, match="unknown target frame 'nowhere'"):
        tree.lookup("nowhere", "velodyne", 1.0)
    assert issubclass(TransformError, LookupError)
    assert not tree.can_transform("map", "other", 0.0) and tree.can_transform("map", "base_link", 0.5)


def test_horizon_prunes_old_samples():
    tree = TransformTree(horizon_s=1.0)
    for i in range(7):
        tree.add(rec("odom", "base", i * 0.5, T(0.0, (i * 0.5, 0, 0))))
    assert tree.time_range("base") == (2.0, 3.0)
    with pytest.raises(TransformError, match="oldest is 2.000000 .*horizon 1 s"):
        tree.lookup("odom", "base", 1.0)
    np.testing.assert_allclose(tree.lookup("odom", "base", 2.25)[:3, 3], [2.25, 0, 0])


def test_out_of_order_insert_and_replacement():
    tree = TransformTree()
    for s in (2.0, 0.0, 1.0):
        tree.add(rec("odom", "base", s, T(0.0, (s, 0, 0))))
    tree.add(rec("odom", "base", 1.0, T(0.0, (10.0, 0, 0))))  # same stamp replaces
    np.testing.assert_allclose(tree.lookup("odom", "base", 0.5)[:3, 3], [5.0, 0, 0])
    np.testing.assert_allclose(tree.lookup("odom", "base", 1.5)[:3, 3], [6.0, 0, 0])


def test_extrapolation_tolerance():
    tree = TransformTree(extrapolation_s=0.1)
    tree.add(rec("odom", "base", 1.0, T(0.0, (1.0, 0, 0))))
    tree.add(rec("odom", "base", 2.0, T(0.0, (2.0, 0, 0))))
    np.testing.assert_allclose(tree.lookup("odom", "base", 2.05)[:3, 3], [2.0, 0, 0])
    np.testing.assert_allclose(tree.lookup("odom", "base", 0.95)[:3, 3], [1.0, 0, 0])
    with pytest.raises(TransformError, match="newest is 2.000000"):
        tree.lookup("odom", "base", 2.2)
    strict = TransformTree()
    strict.add(rec("odom", "base", 1.0, T()))
    assert strict.can_transform("odom", "base", 1.0) and not strict.can_transform("odom", "base", 1.0 + 1e-9)


def test_latest_common_time():
    tree = drive_tree()
    tree.add(rec("map", "gps", 1.5, T()))
    tree.add(rec("map", "gps", 1.7, T()))
    assert tree.latest_common_time("gps", "velodyne") == 1.7
    np.testing.assert_allclose(tree.lookup("odom", "base_link"), tree.lookup("odom", "base_link", 2.0))
    assert tree.latest_common_time("camera", "velodyne") == 0.0  # all static


def test_bad_records_and_cycles(caplog):
    tree = drive_tree()
    with pytest.raises(ValueError, match="cycle"):
        tree.add(rec("velodyne", "map", 0.0, T()))
    with pytest.raises(ValueError, match="cycle"):
        tree.add(rec("camera", "base_link", 0.0, T()))
    with pytest.raises(ValueError, match="distinct"):
        tree.add(rec("a", "a", 0.0, T()))
    with pytest.raises(ValueError, match="finite 4x4"):
        tree.add(rec("a", "b", 0.0, np.full((4, 4), np.nan)))
    with pytest.raises(ValueError, match="non-finite stamp"):
        tree.add(rec("a", "b", float("inf"), T()))
    with pytest.raises(ValueError, match="horizon_s"):
        TransformTree(horizon_s=-1)
    with caplog.at_level(logging.WARNING):
        tree.add(rec("odom", "camera", 0.0, T()))  # re-parenting replaces the edge
    assert "replacing static edge from base_link" in caplog.text
    assert tree.parent("camera") == "odom"


def test_concurrent_add_and_lookup():
    tree = drive_tree(horizon_s=1000.0)
    errors = []

    def writer():
        for i in range(300):
            tree.add(rec("odom", "base_link", 3.0 + i * 0.01, T(0.0, (i, 0, 0))))

    def reader():
        try:
            for _ in range(300):
                tree.lookup("map", "velodyne", 1.5)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert tree.time_range("base_link") == (0.0, pytest.approx(5.99))

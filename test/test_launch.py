"""launch/reconstruct.launch.py: with the real launch/launch_ros when installed, else with a shim.

launch_ros is not on PyPI (and the PyPI package named ``launch`` is unrelated), so on this
machine the real-API test skips; the shim test injects tiny fake ``launch`` / ``launch_ros``
modules that record the actions, imports the file and runs its OpaqueFunction for a few
argument sets.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

import pytest

LAUNCH_FILE = Path(__file__).resolve().parents[1] / "launch" / "reconstruct.launch.py"


def _load(module_name: str):
    spec = importlib.util.spec_from_file_location(module_name, LAUNCH_FILE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _real_launch_available() -> bool:
    try:
        import launch_ros  # noqa: F401

        import launch
    except ImportError:
        return False
    return hasattr(launch, "LaunchDescription")  # not the repo's launch/ folder seen as a namespace package


# ---------------------------------------------------------------------------------------
# A shim of the launch API surface the file uses
# ---------------------------------------------------------------------------------------
class _Action:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _Subst:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _LaunchConfiguration(_Subst):
    def perform(self, context):
        return context.launch_configurations[self.args[0]]


def _shim_modules() -> dict[str, types.ModuleType]:
    def module(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        return m

    names = {"DeclareLaunchArgument": type("DeclareLaunchArgument", (_Action,), {}),
             "ExecuteProcess": type("ExecuteProcess", (_Action,), {}),
             "OpaqueFunction": type("OpaqueFunction", (_Action,), {}),
             "Node": type("Node", (_Action,), {}),
             "LaunchDescription": type("LaunchDescription", (_Action,), {}),
             "PathJoinSubstitution": type("PathJoinSubstitution", (_Subst,), {}),
             "FindPackageShare": type("FindPackageShare", (_Subst,), {})}
    return {
        "launch": module("launch", LaunchDescription=names["LaunchDescription"]),
        "launch.actions": module("launch.actions", DeclareLaunchArgument=names["DeclareLaunchArgument"],
                                 ExecuteProcess=names["ExecuteProcess"], OpaqueFunction=names["OpaqueFunction"]),
        "launch.substitutions": module("launch.substitutions", LaunchConfiguration=_LaunchConfiguration,
                                       PathJoinSubstitution=names["PathJoinSubstitution"]),
        "launch_ros": module("launch_ros"),
        "launch_ros.actions": module("launch_ros.actions", Node=names["Node"]),
        "launch_ros.substitutions": module("launch_ros.substitutions", FindPackageShare=names["FindPackageShare"]),
    }


@pytest.fixture()
def shimmed(monkeypatch):
    for name, mod in _shim_modules().items():
        monkeypatch.setitem(sys.modules, name, mod)
    return _load("reconstruct_launch_shimmed")


def _run_setup(mod, **given):
    desc = mod.generate_launch_description()
    entities = desc.args[0]
    declared = {a.args[0]: a.kwargs for a in entities if type(a).__name__ == "DeclareLaunchArgument"}
    values = {name: (kw["default_value"] if isinstance(kw["default_value"], str) else "/share/reconstruct.yaml")
              for name, kw in declared.items()}
    values.update(given)
    context = types.SimpleNamespace(launch_configurations=values)
    opaque = [a for a in entities if type(a).__name__ == "OpaqueFunction"]
    assert len(opaque) == 1
    return declared, opaque[0].kwargs["function"](context)


def test_launch_file_with_shim_declares_arguments_and_node(shimmed):
    declared, actions = _run_setup(shimmed)
    assert set(declared) == {"params_file", "model", "device", "use_sim_time", "bag", "player", "namespace"}
    default_params = declared["params_file"]["default_value"]
    assert type(default_params).__name__ == "PathJoinSubstitution"
    assert default_params.args[0][1:] == ["config", "reconstruct.yaml"]
    assert all(kw.get("description") for kw in declared.values())
    (node,) = actions  # no bag: the node alone
    kw = node.kwargs
    assert (kw["package"], kw["executable"], kw["name"]) == ("g3r_ros", "reconstruct_node", "reconstruct_node")
    params_file, overrides = kw["parameters"]
    assert params_file == "/share/reconstruct.yaml"
    assert overrides == {"use_sim_time": False}  # '' model/device keep the params file's values
    # launch's stdout is not a terminal here (pytest captures it): no colour codes in the node's log
    if "RCUTILS_COLORIZED_OUTPUT" not in os.environ:
        assert kw["additional_env"] == {"RCUTILS_COLORIZED_OUTPUT": "0"}
    assert float(kw["sigterm_timeout"]) >= 20  # time to cancel, save the map and exit before SIGTERM


def test_launch_file_with_shim_bag_and_overrides(shimmed):
    _, actions = _run_setup(shimmed, bag="/data/drive", model="/m/g3r.pt", device="cpu", namespace="car1",
                            player="ros2bag")
    node, play = actions
    assert node.kwargs["namespace"] == "car1"
    assert node.kwargs["parameters"][1] == {"use_sim_time": True, "reconstruction.model": "/m/g3r.pt",
                                            "reconstruction.device": "cpu"}
    cmd = play.kwargs["cmd"]
    assert cmd[:4] == ["ros2", "bag", "play", "/data/drive"] and cmd[4:] == ["--clock"]
    _, actions = _run_setup(shimmed, bag="/data/drive", use_sim_time="false")
    assert actions[0].kwargs["parameters"][1]["use_sim_time"] is False


def test_launch_file_with_shim_plays_with_g3r_where_rosbag2_is_missing(shimmed, monkeypatch):
    _, (_, play) = _run_setup(shimmed, bag="/data/drive", player="g3r")
    cmd = play.kwargs["cmd"]
    assert cmd[:5] == [sys.executable, "-m", "g3r_ros", "play", "/data/drive"] and "--clock" in cmd
    assert "--wait-for-subscribers" in cmd  # g3r play waits for the node (not for topics nobody subscribes)
    monkeypatch.setattr(shimmed, "_rosbag2_available", lambda: False)
    assert _run_setup(shimmed, bag="/data/drive")[1][1].kwargs["cmd"] == cmd  # auto: no rosbag2 here
    monkeypatch.setattr(shimmed, "_rosbag2_available", lambda: True)
    assert _run_setup(shimmed, bag="/data/drive")[1][1].kwargs["cmd"][:3] == ["ros2", "bag", "play"]


@pytest.mark.parametrize("given,match", [({"device": "tpu"}, "device must be"),
                                         ({"use_sim_time": "yes"}, "true or false"),
                                         ({"bag": "/b", "player": "vlc"}, "player must be one of")])
def test_launch_file_with_shim_rejects_bad_arguments(shimmed, given, match):
    with pytest.raises(ValueError, match=match):
        _run_setup(shimmed, **given)


def test_launch_file_with_real_launch_ros():
    if not _real_launch_available():
        pytest.skip("launch/launch_ros are not importable (not on PyPI; a ROS 2 install provides them)")
    from launch.actions import DeclareLaunchArgument

    from launch import LaunchDescription

    mod = _load("reconstruct_launch_real")
    desc = mod.generate_launch_description()
    assert isinstance(desc, LaunchDescription)
    names = {e.name for e in desc.entities if isinstance(e, DeclareLaunchArgument)}
    assert names == {"params_file", "model", "device", "use_sim_time", "bag", "player", "namespace"}

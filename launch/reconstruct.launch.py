"""Launch reconstruct_node, optionally with a bag player (``ros2 bag play`` or ``g3r play``).

    ros2 launch g3r_ros reconstruct.launch.py
    ros2 launch g3r_ros reconstruct.launch.py bag:=/data/drive_synth device:=cpu
    ros2 launch g3r_ros reconstruct.launch.py bag:=/data/drive_synth player:=g3r   # no rosbag2 needed
    ros2 launch g3r_ros reconstruct.launch.py params_file:=$(ros2 pkg prefix g3r_ros)/share/g3r_ros/config/kitti.yaml

Arguments:
- params_file: ROS parameter file (default: the package's config/reconstruct.yaml);
- model: G3R model file; '' keeps the params file's value (default: the shipped model);
- device: auto | cuda | cpu; '' keeps the params file's value;
- use_sim_time: true | false; '' = true exactly when a bag is played;
- bag: a rosbag2 to play with ``--clock`` next to the node ('' = none);
- player: auto | ros2bag | g3r: ``ros2 bag play``, or ``g3r play`` (rosbags + rclpy, works without
  rosbag2; it waits for the node's subscriptions); auto = ros2bag when rosbag2 is installed;
- namespace: namespace of the node (topics become /<ns>/reconstruct_node/...).

Shutdown: on Ctrl-C or SIGTERM, launch sends the node SIGINT; the node cancels a running
reconstruction, saves the last map and exits 0 (it treats SIGTERM the same way). It gets
``SHUTDOWN_GRACE_S`` before launch escalates to SIGTERM and then SIGKILL. When launch's own output
is not a terminal (``ros2 launch ... > log``), the node logs without colour codes.
"""

# (ruff takes the repository's launch/ folder for a first-party package; this is the ROS 2 order)
import importlib.util  # noqa: I001
import os
import shutil
import sys

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = (
    ("params_file", None, "ROS parameter file for reconstruct_node"),
    ("model", "", "G3R model file ('' = the value in params_file, by default the shipped model)"),
    ("device", "", "auto | cuda | cpu ('' = the value in params_file)"),
    ("use_sim_time", "", "true | false ('' = true when a bag is played, else false)"),
    ("bag", "", "rosbag2 to play with --clock ('' = none: live sensors)"),
    ("player", "auto", "auto | ros2bag | g3r: 'ros2 bag play', or 'g3r play' (no rosbag2 needed); "
                       "auto = ros2bag when rosbag2 is installed"),
    ("namespace", "", "namespace of the node"),
)
PLAYERS = ("auto", "ros2bag", "g3r")
SHUTDOWN_GRACE_S = "30"  # seconds between launch's SIGINT and its SIGTERM (then as long again until SIGKILL)


def _as_bool(text: str, name: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false"):
        raise ValueError(f"launch argument {name} must be true or false, got {text!r}")
    return value == "true"


def _rosbag2_available() -> bool:
    return shutil.which("ros2") is not None and importlib.util.find_spec("rosbag2_py") is not None


def player_command(player: str, bag: str) -> list:
    """The command that plays ``bag`` with /clock: ``ros2 bag play`` or ``g3r play``."""
    if player not in PLAYERS:
        raise ValueError(f"launch argument player must be one of {', '.join(PLAYERS)}, got {player!r}")
    if player == "auto":
        player = "ros2bag" if _rosbag2_available() else "g3r"
    if player == "ros2bag":  # the bag first: --clock takes an optional frequency and would swallow a path after it
        return ["ros2", "bag", "play", bag, "--clock"]
    return [sys.executable, "-m", "g3r_ros", "play", bag, "--clock", "--wait-for-subscribers", "120"]


def _launch_setup(context, *args, **kwargs):
    """Resolve the arguments, then build the node (and the bag player) with only the overrides given."""
    value = {name: LaunchConfiguration(name).perform(context) for name, _, _ in ARGUMENTS}
    bag = value["bag"].strip()
    overrides = {"use_sim_time": _as_bool(value["use_sim_time"], "use_sim_time") if value["use_sim_time"]
                 else bool(bag)}
    if value["model"]:
        overrides["reconstruction.model"] = value["model"]
    if value["device"]:
        if value["device"] not in ("auto", "cuda", "cpu"):
            raise ValueError(f"launch argument device must be auto, cuda or cpu, got {value['device']!r}")
        overrides["reconstruction.device"] = value["device"]
    env = {}
    if "RCUTILS_COLORIZED_OUTPUT" not in os.environ and not sys.stdout.isatty():
        env["RCUTILS_COLORIZED_OUTPUT"] = "0"  # emulate_tty would make rcutils colour a redirected log
    actions = [Node(
        package="g3r_ros", executable="reconstruct_node", name="reconstruct_node",
        namespace=value["namespace"], parameters=[value["params_file"], overrides],
        output="screen", emulate_tty=True, additional_env=env,
        sigterm_timeout=SHUTDOWN_GRACE_S, sigkill_timeout=SHUTDOWN_GRACE_S,
    )]
    if bag:
        actions.append(ExecuteProcess(cmd=player_command(value["player"].strip(), bag), name="bag_play",
                                      output="screen", additional_env=env))
    return actions


def generate_launch_description():
    declared = []
    for name, default, description in ARGUMENTS:
        if default is None:  # the package's shipped parameter file
            default = PathJoinSubstitution([FindPackageShare("g3r_ros"), "config", "reconstruct.yaml"])
        declared.append(DeclareLaunchArgument(name, default_value=default, description=description))
    return LaunchDescription([*declared, OpaqueFunction(function=_launch_setup)])

"""Launch reconstruct_node, optionally with ``ros2 bag play --clock`` on a recorded drive.

    ros2 launch g3r_ros reconstruct.launch.py
    ros2 launch g3r_ros reconstruct.launch.py bag:=/data/drive_synth device:=cpu
    ros2 launch g3r_ros reconstruct.launch.py params_file:=$(ros2 pkg prefix g3r_ros)/share/g3r_ros/config/kitti.yaml

Arguments:
- params_file: ROS parameter file (default: the package's config/reconstruct.yaml);
- model: G3R model file; '' keeps the params file's value (default: the shipped model);
- device: auto | cuda | cpu; '' keeps the params file's value;
- use_sim_time: true | false; '' = true exactly when a bag is played;
- bag: a rosbag2 to play with ``ros2 bag play --clock`` next to the node ('' = none);
- namespace: namespace of the node (topics become /<ns>/reconstruct_node/...).
"""

# (ruff takes the repository's launch/ folder for a first-party package; this is the ROS 2 order)
from launch import LaunchDescription  # noqa: I001
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = (
    ("params_file", None, "ROS parameter file for reconstruct_node"),
    ("model", "", "G3R model file ('' = the value in params_file, by default the shipped model)"),
    ("device", "", "auto | cuda | cpu ('' = the value in params_file)"),
    ("use_sim_time", "", "true | false ('' = true when a bag is played, else false)"),
    ("bag", "", "rosbag2 to play with 'ros2 bag play --clock' ('' = none: live sensors)"),
    ("namespace", "", "namespace of the node"),
)


def _as_bool(text: str, name: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false"):
        raise ValueError(f"launch argument {name} must be true or false, got {text!r}")
    return value == "true"


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
    actions = [Node(
        package="g3r_ros", executable="reconstruct_node", name="reconstruct_node",
        namespace=value["namespace"], parameters=[value["params_file"], overrides],
        output="screen", emulate_tty=True,
    )]
    if bag:
        # the bag first: --clock takes an optional frequency and would swallow a path after it
        actions.append(ExecuteProcess(cmd=["ros2", "bag", "play", bag, "--clock"], name="bag_play",
                                      output="screen"))
    return actions


def generate_launch_description():
    declared = []
    for name, default, description in ARGUMENTS:
        if default is None:  # the package's shipped parameter file
            default = PathJoinSubstitution([FindPackageShare("g3r_ros"), "config", "reconstruct.yaml"])
        declared.append(DeclareLaunchArgument(name, default_value=default, description=description))
    return LaunchDescription([*declared, OpaqueFunction(function=_launch_setup)])

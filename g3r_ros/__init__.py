"""g3r_ros: G3R (Gradient Guided Generalizable Reconstruction) with a thin ROS 2 adapter.

Everything in this package except ``g3r_ros.ros`` is ROS-free and never imports rclpy.
"""

__version__ = "0.1.0"

"""Thin ROS 2 adapter: message conversion, the reconstruct node and a bag player."""

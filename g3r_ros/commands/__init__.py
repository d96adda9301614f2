"""Subcommands of the ``g3r`` CLI, one module each (see ``g3r_ros.cli``)."""

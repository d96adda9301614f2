"""Logging of a ROS process: the core's Python log lines through the node's ROS logger.

The core (``g3r_ros.*``) logs with Python ``logging``. While a node runs, :func:`route_to_node`
sends those records to the node's rclpy logger (child loggers named after the module, e.g.
``reconstruct_node.streaming``), so they reach ``/rosout`` and the ROS log file like the
node's own lines; :meth:`LogRoute.close` restores plain Python logging, and must run before
the node is destroyed (a log line after that would hit an invalid rosout publisher).

:func:`plain_console` keeps redirected logs free of ANSI colour codes: when stderr is not a
terminal and ``RCUTILS_COLORIZED_OUTPUT`` is unset, it sets it to 0 before rclpy starts.
"""

from __future__ import annotations

import logging
import os
import sys

CORE_LOGGER = "g3r_ros"


def plain_console(stream=None) -> None:
    """Python log lines on stderr with a time stamp; no colours from rcutils unless on a terminal."""
    stream = sys.stderr if stream is None else stream
    if "RCUTILS_COLORIZED_OUTPUT" not in os.environ and not stream.isatty():
        os.environ["RCUTILS_COLORIZED_OUTPUT"] = "0"  # read by rclpy.init (rcutils logging)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", stream=stream)


class _ToRosLogger(logging.Handler):
    def __init__(self, ros_logger):
        super().__init__(logging.DEBUG)
        self.ros_logger = ros_logger
        self._children: dict[str, object] = {}

    def _logger_for(self, name: str):
        short = name.removeprefix(CORE_LOGGER + ".").replace(".", "_") if name != CORE_LOGGER else ""
        if not short:
            return self.ros_logger
        if short not in self._children:
            self._children[short] = self.ros_logger.get_child(short)
        return self._children[short]

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            logger = self._logger_for(record.name)
            # one call site per severity: rclpy refuses a call site whose severity changes
            if record.levelno >= logging.CRITICAL:
                logger.fatal(text)
            elif record.levelno >= logging.ERROR:
                logger.error(text)
            elif record.levelno >= logging.WARNING:
                logger.warning(text)
            elif record.levelno >= logging.INFO:
                logger.info(text)
            else:
                logger.debug(text)
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)


class LogRoute:
    """An active routing of the ``g3r_ros`` Python loggers to a node's ROS logger."""

    def __init__(self, node):
        self._core = logging.getLogger(CORE_LOGGER)
        self._handler = _ToRosLogger(node.get_logger())
        self._saved = (self._core.propagate, self._core.level)
        self._core.addHandler(self._handler)
        self._core.propagate = False  # the ROS logger prints to the console itself: no duplicates
        if self._core.level == logging.NOTSET:
            self._core.setLevel(logging.INFO)
        self.active = True

    def close(self) -> None:
        """Back to plain Python logging (idempotent)."""
        if self.active:
            self._core.removeHandler(self._handler)
            self._core.propagate, level = self._saved
            self._core.setLevel(level)
            self.active = False


def route_to_node(node) -> LogRoute:
    """Send ``g3r_ros.*`` Python log records to ``node``'s ROS logger until ``close()``."""
    return LogRoute(node)

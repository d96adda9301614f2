"""Progress bars that behave in log files: a tqdm bar on a terminal, log lines otherwise.

tqdm redraws its bar with carriage returns, which a terminal overwrites but a redirected log
(``make demo > demo.log``, a ROS launch log) keeps as hundreds of lines. :func:`progress_bar`
takes tqdm's arguments and returns a real tqdm bar when stderr is a terminal, and otherwise
a :class:`LogProgress` that logs one INFO line (``g3r_ros.progress``) every ``interval_s``
seconds, and a last line at the end when it logged before. Short jobs log nothing, as a
``leave=False`` bar leaves nothing on a terminal.

The interval defaults to 30 s (``G3R_PROGRESS_INTERVAL_S`` overrides it).
"""

from __future__ import annotations

import logging
import os
import sys
import time

LOG = logging.getLogger(__name__)
DEFAULT_INTERVAL_S = 30.0


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("G3R_PROGRESS_INTERVAL_S", DEFAULT_INTERVAL_S)))
    except ValueError:
        return DEFAULT_INTERVAL_S


def progress_bar(iterable=None, desc: str = "", total=None, unit: str = "it", disable: bool = False,
                 leave: bool = True, initial: int = 0, interval_s: float | None = None, stream=None, **tqdm_kwargs):
    """A progress bar over ``iterable`` (or updated by hand with ``update``): tqdm on a terminal,
    :class:`LogProgress` when ``stream`` (default stderr) is not one. Same arguments as tqdm."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    if disable or (isatty is not None and isatty()):
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, total=total, unit=unit, disable=disable, leave=leave, initial=initial,
                    file=stream, **tqdm_kwargs)
    return LogProgress(iterable, desc=desc, total=total, unit=unit, initial=initial,
                       interval_s=_interval() if interval_s is None else interval_s)


class LogProgress:
    """The subset of tqdm's interface the package uses (iteration, ``update``, ``set_postfix``,
    ``close``, context manager), reporting by log lines at most every ``interval_s`` seconds."""

    def __init__(self, iterable=None, desc: str = "", total=None, unit: str = "it", initial: int = 0,
                 interval_s: float = DEFAULT_INTERVAL_S):
        self.iterable = iterable
        self.desc = desc or "progress"
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total = total
        self.unit = unit
        self.n = self.start_n = int(initial)
        self.interval_s = float(interval_s)
        self.postfix = ""
        self._t0 = self._last = time.monotonic()
        self._logged = False
        self._closed = False

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __len__(self) -> int:
        return int(self.total) if self.total is not None else len(self.iterable)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = str(s)

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or self.desc

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.interval_s:
            self._last = now
            self._logged = True
            LOG.info("%s", self.line(now))

    def line(self, now: float | None = None) -> str:
        """``desc: n/total unit (pct), rate, postfix``."""
        elapsed = (time.monotonic() if now is None else now) - self._t0
        done = self.n - self.start_n
        text = f"{self.desc}: {self.n}" + (f"/{self.total}" if self.total is not None else "") + f" {self.unit}"
        if self.total:
            text += f" ({100.0 * self.n / self.total:.0f}%)"
        if done > 0:
            per = elapsed / done
            text += f", {per:.2f} s/{self.unit}" if per >= 1.0 else f", {1.0 / per:.1f} {self.unit}/s"
        text += f", {elapsed:.0f} s"
        return text + (f", {self.postfix}" if self.postfix else "")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._logged:  # a job long enough to report gets its last line too
            LOG.info("%s (done)", self.line())

"""g3r_ros.progress: a tqdm bar on a terminal, a few log lines in a redirected log."""

from __future__ import annotations

import io
import logging

from g3r_ros.progress import LogProgress, progress_bar


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_gets_tqdm_and_a_file_gets_log_lines():
    from tqdm.auto import tqdm

    assert isinstance(progress_bar(range(3), stream=_Tty()), tqdm)
    assert isinstance(progress_bar(range(3), stream=io.StringIO()), LogProgress)
    disabled = progress_bar(range(3), disable=True, stream=io.StringIO())
    assert list(disabled) == [0, 1, 2]


def test_log_lines_at_the_interval_only(caplog):
    caplog.set_level(logging.INFO, logger="g3r_ros.progress")
    out = io.StringIO()
    assert list(progress_bar(range(500), desc="quick", stream=out, interval_s=3600)) == list(range(500))
    assert caplog.records == [] and out.getvalue() == ""  # a short job leaves nothing, no carriage returns

    bar = progress_bar(total=4, desc="G3R", unit="step", stream=out, interval_s=0.0)
    for _ in range(4):
        bar.update(1)
        bar.set_postfix(psnr="21.50")
    bar.close()
    bar.close()  # idempotent
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 5 and lines[-1].endswith("(done)")
    assert lines[1].startswith("G3R: 2/4 step (50%)") and "psnr=21.50" in lines[1]
    assert out.getvalue() == "" and all("\r" not in line for line in lines)


def test_tqdm_arguments_the_package_uses():
    bar = progress_bar(range(5, 10), desc="train", unit="scene", initial=5, total=10, stream=io.StringIO(),
                       leave=False, interval_s=3600)
    assert list(bar) == [5, 6, 7, 8, 9] and bar.n == 10 and len(bar) == 10
    assert "train: 10/10 scene (100%)" in bar.line()

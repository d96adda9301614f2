"""Atomic file output: write beside the target under a temporary name, then rename.

A reader never sees a partial file, and an interrupted or failed write leaves the previous
file (if any) untouched. The file gets the permissions a plain ``open(path, "w")`` would give
(0666 minus the umask, so usually 0644: readable by other users and tools), not the private
0600 of the temporary file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_UMASK = os.umask(0)  # read once at import (setting it is process-wide, so never from threads)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK


@contextmanager
def atomic_path(path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.

    suffix: the temporary name's extension (default: the target's), for writers that infer the
    format from the name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix if suffix is None else suffix,
                               dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_with(path, write_fn, suffix: str | None = None) -> Path:
    """Call ``write_fn(binary file object)`` on a temporary file beside ``path``, flush it to disk,
    then rename it to ``path``. Returns ``path``."""
    with atomic_path(path, suffix=suffix) as tmp, open(tmp, "wb") as f:
        write_fn(f)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def atomic_write_bytes(path, data: bytes) -> Path:
    return atomic_write_with(path, lambda f: f.write(data))


def atomic_write_text(path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())

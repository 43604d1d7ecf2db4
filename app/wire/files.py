"""The one way Braid replaces a file: write a temp file beside it, fsync, rename.

Profiles, the engine's runtime files and the helper's journal all go through
:func:`write_atomically`, so a reader (or a crash) sees the old file or the new one,
never half of one, and a file that holds anything private is created 0600 from its
first byte.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, text: str, *, mode: int = 0o600, durable: bool = True,
                     dir_mode: int = 0o700) -> None:
    """Replace ``path`` with ``text``. ``durable`` fsyncs the file and its directory (a
    profile, the journal); a status file rewritten ten times a second does without."""
    path.parent.mkdir(mode=dir_mode, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), mode)
            f.write(text)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

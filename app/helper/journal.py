"""What the helper holds, on disk, so that a restarted helper can find it again.

Never keys: names, numbers and pids only. The file is 0600 in a 0700 directory and
replaced atomically, so a crash leaves the old or the new journal, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from app.wire.files import write_atomically

JOURNAL_VERSION = 1


class Journal:
    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self.path = state_dir / "journal.json"

    def prepare(self) -> None:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)

    def read(self) -> dict[str, Any] | None:
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {"corrupt": True}
        return doc if isinstance(doc, dict) else {"corrupt": True}

    def write(self, doc: dict[str, Any]) -> None:
        write_atomically(self.path, json.dumps(
            {"version": JOURNAL_VERSION, "helper_pid": os.getpid(), **doc}))

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

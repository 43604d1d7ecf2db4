"""What the helper holds, on disk, so that a restarted helper can find it again.

Never keys: names, numbers, pids and the guard's allowed networks only. The file is
0600 in the 0700 state directory (statedir.py) and replaced atomically, so a crash
leaves the old or the new journal, never half of one.
"""

from __future__ import annotations

import json
import os
from typing import Any

from app.helper.statedir import StateDir

JOURNAL_VERSION = 1
NAME = "journal.json"


class Journal:
    def __init__(self, state_dir: StateDir) -> None:
        self.dir = state_dir

    def prepare(self) -> None:
        self.dir.open()

    def read(self) -> dict[str, Any] | None:
        try:
            text = self.dir.read(NAME)
        except OSError:
            return {"corrupt": True}
        if text is None:
            return None
        try:
            doc = json.loads(text)
        except ValueError:
            return {"corrupt": True}
        return doc if isinstance(doc, dict) else {"corrupt": True}

    def write(self, doc: dict[str, Any]) -> None:
        self.dir.write(NAME, json.dumps(
            {"version": JOURNAL_VERSION, "helper_pid": os.getpid(), **doc}))

    def clear(self) -> None:
        self.dir.unlink(NAME)

"""Deleting conntrack entries by path mark, so flows on a dead path re-classify."""

from __future__ import annotations

import re
import subprocess

from app.helper.errors import KernelError
from app.helper.state import MARK_MASK

_DELETED = re.compile(r"(\d+) flow entries have been deleted")


def flush_mark(mark: int) -> int:
    """Delete entries whose conntrack mark carries ``mark`` under Braid's mask (both
    families); returns how many went."""
    total = 0
    for family in ("ipv4", "ipv6"):
        done = subprocess.run(
            ["conntrack", "-D", "-f", family, "-m", f"{mark:#x}/{MARK_MASK:#x}"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        found = _DELETED.search(done.stderr + done.stdout)
        # conntrack exits 1 when nothing matched; that is success here.
        if found is None:
            raise KernelError(f"conntrack could not flush mark {mark:#x}: {done.stderr.strip()}")
        total += int(found.group(1))
    return total

"""Deleting conntrack entries by path mark, so flows on a dead path re-classify."""

from __future__ import annotations

import asyncio
import re

from app.helper.errors import KernelError
from app.helper.state import MARK_MASK

_DELETED = re.compile(r"(\d+) flow entries have been deleted")


async def _flush(mark: int, family: str) -> int:
    proc = await asyncio.create_subprocess_exec(
        "conntrack", "-D", "-f", family, "-m", f"{mark:#x}/{MARK_MASK:#x}",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    found = _DELETED.search(err.decode(errors="replace") + out.decode(errors="replace"))
    # conntrack exits 1 when nothing matched; that is success here.
    if found is None:
        raise KernelError(f"conntrack could not flush mark {mark:#x}: {err.decode().strip()}")
    return int(found.group(1))


async def flush_marks(marks: tuple[int, ...]) -> dict[int, int]:
    """Delete entries whose conntrack mark carries one of ``marks`` under Braid's mask,
    both families, all at once (a switch waits for this); returns counts by mark."""
    jobs = [(m, f) for m in marks for f in ("ipv4", "ipv6")]
    counts = await asyncio.gather(*(_flush(m, f) for m, f in jobs))
    out: dict[int, int] = dict.fromkeys(marks, 0)
    for (mark, _), n in zip(jobs, counts, strict=True):
        out[mark] += n
    return out

"""Enter an existing network namespace from the calling thread.

Network namespaces are per thread on Linux, so the engine's thread can move into a
lab's client namespace while the rest of the process (the UI, say) stays where it is.
This never creates a namespace (pyroute2's ``setns`` does by default, which is why
it is not used here).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

from app.core.errors import BraidError

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def enter_netns(name: str) -> None:
    """Move the calling thread into the named namespace (``ip netns`` naming)."""
    path = NETNS_DIR / name
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise BraidError(
            f"network namespace {name} does not exist",
            "is the lab up? `braid lab status`; start it with `braid lab up`",
        ) from None
    except PermissionError:
        raise BraidError(f"not allowed to open {path}", "run as root") from None
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise BraidError(
                f"cannot enter network namespace {name}: {os.strerror(err)}",
                "entering a lab's namespace needs root (CAP_SYS_ADMIN)",
            )
    finally:
        os.close(fd)

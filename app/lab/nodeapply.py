"""Apply the lab's node states, each in its own network namespace, from one process.

The reconcile is the node roles' own (app/node/reconcile.py, what `python -m app.node
apply` runs on a user's node); only the way in differs: one process enters each node's
namespace in turn (setns) instead of one process per node, because importing the
netlink library costs most of a second each and a lab has up to nine nodes.

    python -m app.lab.nodeapply < batch.json
    batch: {"log_dir": DIR, "nodes": [{"name": N, "netns": NS, "state": {...}}, ...]}

The batch carries private keys: stdin only. Prints what changed, per node; exits 1 with
the node and the reason on the first failure.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import sys
from pathlib import Path

from app.node import reconcile
from app.node.errors import NodeError
from app.node.state import parse_node
from app.wire.doc import StateError

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")


def enter(ns: str) -> None:
    """This process into network namespace ``ns`` (what `ip netns exec` does first)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(NETNS_DIR / ns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {ns}: {os.strerror(err)}")
    finally:
        os.close(fd)


def main() -> int:
    batch = json.load(sys.stdin)
    log_dir = Path(batch["log_dir"])
    for node in batch["nodes"]:
        try:
            enter(node["netns"])
            changes = asyncio.run(reconcile.apply(parse_node(node["state"]), log_dir))
        except (NodeError, StateError, OSError) as exc:
            print(f"{node['name']}: {exc}", file=sys.stderr)
            return 1
        print("\n".join(f"{node['name']}: {c}" for c in changes), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

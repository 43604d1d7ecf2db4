"""``python -m app.node``: apply a role's state on this node, or remove a role (root).

    python -m app.node apply [--state FILE] [--log-dir DIR] [--json]   # JSON; stdin default
    python -m app.node down gateway|exit [--json]
    python -m app.node check [--state FILE]                   # validate only

`braid gateway apply` runs the same code from a description of the nodes; the lab runs
this inside each node's network namespace. The state carries private keys: give it on
stdin or in a file only root can read, never on the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from app.node import reconcile
from app.node.confine import CONFINEMENTS, ROLES
from app.node.errors import NodeError
from app.node.state import NodeState, parse_node
from app.wire.doc import StateError

DEFAULT_LOG_DIR = Path("/var/log/braid-node")


def read_state(source: str) -> NodeState:
    """A state from a file, or stdin for "-"; StateError/NodeError say what is wrong."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as exc:
        raise NodeError(f"cannot read the state {source}: {exc.strerror}",
                        "give a readable file, or - for stdin") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise NodeError(f"the state is not JSON: {exc}", "give the JSON that "
                        "`braid gateway config NODE --keys` prints") from None
    return parse_node(doc)


def _print(changes: list[str], as_json: bool) -> None:
    if as_json:
        json.dump({"changes": changes}, sys.stdout)
        print()
    else:
        print("\n".join(changes) if changes else "no changes")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.node")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("apply", help="bring this node to a role's state (JSON)")
    p.add_argument("--state", default="-", help="the state file (default: stdin)")
    p.add_argument("--log-dir", type=Path, default=DEFAULT_LOG_DIR,
                   help=f"wireguard-go's logs (default {DEFAULT_LOG_DIR})")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("down", help="remove a role from this node")
    p.add_argument("role", choices=ROLES)
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("check", help="validate a state, change nothing")
    p.add_argument("--state", default="-")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "check":
            state = read_state(args.state)
            print(f"{state.role} {state.name}: valid")
            return 0
        if os.geteuid() != 0:
            raise NodeError("a node's roles need root", "run it as root on the node")
        changes: list[Any]
        if args.cmd == "apply":
            changes = asyncio.run(reconcile.apply(read_state(args.state), args.log_dir))
        else:
            changes = asyncio.run(reconcile.remove(CONFINEMENTS[args.role]))
        _print(changes, args.json)
        return 0
    except StateError as exc:
        print(f"braid-node: error: the state is not valid: {exc}; nothing was changed",
              file=sys.stderr)
        return 2
    except NodeError as exc:
        print(f"braid-node: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

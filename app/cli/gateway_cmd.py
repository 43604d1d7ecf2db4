"""`braid gateway ...`: one's own exit and gateways (docs/gateways.md).

    braid gateway init [--nodes FILE] --gateway NAME=HOST[:PORT]... (--exit NAME=IP | --separate)
    braid gateway show [--nodes FILE] [--json]
    braid gateway config NODE [--nodes FILE] [--out FILE.json]
    braid gateway apply NODE [--nodes FILE | --state FILE.json] [--down]     (root, on NODE)
    braid gateway client --profile NAME [--nodes FILE] [--client NAME]

The description holds every node's private keys: it is written 0600 and refused when
anyone but its owner can read it. Each node needs only its own state: `config NODE --out`
writes that (0600) for copying to the node, where `apply --state` takes it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from app.core.errors import BraidError
from app.node import describe
from app.node.confine import CONFINEMENTS
from app.node.describe import Nodes
from app.node.errors import NodeError
from app.node.state import NodeState, redacted, to_json
from app.wire.doc import StateError
from app.wire.files import write_atomically

DEFAULT_NODES = Path("braid-nodes.toml")
DEFAULT_LOG_DIR = Path("/var/log/braid-node")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    gw = sub.add_parser(
        "gateway", help="set up one's own exit and gateways (as root on each node)",
        description="Describe one's nodes (an exit and its gateways, or gateways that are "
                    "each their own exit), apply each node's configuration on it, and make "
                    "the client's profile. See docs/gateways.md.")
    cmds = gw.add_subparsers(dest="gateway_command", metavar="GATEWAY_COMMAND", required=True)

    def nodes_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--nodes", type=Path, default=DEFAULT_NODES, metavar="FILE",
                       help=f"the description of the nodes (default {DEFAULT_NODES})")

    p = cmds.add_parser("init", help="write a new description with fresh keys")
    nodes_arg(p)
    p.add_argument("--gateway", action="append", required=True, metavar="NAME=HOST[:PORT]",
                   help="a gateway and where clients reach it (port default 51820); repeat")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--exit", metavar="NAME=IP",
                       help="the shared exit and the address its gateways reach it at")
    where.add_argument("--separate", action="store_true",
                       help="no shared exit: each gateway translates onto its own uplink")
    p.add_argument("--egress", default="eth0", metavar="IFACE",
                   help="the uplink that translates (the exit's, or each gateway's with "
                        "--separate; default eth0)")
    p.add_argument("--client", action="append", metavar="NAME",
                   help="a client (repeat for several; default one called 'laptop')")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.set_defaults(handler=cmd_init)

    p = cmds.add_parser("show", help="the nodes, where they are reached, their addresses")
    nodes_arg(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_show)

    p = cmds.add_parser("config", help="a node's configuration (its role's state)")
    p.add_argument("node", metavar="NODE")
    nodes_arg(p)
    p.add_argument("--out", type=Path, metavar="FILE.json",
                   help="write it with its keys to FILE (mode 0600), for the node; without, "
                        "print it with its keys hidden")
    p.set_defaults(handler=cmd_config)

    p = cmds.add_parser("apply", help="bring this node to its configuration (root)")
    p.add_argument("node", metavar="NODE", nargs="?",
                   help="this node's name in the description (not with --state)")
    nodes_arg(p)
    p.add_argument("--state", type=Path, metavar="FILE.json",
                   help="the state `config NODE --out` wrote, instead of the description")
    p.add_argument("--down", action="store_true", help="remove the node's role instead")
    p.add_argument("--log-dir", type=Path, default=DEFAULT_LOG_DIR,
                   help=f"wireguard-go's logs (default {DEFAULT_LOG_DIR})")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_apply)

    p = cmds.add_parser("client", help="save a client's profile (keys to the keyring)")
    nodes_arg(p)
    p.add_argument("--profile", required=True, metavar="NAME", help="the profile to write")
    p.add_argument("--client", metavar="NAME", help="which client (default: the only one)")
    p.set_defaults(handler=cmd_client)


def _fail(exc: NodeError | StateError) -> BraidError:
    if isinstance(exc, StateError):
        return BraidError(f"the state is not valid: {exc}; nothing was changed",
                          "give the state `braid gateway config NODE --out` writes")
    return BraidError(exc.what, exc.fix)


def load(path: Path) -> Nodes:
    try:
        st = path.stat()
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BraidError(f"cannot read {path}: {exc.strerror}",
                         "write one with `braid gateway init`, or give --nodes FILE") from None
    _private(path, st.st_mode)
    try:
        return describe.load_nodes(text, str(path))
    except NodeError as exc:
        raise _fail(exc) from None


def _private(path: Path, mode: int) -> None:
    if mode & 0o077:
        raise BraidError(f"{path} holds private keys and others can read it "
                         f"(mode {mode & 0o777:o})", f"chmod 600 {path}")


def cmd_init(args: argparse.Namespace) -> int:
    if args.nodes.exists() and not args.force:
        raise BraidError(f"{args.nodes} exists", "give another --nodes FILE, or --force")
    gateways = [_pair(g, "--gateway") for g in args.gateway]
    exit_node = None if args.separate else _pair(args.exit, "--exit")
    try:
        nodes = describe.new_nodes(gateways, args.client or ["laptop"], exit_node=exit_node,
                                   egress=args.egress)
    except NodeError as exc:
        raise _fail(exc) from None
    write_atomically(args.nodes, describe.dump_nodes(nodes), mode=0o600)
    print(f"wrote {args.nodes} (mode 0600: it holds every node's private keys)")
    _print_nodes(nodes)
    print("next: on each node, as root: braid gateway apply NODE --nodes FILE "
          "(or copy it only its own: braid gateway config NODE --out NODE.json)")
    return 0


def _pair(text: str, option: str) -> tuple[str, str]:
    name, sep, where = text.partition("=")
    if not sep or not name or not where:
        raise BraidError(f"{option} {text!r} is not NAME=HOST",
                         f"write e.g. {option} hk=198.51.100.1")
    return name, where


def _print_nodes(nodes: Nodes) -> None:
    for line in _node_lines(nodes):
        print(line)


def _node_lines(nodes: Nodes) -> list[str]:
    lines = []
    if nodes.exit is not None:
        lines.append(f"  exit {nodes.exit.name}: translates onto {nodes.exit.egress}; clients "
                     f"{nodes.client_subnet}")
    for gw in nodes.gateways:
        bb = gw.backbone
        onward = f"to the exit at {bb.exit_endpoint} (probe {bb.exit_address.split('/')[0]})" \
            if bb else f"its own exit onto {gw.egress}"
        lines.append(f"  gateway {gw.name}: clients reach it at {gw.endpoint}, {onward}")
    for c in nodes.clients:
        addrs = sorted({nodes.client_address(c, gw) for gw in nodes.gateways})
        lines.append(f"  client {c.name}: {', '.join(addrs)}")
    return lines


def cmd_show(args: argparse.Namespace) -> int:
    nodes = load(args.nodes)
    if args.json:
        doc = {"topology": nodes.topology,
               "nodes": {n: redacted(describe.node_state(nodes, n)) for n in nodes.node_names}}
        json.dump(doc, sys.stdout, indent=1)
        print()
    else:
        print(f"{args.nodes}: {nodes.topology} exit")
        _print_nodes(nodes)
    return 0


def _state(nodes: Nodes, node: str) -> NodeState:
    try:
        return describe.node_state(nodes, node)
    except NodeError as exc:
        raise _fail(exc) from None


def cmd_config(args: argparse.Namespace) -> int:
    state = _state(load(args.nodes), args.node)
    if args.out is None:
        json.dump(redacted(state), sys.stdout, indent=1)
        print()
        return 0
    write_atomically(args.out, json.dumps(to_json(state), indent=1) + "\n", mode=0o600)
    print(f"wrote {args.out} (mode 0600: {state.role} {state.name}'s state with its keys); "
          f"on that node, as root: braid gateway apply --state {args.out.name}")
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    from app.node import reconcile
    from app.node.main import read_state

    if (args.state is None) == (args.node is None):
        raise BraidError("give NODE (with --nodes) or --state FILE.json",
                         "e.g. braid gateway apply hk --nodes braid-nodes.toml")
    if os.geteuid() != 0:
        raise BraidError("applying a node needs root", "run it as root on the node")
    try:
        if args.state is not None:
            _private(args.state, args.state.stat().st_mode)
            state = read_state(str(args.state))
        else:
            state = _state(load(args.nodes), args.node)
        if args.down:
            changes = asyncio.run(reconcile.remove(CONFINEMENTS[state.role]))
        else:
            changes = asyncio.run(reconcile.apply(state, args.log_dir))
    except (NodeError, StateError) as exc:
        raise _fail(exc) from None
    except OSError as exc:
        raise BraidError(f"cannot read {args.state}: {exc.strerror}", "give the file "
                         "`braid gateway config NODE --out` wrote") from None
    if args.json:
        json.dump({"node": state.name, "role": state.role, "changes": changes}, sys.stdout)
        print()
    else:
        what = "removed" if args.down else "applied"
        print(f"{state.role} {state.name} {what}: " + (
            "no changes" if not changes else f"{len(changes)} change(s)"))
        for change in changes:
            print(f"  {change}")
    return 0


def cmd_client(args: argparse.Namespace) -> int:
    from app.core.profiles.model import Gateway, GatewaySecrets, Peer, Profile
    from app.core.profiles.store import ProfileStore

    nodes = load(args.nodes)
    names = [c.name for c in nodes.clients]
    client = args.client or (names[0] if len(names) == 1 else None)
    if client is None:
        raise BraidError(f"the description has clients {', '.join(names)}",
                         "say which: --client NAME")
    try:
        tunnels = describe.client_tunnels(nodes, client)
    except NodeError as exc:
        raise _fail(exc) from None
    gateways = tuple(Gateway(
        name=t.gateway, interface=f"br-{t.gateway}",
        addresses=(t.address, t.address6) if t.address6 else (t.address,), dns=(),
        mtu=nodes.mtu, listen_port=None,
        peer=Peer(public_key=t.peer_public_key, endpoint=t.endpoint,
                  allowed_ips=("0.0.0.0/0", "::/0") if t.address6 else ("0.0.0.0/0",),
                  persistent_keepalive=describe.CLIENT_KEEPALIVE),
        probe=t.probe) for t in tunnels)
    profile = Profile(name=args.profile, gateways=gateways,
                      shared_exit=nodes.topology == describe.SHARED)
    ProfileStore().save(profile, {t.gateway: GatewaySecrets(t.private_key, None)
                                  for t in tunnels})
    exits = "one shared exit" if profile.shared_exit else "separate exits"
    print(f"saved profile {args.profile} for client {client}: {len(gateways)} gateway(s), "
          f"{exits} (keys in the keyring)")
    print(f"next: braid up --profile {args.profile}")
    return 0

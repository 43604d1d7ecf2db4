"""A role's links, routes, rules, nft table and sysctls: read from the kernel and changed
only where they differ, each dump confined to the role's own names and ranges.

Routes are app/helper/netlink.py's (its KernelRoute, want/put/drop), dumped here from the
role's tables instead of the helper's; rules are the roles' own (they select on the
incoming interface and the destination, which the helper's rules never do).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from app.helper import netlink
from app.helper.netlink import FR_ACT_TO_TBL, FR_ACT_UNREACHABLE, KernelRoute, RouteKey
from app.node.confine import Confinement
from app.node.errors import NodeError
from app.node.plan import NodeRule

FAMILY: dict[int, int] = {4: socket.AF_INET, 6: socket.AF_INET6}
VERSION: dict[int, int] = {v: k for k, v in FAMILY.items()}
SYSCTL = Path("/proc/sys")


async def _all(result: Any) -> list[Any]:
    gen: AsyncIterator[Any] = await result
    return [msg async for msg in gen]


def _fail(action: str, exc: NetlinkError) -> NodeError:
    return NodeError(f"the kernel refused to {action}: {exc}",
                     "see the message; nothing after this step was changed")


# ---- links ------------------------------------------------------------------------
async def links(ipr: AsyncIPRoute, conf: Confinement) -> dict[str, netlink.Link]:
    """The role's tunnels in this namespace (by name and kind: a bridge called bg-x is
    someone else's)."""
    out: dict[str, netlink.Link] = {}
    for msg in await _all(ipr.get_links()):
        name = msg.get("ifname")
        kind = msg.get(("linkinfo", "kind"))
        if isinstance(name, str) and conf.owns_iface(name) and kind in netlink.TUNNEL_KINDS:
            out[name] = netlink.Link(int(msg["index"]), int(msg.get("mtu") or 0),
                                     bool(msg["flags"] & netlink.IFF_UP))
    return out


# ---- routes -----------------------------------------------------------------------
async def routes(ipr: AsyncIPRoute, conf: Confinement) -> dict[RouteKey, KernelRoute]:
    """Every route in the role's tables, both families."""
    out: dict[RouteKey, KernelRoute] = {}
    for family in netlink.families():
        for msg in await _all(ipr.route("dump", family=family)):
            table = int(msg.get("table") or msg["table"])
            if table not in conf.tables:
                continue
            dst = msg.get("dst") or ("0.0.0.0" if family == socket.AF_INET else "::")
            net = str(ipaddress.ip_network(f"{dst}/{msg['dst_len']}", strict=False))
            kind = int(msg["type"])
            hops = () if kind == netlink.RTN_UNREACHABLE else ((int(msg.get("oif") or 0), 1),)
            metric = msg.get("priority")
            route = KernelRoute(family, table, net, hops, kind,
                                int(metric) if metric is not None else 0)
            out[route.key] = route
    return out


# ---- rules ------------------------------------------------------------------------
async def rules(ipr: AsyncIPRoute, conf: Confinement) -> list[NodeRule]:
    out: list[NodeRule] = []
    for family in netlink.families():
        for msg in await _all(ipr.get_rules(family=family)):
            priority = msg.get("priority")
            if priority is None or priority not in conf.priorities:
                continue
            dst = msg.get("dst")
            fwmark = msg.get("fwmark")
            action = int(msg["action"])
            table = msg.get("table") if action == FR_ACT_TO_TBL else None
            out.append(NodeRule(
                family=VERSION[family], priority=int(priority),
                iif=msg.get("iifname") or None,
                oif=msg.get("oifname") or None,
                dst=str(ipaddress.ip_network(f"{dst}/{msg['dst_len']}")) if dst else None,
                fwmark=int(fwmark) if fwmark is not None else None,
                fwmask=int(msg.get("fwmask")) if fwmark is not None else None,
                table=int(table) if table is not None else None,
            ))
    return out


def _rule_args(rule: NodeRule) -> dict[str, Any]:
    args: dict[str, Any] = {
        "family": FAMILY[rule.family], "priority": rule.priority,
        "action": FR_ACT_UNREACHABLE if rule.table is None else FR_ACT_TO_TBL,
        "table": rule.table or 0,
    }
    if rule.iif is not None:
        args["iifname"] = rule.iif
    if rule.oif is not None:
        args["oifname"] = rule.oif
    if rule.dst is not None:
        net = ipaddress.ip_network(rule.dst)
        args["dst"], args["dst_len"] = str(net.network_address), net.prefixlen
    if rule.fwmark is not None:
        args["fwmark"], args["fwmask"] = rule.fwmark, rule.fwmask
    return args


def want_rules(planned: tuple[NodeRule, ...]) -> list[NodeRule]:
    """The planned rules this kernel can hold (no IPv6 rules where IPv6 is off)."""
    return [r for r in planned if r.family == 4 or netlink.ipv6_enabled()]


async def add_rules(ipr: AsyncIPRoute, want: list[NodeRule], have: list[NodeRule]) -> list[str]:
    """Add what is missing, before anything is dropped (the kernel keeps insertion order
    among equal priorities, so an old rule answers until it goes: no gap)."""
    changes = []
    present = set(have)
    for rule in want:
        if rule not in present:
            try:
                await ipr.rule("add", **_rule_args(rule))
            except NetlinkError as exc:
                raise _fail(f"add {rule.describe()}", exc) from None
            present.add(rule)
            changes.append(rule.describe())
    return changes


async def drop_rules(ipr: AsyncIPRoute, want: list[NodeRule], have: list[NodeRule]) -> list[str]:
    """Delete what is not wanted, and duplicates (the kernel takes a rule twice)."""
    changes = []
    keep, seen = set(want), set()
    for rule in have:
        if rule not in keep or rule in seen:
            try:
                await ipr.rule("del", **_rule_args(rule))
            except NetlinkError as exc:
                if exc.code != 2:  # ENOENT: gone already
                    raise _fail(f"delete {rule.describe()}", exc) from None
            changes.append(f"removed {rule.describe()}")
        seen.add(rule)
    return changes


# ---- nft --------------------------------------------------------------------------
_COMMENT = re.compile(r'^\s*comment "braid-node ([0-9a-f]{16})"$', re.MULTILINE)


def _nft(script: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["nft", "-f", "-"], input=script, capture_output=True,
                              text=True, check=False, timeout=30)
    except FileNotFoundError:
        raise NodeError("nft is not installed",
                        "apt-get install --no-install-recommends nftables") from None


def _digest(ruleset: str) -> str:
    return hashlib.sha256(ruleset.encode()).hexdigest()[:16]


def nft_loaded(conf: Confinement, table: str | None = None) -> str | None:
    """The digest of the ruleset the role last loaded into ``table`` (default: its main
    table; kept in the table's comment), or None without a table. A table edited by hand
    keeps its comment: --down, then apply."""
    table = table or conf.nft_table
    done = _nft(f"list table {table}\n")
    if done.returncode != 0:
        return None
    found = _COMMENT.search(done.stdout)
    return found.group(1) if found else ""


def nft_load(conf: Confinement, ruleset: str, table: str | None = None) -> list[str]:
    """Replace the role's ``table`` (default: its main one) in one transaction, if its
    ruleset changed."""
    table = table or conf.nft_table
    digest = _digest(ruleset)
    if nft_loaded(conf, table) == digest:
        return []
    head, _, body = ruleset.partition("\n")
    script = (f"table {table}\ndelete table {table}\n"
              f'{head}\n\tcomment "braid-node {digest}"\n{body}')
    done = _nft(script)
    if done.returncode != 0:
        raise NodeError(f"nft refused table {table}: {done.stderr.strip()}",
                        "this is a bug in Braid's rendering; please report it")
    return [f"loaded nft table {table}"]


def nft_delete(conf: Confinement, table: str | None = None) -> list[str]:
    table = table or conf.nft_table
    if nft_loaded(conf, table) is None:
        return []
    done = _nft(f"delete table {table}\n")
    if done.returncode != 0:
        raise NodeError(f"nft could not delete table {table}: {done.stderr.strip()}",
                        "see the message")
    return [f"removed nft table {table}"]


# ---- sysctls ----------------------------------------------------------------------
def sysctl_set(key: str, value: str) -> list[str]:
    """Write ``key`` (under /proc/sys, this network namespace's) if it differs."""
    path = SYSCTL / key
    try:
        if path.read_text().strip() == value:
            return []
        path.write_text(value + "\n")
    except OSError as exc:
        raise NodeError(f"cannot set {key.replace('/', '.')} = {value}: {exc}",
                        "run as root, in the node's own network namespace") from None
    return [f"{key.replace('/', '.')} = {value}"]

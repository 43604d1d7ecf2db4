"""Bring a node's kernel to a role's state, or remove the role: the order, and what
leaks if it stops midway.

Apply, each step in place before the next relies on it:
1. the devices, keys and ports, but no new peers: nothing new comes in yet;
2. their addresses and MTU, the routes, then the rules (new before old: no gap), the
   nft table, then the sysctls (forwarding last: until then the node forwards nothing);
3. the peers: only now can traffic arrive, and everything it needs is there;
4. what the state no longer has: devices first (what came in through them stops), then
   rules and routes.
Stopped anywhere, what is in place is closed: a gateway's clients' traffic reaches the
exit or meets ``unreachable``, traffic to a client reaches its tunnel or meets
``unreachable``, and the exit's replies reach a gateway or meet ``unreachable`` (never
the node's own default route); a device whose wireguard-go died takes its routes with it
and its rules close the rest. Apply again (or --down) to finish.

Remove (--down): every device of the role, then its nft table, rules and routes: found
by the role's names and ranges (confine.py), so it needs no record of what was applied.
net.ipv4.ip_forward is left as it is: other things on the node may forward too.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from pyroute2 import AsyncIPRoute

from app.helper import netlink
from app.node import devices, kernel
from app.node.confine import Confinement
from app.node.plan import Plan, plan
from app.node.state import NodeState


async def apply(state: NodeState, log_dir: Path) -> list[str]:
    """Reconcile; returns what changed (empty when the node already holds ``state``)."""
    p = plan(state)
    conf = p.conf
    changes: list[str] = []
    async with AsyncIPRoute() as ipr:
        # Side by side: most of a first apply is wireguard-go starting.
        for done in await asyncio.gather(*(devices.ensure(ipr, dev, log_dir, peers=False)
                                           for dev in p.devices)):
            changes += done
        changes += await _links(ipr, p)
        index = {n: link.index for n, link in (await kernel.links(ipr, conf)).items()}
        want_routes = netlink.want_routes(p.tables, index)
        have_routes = await kernel.routes(ipr, conf)
        want_rules = kernel.want_rules(p.rules)
        have_rules = await kernel.rules(ipr, conf)
        changes += await netlink.put_routes(ipr, want_routes, have_routes)
        changes += await kernel.add_rules(ipr, want_rules, have_rules)
        changes += kernel.nft_load(conf, p.nft)
        for table, ruleset in ((conf.copy_table, p.nft_copy), (conf.copy_table6, p.nft_copy6)):
            if table is not None:
                changes += (kernel.nft_load(conf, ruleset, table) if ruleset
                            else kernel.nft_delete(conf, table))
        # Per-device settings first; forwarding last of all.
        for key, value in sorted(p.sysctls, key=lambda kv: "forwarding" in kv[0]
                                 or kv[0].endswith("ip_forward")):
            changes += kernel.sysctl_set(key, value)
        for dev in p.devices:
            changes += await devices.ensure(ipr, dev, log_dir, peers=True)
        wanted = {dev.name for dev in p.devices}
        for name in sorted(set(index) - wanted):
            changes += await devices.remove(ipr, name)
        changes += await kernel.drop_rules(ipr, want_rules, have_rules)
        # Routes into a removed device went with it; the rest of what is not wanted now.
        changes += await netlink.drop_routes(ipr, want_routes, await kernel.routes(ipr, conf))
    return changes


async def _links(ipr: AsyncIPRoute, p: Plan) -> list[str]:
    links = await kernel.links(ipr, p.conf)
    addrs = await netlink.addresses(ipr)
    changes: list[str] = []
    for dev in p.devices:
        link = links.get(dev.name)
        changes += await netlink.ensure_link(
            ipr, dev.name, dev.addresses, dev.effective_mtu, link,
            addrs.get(link.index, set()) if link else set())
    return changes


async def remove(conf: Confinement) -> list[str]:
    """Everything of the role's on this node, found by its names and ranges."""
    changes: list[str] = []
    async with AsyncIPRoute() as ipr:
        for name in sorted(await kernel.links(ipr, conf)):
            changes += await devices.remove(ipr, name)
        changes += kernel.nft_delete(conf)
        for table in (conf.copy_table, conf.copy_table6):
            if table is not None:
                changes += kernel.nft_delete(conf, table)
        changes += await kernel.drop_rules(ipr, [], await kernel.rules(ipr, conf))
        changes += await netlink.drop_routes(ipr, {}, await kernel.routes(ipr, conf))
    return changes

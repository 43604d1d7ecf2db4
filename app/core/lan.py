"""The LAN a user keeps while connected: this machine's directly connected networks.

Read from the main routing table of the engine's own network namespace (a netlink dump,
no privilege needed): every route the kernel made for an address on a link (scope link,
protocol kernel) on an interface that is not Braid's and not loopback, plus what a LAN
needs besides unicast — IPv4's local multicast block (mDNS, SSDP's neighbours) and the
limited broadcast, IPv6's link-local unicast and multicast. A printer, a NAS and the
home router are on one of these; the kill switch lets exactly these out (and the user's
exclusions), nothing else.

The list is read again every few seconds by the engine: a laptop that moves from home
Wi-Fi to a café gets the café's network, and the home one is closed again.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

from pyroute2 import AsyncIPRoute

from app.wire.fields import IFACE_RE

RT_TABLE_MAIN = 254
RT_SCOPE_LINK = 253
RTPROT_KERNEL = 2
LAN_EXTRAS = ("224.0.0.0/24", "255.255.255.255/32", "fe80::/10", "ff02::/16")


async def connected_networks() -> list[str]:
    """Networks directly connected to this namespace's own (non-Braid) links."""
    out: list[str] = []
    async with AsyncIPRoute() as ipr:
        names = {int(link["index"]): str(link.get("ifname"))
                 async for link in await ipr.get_links()}
        for family in (socket.AF_INET, socket.AF_INET6):
            async for msg in await ipr.get_routes(family=family, table=RT_TABLE_MAIN):
                if msg.get("proto") != RTPROT_KERNEL or msg.get("dst_len", 0) == 0:
                    continue
                if family == socket.AF_INET and msg.get("scope") != RT_SCOPE_LINK:
                    continue
                dev = names.get(int(msg.get("oif") or 0), "")
                if dev == "lo" or IFACE_RE.match(dev):
                    continue
                net = ipaddress.ip_network(f"{msg.get('dst')}/{msg['dst_len']}", strict=False)
                if net.is_link_local or net.is_loopback or net.is_multicast:
                    continue  # link-local comes whole in LAN_EXTRAS
                out.append(str(net))
    return sorted(set(out))


async def allowed(lan_access: bool, exclude: Iterable[str]) -> tuple[str, ...]:
    """What the kill switch lets out besides the tunnels: the LAN (if the user keeps it)
    and the user's exclusions."""
    nets = list(exclude)
    if lan_access:
        nets += await connected_networks() + list(LAN_EXTRAS)
    v4 = [n for n in map(ipaddress.ip_network, nets) if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in map(ipaddress.ip_network, nets) if isinstance(n, ipaddress.IPv6Network)]
    return tuple(str(n) for n in [*ipaddress.collapse_addresses(v4),
                                  *ipaddress.collapse_addresses(v6)])

"""Kernel MPTCP on the client (docs/multipath.md, "MPTCP"): one subflow endpoint per
healthy tunnel, the path manager's limits, and the table ``ip braid_mptcp``.

An app's MPTCP connection starts as one TCP subflow wherever its class routes it; the
kernel's path manager then opens one more subflow from each endpoint, bound to that
endpoint's tunnel. The kernel refuses two endpoints with one address and a shared exit
gives every tunnel the same one, so each endpoint has a local-only address of Braid's
(MPTCP_LOCAL_NET), put on its tunnel with link scope (the kernel never picks it as an
ordinary flow's source) and translated to the tunnel's own address as the subflow
leaves (this table). The engine's rule "from that address lookup the tunnel's table"
routes the subflow, whatever its class's mark says.

What can leak if the helper dies anywhere here: nothing outside the tunnels. A subflow
is bound to its tunnel's device (it cannot leave by the uplink, and the guard passes
only what goes into a tunnel); one that leaves untranslated (the table not loaded yet)
has a source no gateway accepts and is dropped there. Endpoints are added after the
table is loaded and removed before it goes.

The path manager's netlink family is ``mptcp_pm``. pyroute2 0.9.7 has a class for it
(pyroute2.netlink.generic.mptcp) whose interface index attribute cannot be encoded (it
is declared "hex"), so this module declares the messages itself, on pyroute2's generic
netlink socket. Endpoints are Braid's by id (MPTCP_ID_MIN..MAX): no other is touched.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink import NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, genlmsg, nla
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.generic import AsyncGenericNetlinkSocket

from app.helper import netlink
from app.helper.errors import KernelError
from app.helper.nft import names
from app.wire.state import (
    MPTCP_ID_MAX,
    MPTCP_ID_MIN,
    MPTCP_LOCAL_NET,
    NFT_MPTCP_FAMILY,
    NFT_MPTCP_TABLE,
    MptcpState,
    TunnelState,
)

TABLE = f"{NFT_MPTCP_FAMILY} {NFT_MPTCP_TABLE}"
FAMILY = "mptcp_pm"
CMD_ADD_ADDR, CMD_DEL_ADDR, CMD_GET_ADDR, CMD_SET_LIMITS, CMD_GET_LIMITS = 1, 2, 3, 5, 6
FLAG_SUBFLOW = 0x2  # MPTCP_PM_ADDR_FLAG_SUBFLOW: open subflows from it
SCOPE_LINK = 253
ENOENT, EINVAL = 2, 22
_BLOCK = ipaddress.ip_network(MPTCP_LOCAL_NET)


class _Msg(genlmsg):  # type: ignore[misc]
    prefix = "MPTCP_PM_ATTR_"
    nla_map = (
        ("MPTCP_PM_ATTR_UNSPEC", "none"),
        ("MPTCP_PM_ATTR_ADDR", "pm_addr"),
        ("MPTCP_PM_ATTR_RCV_ADD_ADDRS", "uint32"),
        ("MPTCP_PM_ATTR_SUBFLOWS", "uint32"),
    )

    class pm_addr(nla):  # type: ignore[misc]  # the name pyroute2 looks the nla up by
        prefix = "MPTCP_PM_ADDR_ATTR_"
        nla_map = (
            ("MPTCP_PM_ADDR_ATTR_UNSPEC", "none"),
            ("MPTCP_PM_ADDR_ATTR_FAMILY", "uint16"),
            ("MPTCP_PM_ADDR_ATTR_ID", "uint8"),
            ("MPTCP_PM_ADDR_ATTR_ADDR4", "ip4addr"),
            ("MPTCP_PM_ADDR_ATTR_ADDR6", "ip6addr"),
            ("MPTCP_PM_ADDR_ATTR_PORT", "uint16"),
            ("MPTCP_PM_ADDR_ATTR_FLAGS", "uint32"),
            ("MPTCP_PM_ADDR_ATTR_IF_IDX", "int32"),
        )


class _Socket(AsyncGenericNetlinkSocket):  # type: ignore[misc]
    async def setup_endpoint(self) -> None:
        if getattr(self.local, "transport", None) is not None:
            return
        await super().setup_endpoint()
        await self.bind(FAMILY, _Msg)


@dataclass(frozen=True)
class Endpoint:
    """One endpoint as the kernel holds it."""

    id: int
    address: str
    flags: int
    ifindex: int

    def describe(self) -> str:
        return f"MPTCP endpoint {self.id} {self.address}"


@dataclass(frozen=True)
class Limits:
    subflows: int
    add_addr_accepted: int

    def as_list(self) -> list[int]:
        return [self.subflows, self.add_addr_accepted]


def owns(address: str) -> bool:
    """Whether an interface address (``"192.0.0.224/32"``) is one of this module's."""
    ip = ipaddress.ip_interface(address).ip
    return ip.version == 4 and ip in _BLOCK


def render(state: MptcpState, tunnels: Iterable[TunnelState]) -> str:
    """The translation of each endpoint's address to its tunnel's IPv4 address (the
    first: validation made sure there is one), only as it leaves by that tunnel."""
    inner = {t.name: next(str(ipaddress.ip_interface(a).ip) for a in t.addresses
                          if ipaddress.ip_interface(a).version == 4)
             for t in tunnels if any(ipaddress.ip_interface(a).version == 4
                                     for a in t.addresses)}
    lines = [f"\t\toifname {names([e.dev])} ip saddr {e.address} snat ip to {inner[e.dev]}"
             for e in sorted(state.endpoints, key=lambda e: e.id) if e.dev in inner]
    return "\n".join([
        f"table {TABLE} {{",
        "\tchain postrouting {",
        "\t\ttype nat hook postrouting priority srcnat; policy accept;",
        *lines,
        "\t}",
        "}",
    ]) + "\n"


async def _all(result: Any) -> list[Any]:
    if hasattr(result, "__aiter__"):
        gen: AsyncIterator[Any] = result
        return [m async for m in gen]
    return list(result)


class PathManager:
    """The kernel's path manager over generic netlink (``async with``)."""

    def __init__(self) -> None:
        self._sock: _Socket | None = None

    async def __aenter__(self) -> PathManager:
        sock = _Socket()
        try:
            await sock.setup_endpoint()
        except Exception as exc:
            sock.close()
            raise KernelError(f"this kernel has no MPTCP path manager ({exc})") from None
        self._sock = sock
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def _request(self, cmd: int, flags: int, attrs: list[Any]) -> list[Any]:
        assert self._sock is not None
        msg = _Msg()
        msg["cmd"] = cmd
        msg["version"] = 1
        msg["attrs"] = attrs
        return await _all(await self._sock.nlm_request(msg, msg_type=self._sock.prid,
                                                       msg_flags=flags))

    async def endpoints(self) -> list[Endpoint]:
        """Braid's endpoints (ids in MPTCP_ID_MIN..MAX), no one else's."""
        out = []
        for msg in await self._request(CMD_GET_ADDR, NLM_F_REQUEST | NLM_F_DUMP, []):
            addr = msg.get_attr("MPTCP_PM_ATTR_ADDR")
            if addr is None:
                continue
            ep_id = int(addr.get_attr("MPTCP_PM_ADDR_ATTR_ID") or 0)
            if MPTCP_ID_MIN <= ep_id <= MPTCP_ID_MAX:
                out.append(Endpoint(
                    ep_id, str(addr.get_attr("MPTCP_PM_ADDR_ATTR_ADDR4")
                               or addr.get_attr("MPTCP_PM_ADDR_ATTR_ADDR6")),
                    int(addr.get_attr("MPTCP_PM_ADDR_ATTR_FLAGS") or 0),
                    int(addr.get_attr("MPTCP_PM_ADDR_ATTR_IF_IDX") or 0)))
        return out

    async def add(self, ep: Endpoint) -> None:
        attrs = [("MPTCP_PM_ADDR_ATTR_FAMILY", socket.AF_INET), ("MPTCP_PM_ADDR_ATTR_ID", ep.id),
                 ("MPTCP_PM_ADDR_ATTR_ADDR4", ep.address),
                 ("MPTCP_PM_ADDR_ATTR_FLAGS", ep.flags),
                 ("MPTCP_PM_ADDR_ATTR_IF_IDX", ep.ifindex)]
        try:
            await self._request(CMD_ADD_ADDR, NLM_F_REQUEST | NLM_F_ACK,
                                [("MPTCP_PM_ATTR_ADDR", {"attrs": attrs}, 0x8000)])
        except NetlinkError as exc:
            raise KernelError(f"the kernel refused to add {ep.describe()}: {exc}") from None

    async def delete(self, ep_id: int) -> bool:
        """Delete endpoint ``ep_id`` (the kernel closes its subflows); False: not there."""
        try:
            await self._request(CMD_DEL_ADDR, NLM_F_REQUEST | NLM_F_ACK, [(
                "MPTCP_PM_ATTR_ADDR", {"attrs": [("MPTCP_PM_ADDR_ATTR_ID", ep_id)]}, 0x8000)])
        except NetlinkError as exc:
            if exc.code in (ENOENT, EINVAL):  # EINVAL: "address not found"
                return False
            raise KernelError(f"the kernel refused to delete MPTCP endpoint {ep_id}: "
                              f"{exc}") from None
        return True

    async def limits(self) -> Limits:
        msgs = await self._request(CMD_GET_LIMITS, NLM_F_REQUEST, [])
        msg = msgs[0]
        return Limits(int(msg.get_attr("MPTCP_PM_ATTR_SUBFLOWS") or 0),
                      int(msg.get_attr("MPTCP_PM_ATTR_RCV_ADD_ADDRS") or 0))

    async def set_limits(self, limits: Limits) -> None:
        try:
            await self._request(CMD_SET_LIMITS, NLM_F_REQUEST | NLM_F_ACK, [
                ("MPTCP_PM_ATTR_SUBFLOWS", limits.subflows),
                ("MPTCP_PM_ATTR_RCV_ADD_ADDRS", limits.add_addr_accepted)])
        except NetlinkError as exc:
            raise KernelError(f"the kernel refused MPTCP limits {limits}: {exc}") from None


def _want(state: MptcpState | None, index: dict[str, int]) -> dict[int, Endpoint]:
    if state is None:
        return {}
    return {e.id: Endpoint(e.id, e.address, FLAG_SUBFLOW, index[e.dev])
            for e in state.endpoints if e.dev in index}


def _want_addresses(state: MptcpState | None, index: dict[str, int]) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {i: set() for i in index.values()}
    for ep in _want(state, index).values():
        out[ep.ifindex].add(f"{ep.address}/32")
    return out


class Mptcp:
    """What the reconciler holds of MPTCP: the limits as they were before Braid set
    them (journaled, restored when the state has no MPTCP any more)."""

    def __init__(self) -> None:
        self.was: Limits | None = None
        self.active = False  # endpoints or addresses of this module may be in the kernel

    async def drop(self, ipr: AsyncIPRoute, state: MptcpState | None,
                   index: dict[str, int]) -> list[str]:
        """Remove endpoints and addresses ``state`` does not want (before the table that
        translates them changes): their subflows close."""
        if state is None and not self.active:
            return []
        want = _want(state, index)
        changes = []
        async with PathManager() as pm:
            for ep in await pm.endpoints():
                if want.get(ep.id) != ep and await pm.delete(ep.id):
                    changes.append(f"removed {ep.describe()}")
        changes += await self._addresses(ipr, state, index, add=False)
        return changes

    async def put(self, ipr: AsyncIPRoute, state: MptcpState | None,
                  index: dict[str, int]) -> list[str]:
        """Add what ``state`` wants (after its table and rules are in place), and set or
        restore the limits."""
        if state is None:
            changes = []
            if self.was is not None:
                async with PathManager() as pm:
                    await pm.set_limits(self.was)
                changes.append(f"MPTCP limits back to {self.was.as_list()}")
                self.was = None
            self.active = False
            return changes
        self.active = True
        changes = await self._addresses(ipr, state, index, add=True)
        async with PathManager() as pm:
            have = {ep.id: ep for ep in await pm.endpoints()}
            for ep_id, ep in sorted(_want(state, index).items()):
                if have.get(ep_id) != ep:
                    await pm.add(ep)
                    changes.append(f"{ep.describe()} subflow dev {ep.ifindex}")
            limits = Limits(state.subflows, state.add_addr_accepted)
            current = await pm.limits()
            if current != limits:
                if self.was is None:
                    self.was = current
                await pm.set_limits(limits)
                changes.append(f"MPTCP limits {limits.as_list()}")
        return changes

    async def _addresses(self, ipr: AsyncIPRoute, state: MptcpState | None,
                         index: dict[str, int], *, add: bool) -> list[str]:
        want = _want_addresses(state, index)
        have = await netlink.addresses(ipr)
        changes = []
        for ifindex, wanted in sorted(want.items()):
            mine = {a for a in have.get(ifindex, set()) if owns(a)}
            for addr in sorted(wanted - mine if add else mine - wanted):
                ip = str(ipaddress.ip_interface(addr).ip)
                try:
                    if add:
                        await ipr.addr("replace", index=ifindex, address=ip, prefixlen=32,
                                       scope=SCOPE_LINK, flags=netlink.IFA_F_NOPREFIXROUTE)
                    else:
                        await ipr.addr("del", index=ifindex, address=ip, prefixlen=32)
                except NetlinkError as exc:
                    raise KernelError(f"the kernel refused to {'add' if add else 'remove'} "
                                      f"MPTCP address {ip}: {exc}") from None
                changes.append(f"{'added' if add else 'removed'} MPTCP address {ip} "
                               f"(link {ifindex})")
        return changes

    async def drift(self, ipr: AsyncIPRoute, state: MptcpState | None,
                    index: dict[str, int]) -> list[str]:
        if state is None:
            return []
        out = []
        async with PathManager() as pm:
            have = {ep.id: ep for ep in await pm.endpoints()}
            if have != _want(state, index):
                out.append("MPTCP endpoints")
            if await pm.limits() != Limits(state.subflows, state.add_addr_accepted):
                out.append("MPTCP limits")
        addrs = await netlink.addresses(ipr)
        for ifindex, wanted in _want_addresses(state, index).items():
            if {a for a in addrs.get(ifindex, set()) if owns(a)} != wanted:
                out.append("MPTCP addresses")
                break
        return out

    async def leftovers(self, was: Any) -> list[str]:
        """Braid's endpoints of an earlier run, and the limits it journaled as they were
        before it (their addresses went with their links)."""
        found: list[str] = []
        try:
            async with PathManager() as pm:
                for ep in await pm.endpoints():
                    if await pm.delete(ep.id):
                        found.append(ep.describe())
                if (isinstance(was, list) and len(was) == 2
                        and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 8
                                for v in was)):
                    await pm.set_limits(Limits(was[0], was[1]))
                    found.append(f"MPTCP limits (back to {was})")
        except KernelError:
            return found  # no MPTCP in this kernel: nothing of it to remove
        self.was, self.active = None, False
        return found

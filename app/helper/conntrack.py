"""Deleting conntrack entries by path mark, so flows on a dead path re-classify; moving
one spread bulk flow to another path (its entry's mark changed in place, for the
engine's rebalancing: docs/multipath.md, "Rebalancing"); and conntrack's byte
accounting, which the volume rule needs (:class:`Accounting`).

One ctnetlink DELETE request with no tuple and a mark/mask filter: the kernel walks its
table and deletes the matching entries itself (ctnetlink_flush_conntrack), both
families at once (nfgen_family AF_UNSPEC, version 0). No process, no dump: a switch
waits for this (~0.3 ms; `conntrack -D` was a process per family, ~20 ms). The kernel
reports no count, so neither do we.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.nfnetlink.nfctsocket import AsyncNFCTSocket, NFCTAttrTuple

from app.helper.errors import KernelError
from app.helper.nft import LABEL_SPREAD
from app.wire.state import MARK_MASK

TCP_ESTABLISHED = 3  # the kernel's TCP_CONNTRACK_ESTABLISHED


@dataclass(frozen=True)
class SpreadFlow:
    """An established TCP flow that spreading dealt onto a path (label LABEL_SPREAD)."""

    family: int
    saddr: str
    daddr: str
    sport: int
    dport: int
    mark: int  # its path mark (under MARK_MASK)
    bytes: int  # both ways so far (0 without conntrack's accounting)


def _spread_flow(entry: Any) -> SpreadFlow | None:
    labels = entry.get_attr("CTA_LABELS") or 0
    info = (entry.get_attr("CTA_PROTOINFO") or {}).get("attrs", [])
    tcp = next((v for k, v, *_ in info if k == "CTA_PROTOINFO_TCP"), None)
    if not (labels >> LABEL_SPREAD) & 1 or tcp is None or \
            tcp.get_attr("CTA_PROTOINFO_TCP_STATE") != TCP_ESTABLISHED:
        return None
    orig = entry.get_attr("CTA_TUPLE_ORIG")
    ip, proto = orig.get_attr("CTA_TUPLE_IP"), orig.get_attr("CTA_TUPLE_PROTO")
    v6 = ip.get_attr("CTA_IP_V6_SRC") is not None
    counted = [entry.get_attr(k) for k in ("CTA_COUNTERS_ORIG", "CTA_COUNTERS_REPLY")]
    return SpreadFlow(
        socket.AF_INET6 if v6 else socket.AF_INET,
        ip.get_attr("CTA_IP_V6_SRC" if v6 else "CTA_IP_V4_SRC"),
        ip.get_attr("CTA_IP_V6_DST" if v6 else "CTA_IP_V4_DST"),
        proto.get_attr("CTA_PROTO_SRC_PORT"), proto.get_attr("CTA_PROTO_DST_PORT"),
        (entry.get_attr("CTA_MARK") or 0) & MARK_MASK,
        sum(c.get_attr("CTA_COUNTERS_BYTES") or 0 for c in counted if c is not None))


class Flusher:
    """Holds its netlink socket open for the helper's life: closing a netfilter netlink
    socket waits for nf_tables' pending transaction cleanup (an RCU grace period,
    ~20 ms right after an nft load), which a socket per switch would pay every time."""

    def __init__(self) -> None:
        self._sock: AsyncNFCTSocket | None = None  # AF_UNSPEC: flushes and dumps
        self._by_family: dict[int, AsyncNFCTSocket] = {}  # an update names its family

    async def flush_marks(self, marks: tuple[int, ...]) -> None:
        """Delete the entries whose conntrack mark carries one of ``marks`` under
        Braid's mask, IPv4 and IPv6."""
        if not marks:
            return
        sock = await self._socket()
        for mark in marks:
            try:
                await sock.flush(mark=mark, mark_mask=MARK_MASK)
            except NetlinkError as exc:
                raise KernelError(
                    f"the kernel refused to flush conntrack mark {mark:#x}: {exc}"
                ) from None

    async def _socket(self) -> AsyncNFCTSocket:
        if self._sock is None:
            sock = AsyncNFCTSocket(nfgen_family=socket.AF_UNSPEC)
            await sock.setup_endpoint()
            self._sock = sock
        return self._sock

    async def spread_flows(self, marks: tuple[int, ...]) -> list[SpreadFlow]:
        """The established spread TCP flows on the paths of ``marks``, both families:
        one kernel-filtered dump per mark (a few entries each; the status asks once a
        second while bulk is spread)."""
        sock = await self._socket()
        flows: list[SpreadFlow] = []
        for mark in sorted(set(marks)):
            try:
                entries = [e async for e in await sock.dump(mark=mark, mark_mask=MARK_MASK)]
            except NetlinkError as exc:
                raise KernelError(f"the kernel refused a conntrack dump: {exc}") from None
            flows += [f for f in map(_spread_flow, entries) if f is not None]
        return flows

    async def move(self, src: int, dst: int) -> SpreadFlow | None:
        """Give one established spread flow of path mark ``src`` the mark ``dst`` (the
        rest of its mark kept): the one that has moved the fewest bytes, which in a
        batch of like transfers has the most left. None: ``src`` had none (it ended
        since the status the engine read)."""
        flows = sorted(await self.spread_flows((src,)), key=lambda f: f.bytes)
        if not flows:
            return None
        flow = flows[0]
        if flow.family not in self._by_family:
            sock = AsyncNFCTSocket(nfgen_family=flow.family)
            await sock.setup_endpoint()
            self._by_family[flow.family] = sock
        tuple_orig = NFCTAttrTuple(family=flow.family, saddr=flow.saddr, daddr=flow.daddr,
                                   proto=socket.IPPROTO_TCP, sport=flow.sport,
                                   dport=flow.dport)
        try:
            await self._by_family[flow.family].entry(
                "set", tuple_orig=tuple_orig, mark=dst, mark_mask=MARK_MASK)
        except NetlinkError as exc:
            if exc.code == errno.ENOENT:
                return None  # it ended between the dump and now
            raise KernelError(f"the kernel refused to move conntrack entry {flow}: "
                              f"{exc}") from None
        return flow

    def close(self) -> None:
        for sock in (self._sock, *self._by_family.values()):
            if sock is not None:
                sock.close()
        self._sock = None
        self._by_family.clear()


ACCT = Path("/proc/sys/net/netfilter/nf_conntrack_acct")


class Accounting:
    """Conntrack's byte counters (``ct bytes``), which the volume rule reads: off by
    default, a sysctl of this network namespace. On while a marking asks for the volume
    rule, back to what it was after; ``was`` is journaled so that a restarted helper
    (or --cleanup) puts it back. Flows that started while it was off have no counters,
    and never become bulk by volume."""

    def __init__(self) -> None:
        self.was: int | None = None  # the value before the helper turned it on

    def want(self, on: bool) -> list[str]:
        if on and self.was is None:
            try:
                before = int(ACCT.read_text())
            except (OSError, ValueError) as exc:
                raise KernelError(f"cannot read {ACCT}: {exc}") from None
            if before == 1:
                return []
            self._write(1)
            self.was = before
            return ["conntrack byte accounting on"]
        if not on and self.was is not None:
            return self.restore()
        return []

    def restore(self, was: int | None = None) -> list[str]:
        value = self.was if was is None else was
        if value is None:
            return []
        self._write(value)
        self.was = None
        return [f"conntrack byte accounting back to {value}"]

    @staticmethod
    def _write(value: int) -> None:
        try:
            ACCT.write_text(f"{value}\n")
        except OSError as exc:
            raise KernelError(f"cannot set {ACCT}: {exc}") from None

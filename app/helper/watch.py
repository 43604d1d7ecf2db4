"""Kernel events that may mean drift: rtnetlink (links, addresses, routes, rules) and
nf_tables (NFNLGRP_NFTABLES), read from raw netlink sockets in the helper's namespace.

Only the headers are parsed, enough to tell whether an event touches something of
Braid's (a ``br-*`` link, an address on one of its links, a route in tables 52000-52099,
a rule at 5200-5299, the nft tables ``inet braid`` and ``inet braid_guard``); such an
event calls ``on_drift`` with its kind ("link", "addr", "route", "rule", "nft"), which
schedules a check of that kind of object (reconcile.py). What
the helper changes itself is not drift: while it reconciles, :meth:`Watch.quiet`
discards events, and on leaving drops what is queued (the kernel queues a change's
notifications before it acknowledges the change, so the helper's own are all there).
A socket that overflows (ENOBUFS) lost events: then everything is checked (``"all"``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import struct
from collections.abc import Callable, Iterator

from app.wire.state import (
    IFACE_RE,
    NFT_GUARD_TABLE,
    NFT_TABLE,
    PRIORITY_MAX,
    PRIORITY_MIN,
    TABLE_MAX,
    TABLE_MIN,
)

log = logging.getLogger("braid.helper")

NETLINK_ROUTE, NETLINK_NETFILTER = 0, 12
# rtnetlink multicast groups (bit = 1 << (RTNLGRP_x - 1))
RTMGRP = (0x1 | 0x10 | 0x40 | 0x80  # link, IPv4 addresses, routes, rules
          | 0x100 | 0x400 | (1 << 18))  # IPv6 addresses, routes, rules (RTNLGRP_IPV6_RULE 19)
NFNLGRP_NFTABLES = 1 << 6  # group 7
NFNL_SUBSYS_NFTABLES = 10
NFPROTO_INET = 1
RCVBUF = 1 << 20
_LINK = (16, 17)  # RTM_NEWLINK, RTM_DELLINK
_ADDR = (20, 21)
_ROUTE = (24, 25)
_RULE = (32, 33)
IFLA_IFNAME = 3
RTA_TABLE = 15  # also FRA_TABLE
FRA_PRIORITY = 6
NFTA_TABLE = 1  # the table's name: attribute 1 of table, chain, rule, set, object messages
_NFT_TABLES = {NFT_TABLE.encode(), NFT_GUARD_TABLE.encode()}


def _attrs(data: bytes, offset: int, end: int) -> Iterator[tuple[int, bytes]]:
    while offset + 4 <= end:
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            return
        yield kind & 0x3FFF, data[offset + 4: offset + length]
        offset += (length + 3) & ~3


def _u32(value: bytes) -> int | None:
    return struct.unpack("=I", value[:4])[0] if len(value) >= 4 else None


def rtnl_relevant(kind: int, body: bytes, start: int, end: int,
                  braid_links: Callable[[], set[int]]) -> str | None:
    """The kind of Braid's object an rtnetlink event touches, or None."""
    if kind in _LINK:
        index = struct.unpack_from("=i", body, start + 4)[0]
        for attr, value in _attrs(body, start + 16, end):
            if attr == IFLA_IFNAME:
                name = value.rstrip(b"\0").decode(errors="replace")
                return "link" if IFACE_RE.match(name) else None
        return "link" if index in braid_links() else None
    if kind in _ADDR:
        return "addr" if struct.unpack_from("=I", body, start + 4)[0] in braid_links() else None
    if kind in _ROUTE or kind in _RULE:
        table = body[start + 4]
        priority = None
        for attr, value in _attrs(body, start + 12, end):
            if attr == RTA_TABLE:
                table = _u32(value) or table
            elif attr == FRA_PRIORITY and kind in _RULE:
                priority = _u32(value)
        if kind in _ROUTE:
            return "route" if TABLE_MIN <= table <= TABLE_MAX else None
        ours = priority is not None and PRIORITY_MIN <= priority <= PRIORITY_MAX
        return "rule" if ours else None
    return None


def nft_relevant(kind: int, body: bytes, start: int, end: int) -> bool:
    if kind >> 8 != NFNL_SUBSYS_NFTABLES or end - start < 4:
        return False
    if body[start] != NFPROTO_INET:
        return False
    return any(attr == NFTA_TABLE and value.rstrip(b"\0") in _NFT_TABLES
               for attr, value in _attrs(body, start + 4, end))


class Watch:
    """The two event sockets on the running loop; ``on_drift(kinds)`` is called (once
    per batch of datagrams) when one of them saw something Braid's change."""

    def __init__(self, on_drift: Callable[[set[str]], None],
                 braid_links: Callable[[], set[int]]) -> None:
        self._on_drift = on_drift
        self._braid_links = braid_links
        self._socks: list[tuple[socket.socket, bool]] = []
        self._quiet = 0

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for proto, groups, is_nft in ((NETLINK_ROUTE, RTMGRP, False),
                                      (NETLINK_NETFILTER, NFNLGRP_NFTABLES, True)):
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK
                                 | socket.SOCK_CLOEXEC, proto)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            sock.bind((0, groups))
            self._socks.append((sock, is_nft))
            loop.add_reader(sock.fileno(), self._readable, sock, is_nft)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):
            loop = asyncio.get_running_loop()
            for sock, _ in self._socks:
                loop.remove_reader(sock.fileno())
        for sock, _ in self._socks:
            sock.close()
        self._socks.clear()

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        """The helper's own changes: not drift."""
        self._quiet += 1
        try:
            yield
        finally:
            self._quiet -= 1
            if not self._quiet:
                for sock, _ in self._socks:
                    self._read(sock, False)

    def _readable(self, sock: socket.socket, is_nft: bool) -> None:
        kinds = self._read(sock, is_nft)
        if kinds and not self._quiet:
            self._on_drift(kinds)

    def _read(self, sock: socket.socket, is_nft: bool) -> set[str]:
        """Read every queued datagram; the kinds of Braid's objects they touched."""
        kinds: set[str] = set()
        while True:
            try:
                data = sock.recv(1 << 16)
            except BlockingIOError:
                return kinds
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # events were lost: look at everything
                    kinds.add("all")
                    continue
                log.warning("kernel event socket: %s", exc)
                return kinds
            if not self._quiet:
                kinds |= self._kinds(data, is_nft)

    def _kinds(self, data: bytes, is_nft: bool) -> set[str]:
        kinds: set[str] = set()
        offset = 0
        while offset + 16 <= len(data):
            length, kind = struct.unpack_from("=IH", data, offset)
            if length < 16:
                break
            end = min(offset + length, len(data))
            try:
                hit = ("nft" if nft_relevant(kind, data, offset + 16, end) else None) \
                    if is_nft else rtnl_relevant(kind, data, offset + 16, end,
                                                 self._braid_links)
            except (struct.error, IndexError):
                hit = "all"  # a message this parser cannot read: better look
            if hit is not None:
                kinds.add(hit)
            offset += (length + 3) & ~3
        return kinds

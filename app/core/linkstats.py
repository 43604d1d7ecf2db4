"""The tunnels' own packet counters, read from the kernel over netlink: the cheap
passive signal that a path is still receiving.

One ``RTM_GETSTATS`` dump (filtered to ``IFLA_STATS_LINK_64``) returns every link's
rtnl_link_stats64 in the calling thread's network namespace, which is the right one:
the engine's thread has entered the lab's client namespace (``/sys/class/net`` would
show the process's namespace instead, and pyroute2's full link dump costs about 6 ms
per call here, against 20-100 us for this one). No privilege is needed.

A tunnel's ``rx_packets`` count the inner packets its WireGuard delivered to the
kernel (decrypted, so they came through that path): probe replies and every flow's
downstream alike. The engine reads them at the probe scheduler's ticks (probing.py).
"""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass

RTM_NEWSTATS = 92
RTM_GETSTATS = 94
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
IFLA_STATS_LINK_64 = 1
_HDR = struct.Struct("=IHHII")  # nlmsghdr
_IFSTATS = struct.Struct("=BBHII")  # if_stats_msg: family, pad, pad, ifindex, filter_mask
_ATTR = struct.Struct("=HH")
_STATS = struct.Struct("=QQQQ")  # rx_packets, tx_packets, rx_bytes, tx_bytes


@dataclass(frozen=True)
class LinkCount:
    rx_packets: int
    tx_packets: int
    rx_bytes: int
    tx_bytes: int


class LinkCounters:
    """Counters of named links, by one netlink dump per ``read``."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                   socket.NETLINK_ROUTE)
        self._sock.bind((0, 0))
        self._seq = 0
        self._index: dict[str, int] = {}

    def close(self) -> None:
        self._sock.close()

    def _ifindex(self, name: str) -> int | None:
        idx = self._index.get(name)
        if idx is None:
            try:
                idx = socket.if_nametoindex(name)  # in this thread's namespace
            except OSError:
                return None
            self._index[name] = idx
        return idx

    def read(self, names: list[str]) -> dict[str, LinkCount]:
        """The counters of those of ``names`` that exist now. A tunnel recreated under
        the same name (a helper restart) gets a new index: found again on a miss."""
        wanted = {n: i for n in names if (i := self._ifindex(n)) is not None}
        if not wanted:
            return {}
        by_index = self._dump()
        out: dict[str, LinkCount] = {}
        for name, idx in wanted.items():
            count = by_index.get(idx)
            if count is None:
                self._index.pop(name, None)  # gone or renumbered: resolve next time
                continue
            out[name] = count
        return out

    def _dump(self) -> dict[int, LinkCount]:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        body = _IFSTATS.pack(socket.AF_UNSPEC, 0, 0, 0, 1 << (IFLA_STATS_LINK_64 - 1))
        self._sock.send(_HDR.pack(_HDR.size + len(body), RTM_GETSTATS,
                                  NLM_F_REQUEST | NLM_F_DUMP, self._seq, 0) + body)
        out: dict[int, LinkCount] = {}
        while True:
            data = self._sock.recv(65536)
            off = 0
            while off + _HDR.size <= len(data):
                length, kind, _, seq, _ = _HDR.unpack_from(data, off)
                if length < _HDR.size:
                    return out
                if seq == self._seq:
                    if kind == NLMSG_DONE:
                        return out
                    if kind == NLMSG_ERROR:
                        (err,) = struct.unpack_from("=i", data, off + _HDR.size)
                        raise OSError(-err, f"RTM_GETSTATS: {os.strerror(-err)}")
                    if kind == RTM_NEWSTATS:
                        self._parse(data, off, length, out)
                off += (length + 3) & ~3

    @staticmethod
    def _parse(data: bytes, off: int, length: int, out: dict[int, LinkCount]) -> None:
        _, _, _, idx, _ = _IFSTATS.unpack_from(data, off + _HDR.size)
        a, end = off + _HDR.size + _IFSTATS.size, off + length
        # Asked for one attribute: it comes first (read here at a fixed place, as this
        # runs every 10 ms); anything else is walked.
        alen, atype = _ATTR.unpack_from(data, a) if a + _ATTR.size <= end else (0, 0)
        if atype == IFLA_STATS_LINK_64 and alen >= _ATTR.size + _STATS.size:
            out[idx] = LinkCount(*_STATS.unpack_from(data, a + _ATTR.size))
            return
        while a + _ATTR.size <= end:
            alen, atype = _ATTR.unpack_from(data, a)
            if alen < _ATTR.size:
                return
            if atype == IFLA_STATS_LINK_64 and alen >= _ATTR.size + _STATS.size:
                out[idx] = LinkCount(*_STATS.unpack_from(data, a + _ATTR.size))
                return
            a += (alen + 3) & ~3

"""Deleting conntrack entries by path mark, so flows on a dead path re-classify.

One ctnetlink DELETE request with no tuple and a mark/mask filter: the kernel walks its
table and deletes the matching entries itself (ctnetlink_flush_conntrack), both
families at once (nfgen_family AF_UNSPEC, version 0). No process, no dump: a switch
waits for this (~0.3 ms; `conntrack -D` was a process per family, ~20 ms). The kernel
reports no count, so neither do we.
"""

from __future__ import annotations

import socket

from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.nfnetlink.nfctsocket import AsyncNFCTSocket

from app.helper.errors import KernelError
from app.wire.state import MARK_MASK


class Flusher:
    """Holds its netlink socket open for the helper's life: closing a netfilter netlink
    socket waits for nf_tables' pending transaction cleanup (an RCU grace period,
    ~20 ms right after an nft load), which a socket per switch would pay every time."""

    def __init__(self) -> None:
        self._sock: AsyncNFCTSocket | None = None

    async def flush_marks(self, marks: tuple[int, ...]) -> None:
        """Delete the entries whose conntrack mark carries one of ``marks`` under
        Braid's mask, IPv4 and IPv6."""
        if not marks:
            return
        if self._sock is None:
            sock = AsyncNFCTSocket(nfgen_family=socket.AF_UNSPEC)
            await sock.setup_endpoint()
            self._sock = sock
        for mark in marks:
            try:
                await self._sock.flush(mark=mark, mark_mask=MARK_MASK)
            except NetlinkError as exc:
                raise KernelError(
                    f"the kernel refused to flush conntrack mark {mark:#x}: {exc}"
                ) from None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

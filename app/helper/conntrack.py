"""Deleting conntrack entries by path mark, so flows on a dead path re-classify; and
conntrack's byte accounting, which the volume rule needs (:class:`Accounting`).

One ctnetlink DELETE request with no tuple and a mark/mask filter: the kernel walks its
table and deletes the matching entries itself (ctnetlink_flush_conntrack), both
families at once (nfgen_family AF_UNSPEC, version 0). No process, no dump: a switch
waits for this (~0.3 ms; `conntrack -D` was a process per family, ~20 ms). The kernel
reports no count, so neither do we.
"""

from __future__ import annotations

import socket
from pathlib import Path

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

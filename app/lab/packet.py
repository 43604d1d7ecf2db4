"""The lab's measurement packet: what streams and the self-test send.

Layout (network order): magic "BRST" (4), flow id u32, sequence u64, send time f64,
server receive time f64 and the number of this flow's packets the server has seen so
far u64 (both 0 until the echo stamps them), then padding to the size asked.
Times are `time.time()`: every namespace shares the host's clock, so one-way delays
are exact differences.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAGIC = b"BRST"
HEADER = struct.Struct("!4sIQddQ")
SERVER_STAMP = slice(24, 40)  # server time and count, written by the echo
SERVER_PART = struct.Struct("!dQ")
MIN_SIZE = HEADER.size  # 40


@dataclass(frozen=True)
class Stamp:
    flow: int
    seq: int
    sent: float
    server: float
    server_count: int


def pack(flow: int, seq: int, sent: float, size: int) -> bytes:
    head = HEADER.pack(MAGIC, flow, seq, sent, 0.0, 0)
    return head + bytes(max(0, size - len(head)))


def unpack(data: bytes) -> Stamp | None:
    if len(data) < HEADER.size or data[:4] != MAGIC:
        return None
    _, flow, seq, sent, server, count = HEADER.unpack_from(data)
    return Stamp(flow, seq, sent, server, count)


def stamp_server(data: bytes, now: float, count: int) -> bytes:
    """The echo's part: its receive time and how many of the flow's packets it has seen."""
    return b"".join((data[: SERVER_STAMP.start], SERVER_PART.pack(now, count),
                     data[SERVER_STAMP.stop:]))

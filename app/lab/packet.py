"""The lab's measurement packet: what streams and the self-test send.

Layout (network order): magic "BRST" (4), flow id u32, sequence u64, send time f64,
server receive time f64 (0 until the echo stamps it), then padding to the size asked.
Times are `time.time()`: every namespace shares the host's clock, so one-way delays
are exact differences.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAGIC = b"BRST"
HEADER = struct.Struct("!4sIQdd")
SERVER_STAMP = slice(24, 32)
MIN_SIZE = HEADER.size  # 32


@dataclass(frozen=True)
class Stamp:
    flow: int
    seq: int
    sent: float
    server: float


def pack(flow: int, seq: int, sent: float, size: int) -> bytes:
    head = HEADER.pack(MAGIC, flow, seq, sent, 0.0)
    return head + bytes(max(0, size - len(head)))


def unpack(data: bytes) -> Stamp | None:
    if len(data) < HEADER.size or data[:4] != MAGIC:
        return None
    _, flow, seq, sent, server = HEADER.unpack_from(data)
    return Stamp(flow, seq, sent, server)

"""ICMP echo probes of every path through one socket, and what they cost on the wire.

One ICMP socket serves all paths (the engine's thread opens it in the right network
namespace). Each echo request names its path's tunnel address as its source with an
``IP_PKTINFO`` control message (``ipi_spec_dst``), so the rule ``from <address> lookup
<path table>`` sends it through that tunnel and no other. Replies carry a kernel
receive timestamp (``SO_TIMESTAMPNS``), so they can be read in batches at the
scheduler's ticks (probing.py) without losing RTT precision: no task, no timer and no
reader callback per probe.

Privileged (root: a raw socket, which sees every echo reply in the namespace, so the
replies are filtered on our identifier and a token in the payload) or not (a datagram
ICMP socket, allowed by ``net.ipv4.ping_group_range``, demultiplexed by the kernel):
chosen by the effective uid. Sequence numbers are one space for all paths.

**Rates** (``ProbeRates``): ``active`` 10 ms on a path that carries a class and its
packets (probing.py; BFD-like: detection is bounded by the path's one-way delay plus one
interval plus the lateness allowance, liveness.py); ``backup`` 50 ms on the best path
that carries nothing (the failover target, and the witness that tells a dead path from
a local stall) and on a carried path whose classes send nothing;
``suspect`` 20 ms on a path that missed a probe or has not answered yet; ``standby``
200 ms on every other path, down ones included. A path takes the fastest rate that
applies to it.

**Cost on the wire** (``wire_bits_per_s``): an echo request with a 4-byte payload is a
32-byte inner packet, which WireGuard pads to 32 and wraps in 16 bytes of header, a
16-byte tag, UDP and IP: 92 bytes on the path each way. At the active rate that is
73.6 kbit/s each way on a carried path; 14.7 kbit/s on the backup; 3.7 kbit/s on each
standby.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from dataclasses import dataclass

ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY = 8, 0
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
PAYLOAD_SIZE = 4  # a token: 28 + 4 bytes fill WireGuard's 16-byte padding exactly
# What one probe is on the path, in IP bytes: inner IP 20 + ICMP 8 + payload, padded to
# a multiple of 16, + WireGuard's data header 16 + its tag 16 + UDP 8 + outer IP 20.
INNER_BYTES = 20 + 8 + PAYLOAD_SIZE
WIRE_BYTES = -(-INNER_BYTES // 16) * 16 + 16 + 16 + 8 + 20
_ECHO = struct.Struct("!BBHHH")
_PKTINFO = struct.Struct("=i4s4s")
_TS = struct.Struct("@qq")


def wire_bits_per_s(interval_s: float) -> float:
    """Bits per second one way (requests up, replies down) of probing every ``interval_s``."""
    return WIRE_BYTES * 8 / interval_s


@dataclass(frozen=True)
class ProbeRates:
    active_s: float = 0.010
    backup_s: float = 0.050
    suspect_s: float = 0.020
    standby_s: float = 0.200

    def __post_init__(self) -> None:
        if min(self.active_s, self.backup_s, self.suspect_s, self.standby_s) < 0.002:
            raise ValueError("probe intervals must be at least 2 ms")


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int, payload: bytes) -> bytes:
    head = _ECHO.pack(ICMP_ECHO_REQUEST, 0, 0, ident, seq)
    return _ECHO.pack(ICMP_ECHO_REQUEST, 0, checksum(head + payload), ident, seq) + payload


def parse_echo_reply(packet: bytes, privileged: bool) -> tuple[int, int, bytes, str] | None:
    """(identifier, sequence, payload, source) of an echo reply, None for anything else.
    Raw sockets deliver the IP header (the source is read from it); for datagram
    sockets ``source`` is empty and the caller takes it from recvmsg."""
    offset, source = 0, ""
    if privileged:
        if len(packet) < 20:
            return None
        offset = (packet[0] & 0x0F) * 4
        source = socket.inet_ntoa(packet[12:16])
    if len(packet) < offset + 8 or packet[offset] != ICMP_ECHO_REPLY:
        return None
    _, _, _, ident, seq = _ECHO.unpack_from(packet, offset)
    return ident, seq, packet[offset + 8:], source


@dataclass(frozen=True)
class Reply:
    seq: int
    source: str
    t: float  # monotonic receive time (the kernel's timestamp)


class ProbeSocket:
    """The one ICMP socket of all paths. Raises OSError where the kernel refuses."""

    def __init__(self, privileged: bool | None = None) -> None:
        self.privileged = os.geteuid() == 0 if privileged is None else privileged
        kind = socket.SOCK_RAW if self.privileged else socket.SOCK_DGRAM
        self._sock = socket.socket(socket.AF_INET, kind | socket.SOCK_CLOEXEC,
                                   socket.IPPROTO_ICMP)
        try:
            self._sock.setblocking(False)
            self._sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            if self.privileged:
                self.ident = (os.getpid() * 16 + 5) & 0xFFFF
            else:
                self._sock.bind(("0.0.0.0", 0))
                self.ident = self._sock.getsockname()[1]  # the kernel's, per socket
        except OSError:
            self._sock.close()
            raise
        self.token = os.urandom(PAYLOAD_SIZE)

    def close(self) -> None:
        self._sock.close()

    def send(self, source: str, target: str, seq: int) -> None:
        """One echo request from ``source`` (a local address: its path's tunnel)."""
        info = _PKTINFO.pack(0, socket.inet_aton(source), b"\0\0\0\0")
        self._sock.sendmsg([echo_request(self.ident, seq, self.token)],
                           [(socket.IPPROTO_IP, IP_PKTINFO, info)], 0, (target, 0))

    def drain(self, now: float) -> tuple[list[Reply], str | None]:
        """Every queued reply of ours (with ``now``, the caller's monotonic time, to
        convert the kernel's wall-clock stamps), and the last receive error, if any."""
        out: list[Reply] = []
        error = None
        offset = time.time() - now
        while True:
            try:
                data, anc, _, addr = self._sock.recvmsg(512, socket.CMSG_SPACE(_TS.size))
            except (BlockingIOError, InterruptedError):
                return out, error
            except OSError as exc:  # an ICMP error queued on a datagram socket
                error = str(exc)
                continue
            parsed = parse_echo_reply(data, self.privileged)
            if parsed is None:
                continue
            ident, seq, payload, source = parsed
            if payload[:PAYLOAD_SIZE] != self.token or (self.privileged and ident != self.ident):
                continue  # another process's ping
            t = now
            for level, kind, cdata in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and \
                        len(cdata) >= _TS.size:
                    sec, nsec = _TS.unpack_from(cdata)
                    t = min(now, sec + nsec / 1e9 - offset)
            out.append(Reply(seq, source or str(addr[0]), t))

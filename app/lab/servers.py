"""The far side's apps, run in the server namespace: what streams and transfers talk to.

UDP 9000 echo (stamps its receive time into stream packets, so both one-way delays are
known), UDP 9001 sink, TCP 9002 bulk source (send the number of bytes wanted as one line;
it sends them and closes), TCP 9003 sink (reads to EOF, answers "received N"), HTTP 8080
(GET / and GET /bytes/N), the three TCP ones on MPTCP sockets where the kernel has
MPTCP (a far end that speaks it; a plain TCP client is served as ever, the kernel falls
back), UDP 9004 sticky echo (a far end that, like a call's peer after
ICE, answers only the address a stream's first packet came from, and ignores the rest),
UDP 9005 stream statistics (send "BRSQ" and a stream's flow id; the answer is JSON: what
the far end saw of it, per the stream's own arrivals: count, the longest gap between two,
the source addresses it came from, and how many packets it got twice: realtime copies
must meet and be removed before they reach the far end), UDP 53 the far side's resolver
(dnsserver.py: the gateways' DNS, answering server.braid.lab).

Run as `python -m app.lab.servers --ready-file PATH`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from app.lab import dnsserver
from app.lab.packet import stamp_server, unpack

# Bound to the server's address, not 0.0.0.0: a UDP answer from a wildcard socket would
# leave from the link's address, and neither the client's socket nor NAT would match it.
SERVER_ADDRESS = "198.18.200.1"
SERVER_ADDRESS6 = "2001:2:0:200::1"  # with --ipv6: every app answers there too
ECHO_PORT, SINK_PORT, BULK_PORT, TCP_SINK_PORT, HTTP_PORT = 9000, 9001, 9002, 9003, 8080
STICKY_PORT, STATS_PORT = 9004, 9005
# Linux's MPTCP (IPPROTO_MPTCP, SOL_MPTCP, MPTCP_INFO): Python 3.11 names only the first.
IPPROTO_MPTCP, SOL_MPTCP, MPTCP_INFO = 262, 284, 1
STATS_QUERY = b"BRSQ"
MAX_SOURCES = 16  # per flow, in the statistics
CHUNK = bytes(256 * 1024)
MAX_BULK = 1 << 40
MAX_FLOWS = 4096  # stream flows the echo keeps counts for (oldest forgotten first)
MAX_SEQ_TRACKED = 1 << 22  # sequences a flow's duplicate count covers (a bit each: 512 KiB)


@dataclass
class FlowRecord:
    """What the far end saw of one stream (its flow id), from its own arrival times."""

    count: int = 0  # packets it took (and answered)
    first: float = 0.0
    last: float = 0.0
    max_gap_s: float = 0.0  # longest time between two arrivals it took
    max_gap_at: float = 0.0  # when that gap began (unix time)
    ignored: int = 0  # the sticky echo's: packets from another address than the first
    first_source: tuple[str, int] | None = None
    sources: dict[str, int] = field(default_factory=dict)  # "ip:port" -> packets
    # Packets whose sequence it had already seen (a copy that was not removed on the way),
    # counted but still answered as any far end would. ``seen``: a bit per sequence.
    duplicates: int = 0
    duplicate_seqs: list[int] = field(default_factory=list)  # the first few, to debug
    seen: bytearray = field(default_factory=bytearray)

    def mark_seen(self, seq: int) -> None:
        if seq >= MAX_SEQ_TRACKED:
            return
        byte, bit = divmod(seq, 8)
        if byte >= len(self.seen):
            self.seen.extend(bytes(byte + 1 - len(self.seen) + 1024))
        if self.seen[byte] & (1 << bit):
            self.duplicates += 1
            if len(self.duplicate_seqs) < 16:
                self.duplicate_seqs.append(seq)
        self.seen[byte] |= 1 << bit

    def to_json(self, flow: int) -> dict[str, Any]:
        return {"flow": flow, "count": self.count, "first": self.first, "last": self.last,
                "max_gap_ms": self.max_gap_s * 1000.0, "max_gap_at": self.max_gap_at,
                "ignored": self.ignored, "sources": self.sources,
                "duplicates": self.duplicates, "duplicate_seqs": self.duplicate_seqs}


class Flows:
    """Records of the last MAX_FLOWS streams, shared by the echoes and the statistics."""

    def __init__(self) -> None:
        self.records: OrderedDict[int, FlowRecord] = OrderedDict()

    def get(self, flow: int) -> FlowRecord:
        rec = self.records.pop(flow, None) or FlowRecord()
        self.records[flow] = rec
        if len(self.records) > MAX_FLOWS:
            self.records.popitem(last=False)
        return rec


class Echo(asyncio.DatagramProtocol):
    """Echoes every datagram; stamps stream packets with its time and the flow's count.
    ``sticky``: a stream's packets from any address but its first are ignored."""

    def __init__(self, flows: Flows, sticky: bool = False) -> None:
        self.flows = flows
        self.sticky = sticky

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        stamp = unpack(data)
        if stamp is not None:
            now = time.time()
            rec = self.flows.get(stamp.flow)
            source = f"{addr[0]}:{addr[1]}"
            if source in rec.sources or len(rec.sources) < MAX_SOURCES:
                rec.sources[source] = rec.sources.get(source, 0) + 1
            if rec.first_source is None:
                rec.first_source = addr
            elif self.sticky and addr != rec.first_source:
                rec.ignored += 1
                return
            if rec.count and now - rec.last > rec.max_gap_s:
                rec.max_gap_s, rec.max_gap_at = now - rec.last, rec.last
            rec.mark_seen(stamp.seq)
            rec.count += 1
            rec.first = rec.first or now
            rec.last = now
            data = stamp_server(data, now, rec.count)
        self.transport.sendto(data, addr)


class Stats(asyncio.DatagramProtocol):
    """Answers "BRSQ" + a flow id (u32, network order) with that stream's record."""

    def __init__(self, flows: Flows) -> None:
        self.flows = flows

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) != 8 or not data.startswith(STATS_QUERY):
            return
        flow = int.from_bytes(data[4:8], "big")
        rec = self.flows.records.get(flow, FlowRecord())
        self.transport.sendto(json.dumps(rec.to_json(flow)).encode(), addr)


class Sink(asyncio.DatagramProtocol):
    pass


async def _send_bytes(writer: asyncio.StreamWriter, count: int) -> None:
    view = memoryview(CHUNK)
    while count > 0:
        n = min(count, len(CHUNK))
        writer.write(view[:n])
        count -= n
        await writer.drain()


async def bulk_source(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, ValueError, asyncio.IncompleteReadError):
        line = await reader.readline()
        count = int(line.strip() or 0)
        await _send_bytes(writer, max(0, min(count, MAX_BULK)))
        writer.write_eof()
        await writer.drain()
    writer.close()


def subflows(sock: socket.socket | None) -> int | None:
    """How many subflows an MPTCP connection has (MPTCP_INFO's first field counts the
    extra ones); None: plain TCP (a client that does not speak MPTCP, or no MPTCP)."""
    if sock is None or sock.proto != IPPROTO_MPTCP:
        return None
    try:
        info = sock.getsockopt(SOL_MPTCP, MPTCP_INFO, 64)
    except OSError:  # fell back to TCP
        return None
    return 1 + info[0] if info else None


async def tcp_sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads to EOF and answers "received N", and with an MPTCP client "received N
    mptcp K": K, the most subflows the connection had while it was read."""
    total, most = 0, None
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError):
        while chunk := await reader.read(1 << 18):
            total += len(chunk)
            now = subflows(sock)
            most = now if most is None or (now or 0) > most else most
        tail = "" if most is None else f" mptcp {most}"
        writer.write(f"received {total}{tail}\n".encode())
        await writer.drain()
    writer.close()


async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, ValueError, asyncio.IncompleteReadError):
        request = (await reader.readline()).decode("latin-1").split()
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass
        target = request[1] if len(request) > 1 else "/"
        if target.startswith("/bytes/"):
            count = min(int(target[len("/bytes/"):]), MAX_BULK)
            writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n"
                         + f"Content-Length: {count}\r\n\r\n".encode())
            await _send_bytes(writer, count)
        else:
            body = b"braid lab server\n"
            writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n"
                         + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()
    writer.close()


async def _listen(address: str, flows: Flows) -> list[asyncio.Server]:
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(lambda: Echo(flows), local_addr=(address, ECHO_PORT))
    await loop.create_datagram_endpoint(lambda: Echo(flows, sticky=True),
                                        local_addr=(address, STICKY_PORT))
    await loop.create_datagram_endpoint(lambda: Stats(flows), local_addr=(address, STATS_PORT))
    await loop.create_datagram_endpoint(Sink, local_addr=(address, SINK_PORT))
    return [
        await asyncio.start_server(bulk_source, sock=listener(address, BULK_PORT)),
        await asyncio.start_server(tcp_sink, sock=listener(address, TCP_SINK_PORT)),
        await asyncio.start_server(http, sock=listener(address, HTTP_PORT)),
    ]


def listener(address: str, port: int) -> socket.socket:
    """A listening MPTCP socket (it serves plain TCP clients too), or a TCP one where
    the kernel has no MPTCP (or net.mptcp.enabled is 0)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_STREAM, IPPROTO_MPTCP)
    except OSError:
        sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def serve(ready_file: Path | None, dns_counts: Path | None = None) -> None:
    flows = Flows()
    servers = await _listen(SERVER_ADDRESS, flows)
    counts = dnsserver.Counts(dns_counts)
    counts.save()
    await dnsserver.listen([SERVER_ADDRESS], "far", counts)
    with contextlib.suppress(OSError):  # the lab has no IPv6 (no --ipv6)
        servers += await _listen(SERVER_ADDRESS6, flows)
        await dnsserver.listen([SERVER_ADDRESS6], "far", counts)
    if ready_file is not None:
        ready_file.write_text("ready\n")
    print("servers up", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.lab.servers")
    parser.add_argument("--ready-file", type=Path)
    parser.add_argument("--dns-counts", type=Path, help="where the far side's resolver "
                        "counts its queries (app/lab/dnsserver.py)")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.ready_file, args.dns_counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())

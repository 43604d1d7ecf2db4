"""The far side's apps, run in the server namespace: what streams and transfers talk to.

UDP 9000 echo (stamps its receive time into stream packets, so both one-way delays are
known), UDP 9001 sink, TCP 9002 bulk source (send the number of bytes wanted as one line;
it sends them and closes), TCP 9003 sink (reads to EOF, answers "received N"), HTTP 8080
(GET / and GET /bytes/N).

Run as `python -m app.lab.servers --ready-file PATH`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import cast

from app.lab.packet import stamp_server, unpack

# Bound to the server's address, not 0.0.0.0: a UDP answer from a wildcard socket would
# leave from the link's address, and neither the client's socket nor NAT would match it.
SERVER_ADDRESS = "198.18.200.1"
ECHO_PORT, SINK_PORT, BULK_PORT, TCP_SINK_PORT, HTTP_PORT = 9000, 9001, 9002, 9003, 8080
CHUNK = bytes(256 * 1024)
MAX_BULK = 1 << 40
MAX_FLOWS = 4096  # stream flows the echo keeps counts for (oldest forgotten first)


class Echo(asyncio.DatagramProtocol):
    """Echoes every datagram; stamps stream packets with its time and the flow's count."""

    def __init__(self) -> None:
        self.counts: OrderedDict[int, int] = OrderedDict()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        stamp = unpack(data)
        if stamp is not None:
            count = self.counts.pop(stamp.flow, 0) + 1
            self.counts[stamp.flow] = count
            if len(self.counts) > MAX_FLOWS:
                self.counts.popitem(last=False)
            data = stamp_server(data, time.time(), count)
        self.transport.sendto(data, addr)


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


async def tcp_sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    total = 0
    with contextlib.suppress(OSError):
        while chunk := await reader.read(1 << 18):
            total += len(chunk)
        writer.write(f"received {total}\n".encode())
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


async def serve(ready_file: Path | None) -> None:
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(Echo, local_addr=(SERVER_ADDRESS, ECHO_PORT))
    await loop.create_datagram_endpoint(Sink, local_addr=(SERVER_ADDRESS, SINK_PORT))
    servers = [
        await asyncio.start_server(bulk_source, SERVER_ADDRESS, BULK_PORT),
        await asyncio.start_server(tcp_sink, SERVER_ADDRESS, TCP_SINK_PORT),
        await asyncio.start_server(http, SERVER_ADDRESS, HTTP_PORT),
    ]
    if ready_file is not None:
        ready_file.write_text("ready\n")
    print("servers up", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.lab.servers")
    parser.add_argument("--ready-file", type=Path)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.ready_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())

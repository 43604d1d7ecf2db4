"""The lab's two resolvers: a tiny authoritative DNS responder that counts its queries.

- **far side** (in the server namespace, at 198.18.200.1:53, reachable only through a
  gateway): the gateways' DNS, as a company's or a provider's resolver behind the
  tunnel. Answers the far side's names: ``server.braid.lab`` (A 198.18.200.1, AAAA
  2001:2:0:200::1).
- **ISP** (in the wan namespace, at 198.18.0.1:53 on the client's link): the resolver a
  real ISP's DHCP hands out, what the client's resolv.conf names before Braid is up.
  Answers ``isp.braid.lab`` (A 198.18.0.1) and knows nothing of the far side.

Any other name gets NXDOMAIN; anything that is not one plain query gets FORMERR or no
answer. UDP only (the lab's answers are small). Every query is counted, by name, into a
JSON file (``--counts``), rewritten atomically after each one, so a test tells who was
asked what: ``{"queries": 3, "names": {"server.braid.lab": 2, ...}}``.

Run as ``python -m app.lab.dnsserver --zone far|isp --listen ADDR [--listen ADDR6]
--counts FILE --ready-file FILE``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import socket
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from app.wire.files import write_atomically

DNS_PORT = 53
DOMAIN = "braid.lab"  # the lab's search domain (the gateways' DNS names it)
FAR_NAME, ISP_NAME = f"server.{DOMAIN}", f"isp.{DOMAIN}"
ZONES: dict[str, dict[str, tuple[str, ...]]] = {
    "far": {FAR_NAME: ("198.18.200.1", "2001:2:0:200::1")},
    "isp": {ISP_NAME: ("198.18.0.1",)},
}
TYPE_A, TYPE_AAAA, CLASS_IN = 1, 28, 1
NOERROR, FORMERR, NXDOMAIN = 0, 1, 3
TTL = 5
MAX_NAMES = 256  # names counted one by one; the rest under "(other)"


@dataclass(frozen=True)
class Query:
    ident: int
    flags: int
    name: str
    qtype: int
    qclass: int
    question: bytes  # the question section as sent (echoed in the answer)


def parse_query(data: bytes) -> Query | None:
    """One standard query with one question (None: not one, or malformed)."""
    if len(data) < 12:
        return None
    ident, flags, qd, an, ns, _ar = struct.unpack("!6H", data[:12])
    if flags & 0x8000 or (flags >> 11) & 0xF or qd != 1 or an or ns:
        return None  # a response, not a QUERY opcode, or not one question
    labels, pos = [], 12
    while True:
        if pos >= len(data):
            return None
        size = data[pos]
        pos += 1
        if size == 0:
            break
        if size > 63 or pos + size > len(data):
            return None  # compression pointers have no place in a question
        labels.append(data[pos:pos + size].decode("ascii", errors="replace").lower())
        pos += size
    if pos + 4 > len(data):
        return None
    qtype, qclass = struct.unpack("!2H", data[pos:pos + 4])
    return Query(ident, flags, ".".join(labels), qtype, qclass, data[12:pos + 4])


def answer(query: Query, zone: dict[str, tuple[str, ...]]) -> bytes:
    """The response: the zone's addresses of the asked type, else NXDOMAIN (a name it
    does not hold) or an empty NOERROR (a name it holds, another type)."""
    addresses = zone.get(query.name)
    records = []
    if addresses is not None and query.qclass == CLASS_IN:
        for text in addresses:
            ip = ipaddress.ip_address(text)
            rtype = TYPE_A if ip.version == 4 else TYPE_AAAA
            if rtype == query.qtype:
                # A pointer to the question's name (offset 12), type, class, TTL, data.
                records.append(struct.pack("!HHHIH", 0xC00C, rtype, CLASS_IN, TTL,
                                           len(ip.packed)) + ip.packed)
    rcode = NXDOMAIN if addresses is None else NOERROR
    # QR, AA, the query's RD; RA clear (this one only knows its own names).
    flags = 0x8000 | 0x0400 | (query.flags & 0x0100) | rcode
    header = struct.pack("!6H", query.ident, flags, 1, len(records), 0, 0)
    return header + query.question + b"".join(records)


def query_packet(name: str, qtype: int = TYPE_A, ident: int = 0x4272) -> bytes:
    """A standard recursive query for ``name`` (what a stub resolver sends)."""
    labels = b"".join(bytes([len(p)]) + p.encode("ascii") for p in name.split(".") if p)
    return struct.pack("!6H", ident, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack(
        "!2H", qtype, CLASS_IN)


def read_answer(data: bytes) -> tuple[int, list[str]]:
    """An answer's rcode and addresses (this responder's answers: one question, name
    pointers in the records)."""
    rcode = struct.unpack("!H", data[2:4])[0] & 0xF
    count = struct.unpack("!H", data[6:8])[0]
    pos = 12
    while data[pos]:
        pos += data[pos] + 1
    pos += 5
    out = []
    for _ in range(count):
        rtype, _cls, _ttl, size = struct.unpack("!HHIH", data[pos + 2:pos + 12])
        rdata = data[pos + 12:pos + 12 + size]
        if rtype in (TYPE_A, TYPE_AAAA):
            out.append(str(ipaddress.ip_address(rdata)))
        pos += 12 + size
    return rcode, out


def ask(server: str, name: str, qtype: int = TYPE_A,
        timeout: float = 1.0) -> tuple[int, list[str]] | None:
    """Ask ``server`` directly (as an app with a hard-coded resolver would); None: no
    answer within ``timeout`` (or the network refused to send it)."""
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(query_packet(name, qtype), (server, DNS_PORT))
            data, _ = sock.recvfrom(4096)
        except OSError:
            return None
    return read_answer(data)


def formerr(data: bytes) -> bytes | None:
    if len(data) < 12 or data[2] & 0x80:
        return None  # too short to answer, or a response: never answer those
    return data[:2] + struct.pack("!H", 0x8000 | FORMERR) + bytes(8)


@dataclass
class Counts:
    path: Path | None
    queries: int = 0
    names: dict[str, int] = field(default_factory=dict)

    def add(self, name: str) -> None:
        self.queries += 1
        key = name if name in self.names or len(self.names) < MAX_NAMES else "(other)"
        self.names[key] = self.names.get(key, 0) + 1
        self.save()

    def save(self) -> None:
        if self.path is not None:
            write_atomically(self.path, json.dumps({"queries": self.queries,
                                                    "names": self.names}),
                             mode=0o644, durable=False)


class Responder(asyncio.DatagramProtocol):
    def __init__(self, zone: dict[str, tuple[str, ...]], counts: Counts) -> None:
        self.zone = zone
        self.counts = counts

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = parse_query(data)
        if query is None:
            reply = formerr(data)
            self.counts.add("(malformed)")
        else:
            reply = answer(query, self.zone)
            self.counts.add(query.name)
        if reply is not None:
            self.transport.sendto(reply, addr)


async def listen(addresses: list[str], zone: str, counts: Counts) -> None:
    loop = asyncio.get_running_loop()
    for address in addresses:
        await loop.create_datagram_endpoint(lambda: Responder(ZONES[zone], counts),
                                            local_addr=(address, DNS_PORT))


def read_counts(path: Path) -> dict[str, Any]:
    """What a resolver was asked so far (nothing yet: no queries)."""
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return {"queries": 0, "names": {}}
    return doc


async def serve(addresses: list[str], zone: str, counts_path: Path | None,
                ready_file: Path | None) -> None:
    counts = Counts(counts_path)
    counts.save()
    await listen(addresses, zone, counts)
    if ready_file is not None:
        ready_file.write_text("ready\n")
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.lab.dnsserver")
    parser.add_argument("--zone", choices=sorted(ZONES), required=True)
    parser.add_argument("--listen", action="append", required=True, metavar="ADDR")
    parser.add_argument("--counts", type=Path)
    parser.add_argument("--ready-file", type=Path)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.listen, args.zone, args.counts, args.ready_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())

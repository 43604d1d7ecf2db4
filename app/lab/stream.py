"""`braid lab stream`: a realtime-like UDP stream from the client to the server and back.

The sender runs inside the lab's client (or baseline) namespace, as its own process
(`python -m app.lab.stream ...`, printing JSON), and sends stamped packets to the
server's echo, which stamps its receive time. Every namespace shares the host's clock,
so both one-way delays are exact. The figures are those of a test call: what you send
crosses to the far side (up) and what comes back crosses again (down).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import select
import socket
import struct
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from app.core.errors import BraidError
from app.lab.packet import MIN_SIZE, pack, unpack

SERVER = "198.18.200.1"
SERVER6 = "2001:2:0:200::1"  # a lab built with --ipv6
ECHO_PORT, STICKY_PORT, STATS_PORT = 9000, 9004, 9005
STATS_QUERY = b"BRSQ"
# The way there and back may be lossy, in bursts: ask again, twice each time (a bursty
# link's state moves per packet, so a lone question can sit in a burst for long).
STATS_TRIES, STATS_WAIT_S = 12, 0.25
FRAME_S = 1.0 / 30.0  # the 30 fps stream stutter is counted on
STUTTER_MS = 150.0  # a frame later than this is as bad as a lost one
# DSCP per class, as conferencing apps mark their media (RFC 4594): how a stream that is
# not in a class's cgroup still says what it is.
CLASS_DSCP = {"realtime": 46, "bulk": 8, "default": 0}
SO_TIMESTAMPNS = 35
MAX_PPS, MAX_DURATION, MAX_SIZE = 20_000, 3600.0, 1392  # 1392: fits the 1420 tunnel MTU


@dataclass(frozen=True)
class DelayStats:
    """Milliseconds."""

    mean: float
    p50: float
    p95: float
    p99: float
    max: float

    @staticmethod
    def of(values_ms: list[float]) -> DelayStats | None:
        if not values_ms:
            return None
        v = sorted(values_ms)

        def pct(p: float) -> float:
            return v[min(len(v) - 1, max(0, math.ceil(p / 100.0 * len(v)) - 1))]

        return DelayStats(mean=sum(v) / len(v), p50=pct(50), p95=pct(95), p99=pct(99), max=v[-1])


@dataclass(frozen=True)
class StreamResult:
    pps: int
    size: int
    duration_s: float
    cls: str | None
    node: str
    sent: int
    received: int  # echoes back at the client
    loss_pct: float  # round trip
    up_loss_pct: float | None  # client -> server, from the echo's count
    delay_up: DelayStats | None  # one-way client -> server, ms
    delay_down: DelayStats | None  # one-way server -> client, ms
    rtt: DelayStats | None
    jitter_ms: float | None  # mean |difference| of consecutive one-way (up) delays
    max_gap_ms: float | None  # longest gap between arrivals at the client, less the spacing
    frames: int
    stutter_frames: int  # 30 fps frames with a packet lost or later than 150 ms (one-way)
    stutter_pct: float
    # Each direction on its own (None when the far end's statistics did not come back):
    # upstream at the far end, from its own arrival times; downstream at the client, the
    # longest run of answers the far end sent that never arrived, times the spacing.
    port: int = ECHO_PORT  # the far end's: 9000 echo, 9004 sticky echo
    up_gap_ms: float | None = None  # longest gap between arrivals at the far end, less spacing
    down_gap_ms: float | None = None
    down_loss_pct: float | None = None  # of the answers the far end sent
    server_sources: int | None = None  # source addresses the far end saw the stream from
    ignored: int | None = None  # sticky echo: packets from another address than the first
    server_duplicates: int | None = None  # packets the far end got twice (copies not removed)
    down_duplicates: int = 0  # answers that arrived twice at the client

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(doc: dict[str, Any]) -> StreamResult:
        stats = {k: DelayStats(**doc[k]) if doc.get(k) else None
                 for k in ("delay_up", "delay_down", "rtt")}
        return StreamResult(**{**doc, **stats})


def check_args(pps: int, duration: float, size: int, cls: str | None) -> None:
    if not 1 <= pps <= MAX_PPS:
        raise BraidError(f"--pps {pps} is out of range", f"use 1 to {MAX_PPS} packets a second")
    if not 0 < duration <= MAX_DURATION:
        raise BraidError(f"--duration {duration} is out of range",
                         f"use more than 0 and at most {MAX_DURATION:g} seconds")
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise BraidError(f"--size {size} is out of range",
                         f"use {MIN_SIZE} to {MAX_SIZE} bytes (the stamp needs {MIN_SIZE})")
    if cls is not None and cls not in CLASS_DSCP:
        raise BraidError(f"unknown class {cls!r}", f"use one of: {', '.join(CLASS_DSCP)}")


def stream(lab: str, *, pps: int = 200, duration: float = 10.0, size: int = 1000,
           cls: str | None = None, baseline: bool = False, wait: float = 2.0,
           sticky: bool = False, ipv6: bool = False) -> StreamResult:
    """Run a stream in lab ``lab`` (from its baseline namespace with ``baseline``; to the
    sticky echo, which answers only the stream's first source address, with ``sticky``;
    to the server's IPv6 address with ``ipv6``, in a lab built with it)."""
    return start(lab, pps=pps, duration=duration, size=size, cls=cls, baseline=baseline,
                 wait=wait, sticky=sticky, ipv6=ipv6).result()


@dataclass
class RunningStream:
    """A stream started in the background: do things to the lab meanwhile, then result()."""

    lab: str
    node: str
    child: subprocess.Popen[bytes]
    timeout: float

    def result(self) -> StreamResult:
        from app.lab.topology import communicate_json

        return StreamResult.from_json(communicate_json(self.child, self.node,
                                                       ["stream"], self.timeout))


def start(lab: str, *, pps: int = 200, duration: float = 10.0, size: int = 1000,
          cls: str | None = None, baseline: bool = False, wait: float = 2.0,
          sticky: bool = False, ipv6: bool = False) -> RunningStream:
    from app.lab import topology

    check_args(pps, duration, size, cls)
    info = topology.load(lab)
    if ipv6 and not info.ipv6:
        raise BraidError(f"lab {lab!r} has no IPv6",
                         f"build it with IPv6: braid lab up --name {lab} --ipv6")
    server = SERVER6 if ipv6 else SERVER
    node = "base" if baseline else "client"
    if baseline and info.baseline is None:
        raise BraidError(f"lab {lab!r} has no baseline tunnel",
                         f"bring it up with one: braid lab up --name {lab} --baseline PATH")
    argv = topology.python_argv("app.lab.stream", "--pps", str(pps), "--duration",
                                str(duration), "--size", str(size), "--wait", str(wait),
                                "--node", node,
                                "--target", f"{server}:{STICKY_PORT if sticky else ECHO_PORT}")
    if cls:
        argv += ["--class", cls]
    child = topology.run_in(lab, node, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=topology.python_env())
    return RunningStream(lab, node, child, duration + wait + STATS_TRIES * STATS_WAIT_S + 30)


# --- the sender, inside the namespace ----------------------------------------------


# Answers that arrived twice (the same answer: sequence and the far end's count), per
# process: the sender runs once per process (python -m app.lab.stream).
DOWN_DUPLICATES = [0]


def _recv_all(sock: socket.socket, got: dict[int, tuple[float, float, int]]) -> None:
    while True:
        try:
            data, anc, _, _ = sock.recvmsg(2048, socket.CMSG_SPACE(16))
        except BlockingIOError:
            return
        except ConnectionRefusedError:
            continue  # no route / port unreachable: the packet is simply lost
        rx = time.time()
        for level, kind, cdata in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(cdata) >= 16:
                sec, nsec = struct.unpack("@qq", cdata[:16])
                rx = sec + nsec / 1e9  # the kernel's receive time, not our loop's
        stamp = unpack(data)
        if stamp is not None and stamp.seq not in got:
            got[stamp.seq] = (rx, stamp.server, stamp.server_count)
        elif stamp is not None and got[stamp.seq][2] == stamp.server_count:
            DOWN_DUPLICATES[0] += 1


def send_loop(target: tuple[str, int], pps: int, count: int, size: int, wait: float,
              cls: str | None = None, flow: int | None = None,
              ) -> tuple[list[float], dict[int, tuple[float, float, int]]]:
    """Send ``count`` stamped packets at ``pps`` as stream ``flow`` (random if None);
    collect echoes until ``wait`` s after.

    Returns the send times (index = sequence) and, per echoed sequence, (client receive
    time, server receive time, server's count).
    """
    sock = socket.socket(_family(target[0]), socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    if cls:
        if sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, CLASS_DSCP[cls] << 2)
        else:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, CLASS_DSCP[cls] << 2)
    sock.connect(target)
    sock.setblocking(False)
    if flow is None:
        flow = new_flow()
    interval = 1.0 / pps
    sent: list[float] = []
    got: dict[int, tuple[float, float, int]] = {}
    start = time.monotonic()
    while len(sent) < count:
        now = time.monotonic()
        due = start + len(sent) * interval
        if now < due:
            ready, _, _ = select.select([sock], [], [], due - now)
            if ready:
                _recv_all(sock, got)
            continue
        t = time.time()
        with contextlib.suppress(OSError):  # counted as sent and lost, as an app's would be
            sock.send(pack(flow, len(sent), t, size))
        sent.append(t)
    end = time.monotonic() + wait
    while len(got) < count and time.monotonic() < end:
        ready, _, _ = select.select([sock], [], [], max(0.0, end - time.monotonic()))
        if ready:
            _recv_all(sock, got)
    sock.close()
    return sent, got


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def new_flow() -> int:
    return int.from_bytes(os.urandom(4), "big")


def far_end_stats(host: str, flow: int) -> dict[str, Any] | None:
    """What the far end saw of stream ``flow`` (servers.py, "BRSQ"), or None if it did not
    answer: asked again a few times, as the way there or back may lose the question."""
    query = STATS_QUERY + flow.to_bytes(4, "big")
    with socket.socket(_family(host), socket.SOCK_DGRAM) as sock:
        sock.connect((host, STATS_PORT))
        for _ in range(STATS_TRIES):
            for _ in range(2):
                with contextlib.suppress(OSError):
                    sock.send(query)
            deadline = time.monotonic() + STATS_WAIT_S
            while (left := deadline - time.monotonic()) > 0:
                if not select.select([sock], [], [], left)[0]:
                    break
                try:
                    doc = json.loads(sock.recv(65536))
                except (OSError, ValueError):
                    continue
                if isinstance(doc, dict) and doc.get("flow") == flow:
                    return doc
    return None


def run_sender(pps: int, duration: float, size: int, cls: str | None, wait: float,
               node: str, target: tuple[str, int] = (SERVER, ECHO_PORT)) -> StreamResult:
    flow = new_flow()
    sent, got = send_loop(target, pps, max(1, round(pps * duration)), size, wait, cls, flow)
    return summarise(sent, got, pps=pps, size=size, duration=duration, cls=cls, node=node,
                     port=target[1], far_end=far_end_stats(target[0], flow),
                     down_dups=DOWN_DUPLICATES[0])


def _down_gap(counts: list[int]) -> int:
    """The longest run of answers the far end sent (numbered in the order it sent them)
    that did not arrive, between two that did: ``counts`` are those that did."""
    seen = sorted(set(counts))
    return max((b - a - 1 for a, b in itertools.pairwise(seen)), default=0)


def summarise(sent: list[float], got: dict[int, tuple[float, float, int]], *, pps: int,
              size: int, duration: float, cls: str | None, node: str, port: int = ECHO_PORT,
              far_end: dict[str, Any] | None = None, down_dups: int = 0) -> StreamResult:
    up, down, rtt = [], [], []
    for seq, (rx, server, _) in got.items():
        rtt.append((rx - sent[seq]) * 1000.0)
        if server > 0:
            up.append((server - sent[seq]) * 1000.0)
            down.append((rx - server) * 1000.0)
    ordered = [(server - sent[seq]) * 1000.0 for seq, (_, server, _) in sorted(got.items())
               if server > 0]
    jitter = (sum(abs(b - a) for a, b in itertools.pairwise(ordered))
              / (len(ordered) - 1)) if len(ordered) > 1 else None
    arrivals = sorted(rx for rx, _, _ in got.values())
    gap = (max(b - a for a, b in itertools.pairwise(arrivals)) - 1.0 / pps) * 1000.0 \
        if len(arrivals) > 1 else None
    server_seen = max((c for _, _, c in got.values()), default=0)
    if far_end is not None:
        server_seen = max(server_seen, int(far_end["count"]))
    up_loss = 100.0 * (1 - server_seen / len(sent)) if got or far_end else None
    spacing_ms = 1000.0 / pps
    up_gap = down_gap = down_loss = None
    if far_end is not None:
        # Between arrivals, as max_gap_ms: a way that never came back shows as loss.
        if int(far_end["count"]) > 1:
            up_gap = max(0.0, float(far_end["max_gap_ms"]) - spacing_ms)
        answers = int(far_end["count"])
        if len(got) > 1:
            down_gap = _down_gap([c for _, _, c in got.values()]) * spacing_ms
        down_loss = 100.0 * (1 - len(got) / answers) if answers else None
    frames: dict[int, bool] = {}
    t0 = sent[0] if sent else 0.0
    for seq, t in enumerate(sent):
        frame = int((t - t0) / FRAME_S)
        entry = got.get(seq)
        bad = entry is None or entry[1] <= 0 or \
            max(entry[1] - t, entry[0] - entry[1]) * 1000.0 > STUTTER_MS
        frames[frame] = frames.get(frame, False) or bad
    stutter = sum(frames.values())
    return StreamResult(
        pps=pps, size=size, duration_s=duration, cls=cls, node=node, sent=len(sent),
        received=len(got), loss_pct=100.0 * (1 - len(got) / len(sent)) if sent else 0.0,
        up_loss_pct=up_loss, delay_up=DelayStats.of(up), delay_down=DelayStats.of(down),
        rtt=DelayStats.of(rtt), jitter_ms=jitter, max_gap_ms=gap, frames=len(frames),
        stutter_frames=stutter, stutter_pct=100.0 * stutter / len(frames) if frames else 0.0,
        port=port, up_gap_ms=up_gap, down_gap_ms=down_gap, down_loss_pct=down_loss,
        server_sources=None if far_end is None else len(far_end["sources"]),
        ignored=None if far_end is None else int(far_end["ignored"]),
        server_duplicates=None if far_end is None else int(far_end.get("duplicates", 0)),
        down_duplicates=down_dups,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.lab.stream")
    parser.add_argument("--pps", type=int, default=200)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--class", dest="cls")
    parser.add_argument("--wait", type=float, default=2.0)
    parser.add_argument("--node", default="client")
    parser.add_argument("--target", default=f"{SERVER}:{ECHO_PORT}")
    args = parser.parse_args(argv)
    host, _, port = args.target.rpartition(":")
    result = run_sender(args.pps, args.duration, args.size, args.cls, args.wait, args.node,
                        (host, int(port)))
    json.dump(result.to_json(), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())

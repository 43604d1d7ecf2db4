"""`braid lab stream`: a realtime-like UDP stream from the client to the server and back.

The sender runs inside the lab's client (or baseline) namespace, as its own process
(`python -m app.lab.stream ...`, printing JSON), and sends stamped packets to the
server's echo, which stamps its receive time. Every namespace shares the host's clock,
so both one-way delays are exact. The figures are those of a test call: what you send
crosses to the far side (up) and what comes back crosses again (down).
"""

from __future__ import annotations

import argparse
import bisect
import collections
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
# ITU-T G.114's one-way (mouth-to-ear) bound for a good conversation: frames later than
# this are reported apart from stutter, as "over 150 ms" (a smooth long path is not a
# stuttering one; it is a laggy one).
STUTTER_MS = 150.0
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
    # 30 fps frames with a packet lost or played out late: after the deadline of an
    # adaptive jitter buffer (JitterBuffer), in either direction.
    stutter_frames: int
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
    # Frames with a packet that arrived more than 150 ms one way (either direction; G.114),
    # whether or not the jitter buffer played it in time. Lost packets count as stutter.
    over_150_frames: int = 0
    over_150_pct: float = 0.0
    # The one-way delay the jitter buffers played at (mean over packets), per direction.
    playout_up_ms: float | None = None
    playout_down_ms: float | None = None

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

    def stop(self) -> None:
        """End the stream now, without its figures: for a caller that needed the traffic
        only while it waited for something, which may take the whole of a timeout."""
        if self.child.poll() is None:
            self.child.terminate()
        self.child.communicate(timeout=10)


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



# --- stutter as a player sees it: an adaptive jitter buffer --------------------------


@dataclass(frozen=True)
class JitterBuffer:
    """How a call's player decides when to play a packet: its playout delay.

    Modelled on WebRTC's NetEq (modules/audio_coding/neteq/delay_manager.h): NetEq
    measures each packet's arrival delay relative to the fastest recent packet, keeps a
    histogram of those relative delays (forget factor 0.983) and targets its 0.95
    quantile, within a minimum and a maximum delay. Here, in the same spirit and pure:

    - the player's playout delay D is, once per frame, recomputed from the packets that
      have arrived by the time it plays that frame (its previous D after the frame's
      capture time) and arrived within the last ``window_s``: D = base + buffer, where
      base is the smallest one-way delay among them (the stream's own recent delay) and
      buffer is their ``quantile`` delay less base, kept within ``min_buffer_ms`` and
      ``max_buffer_ms``;
    - a packet is played in time if it arrives within D of being sent; it is late (as
      bad as lost: the player has concealed its frame by then) otherwise;
    - the player starts at the first packet's delay plus ``start_buffer_ms`` (NetEq
      starts at a target of 80 ms, kStartDelayMs, before its histogram has learnt the
      path), and the buffer stays at least that for the first ``window_s`` of arrivals;
      it keeps its D while nothing arrives (an outage does not shrink the buffer).

    A sliding window stands in for NetEq's decaying histogram: it grows the buffer as
    soon as late packets arrive and lets it shrink once they leave the window. The
    minimum is one 20 ms audio packet; the maximum keeps an outage's stragglers from
    being waited for (NetEq's own bound is its buffer's size, larger than this).
    A 95th-percentile target lets a path's worst few packets in a hundred be late by
    design (NetEq then stretches or conceals): on a jittery path, or a busy machine's
    lab, a few percent of frames stutter without any loss.
    """

    window_s: float = 2.0
    quantile: float = 0.95
    min_buffer_ms: float = 20.0
    max_buffer_ms: float = 500.0
    start_buffer_ms: float = 80.0


@dataclass(frozen=True)
class Playout:
    late: tuple[bool, ...]  # per packet: lost, or arrived after its playout deadline
    delay_ms: tuple[float | None, ...]  # per packet: D when its frame played (None: never)


def playout(sent: list[float], arrived: list[float | None], *, frame_s: float = FRAME_S,
            buffer: JitterBuffer = JitterBuffer()) -> Playout:
    """Which packets a player with ``buffer`` plays late: ``sent`` are the packets' send
    times (seconds, one clock), ``arrived`` their arrival times (None: lost)."""
    if len(sent) != len(arrived):
        raise ValueError("sent and arrived differ in length")
    delays = [None if a is None else (a - t) * 1000.0 for t, a in zip(sent, arrived, strict=True)]
    known = sorted((a, d) for a, d in zip(arrived, delays, strict=True)
                   if a is not None and d is not None)
    if not known:
        return Playout(late=(True,) * len(sent), delay_ms=(None,) * len(sent))
    t0 = min(sent)
    frames: dict[int, list[int]] = {}
    for i, t in enumerate(sent):
        frames.setdefault(int((t - t0) / frame_s), []).append(i)
    window: collections.deque[tuple[float, float]] = collections.deque()
    ordered: list[float] = []  # the window's delays, sorted
    nxt = 0
    first = known[0][0]
    d_ms = known[0][1] + buffer.start_buffer_ms  # the first packet's delay, plus the start
    per_packet: list[float | None] = [None] * len(sent)
    for k in sorted(frames):
        decide = t0 + k * frame_s + d_ms / 1000.0  # when the player plays frame k
        while nxt < len(known) and known[nxt][0] <= decide:
            window.append(known[nxt])
            bisect.insort(ordered, known[nxt][1])
            nxt += 1
        while window and window[0][0] <= decide - buffer.window_s:
            ordered.pop(bisect.bisect_left(ordered, window.popleft()[1]))
        if ordered:
            base = ordered[0]
            q = ordered[min(len(ordered) - 1,
                            max(0, math.ceil(buffer.quantile * len(ordered)) - 1))]
            least = buffer.start_buffer_ms if decide - first < buffer.window_s \
                else buffer.min_buffer_ms
            d_ms = base + min(buffer.max_buffer_ms, max(least, q - base))
        for i in frames[k]:
            per_packet[i] = d_ms
    late = tuple(d is None or p is None or d > p
                 for d, p in zip(delays, per_packet, strict=True))
    return Playout(late=late, delay_ms=tuple(per_packet))


@dataclass(frozen=True)
class FrameFigures:
    frames: int
    stutter: int  # lost, or late for the jitter buffer, in either direction
    over_150: int  # a packet arrived more than STUTTER_MS one way, in either direction
    playout_up_ms: float | None
    playout_down_ms: float | None


def frame_figures(sent: list[float], got: dict[int, tuple[float, float, int]], *,
                  buffer: JitterBuffer = JitterBuffer()) -> FrameFigures:
    """The stream's 30 fps frames (grouped by send time) as a call's two players see
    them: one at the far end (upstream: client send -> far end's receive), one at the
    client (downstream: the far end's receive, when it answers at once -> client's). A
    packet without an answer is lost in one of them."""
    seqs = [seq for seq in range(len(sent)) if seq in got and got[seq][1] > 0]
    up = playout([sent[s] for s in seqs], [got[s][1] for s in seqs], buffer=buffer)
    down = playout([got[s][1] for s in seqs], [got[s][0] for s in seqs], buffer=buffer)
    late = {s: u or d for s, u, d in zip(seqs, up.late, down.late, strict=True)}
    frames: dict[int, tuple[bool, bool]] = {}
    t0 = sent[0] if sent else 0.0
    for seq, t in enumerate(sent):
        frame = int((t - t0) / FRAME_S)
        entry = got.get(seq)
        bad = late.get(seq, True)
        over = entry is not None and entry[1] > 0 and \
            max(entry[1] - t, entry[0] - entry[1]) * 1000.0 > STUTTER_MS
        was = frames.get(frame, (False, False))
        frames[frame] = (was[0] or bad, was[1] or over)

    def mean(values: tuple[float | None, ...]) -> float | None:
        known = [v for v in values if v is not None]
        return sum(known) / len(known) if known else None

    return FrameFigures(frames=len(frames), stutter=sum(b for b, _ in frames.values()),
                        over_150=sum(o for _, o in frames.values()),
                        playout_up_ms=mean(up.delay_ms), playout_down_ms=mean(down.delay_ms))


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
    ff = frame_figures(sent, got)
    return StreamResult(
        pps=pps, size=size, duration_s=duration, cls=cls, node=node, sent=len(sent),
        received=len(got), loss_pct=100.0 * (1 - len(got) / len(sent)) if sent else 0.0,
        up_loss_pct=up_loss, delay_up=DelayStats.of(up), delay_down=DelayStats.of(down),
        rtt=DelayStats.of(rtt), jitter_ms=jitter, max_gap_ms=gap, frames=ff.frames,
        stutter_frames=ff.stutter,
        stutter_pct=100.0 * ff.stutter / ff.frames if ff.frames else 0.0,
        port=port, up_gap_ms=up_gap, down_gap_ms=down_gap, down_loss_pct=down_loss,
        server_sources=None if far_end is None else len(far_end["sources"]),
        ignored=None if far_end is None else int(far_end["ignored"]),
        server_duplicates=None if far_end is None else int(far_end.get("duplicates", 0)),
        down_duplicates=down_dups,
        over_150_frames=ff.over_150,
        over_150_pct=100.0 * ff.over_150 / ff.frames if ff.frames else 0.0,
        playout_up_ms=ff.playout_up_ms, playout_down_ms=ff.playout_down_ms,
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

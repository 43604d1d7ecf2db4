"""The lab's international links: a userspace UDP relay per path, run in the wan namespace.

One process carries every path of a lab: a `select()` loop (its timeout has microsecond
resolution, unlike epoll's milliseconds, which is what keeps the added delay within a
fraction of a millisecond) over the paths' listening sockets, the per-client upstream
sockets and the control socket, and a heap of packets waiting for their release time.

Each path is a NAT-like forwarder: a packet from a new client source address gets its own
upstream socket towards the gateway, so the Braid client and the baseline client share a
path's relay (and its rate limit) and each still gets its own answers.

A path has two links, each emulated on its own, with its own profile per direction:
``wan`` (the international link, client to gateway) and ``backbone`` (gateway to the
exit). A forward names the links its packets cross, in order going up: with a shared
exit the client's forward crosses ``wan`` and the gateway's own forward to the exit
crosses ``backbone``; with separate exits the client's forward crosses both in series
(the gateway's own way to the far side, whose plain IP no UDP relay could carry).
A packet leaving one link enters the next at the moment it left, so delays add up and
each link's timeline and queue apply where the packet is.

Run as `python -m app.lab.relay /run/braid/lab/<lab>/relay.json`.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import os
import select
import signal
import socket
import struct
import sys
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from app.core.errors import BraidError
from app.lab.emulate import Link, ProfileState
from app.lab.link import DIRECTIONS, LINKS, WAN, LinkProfile, check_changes, profile_from
from app.lab.scenario import TimelineEntry

BUFSIZE = 4 * 1024 * 1024
BATCH = 64  # packets read from one socket before the loop looks at its timers again
IDLE_FLOW_S = 600.0  # an upstream socket nobody used for this long is closed
RAMP_STEP_S = 0.05  # how often a drifting profile is recomputed


SO_TIMESTAMPNS = 35
ANC_SIZE = socket.CMSG_SPACE(16)
TIMESPEC = struct.Struct("@qq")
RT_PRIORITY = 10  # SCHED_FIFO: the links keep time while the host is busy


def _udp(bind: tuple[str, int]) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # The kernel's receive time is when the packet reached the link, however late this
    # process gets round to it: delays count from there, not from our loop.
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    for opt, fallback in ((33, socket.SO_RCVBUF), (32, socket.SO_SNDBUF)):  # *BUFFORCE
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, BUFSIZE)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, fallback, BUFSIZE)
    sock.bind(bind)
    sock.setblocking(False)
    return sock


LinkKey = tuple[str, str]  # (link, direction): ("wan", "up")


@dataclass
class Flow:
    """One client source address on one forward: its own upstream socket."""

    path: Path_
    listener: socket.socket
    client: tuple[str, int]
    upstream: socket.socket
    last_used: float
    up: tuple[Link, ...]  # the links a packet crosses going up, in order
    down: tuple[Link, ...]  # and coming back


@dataclass(frozen=True)
class Forward:
    path: Path_
    sock: socket.socket
    target: tuple[str, int]
    bind: str
    links: tuple[str, ...]  # crossed in this order going up


@dataclass
class Path_:
    name: str
    links: dict[LinkKey, Link]
    states: dict[LinkKey, ProfileState]
    scenario: dict[LinkKey, LinkProfile]  # what the scenario set, for "reset"
    flows: dict[tuple[int, tuple[str, int]], Flow] = field(default_factory=dict)

    def chain(self, links: tuple[str, ...], direction: str) -> tuple[Link, ...]:
        order = links if direction == "up" else tuple(reversed(links))
        return tuple(self.links[(name, direction)] for name in order)


Pending = tuple[float, int, socket.socket, bytes, tuple[str, int] | None, tuple[Link, ...]]


class Relay:
    def __init__(self, config: dict[str, Any]) -> None:
        # The timeline counts from the lab's start, on the monotonic clock from here on;
        # without one it waits for the "start" request (the lab is still being built).
        self.started_at: float | None = None
        self.t0 = float("inf")
        if config.get("started_at") is not None:
            self._start_timeline(float(config["started_at"]))
        self.paths: dict[str, Path_] = {}
        self.listeners: dict[int, Forward] = {}
        self.upstreams: dict[int, Flow] = {}
        self.heap: list[Pending] = []
        self.seq = 0
        for p in config["paths"]:
            states = {(link, d): ProfileState(profile_from(p["links"][link][d],
                                                           f"path {p['name']} {link} {d}"))
                      for link in LINKS for d in DIRECTIONS}
            # The wan link keeps the seed it always had: the same scenario, the same run.
            links = {key: Link(states[key].base, zlib.crc32(
                (f"{p['name']}/{key[1]}" if key[0] == WAN else f"{p['name']}/{key[0]}/"
                 f"{key[1]}").encode())) for key in states}
            path = Path_(p["name"], links, states, {k: v.base for k, v in states.items()})
            self.paths[path.name] = path
            for listen_port, host, port, bind, crossed in p["forwards"]:
                sock = _udp(("0.0.0.0", int(listen_port)))
                self.listeners[sock.fileno()] = Forward(path, sock, (host, int(port)), bind,
                                                        tuple(crossed))
        self.timeline = [TimelineEntry.from_json(e) for e in config["timeline"]]
        self.timeline.sort(key=lambda e: e.at_s)
        self.next_event = 0
        self.control_path = Path(config["control"])
        with contextlib.suppress(FileNotFoundError):
            self.control_path.unlink()
        self.control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.control.bind(str(self.control_path))
        os.chmod(self.control_path, 0o600)
        self.control.listen(16)
        self.control.setblocking(False)
        self.conns: dict[int, tuple[socket.socket, bytearray]] = {}
        self.next_ramp = 0.0
        self.wall_offset = time.time() - time.monotonic()  # refreshed each sweep
        self.due = 0.0  # the next time the timeline or an overlay changes something
        self.next_sweep = time.monotonic() + 10.0

    # --- packets -------------------------------------------------------------------

    def _from_client(self, fd: int, now: float) -> None:
        fwd = self.listeners[fd]
        path = fwd.path
        for _ in range(BATCH):
            try:
                data, anc, _, addr = fwd.sock.recvmsg(65535, ANC_SIZE)
            except BlockingIOError:
                return
            arrived = self._arrival(anc, now)
            flow = path.flows.get((fd, addr))
            if flow is None:
                up = _udp((fwd.bind, 0))
                up.connect(fwd.target)
                flow = Flow(path, fwd.sock, addr, up, arrived, path.chain(fwd.links, "up"),
                            path.chain(fwd.links, "down"))
                path.flows[(fd, addr)] = flow
                self.upstreams[up.fileno()] = flow
            flow.last_used = arrived
            self._admit(flow.up, arrived, flow.upstream, data, None)

    def _from_gateway(self, fd: int, now: float) -> None:
        flow = self.upstreams[fd]
        for _ in range(BATCH):
            try:
                data, anc, _, _ = flow.upstream.recvmsg(65535, ANC_SIZE)
            except BlockingIOError:
                return
            except ConnectionRefusedError:
                continue  # an ICMP error from the gateway side; the relay carries on
            arrived = self._arrival(anc, now)
            flow.last_used = arrived
            self._admit(flow.down, arrived, flow.listener, data, flow.client)

    def _admit(self, chain: tuple[Link, ...], t: float, sock: socket.socket, data: bytes,
               addr: tuple[str, int] | None) -> None:
        """Into the first link of ``chain`` at ``t``; it enters the next when it leaves."""
        release = chain[0].admit(t, len(data))
        if release is not None:
            self.seq += 1
            heapq.heappush(self.heap, (release, self.seq, sock, data, addr, chain[1:]))

    def _arrival(self, anc: list[tuple[int, int, bytes]], fallback: float) -> float:
        """The packet's kernel receive time on the monotonic clock; timeline caught up to it."""
        t = fallback
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = TIMESPEC.unpack_from(data)
                t = min(fallback, sec + nsec * 1e-9 - self.wall_offset)
        if t >= self.due:
            self._run_timeline(t)
        return t

    def _release_due(self) -> None:
        heap = self.heap
        now = time.monotonic()
        while heap and heap[0][0] <= now:
            left, _, sock, data, addr, rest = heapq.heappop(heap)
            if rest:  # on to the next link, at the time it left this one
                if left >= self.due:
                    self._run_timeline(left)
                self._admit(rest, left, sock, data, addr)
                continue
            with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
                if addr is None:
                    sock.send(data)
                else:
                    sock.sendto(data, addr)

    # --- profiles and timeline -----------------------------------------------------

    def _apply(self, path: Path_, now: float) -> None:
        for key, link in path.links.items():
            link.set_profile(path.states[key].effective(now))

    def _start_timeline(self, started_at: float) -> None:
        self.started_at = started_at
        self.t0 = time.monotonic() - (time.time() - started_at)

    def _run_timeline(self, now: float) -> None:
        t = now - self.t0
        while self.next_event < len(self.timeline) and self.timeline[self.next_event].at_s <= t:
            e = self.timeline[self.next_event]
            self.next_event += 1
            path = self.paths[e.path]
            # A late start (the relay came up after `at`) shortens the entry, as on a clock.
            late = t - e.at_s
            for_s = None if e.for_s is None else max(0.0, e.for_s - late)
            for d in e.dirs:
                path.states[(e.link, d)].add(now, dict(e.changes), for_s, e.ramp)
            self._apply(path, now)
            print(f"t={t:.3f} timeline: {e.path} {e.link} {','.join(e.dirs)} "
                  f"{dict(e.changes)} for {e.for_s}", flush=True)
        for path in self.paths.values():
            if any(s.expire(now) for s in path.states.values()):
                self._apply(path, now)
        if now >= self.next_ramp:
            self.next_ramp = now + RAMP_STEP_S
            for path in self.paths.values():
                if any(s.ramping() for s in path.states.values()):
                    self._apply(path, now)
        self.due = self._next_change()

    def _next_change(self) -> float:
        due = float("inf")
        if self.next_event < len(self.timeline):
            due = self.t0 + self.timeline[self.next_event].at_s
        for path in self.paths.values():
            for s in path.states.values():
                end = s.next_end()
                if end is not None:
                    due = min(due, end)
                if s.ramping():
                    due = min(due, self.next_ramp)
        return due

    def _next_timer(self, now: float) -> float:
        """Seconds until the loop must wake for something other than a socket."""
        wake = min(now + 1.0, self.due)
        if self.heap:
            wake = min(wake, self.heap[0][0])
        return max(0.0, wake - now)

    def _sweep(self, now: float) -> None:
        self.next_sweep = now + 10.0
        self.wall_offset = time.time() - time.monotonic()
        for path in self.paths.values():
            for key, flow in list(path.flows.items()):
                if now - flow.last_used > IDLE_FLOW_S:
                    del path.flows[key]
                    del self.upstreams[flow.upstream.fileno()]
                    flow.upstream.close()

    # --- control -------------------------------------------------------------------

    def _accept(self) -> None:
        with contextlib.suppress(BlockingIOError):
            conn, _ = self.control.accept()
            conn.setblocking(False)
            self.conns[conn.fileno()] = (conn, bytearray())

    def _control_read(self, fd: int) -> None:
        conn, buf = self.conns[fd]
        try:
            chunk = conn.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk or len(buf) > 1 << 20:
            del self.conns[fd]
            conn.close()
            return
        buf += chunk
        while b"\n" in buf:
            line, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            reply = self._handle(line)
            conn.setblocking(True)
            try:
                conn.sendall(json.dumps(reply).encode() + b"\n")
            except OSError:
                pass
            finally:
                conn.setblocking(False)

    def _handle(self, line: bytes) -> dict[str, Any]:
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise BraidError("a request must be a JSON object", "send {\"op\": ...}")
            op = req.get("op")
            if op == "ping":
                return {"ok": True}
            if op == "status":
                return {"ok": True, **self.status()}
            if op == "set":
                self.set(req)
                return {"ok": True, **self.status()}
            if op == "start":
                if self.started_at is None:
                    at = req.get("started_at")
                    if isinstance(at, bool) or not isinstance(at, int | float):
                        raise BraidError("start needs started_at (unix time)",
                                         'send {"op": "start", "started_at": T}')
                    self._start_timeline(float(at))
                    self.due = 0.0  # catch up at once
                return {"ok": True, **self.status()}
            raise BraidError(f"unknown relay request {op!r}", "use ping, status, set or start")
        except BraidError as exc:
            return {"ok": False, "error": exc.what, "fix": exc.fix}
        except (ValueError, KeyError, TypeError) as exc:
            return {"ok": False, "error": f"bad relay request: {exc}", "fix": "see docs/lab.md"}

    def set(self, req: dict[str, Any]) -> None:
        name = req.get("path")
        if name not in self.paths:
            raise BraidError(f"no path {name!r} in this lab",
                             f"use one of: {', '.join(self.paths)}")
        dirs = req.get("dirs", list(DIRECTIONS))
        if not isinstance(dirs, list) or not dirs or any(d not in DIRECTIONS for d in dirs):
            raise BraidError(f"bad directions {dirs!r}", "use up, down or both")
        link = req.get("link", WAN)
        if link not in LINKS:
            raise BraidError(f"no link {link!r} on a path", f"use one of: {', '.join(LINKS)}")
        changes = req.get("changes", {})
        reset = req.get("reset", False) is True
        if not isinstance(changes, dict) or not (changes or reset):
            raise BraidError("nothing to change", "give at least one setting")
        checked = check_changes(changes, f"path {name} {link}")
        now = time.monotonic()
        path = self.paths[name]
        for d in dirs:
            if reset:  # back to the scenario's profile; running episodes end too
                path.states[(link, d)] = ProfileState(path.scenario[(link, d)])
            path.states[(link, d)].set_now(checked)
        self._apply(path, now)
        self.due = self._next_change()
        print(f"t={max(0.0, now - self.t0):.3f} set: {name} {link} {','.join(dirs)} "
              f"{'reset ' if reset else ''}{checked}", flush=True)

    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        out = []
        for path in self.paths.values():
            doc: dict[str, Any] = {"name": path.name, "flows": len(path.flows)}
            for name in LINKS:
                # The wan link's directions stay at the top, as before links were two.
                where = doc if name == WAN else doc.setdefault(name, {})
                for d in DIRECTIONS:
                    link = path.links[(name, d)]
                    where[d] = {
                        "profile": link.profile.to_json(),
                        "base": path.states[(name, d)].base.to_json(),
                        "counters": asdict(link.counters),
                        "queue_ms": round(link.queue_delay(now) * 1000.0, 3),
                    }
            out.append(doc)
        return {"started_at": self.started_at, "t": max(0.0, now - self.t0), "paths": out,
                "timeline_left": len(self.timeline) - self.next_event}

    # --- loop ----------------------------------------------------------------------

    def run(self) -> None:
        # Raise out of select() at once (PEP 475 would otherwise resume it).
        signal.signal(signal.SIGTERM, _terminate)
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(RT_PRIORITY))
            sched = f"SCHED_FIFO {RT_PRIORITY}"
        except OSError as exc:
            sched = f"normal scheduling (SCHED_FIFO refused: {exc})"
        print(f"relay up: paths {', '.join(self.paths)}; {sched}", flush=True)
        try:
            self._loop()
        finally:
            with contextlib.suppress(FileNotFoundError):
                self.control_path.unlink()

    def _loop(self) -> None:
        while True:
            now = time.monotonic()
            if now >= self.due:
                self._run_timeline(now)
            self._release_due()
            now = time.monotonic()
            if now >= self.next_sweep:
                self._sweep(now)
            fds: list[int] = [self.control.fileno(), *self.listeners, *self.upstreams,
                              *self.conns]
            try:
                ready, _, _ = select.select(fds, [], [], self._next_timer(now))
            except InterruptedError:
                continue
            now = time.monotonic()
            for fd in ready:
                if fd in self.listeners:
                    self._from_client(fd, now)
                elif fd in self.upstreams:
                    self._from_gateway(fd, now)
                elif fd == self.control.fileno():
                    self._accept()
                elif fd in self.conns:
                    self._control_read(fd)


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m app.lab.relay RELAY.json", file=sys.stderr)
        return 2
    relay = Relay(json.loads(Path(args[0]).read_text()))
    relay.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

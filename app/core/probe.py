"""ICMP probes of one path, on the engine's asyncio loop.

Each path has its own ICMP socket (icmplib), bound to the tunnel's own address, so the
rule ``from <address> lookup <path table>`` sends every probe through that tunnel and
no other. Echo requests go out on a timer; replies are read by a reader callback on
the socket (no task per probe), matched by sequence number and fed to the path's
``ProbeTracker`` (liveness.py), which owns deadlines, loss and health.

Rates (``ProbeRates``, per path, changed by the engine at any time):
- ``active`` 50 ms: the path carries a class;
- ``suspect`` 20 ms: the path missed a probe, or has not answered yet, so the verdict
  (answering again, or down) comes quickly;
- ``standby`` 200 ms: a healthy path that carries nothing, or a down path waiting to
  come back.

Privileged (root, raw socket) or not (``SOCK_DGRAM`` ICMP, allowed by the
``net.ipv4.ping_group_range`` sysctl): chosen by the effective uid. With raw sockets
every socket sees every echo reply in the namespace, so each prober filters on its
own ICMP identifier; datagram sockets are demultiplexed by the kernel.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

from icmplib import ICMPRequest, ICMPv4Socket
from icmplib.exceptions import ICMPLibError

from app.core.errors import BraidError
from app.core.liveness import HealthChange, ProbeTracker

log = logging.getLogger(__name__)

ICMP_ECHO_REPLY = 0
PAYLOAD_SIZE = 16


@dataclass(frozen=True)
class ProbeRates:
    active_s: float = 0.050
    suspect_s: float = 0.020
    standby_s: float = 0.200

    def __post_init__(self) -> None:
        if min(self.active_s, self.suspect_s, self.standby_s) < 0.005:
            raise ValueError("probe intervals must be at least 5 ms")


def parse_echo_reply(packet: bytes, privileged: bool) -> tuple[int, int] | None:
    """(identifier, sequence) of an ICMP echo reply, or None for anything else."""
    offset = 0
    if privileged:  # raw sockets deliver the IP header too
        if len(packet) < 20:
            return None
        offset = (packet[0] & 0x0F) * 4
    if len(packet) < offset + 8 or packet[offset] != ICMP_ECHO_REPLY:
        return None
    ident, seq = struct.unpack_from("!HH", packet, offset + 4)
    return ident, seq


OnProbeEvent = Callable[["Prober", HealthChange | None, float | None], None]
OnProbeError = Callable[["Prober", str | None], None]
REOPEN_S = 1.0  # how often a prober whose socket could not be opened tries again


class Prober:
    """Sends probes for one path and keeps its tracker up to date."""

    def __init__(
        self,
        name: str,
        source: str,
        target: str,
        tracker: ProbeTracker,
        on_event: OnProbeEvent,
        *,
        ident: int,
        interval_s: float,
        privileged: bool | None = None,
        on_error: OnProbeError | None = None,
    ) -> None:
        self.name = name
        self.source = source
        self.target = target
        self.tracker = tracker
        self._on_event = on_event
        self.privileged = os.geteuid() == 0 if privileged is None else privileged
        self._ident = ident & 0xFFFF
        self.interval_s = interval_s
        self._sock: ICMPv4Socket | None = None
        self._raw: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._seq = 0
        self._send_handle: asyncio.TimerHandle | None = None
        self._next_send = 0.0
        self._last_send = 0.0
        self._check_handle: asyncio.TimerHandle | None = None
        self._check_at: float | None = None
        self.sent = 0
        self.send_errors = 0
        # The socket's last complaint (ENETUNREACH while the tunnel is gone, say), until
        # a probe gets through again; the engine shows it and checks the helper.
        self.error: str | None = None
        self._on_error = on_error
        self._reopen_handle: asyncio.TimerHandle | None = None
        self._stopped = False

    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def start(self) -> None:
        """Open the socket and start probing (call on the engine's loop). A socket that
        cannot be opened at all (no permission) is a BraidError; one whose address is
        missing for now (the tunnel is being recreated) is retried every second."""
        self._loop = asyncio.get_running_loop()
        try:
            self._open()
        except ICMPLibError as exc:
            if "ermission" in str(exc) or "not permitted" in str(exc):
                raise BraidError(
                    f"cannot open an ICMP socket on {self.source} for path {self.name}: {exc}",
                    "run as root, or allow unprivileged ping: sysctl net.ipv4.ping_group_range="
                    "'0 2147483647'",
                ) from None
            self._failed(f"cannot open its socket: {exc}")
            self._reopen_handle = self._loop.call_later(REOPEN_S, self._reopen)
        self._send()

    def _open(self) -> None:
        assert self._loop is not None
        sock = ICMPv4Socket(address=self.source, privileged=self.privileged)
        self._sock = sock
        self._raw = sock.sock
        self._raw.setblocking(False)
        self._loop.add_reader(self._raw.fileno(), self._drain)

    def _reopen(self) -> None:
        self._reopen_handle = None
        if self._loop is None:
            return
        try:
            self._open()
        except ICMPLibError as exc:
            self._failed(f"cannot open its socket: {exc}")
            self._reopen_handle = self._loop.call_later(REOPEN_S, self._reopen)

    def _failed(self, why: str) -> None:
        first = self.error is None
        self.error = why
        if first and self._on_error is not None:
            self._on_error(self, why)

    def stop(self) -> None:
        self._stopped = True
        for handle in (self._send_handle, self._check_handle, self._reopen_handle):
            if handle is not None:
                handle.cancel()
        self._send_handle = self._check_handle = self._reopen_handle = None
        if self._raw is not None and self._loop is not None:
            self._loop.remove_reader(self._raw.fileno())
        if self._sock is not None:
            self._sock.close()
        self._sock = self._raw = None

    def set_interval(self, interval_s: float) -> None:
        """Change the rate; a shorter interval takes effect at once (the next probe
        goes one new interval after the last one, or now if that is past)."""
        if interval_s == self.interval_s:
            return
        self.interval_s = interval_s
        if self._loop is None or self._send_handle is None:
            return
        due = self._last_send + interval_s
        if due < self._next_send:
            self._send_handle.cancel()
            self._schedule_send(max(due, self._loop.time()))

    def _schedule_send(self, when: float) -> None:
        assert self._loop is not None
        self._next_send = when
        self._send_handle = self._loop.call_at(when, self._send)

    def _send(self) -> None:
        if self._stopped or self._loop is None:
            return
        self._seq = (self._seq + 1) & 0xFFFF
        request = ICMPRequest(self.target, self._ident, self._seq, payload_size=PAYLOAD_SIZE)
        now = self.now()
        self._last_send = now
        self.tracker.sent(self._seq, now)
        self.sent += 1
        try:
            if self._sock is None:
                raise OSError("no socket (reopening)")
            self._sock.send(request)
        except (ICMPLibError, OSError) as exc:
            # Counted as sent: the probe will be missed, which is the truth about the path.
            # Any error: a prober that dies on one (ENETUNREACH while the helper restarts)
            # leaves its path "up" with frozen figures for good.
            self.send_errors += 1
            log.debug("probe %s: send failed: %s", self.name, exc)
            self._failed(f"send failed: {exc}")
        if not self.privileged:
            self._ident = request.id  # the kernel's choice for datagram sockets
        self._schedule_send(now + self.interval_s)
        self._arm_check()

    def _drain(self) -> None:
        """Read every queued reply (reader callback, and before each deadline check)."""
        raw = self._raw
        if raw is None:
            return
        while True:
            try:
                packet = raw.recv(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # ICMP errors queued on the socket, say
                log.debug("probe %s: recv: %s", self.name, exc)
                self._failed(f"receive failed: {exc}")
                continue
            parsed = parse_echo_reply(packet, self.privileged)
            if parsed is None:
                continue
            ident, seq = parsed
            if self.privileged and ident != self._ident:
                continue  # another path's probe
            rtt, change = self.tracker.reply(seq, self.now())
            if self.error is not None:
                self.error = None
                if self._on_error is not None:
                    self._on_error(self, None)
            if rtt is not None or change is not None:
                self._on_event(self, change, rtt)

    def _arm_check(self) -> None:
        assert self._loop is not None
        when = self.tracker.next_deadline()
        if when is None:
            return
        if self._check_at is not None and self._check_handle is not None:
            if self._check_at <= when:
                return
            self._check_handle.cancel()
        self._check_at = when
        self._check_handle = self._loop.call_at(when, self._on_check)

    def _on_check(self) -> None:
        self._check_at = None
        self._check_handle = None
        self._drain()  # a reply already queued is not a miss
        change = self.tracker.check(self.now())
        if change is not None:
            self._on_event(self, change, None)
        self._arm_check()

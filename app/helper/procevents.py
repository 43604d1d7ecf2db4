"""Programs as they start: exec events from the kernel's process events connector
(cn_proc, through pyroute2's message definitions), so that a saved rule puts a program
in its class before it opens sockets in the common case (docs/classes.md has how often
it wins). Not a poll of /proc.

The connector answers only in the initial network namespace (in a lab's, subscribing
fails with ECONNREFUSED), so the socket is made by a short-lived thread that entered
kthreadd's namespace: a socket stays in the namespace it was made in, and the helper's
own threads stay in theirs. It subscribes to every event first (the kernel acknowledges
that, which shows the connector works), then asks for exec events only: kernels since
6.6 filter for a listener (every fork and exit on the machine would otherwise wake it),
without an acknowledgement (the filter drops it too); an older kernel ignores the
request, and the helper keeps only the execs itself.

Every exec on the machine arrives here, so an event is read at fixed offsets
(linux/connector.h, linux/cn_proc.h) rather than decoded into a message object.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import logging
import os
import platform
import select
import socket
import struct
import threading
from collections.abc import Callable

from pyroute2.netlink import NETLINK_CONNECTOR, NLMSG_DONE
from pyroute2.netlink.connector.cn_proc import (
    CN_IDX_PROC,
    CN_VAL_PROC,
    PROC_CN_MCAST_LISTEN,
    PROC_EVENT_EXEC,
    PROC_EVENT_NONE,
    proc_event_control,
)

log = logging.getLogger("braid.helper")

CLONE_NEWNET = 0x40000000
RCVBUF = 4 << 20  # an exec storm (a build) must not overflow it often
_EVENT = struct.Struct("=IIQII")  # what, cpu, timestamp_ns, process_pid, process_tgid
_EVENT_AT = 16 + 20  # after nlmsghdr and cn_msg
_ACK_WAIT_S = 0.5


class _FilteredControl(proc_event_control):  # type: ignore[misc]
    """PROC_CN_MCAST_LISTEN with the event types wanted (struct proc_input, 6.6+)."""

    fields = (*proc_event_control.fields, ("event_type", "I"))


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _control(event_type: int | None) -> bytes:
    msg = _FilteredControl() if event_type is not None else proc_event_control()
    msg["header"]["type"] = NLMSG_DONE
    msg["idx"], msg["val"] = CN_IDX_PROC, CN_VAL_PROC
    msg["action"] = PROC_CN_MCAST_LISTEN
    msg["len"] = 4
    if event_type is not None:
        msg["event_type"] = event_type
        msg["len"] = 8
    msg.encode()
    return bytes(msg.data)


def _open_in(netns: str | None) -> socket.socket:
    """The connector socket, made in ``netns`` (None: here)."""
    box: list[socket.socket | BaseException] = []

    def make() -> None:
        try:
            if netns is not None:
                fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    if _libc.setns(fd, CLONE_NEWNET) != 0:
                        err = ctypes.get_errno()
                        raise OSError(err, f"setns: {os.strerror(err)}")
                finally:
                    os.close(fd)
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC,
                                 NETLINK_CONNECTOR)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            sock.bind((0, CN_IDX_PROC))
            box.append(sock)
        except BaseException as exc:  # handed to the caller's thread
            box.append(exc)

    if netns is None:
        make()
    else:
        thread = threading.Thread(target=make, name="braid-cn-proc")
        thread.start()
        thread.join()
    result = box[0]
    if isinstance(result, BaseException):
        raise result
    return result


def _kernel_filters() -> bool:
    """Whether this kernel filters events per listener (6.6 and later)."""
    try:
        major, minor = (int(x) for x in platform.release().split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (6, 6)


def _acked(sock: socket.socket) -> bool:
    """Whether the kernel acknowledged the subscription (events before the
    acknowledgement are skipped: nothing listens for them yet)."""
    ready, _, _ = select.select([sock], [], [], _ACK_WAIT_S)
    while ready:
        data = sock.recv(1 << 16)
        if len(data) >= _EVENT_AT + 8 and \
                _EVENT.unpack_from(data + bytes(24), _EVENT_AT)[0] == PROC_EVENT_NONE:
            return True
        ready, _, _ = select.select([sock], [], [], _ACK_WAIT_S)
    return False


class ProcEvents:
    """Calls ``on_exec(pid, t)`` on the running loop for each program started (``pid``
    is the process, thread group id; ``t`` when it exec'd, CLOCK_MONOTONIC seconds);
    ``on_lost()`` when the socket overflowed and
    events were lost (the caller then looks at what runs now)."""

    def __init__(self, on_exec: Callable[[int, float], None], on_lost: Callable[[], None],
                 netns: str | None) -> None:
        self._on_exec = on_exec
        self._on_lost = on_lost
        self._netns = netns  # the initial network namespace, if the helper is elsewhere
        self._sock: socket.socket | None = None
        self.filtered = False
        self.events = 0

    @property
    def running(self) -> bool:
        return self._sock is not None

    def start(self) -> None:
        """Subscribe; OSError if the kernel will not (no CAP_NET_ADMIN, a container's
        own pid or user namespace)."""
        if self._sock is not None:
            return
        here = os.stat("/proc/self/ns/net")
        netns = self._netns
        if netns is not None:
            with contextlib.suppress(OSError):
                st = os.stat(netns)
                if (st.st_dev, st.st_ino) == (here.st_dev, here.st_ino):
                    netns = None
        sock = _open_in(netns)
        try:
            sock.send(_control(None))
            if not _acked(sock):
                raise OSError(errno.EPROTO, "the process events connector did not "
                                            "acknowledge the subscription")
            sock.send(_control(PROC_EVENT_EXEC))
            self.filtered = _kernel_filters()
        except BaseException:
            sock.close()
            raise
        sock.setblocking(False)
        self._sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)
        log.info("following program starts (process events%s)",
                 ", exec only" if self.filtered else "")

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().remove_reader(sock.fileno())
        sock.close()

    def _readable(self) -> None:
        sock = self._sock
        while sock is not None:
            try:
                data = sock.recv(1 << 16)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    log.warning("process events were lost (a burst of program starts): "
                                "looking at what runs now")
                    self._on_lost()
                    continue
                log.warning("process events: %s", exc)
                return
            self._parse(data)

    def _parse(self, data: bytes) -> None:
        offset = 0
        while offset + _EVENT_AT + _EVENT.size <= len(data):
            length = struct.unpack_from("=I", data, offset)[0]
            what, _cpu, ts, _pid, tgid = _EVENT.unpack_from(data, offset + _EVENT_AT)
            if what == PROC_EVENT_EXEC:
                self.events += 1
                self._on_exec(tgid, ts / 1e9)
            if length < 16:
                return
            offset += (length + 3) & ~3

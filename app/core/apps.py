"""Which apps have network activity now, and which traffic class each is in.

Sockets come from the kernel's sock_diag (pyroute2's DiagSocket: every TCP and UDP
socket of this network namespace, with its inode and owner), and are tied to processes
by the ``socket:[inode]`` links in ``/proc/PID/fd`` — only the caller's own processes
can be read (root reads all), which is what a user's app list should hold anyway. A
process's class is the Braid group it sits in (``/proc/PID/cgroup``: ``.../braid/<class>``).
No `ss` output is parsed.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pyroute2 import DiagSocket

from app.core.netns import enter_netns

PROC = Path("/proc")
CGROUP_ROOT_NAME = "braid"  # the helper's class groups: <cgroup2>/braid/<class>
_KINDS = ((socket.AF_INET, socket.IPPROTO_TCP, "tcp"), (socket.AF_INET, socket.IPPROTO_UDP,
          "udp"), (socket.AF_INET6, socket.IPPROTO_TCP, "tcp"),
          (socket.AF_INET6, socket.IPPROTO_UDP, "udp"))
TCP_LISTEN = 10


@dataclass(frozen=True)
class SocketInfo:
    inode: int
    uid: int
    proto: str  # "tcp" | "udp"
    local: str
    remote: str | None  # None: not connected (a listener, an unconnected UDP socket)


@dataclass(frozen=True)
class App:
    exe: str  # /usr/bin/zoom: what a rule names
    name: str  # zoom
    uid: int
    pids: tuple[int, ...]
    sockets: int  # open TCP/UDP sockets
    remotes: tuple[str, ...] = field(default_factory=tuple)  # a few peers, for the eye
    cls: str | None = None  # the Braid class group its processes are in, if any


def inet_sockets(netns: str | None = None) -> list[SocketInfo]:
    """Every TCP and UDP socket of this network namespace, or of the named one (``ip
    netns`` naming: a lab's client namespace). sock_diag answers for the namespace its
    socket was made in, and namespaces are per thread: for another namespace the socket
    is made (and read) on a short-lived thread that entered it, so the caller (the tray
    app's UI thread, say) stays where it is. Entering needs root."""
    if netns is None:
        return _inet_sockets()
    return _in_netns(netns, _inet_sockets)


def _in_netns(netns: str, work: Callable[[], list[SocketInfo]]) -> list[SocketInfo]:
    result: list[list[SocketInfo]] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            enter_netns(netns)
            result.append(work())
        except BaseException as exc:  # handed to the caller's thread below
            failed.append(exc)

    thread = threading.Thread(target=run, name=f"sock_diag in {netns}", daemon=True)
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return result[0]


def _inet_sockets() -> list[SocketInfo]:
    out: list[SocketInfo] = []
    with DiagSocket() as ds:
        ds.bind()
        for family, proto, label in _KINDS:
            for msg in ds.get_sock_stats(family=family, protocol=proto):
                inode = int(msg.get("idiag_inode") or 0)
                if not inode:
                    continue
                dst, dport = msg.get("idiag_dst"), int(msg.get("idiag_dport") or 0)
                connected = dport != 0 and int(msg.get("idiag_state") or 0) != TCP_LISTEN
                out.append(SocketInfo(
                    inode=inode, uid=int(msg.get("idiag_uid") or 0), proto=label,
                    local=_endpoint(msg.get("idiag_src"), int(msg.get("idiag_sport") or 0)),
                    remote=_endpoint(dst, dport) if connected else None))
    return out


def _endpoint(addr: object, port: int) -> str:
    text = str(addr)
    return f"[{text}]:{port}" if ":" in text else f"{text}:{port}"


def _socket_inodes(pid: int) -> set[int]:
    found: set[int] = set()
    with contextlib.suppress(OSError):
        for fd in os.scandir(PROC / str(pid) / "fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(fd.path)
                if target.startswith("socket:["):
                    found.add(int(target[8:-1]))
    return found


def process_class(pid: int) -> str | None:
    """The Braid class group ``pid`` is in (cgroup v2's ``0::`` line), if any."""
    try:
        lines = (PROC / str(pid) / "cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("0::"):
            parts = line[3:].strip("/").split("/")
            if CGROUP_ROOT_NAME in parts:
                i = parts.index(CGROUP_ROOT_NAME)
                if i + 1 < len(parts):
                    return parts[i + 1]
    return None


def process_exe(pid: int) -> str | None:
    try:
        return os.readlink(PROC / str(pid) / "exe")
    except OSError:
        return None


def process_uid(pid: int) -> int | None:
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])  # the real uid
    except (OSError, ValueError, IndexError):
        return None
    return None


def own_pids(uid: int | None) -> Iterable[int]:
    """Processes of ``uid`` (every process for None)."""
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            pid = int(entry.name)
            if uid is None or process_uid(pid) == uid:
                yield pid


def list_apps(uid: int | None = None, netns: str | None = None) -> list[App]:
    """Apps of ``uid`` (default: the caller's; None for root's view of everyone) with at
    least one TCP/UDP socket open, busiest first; ``netns``: the sockets of that named
    network namespace (a lab's client) instead of this one's."""
    owner = os.getuid() if uid is None and os.getuid() != 0 else uid
    by_inode = {s.inode: s for s in inet_sockets(netns)}
    if not by_inode:
        return []  # nothing to tie to a process: skip the walk of every process's fds
    groups: dict[tuple[str, int], list[tuple[int, list[SocketInfo]]]] = {}
    for pid in own_pids(owner):
        mine = [by_inode[i] for i in _socket_inodes(pid) if i in by_inode]
        if not mine:
            continue
        exe = process_exe(pid)
        puid = process_uid(pid)
        if exe is None or puid is None:
            continue
        groups.setdefault((exe, puid), []).append((pid, mine))
    apps = []
    for (exe, puid), procs in groups.items():
        socks = [s for _, ss in procs for s in ss]
        classes = {process_class(pid) for pid, _ in procs}
        remotes = sorted({s.remote for s in socks if s.remote})
        apps.append(App(exe=exe, name=Path(exe).name, uid=puid,
                        pids=tuple(sorted(pid for pid, _ in procs)), sockets=len(socks),
                        remotes=tuple(remotes[:4]),
                        cls=classes.pop() if len(classes) == 1 else None))
    return sorted(apps, key=lambda a: (-a.sockets, a.name))

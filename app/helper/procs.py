"""Processes by identity: pid plus start time (a pid alone may be reused), and the
network namespace check that keeps the helper away from other labs' wireguard-go."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcId:
    pid: int
    start: int  # field 22 of /proc/PID/stat, clock ticks since boot

    def to_json(self) -> dict[str, int]:
        return {"pid": self.pid, "start": self.start}


def start_time(pid: int) -> int | None:
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # comm (field 2) may hold spaces and parentheses: split after its closing one.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):  # dead, only waiting to be reaped
        return None
    return int(fields[19])


def ident(pid: int) -> ProcId | None:
    start = start_time(pid)
    return ProcId(pid, start) if start is not None else None


def alive(proc: ProcId) -> bool:
    return start_time(proc.pid) == proc.start


def netns_of(pid: int | str) -> tuple[int, int] | None:
    try:
        st = os.stat(PROC / str(pid) / "ns" / "net")
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def own_netns() -> tuple[int, int] | None:
    return netns_of("self")


def cmdline(pid: int) -> list[str]:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def serves(proc: ProcId, iface: str) -> bool:
    """Whether ``proc`` is still that process (pid and start time) and is a wireguard-go
    serving ``iface`` in this network namespace: what a journal entry must be before the
    helper kills anything in its name (the pid may since belong to anyone)."""
    argv = cmdline(proc.pid)
    return (alive(proc) and bool(argv) and os.path.basename(argv[0]) == "wireguard-go"
            and argv[-1] == iface and netns_of(proc.pid) == own_netns())


def wireguard_go_here() -> dict[str, ProcId]:
    """wireguard-go processes in this network namespace, by the interface they serve."""
    here = own_netns()
    found: dict[str, ProcId] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        argv = cmdline(pid)
        if not argv or os.path.basename(argv[0]) != "wireguard-go" or netns_of(pid) != here:
            continue
        proc = ident(pid)
        if proc is not None:
            found[argv[-1]] = proc
    return found


def stop(proc: ProcId, timeout: float = 5.0) -> bool:
    """SIGTERM (wireguard-go then removes its device and socket), SIGKILL if it lingers.
    Returns whether a process was there to stop."""
    if not alive(proc):
        return False
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, timeout)):
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not alive(proc):
                return True
            time.sleep(0.01)
    return True


def real_uid(pid: int) -> int | None:
    """The real uid of ``pid`` (who started it; a setuid program's is its caller's)."""
    try:
        with open(PROC / str(pid) / "status", "rb") as f:
            for line in f:
                if line.startswith(b"Uid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def exe(pid: int) -> str | None:
    """The program ``pid`` runs, as the kernel names it (a replaced file's " (deleted)"
    suffix removed: it is still that program). None: gone, or a kernel thread."""
    try:
        path = os.readlink(PROC / str(pid) / "exe")
    except OSError:
        return None
    return path.removesuffix(" (deleted)")


def pids() -> list[int]:
    out = []
    with os.scandir(PROC) as entries:
        for entry in entries:
            if entry.name.isdigit():
                out.append(int(entry.name))
    return out

"""Processes and namespaces the lab starts, found again by name after a crash."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from app.core.errors import BraidError

NETNS_DIR = Path("/run/netns")


def run_tool(argv: list[str], stdin: str | None = None) -> str:
    """Run a system tool; its complaint becomes a BraidError that quotes it."""
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=True)
    except FileNotFoundError as exc:
        raise BraidError(f"{argv[0]} is not installed",
                         "run scripts/setup.sh (it installs what the lab needs)") from exc
    except subprocess.CalledProcessError as exc:
        raise BraidError(f"`{' '.join(argv)}` failed: {exc.stderr.strip()[-1000:]}",
                         "if a lab of this name is half built, remove it: braid lab down"
                         ) from exc
    return done.stdout


def require_root() -> None:
    if os.geteuid() != 0:
        raise BraidError("the lab needs root (it creates network namespaces)",
                         "run it as root, e.g. with sudo")


def ip(*args: str, ns: str | None = None, batch: list[str] | None = None) -> None:
    """Run `ip`; with ``batch`` run many commands in one exec (much faster)."""
    argv = ["ip"] + (["-n", ns] if ns else []) + list(args)
    if batch is not None:
        argv += ["-batch", "-"]
    run_tool(argv, "\n".join(batch) + "\n" if batch is not None else None)


def ns_exists(ns: str) -> bool:
    return (NETNS_DIR / ns).exists()


def namespaces() -> list[str]:
    try:
        return sorted(p.name for p in NETNS_DIR.iterdir())
    except FileNotFoundError:
        return []


def in_ns(ns: str, argv: list[str], **popen_kwargs: Any) -> subprocess.Popen[bytes]:
    # `ip netns exec` execs the program, so the pid we get is the program's own.
    return subprocess.Popen(["ip", "netns", "exec", ns, *argv], **popen_kwargs)


def run_in_ns(ns: str, argv: list[str], stdin: str | None = None) -> str:
    return run_tool(["ip", "netns", "exec", ns, *argv], stdin)


def start_daemon(ns: str, argv: list[str], log: Path, env: dict[str, str] | None = None,
                 ) -> subprocess.Popen[bytes]:
    """A long-lived process in ``ns``: own session (no terminal signals), output to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return in_ns(
            ns, argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, env=env,
        )


def ns_pids(ns: str) -> list[int]:
    if not ns_exists(ns):
        return []
    done = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
    return [int(p) for p in done.stdout.split() if p.isdigit()]


def alive(pid: int) -> bool:
    """True while ``pid`` runs; reaps it if it is our child, and treats a zombie as gone."""
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def stop(pids: list[int], timeout: float = 3.0) -> None:
    """SIGTERM (so a helper can clean up), then SIGKILL whatever is left after ``timeout``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while any(alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.01)
        pids = [p for p in pids if alive(p)]
        if not pids:
            return

"""`braid up` in the background: start a detached engine process and wait until it has
settled (connected, degraded) or failed, watching it through its control socket."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence

from app.core.control import ControlClient
from app.core.errors import BraidError
from app.core.model import ConnState, EngineSnapshot
from app.core.runtime import RunFiles, ensure_root

SETTLED = frozenset({ConnState.CONNECTED, ConnState.DEGRADED, ConnState.FAILING_OVER,
                     ConnState.ERROR, ConnState.DISCONNECTED})


def _tail(path: os.PathLike[str] | str, lines: int = 5) -> str:
    try:
        with open(path, errors="replace") as f:
            return " | ".join(f.read().strip().splitlines()[-lines:])
    except OSError:
        return ""


def spawn_and_wait(argv: Sequence[str], files: RunFiles, timeout: float) -> EngineSnapshot:
    """Start ``argv`` detached (its output to ``files.log_path``) and return its first
    settled snapshot. BraidError if it never answers or exits first."""
    ensure_root(files.root)
    with open(files.log_path, "ab") as log:
        os.chmod(files.log_path, 0o600)
        child = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                 start_new_session=True, cwd=os.getcwd())
    client = ControlClient(files.socket_path, timeout=2.0)
    deadline = time.monotonic() + timeout
    while not client.answers():
        if child.poll() is not None:
            raise BraidError(f"the engine exited before it answered: {_tail(files.log_path)}",
                             f"see {files.log_path}")
        if time.monotonic() > deadline:
            child.terminate()
            raise BraidError(f"the engine did not start within {timeout:g} s",
                             f"see {files.log_path}")
        time.sleep(0.05)
    last: EngineSnapshot | None = None
    for snap in client.watch(lambda: time.monotonic() > deadline):
        last = snap
        if snap.state in SETTLED:
            return snap
    if last is not None and last.state is ConnState.ERROR:
        return last
    if child.poll() is None and time.monotonic() > deadline:
        child.terminate()
        raise BraidError(f"the engine did not connect within {timeout:g} s",
                         f"see {files.log_path}")
    if last is not None and last.error is not None:
        return last
    raise BraidError(f"the engine stopped before it connected: {_tail(files.log_path)}",
                     f"see {files.log_path}")

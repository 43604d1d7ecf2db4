"""Where a running `braid up` says it is running: a pid file and a status file per target.

``<root>/<profile>.pid`` holds the engine process's pid (created exclusively, so two
engines never drive one profile); ``<root>/<profile>.json`` is the latest snapshot,
rewritten atomically (write + rename) by the engine process, read by `braid status`
and `braid down`. ``root`` is ``/run/braid/engine`` for root, else
``$XDG_RUNTIME_DIR/braid/engine``. Neither file holds a key.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.errors import BraidError
from app.wire.files import write_atomically


def runtime_root() -> Path:
    env = os.environ.get("BRAID_RUNTIME_DIR")
    if env:
        return Path(env) / "engine"
    if os.geteuid() == 0:
        return Path("/run/braid/engine")
    xdg = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/braid-{os.getuid()}"
    return Path(xdg) / "braid" / "engine"


@dataclass(frozen=True)
class RunFiles:
    key: str  # the profile name
    root: Path

    @property
    def pid_path(self) -> Path:
        return self.root / f"{self.key}.pid"

    @property
    def status_path(self) -> Path:
        return self.root / f"{self.key}.json"

    @property
    def log_path(self) -> Path:
        return self.root / f"{self.key}.log"


def files_for(profile: str, root: Path | None = None) -> RunFiles:
    return RunFiles(profile, root or runtime_root())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not running anything.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def read_pid(files: RunFiles) -> int | None:
    """The pid of the engine running this target, or None (a stale file is removed)."""
    try:
        pid = int(files.pid_path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    if _alive(pid):
        return pid
    with contextlib.suppress(FileNotFoundError):
        files.pid_path.unlink()
    return None


def claim(files: RunFiles, pid: int | None = None) -> None:
    """Write the pid file; BraidError if an engine already runs this target."""
    files.root.mkdir(parents=True, exist_ok=True, mode=0o755)
    other = read_pid(files)
    if other is not None and other != (pid or os.getpid()):
        raise BraidError(f"braid is already up for {files.key} (pid {other})",
                         f"see `braid status`, or stop it first: `braid down` ({files.key})")
    try:
        fd = os.open(files.pid_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise BraidError(f"braid is starting for {files.key} in another process",
                         "wait a moment and see `braid status`") from None
    with os.fdopen(fd, "w") as f:
        f.write(f"{pid or os.getpid()}\n")


def release(files: RunFiles) -> None:
    with contextlib.suppress(FileNotFoundError):
        if files.pid_path.read_text().strip() == str(os.getpid()):
            files.pid_path.unlink()


def write_status(files: RunFiles, doc: dict[str, Any]) -> None:
    write_atomically(files.status_path, json.dumps(doc), mode=0o644, durable=False,
                     dir_mode=0o755)


def read_status(files: RunFiles) -> dict[str, Any] | None:
    try:
        doc: dict[str, Any] = json.loads(files.status_path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return doc


def running(root: Path | None = None) -> list[tuple[RunFiles, int]]:
    """Every target with a live engine process."""
    base = root or runtime_root()
    if not base.is_dir():
        return []
    out = []
    for p in sorted(base.glob("*.pid")):
        files = RunFiles(p.stem, base)
        pid = read_pid(files)
        if pid is not None:
            out.append((files, pid))
    return out

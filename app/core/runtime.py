"""Where a running engine can be found: one lock and one control socket per helper.

One engine drives one helper (two would fight over its single desired state), so the
files are keyed by the helper an engine talks to: ``lab-<lab>`` for a lab's helper,
``system`` for the system's. ``<root>/<key>.lock`` is held with flock(2) by the engine's
process for as long as it runs (it cannot go stale: the kernel drops the lock with the
process), and ``<root>/<key>.sock`` is its control socket (control.py), mode 0600, which
every view (`braid status`, `braid down`, the tray) attaches to.

``root`` is ``$BRAID_RUNTIME_DIR/engine`` if set, ``/run/braid/engine`` for root, else
``$XDG_RUNTIME_DIR/braid/engine`` — never a predictable path in /tmp, where another user
could plant a socket first. Nothing here holds a key.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from app.core.errors import BraidError
from app.core.targets import ConnectTarget, lab_profile_name

SYSTEM_KEY = "system"


def runtime_root() -> Path:
    env = os.environ.get("BRAID_RUNTIME_DIR")
    if env:
        return Path(env) / "engine"
    if os.geteuid() == 0:
        return Path("/run/braid/engine")
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if not xdg:
        raise BraidError("XDG_RUNTIME_DIR is not set, so Braid has no private place for its "
                         "engine's socket", "log in through a desktop or `loginctl` session "
                         "(it sets XDG_RUNTIME_DIR), or set BRAID_RUNTIME_DIR to a directory "
                         "only you can write")
    return Path(xdg) / "braid" / "engine"


def key_for(target: ConnectTarget) -> str:
    """Targets that share a helper share a key: at most one engine among them."""
    return lab_profile_name(target.lab) if target.lab else SYSTEM_KEY


@dataclass(frozen=True)
class RunFiles:
    key: str  # "lab-<lab>" or "system"
    root: Path

    @property
    def lock_path(self) -> Path:
        return self.root / f"{self.key}.lock"

    @property
    def socket_path(self) -> Path:
        return self.root / f"{self.key}.sock"

    @property
    def log_path(self) -> Path:
        return self.root / f"{self.key}.log"


def files_for(target: ConnectTarget, root: Path | None = None) -> RunFiles:
    return RunFiles(key_for(target), root or runtime_root())


def ensure_root(root: Path) -> None:
    """The runtime directory, private to its user, and not a link someone planted."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = os.lstat(root)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise BraidError(f"{root} is not a directory of yours",
                         "remove it, or set BRAID_RUNTIME_DIR to a directory only you can write")
    if st.st_mode & 0o077:
        os.chmod(root, 0o700)


class EngineLock:
    """Held by the process running the engine for one key, released when it exits."""

    def __init__(self, files: RunFiles) -> None:
        self.files = files
        self._fd: int | None = None

    def acquire(self) -> None:
        ensure_root(self.files.root)
        fd = os.open(self.files.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise BraidError(f"another engine already runs for {self.files.key}",
                             "see `braid status`; `braid down` stops it") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.files.lock_path.unlink()
        os.close(self._fd)
        self._fd = None


def locked(files: RunFiles) -> bool:
    """Whether some process holds the engine lock for ``files`` now."""
    try:
        fd = os.open(files.lock_path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def known_keys(root: Path | None = None) -> list[str]:
    """Keys that have a control socket in the runtime directory (live or not)."""
    try:
        base = root or runtime_root()
    except BraidError:
        return []
    if not base.is_dir():
        return []
    return sorted(p.name[: -len(".sock")] for p in base.glob("*.sock"))

"""Braid's log file: what `braid` and the tray app did, for the user and for a bug report.

Where: ``platformdirs.user_state_dir("braid") / "braid.log"``, i.e.
``$XDG_STATE_HOME/braid/braid.log``, by default ``~/.local/state/braid/braid.log``. Root
gets the same rule (``/root/.local/state/braid/braid.log``): `braid` is a user program
even when root runs it, and the one system service, braid-helper, logs to stderr, which
systemd puts in the journal. The directory is 0700 and every file 0600: a log holds
profile names, gateway addresses and endpoints (never a key: see below).

What: info and above by default (the engine's events: switches, failovers, paths lost and
restored, errors), debug with ``-v``/``--verbose`` or ``BRAID_VERBOSE=1`` in the
environment (which every Braid process started from there inherits, a background engine
included). Stderr keeps getting warnings only (debug when verbose), as before.

Bound: 2 MB per file, two backups (``braid.log.1``, ``braid.log.2``), so at most 6 MB.
Several Braid processes (the tray app, a background engine, `braid status`) may append
to the same file; each one checks before writing that the file it holds is still the
one at the path, so after another process rotated it, it follows to the new file.

Keys: pyroute2 logs whole netlink messages at debug level, and a WireGuard one holds a
private key, so its logger is held at warning whatever the verbosity
(tests/logs/test_log_keys.py scans a verbose log of an import and a lab connection for
every key involved).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from io import TextIOWrapper
from pathlib import Path

import platformdirs

LOG_NAME = "braid.log"
MAX_BYTES = 2_000_000
BACKUPS = 2
VERBOSE_ENV = "BRAID_VERBOSE"
FORMAT = "%(asctime)s [%(process)d] %(name)s %(levelname)s %(message)s"
# Loggers whose debug output may carry key material: never below warning.
QUIET_LOGGERS = ("pyroute2",)


def log_dir() -> Path:
    return Path(platformdirs.user_state_dir("braid"))


def log_path() -> Path:
    return log_dir() / LOG_NAME


class SharedRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A RotatingFileHandler whose files are 0600 and that reopens the path when another
    process has rotated it (WatchedFileHandler's check, one stat per record: log lines
    here are events, a few per minute, not a stream)."""

    def _open(self) -> TextIOWrapper:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return open(fd, "a", encoding=self.encoding, errors=self.errors)

    def _held_elsewhere(self) -> bool:
        assert self.stream is not None
        try:
            on_disk = os.stat(self.baseFilename)
        except FileNotFoundError:
            return True
        held = os.fstat(self.stream.fileno())
        return (on_disk.st_dev, on_disk.st_ino) != (held.st_dev, held.st_ino)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self.stream is not None and self._held_elsewhere():
                self.stream.close()
                self.stream = self._open()
        except OSError:
            self.handleError(record)
            return
        super().emit(record)


def verbose_requested(flag: bool) -> bool:
    return flag or os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def setup(verbose: bool = False, *, path: Path | None = None) -> Path | None:
    """Log to the file (info, or debug when verbose) and to stderr (warning, or debug).

    Returns the log file's path, or None when it cannot be written (a read-only home):
    then that is said once on stderr and Braid runs on without a file. Calling it again
    replaces the handlers it installed (the tests call main() many times in-process).
    """
    verbose = verbose_requested(verbose)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_braid", False):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    formatter = logging.Formatter(FORMAT)

    stderr = logging.StreamHandler(sys.stderr)
    stderr.setLevel(logging.DEBUG if verbose else logging.WARNING)
    stderr.setFormatter(formatter)
    _install(root, stderr)

    target = path or log_path()
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        to_file = SharedRotatingFileHandler(
            target, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8"
        )
    except OSError as exc:
        print(f"braid: warning: no log file: cannot write {target}: {exc.strerror}",
              file=sys.stderr)
        return None
    to_file.setLevel(logging.DEBUG if verbose else logging.INFO)
    to_file.setFormatter(formatter)
    _install(root, to_file)
    return target


def _install(root: logging.Logger, handler: logging.Handler) -> None:
    handler._braid = True  # type: ignore[attr-defined]
    root.addHandler(handler)


def read_tail(path: Path, max_bytes: int = 256_000) -> str:
    """The last ``max_bytes`` of the log, starting at a whole line; "" if there is none.
    Bound: one read of at most ``max_bytes``, whatever the file's size."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            start = max(0, size - max_bytes)
            f.seek(start)
            data = f.read(max_bytes)
    except FileNotFoundError:
        return ""
    if start > 0:
        cut = data.find(b"\n")
        data = data[cut + 1:] if cut >= 0 else b""
    return data.decode("utf-8", errors="replace")

"""The helper's state directory, opened once and used only through its descriptor.

It holds the journal and wireguard-go's logs. The helper creates it (0700) or checks
the one it finds: a directory, not a symlink (``O_NOFOLLOW``), owned by root; a looser
mode is tightened. Every file in it is then opened relative to that descriptor with
``O_NOFOLLOW``, so renaming the path or planting a symlink afterwards cannot redirect a
write as root anywhere else.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from app.helper.errors import HelperError
from app.wire.errors import Code

LOG_LIMIT = 1 << 20  # bytes a wireguard-go log may grow to before it is rotated
LOG_KEEP = 64 << 10  # bytes of it kept in NAME.1 when it is


class StateDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def open(self) -> int:
        """The directory's descriptor, checking (or creating) it on first use."""
        if self._fd is not None:
            return self._fd
        path = self.path
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            what = str(exc)
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                what = "is a symlink" if path.is_symlink() else "is not a directory"
            raise self._refuse(f"--state-dir {path} {what}") from None
        st = os.fstat(fd)
        if st.st_uid != os.geteuid():
            os.close(fd)
            raise self._refuse(f"--state-dir {path} belongs to uid {st.st_uid}, not root")
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.fchmod(fd, 0o700)
        self._fd = fd
        return fd

    @staticmethod
    def _refuse(what: str) -> HelperError:
        return HelperError(Code.BAD_STATE_DIR, what,
                           "give --state-dir a directory only root can write (or none: "
                           "the helper creates it)")

    def read(self, name: str) -> str | None:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.open())
        except FileNotFoundError:
            return None
        with os.fdopen(fd, encoding="utf-8", errors="replace") as f:
            return f.read()

    def write(self, name: str, text: str) -> None:
        """Replace ``name`` atomically and durably (a crash leaves the old or the new)."""
        dfd = self.open()
        tmp = f".{name}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dfd)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=dfd)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=dfd)
            raise
        os.fsync(dfd)

    def unlink(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=self.open())

    def open_log(self, name: str) -> int:
        """An append descriptor for a child's output (rotated first if over the limit)."""
        self.bound_log(name)
        return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW
                       | os.O_CLOEXEC, 0o600, dir_fd=self.open())

    def tail(self, name: str, size: int = 400) -> str:
        text = self.read(name) or ""
        return text[-size:]

    def bound_log(self, name: str) -> None:
        """Keep ``name`` under LOG_LIMIT: its last LOG_KEEP bytes go to ``name.1`` and it
        is truncated in place. A child writing with O_APPEND carries on at the new end."""
        try:
            fd = os.open(name, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.open())
        except FileNotFoundError:
            return
        try:
            size = os.fstat(fd).st_size
            if size <= LOG_LIMIT:
                return
            keep = os.pread(fd, LOG_KEEP, size - LOG_KEEP)
            self.write(f"{name}.1", keep.decode(errors="replace"))
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

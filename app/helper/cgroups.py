"""Braid's class groups under cgroup v2, and the view of them nft needs.

nft resolves ``socket cgroupv2 level N "PATH"`` when it loads a ruleset, by stat()ing
``/sys/fs/cgroup/PATH`` (the inode is the cgroup id), and prints a listing by walking
that tree to find each id again. Neither works as such here:
- on a hybrid host /sys/fs/cgroup is a tmpfs of v1 controllers (cgroup2 is at
  /sys/fs/cgroup/unified), and inside ``ip netns exec`` (a lab's helper) /sys is a fresh
  sysfs with nothing mounted on /sys/fs/cgroup at all: the load fails;
- where it does work, the listing's walk stats every file of every group: 300 groups
  (a desktop has that many) made one listing take ~450 ms, and the helper lists its
  table after each load (a switch) to see drift later.

So the helper runs in a mount namespace of its own, made at start and slave to the
host's (nothing it mounts propagates out), where the whole cgroup v2 hierarchy is
mounted once and held by a directory descriptor (:class:`View`; every group operation
goes through it), with an empty read-only tmpfs on top of /sys/fs/cgroup. Only while
nft loads a ruleset is the Braid root bind-mounted there (:meth:`Groups.for_nft`, ~60 us
for the bind and its unmount): nft resolves ``"realtime"`` to ``<root>/realtime`` (the
rule's ``level`` says how deep that is in the real hierarchy), and every listing finds an
empty directory and prints the ids, at no cost.

Without CAP_SYS_ADMIN (no mount namespace) the helper uses /sys/fs/cgroup as it finds it
if that is cgroup v2 (full paths, the slow listing), else classes by app are off and
status says why. A group's processes go back where they came from when the groups are
removed (:meth:`Groups.remove`).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from app.wire.classes import APP_CLASSES

log = logging.getLogger("braid.helper")

NFT_BASE = "/sys/fs/cgroup"  # where nft resolves cgroupv2 paths (compiled into nft)
ROOT_NAME = "braid"
CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_BIND, MS_REC, MS_SLAVE = 4096, 16384, 1 << 19
# cgroup2's mount options are the hierarchy's, not the mount's: a fresh mount applies its
# options to the whole system (apply_cgroup_root_flags). A fresh mount copies these from
# the host's, so nothing changes.
CGROUP2_FLAGS = frozenset({"nsdelegate", "favordynmods", "memory_localevents",
                           "memory_recursiveprot", "memory_hugetlb_accounting",
                           "pids_localevents"})
NETNS_DIR = "/run/netns"
_NETNS_NAME = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
KTHREADD = 2  # a kernel thread: its namespaces are the initial ones

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    enc = [None if v is None else v.encode() for v in (source, target, fstype)]
    _check(_libc.mount(enc[0], enc[1], enc[2], flags, None if data is None else data.encode()),
           f"mount {target}")


# ---- where the hierarchy is -----------------------------------------------------------
@dataclass(frozen=True)
class Mount:
    root: str  # the mounted directory, within its filesystem ("/": the whole hierarchy)
    point: str
    fstype: str
    super_options: tuple[str, ...]


def _unescape(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def mounts(text: str, fstype: str = "cgroup2") -> list[Mount]:
    """The mounts of ``fstype`` in a /proc/PID/mountinfo text."""
    out = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        head, tail = left.split(), right.split()
        if not sep or len(head) < 5 or len(tail) < 3 or tail[0] != fstype:
            continue
        out.append(Mount(_unescape(head[3]), _unescape(head[4]), tail[0],
                         tuple(tail[2].split(","))))
    return out


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _is_kthreadd(pid: int) -> bool:
    return _read(f"/proc/{pid}/comm").strip() == "kthreadd"


def init_ns(kind: str) -> str | None:
    """A path to the initial ``kind`` namespace ("net", "mnt" views): kthreadd's, a
    kernel thread's (pid 1 may not be readable, and may not be the host's init)."""
    return f"/proc/{KTHREADD}/{kind}" if _is_kthreadd(KTHREADD) else None


def host_cgroup2() -> Mount | None:
    """Where the host has cgroup v2 mounted: in this mount namespace, else in the
    initial one (kthreadd's), for its options and for messages."""
    found = mounts(_read("/proc/self/mountinfo"))
    if not found and (where := init_ns("mountinfo")) is not None:
        found = mounts(_read(where))
    whole = [m for m in found if m.root == "/"]
    return next(iter(whole or found), None)


@dataclass
class View:
    """The cgroup v2 hierarchy as the helper reaches it: ``fd`` (None: unavailable,
    ``why`` says why); ``private``: the helper has its own mount namespace and binds
    the Braid root on /sys/fs/cgroup while the groups exist (nft sees only them)."""

    fd: int | None
    private: bool
    host: str | None  # where the host mounts it, for messages ("/sys/fs/cgroup/unified")
    why: str | None = None

    @classmethod
    def unavailable(cls, why: str, host: str | None = None) -> View:
        return cls(None, False, host, why)


def open_view(*, private: bool = True) -> View:
    """Find cgroup v2 and prepare nft's view of it. With ``private`` (the helper at
    start, single-threaded, as root): in a mount namespace of its own."""
    host = host_cgroup2()
    where = host.point if host else None
    if private:
        try:
            _check(_libc.unshare(CLONE_NEWNS), "unshare")
            # Slave: the host's mounts still show here; nothing mounted here goes back.
            _mount(None, "/", None, MS_REC | MS_SLAVE)
        except OSError as exc:
            log.warning("no mount namespace of its own (%s): nft sees /sys/fs/cgroup as the "
                        "host has it", exc.strerror)
            private = False
    if private:
        own = [m for m in mounts(_read("/proc/self/mountinfo")) if m.root == "/"]
        try:
            if own and own[0].point != NFT_BASE:
                _mount(own[0].point, NFT_BASE, None, MS_BIND)
            elif not own:
                flags = ",".join(o for o in (host.super_options if host else ())
                                 if o in CGROUP2_FLAGS)
                _mount("cgroup2", NFT_BASE, "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                       flags or None)
        except OSError as exc:
            return View.unavailable(f"cannot mount cgroup v2 for nft ({exc.strerror})", where)
    elif not any(m.point == NFT_BASE and m.root == "/" for m in mounts(
            _read("/proc/self/mountinfo"))):
        return View.unavailable(
            "cgroup v2 is not at /sys/fs/cgroup" + (f" (it is at {where})" if where else "")
            + " and the helper could not make a mount namespace of its own: it needs "
            "CAP_SYS_ADMIN", where)
    try:
        fd = os.open(NFT_BASE, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        return View.unavailable(f"cannot open cgroup v2 ({exc.strerror})", where)
    if private:
        try:
            # The blank nft walks when it lists (the hierarchy stays reachable by fd).
            _mount("braid-blank", NFT_BASE, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC
                   | MS_RDONLY, "size=4k,mode=0555")
        except OSError as exc:
            os.close(fd)
            return View.unavailable(f"cannot prepare nft's view ({exc.strerror})", where)
    return View(fd, private, where)


def root_name(netns_dir: str = NETNS_DIR) -> str:
    """The Braid root for this helper, by its network namespace (one helper each, as
    for the nft tables): ``braid`` in the host's; ``braid-netns-<name>/braid`` in a
    named one (a lab's), so helpers side by side never share a group. The last part is
    always ``braid``: a process's class reads as ``.../braid/<class>``."""
    here = os.stat("/proc/self/ns/net")
    init = init_ns("ns/net")
    if init is not None:
        with contextlib.suppress(OSError):
            st = os.stat(init)
            if (st.st_dev, st.st_ino) == (here.st_dev, here.st_ino):
                return ROOT_NAME
    with contextlib.suppress(OSError):
        for entry in sorted(os.scandir(netns_dir), key=lambda e: e.name):
            with contextlib.suppress(OSError):
                st = entry.stat()
                if (st.st_dev, st.st_ino) == (here.st_dev, here.st_ino) and \
                        _NETNS_NAME.match(entry.name):
                    return f"{ROOT_NAME}-netns-{entry.name}/{ROOT_NAME}"
    return f"{ROOT_NAME}-netns-{here.st_ino}/{ROOT_NAME}"


# ---- processes ------------------------------------------------------------------------
def process_cgroup(pid: int) -> str | None:
    """The cgroup v2 path of ``pid`` without its leading "/" ("" is the root)."""
    for line in _read(f"/proc/{pid}/cgroup").splitlines():
        if line.startswith("0::"):
            return line[3:].strip().lstrip("/")
    return None


def parent(pid: int) -> int | None:
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    try:
        return int(stat[stat.rindex(")") + 2:].split()[1])
    except (ValueError, IndexError):
        return None


# ---- the groups ------------------------------------------------------------------------
class Groups:
    """One group per class under the Braid root ``root`` (relative to the hierarchy)."""

    def __init__(self, view: View, root: str) -> None:
        assert view.fd is not None
        self.view = view
        self.fd = view.fd
        self.root = root

    @property
    def level(self) -> int:
        """How deep a class group is in the hierarchy (the root is level 0)."""
        return len(self.root.split("/")) + 1

    def path(self, cls: str) -> str:
        return f"{self.root}/{cls}"

    def nft_paths(self) -> dict[str, str]:
        """Class -> the path nft resolves under /sys/fs/cgroup in this view."""
        return {c: c if self.view.private else self.path(c) for c in APP_CLASSES}

    def contains(self, cgroup: str) -> bool:
        return cgroup == self.root or cgroup.startswith(self.root + "/")

    def class_of(self, cgroup: str | None) -> str | None:
        if cgroup is None or not cgroup.startswith(self.root + "/"):
            return None
        name = cgroup[len(self.root) + 1:].split("/")[0]
        return name if name in APP_CLASSES else None

    def _isdir(self, rel: str) -> bool:
        try:
            os.stat(rel, dir_fd=self.fd)
            return True
        except OSError:
            return False

    def exists(self) -> bool:
        """Whether anything of this root is there (its top directory)."""
        return self._isdir(self.root.split("/")[0])

    def present(self) -> bool:
        return all(self._isdir(self.path(c)) for c in APP_CLASSES)

    def ensure(self) -> list[str]:
        """Create what is missing; returns what was created (any: nft must load again,
        since a group made anew has a new id)."""
        made = []
        parts = self.root.split("/")
        for rel in ["/".join(parts[:i]) for i in range(1, len(parts) + 1)] + [
                self.path(c) for c in APP_CLASSES]:
            if not self._isdir(rel):
                os.mkdir(rel, 0o755, dir_fd=self.fd)
                made.append(f"cgroup {rel}")
        return made

    @contextlib.contextmanager
    def for_nft(self) -> Iterator[None]:
        """The Braid root where nft resolves paths, for one load."""
        if not self.view.private:
            yield
            return
        _mount(f"/proc/self/fd/{self.fd}/{self.root}", NFT_BASE, None, MS_BIND)
        try:
            yield
        finally:
            if _libc.umount2(NFT_BASE.encode(), 0) != 0:
                log.error("could not unmount the Braid root from nft's view: %s",
                          os.strerror(ctypes.get_errno()))

    def members(self, cls: str) -> list[int]:
        return _procs(self.fd, self.path(cls))

    def move(self, pid: int, cgroup: str) -> None:
        """Write ``pid`` into ``cgroup`` (relative; "" the root). OSError as the kernel
        says: ESRCH gone, EINVAL a kernel thread, EBUSY an inner group with controllers."""
        name = f"{cgroup}/cgroup.procs" if cgroup else "cgroup.procs"
        fd = os.open(name, os.O_WRONLY | os.O_CLOEXEC, dir_fd=self.fd)
        try:
            os.write(fd, str(pid).encode())
        finally:
            os.close(fd)

    def remove(self, destination: Callable[[int], str]) -> list[str]:
        """Move every process out of the groups (to ``destination(pid)``, the root if
        that refuses it), unbind, and delete the groups and the root. Returns what was
        removed; what could not be (a process forking faster than it is moved) is left
        for the next try."""
        out: list[str] = []
        moved = 0
        for _ in range(20):
            pids = [p for c in APP_CLASSES for p in self.members(c)]
            if not pids:
                break
            for pid in pids:
                moved += self.move_out(pid, destination(pid))
        if moved:
            out.append(f"moved {moved} processes out of the class groups")
        parts = self.root.split("/")
        for rel in [self.path(c) for c in APP_CLASSES] + [
                "/".join(parts[:i]) for i in range(len(parts), 0, -1)]:
            try:
                os.rmdir(rel, dir_fd=self.fd)
                out.append(f"removed cgroup {rel}")
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("could not remove cgroup %s: %s", rel, exc.strerror)
        return out

    def move_out(self, pid: int, to: str) -> int:
        for where in dict.fromkeys((to, "")):
            try:
                self.move(pid, where)
                return 1
            except ProcessLookupError:
                return 0
            except OSError as exc:
                log.debug("moving pid %d to cgroup /%s: %s", pid, where, exc.strerror)
        return 0

    def stale_roots(self, netns_dir: str = NETNS_DIR) -> Iterator[Groups]:
        """Roots of helpers in named network namespaces that are gone (a lab destroyed
        while its helper could not clean up): nobody else will remove them."""
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.fd):
                name = entry.name
                prefix = f"{ROOT_NAME}-netns-"
                if not (name.startswith(prefix) and entry.is_dir(follow_symlinks=False)):
                    continue
                ns = name[len(prefix):]
                if self.root.startswith(name + "/") or not _NETNS_NAME.match(ns) or \
                        ns.isdigit() or os.path.exists(os.path.join(netns_dir, ns)):
                    continue
                stale = Groups(View(self.fd, False, self.view.host), f"{name}/{ROOT_NAME}")
                yield stale


def _procs(dir_fd: int, rel: str) -> list[int]:
    try:
        fd = os.open(f"{rel}/cgroup.procs", os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return []
    try:
        with os.fdopen(fd) as f:
            return [int(line) for line in f if line.strip()]
    except (OSError, ValueError):
        return []

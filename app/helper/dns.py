"""The system's DNS while connected, set the way the desktop sets it, and put back.

Three mechanisms, the first that is the system's own tool (``--dns auto``):

- **resolved**: systemd-resolved runs and ``/etc/resolv.conf`` is its stub: per-link DNS
  over D-Bus (``org.freedesktop.resolve1``: SetLinkDNS, SetLinkDomains,
  SetLinkDefaultRoute; RevertLink to undo). The default servers go on the tunnel that
  carries the default class (``dns.via``) with the routing domain ``~.`` and the
  default route, so every name is asked there and no other link's servers (the ISP's)
  are; a split gateway's servers go on its own link with its domains as routing domains
  (corporate split DNS). resolved forgets a link's settings when the link goes.
- **resolvconf**: ``resolvconf`` is installed (openresolv or Debian's): one record,
  ``tun.braid``, added as wg-quick adds its (``-a tun.braid -m 0 -x``: first and, for
  openresolv, exclusive), deleted with ``-d``.
- **file**: otherwise ``/etc/resolv.conf`` itself. Whatever was there (a file with its
  mode and owner, a symlink, nothing) is saved in the state directory before the first
  write and put back, byte for byte, on disconnect. Replaced atomically (rename), or in
  place where it is a mount point (``ip netns exec`` bind-mounts
  ``/etc/netns/NS/resolv.conf`` there; a rename onto it fails).

Nothing from a caller reaches a file or a command but validated addresses and domain
names (app/wire/state.py) in lines this module writes. No path comes from a caller.

After a crash (kill -9): the saved original and the journal are what a restarted helper
finds. If it adopts the guard (the kill switch), it keeps Braid's DNS as it is: the
tunnels' servers, unreachable until a client connects again, so no name is asked of
anyone in the meantime (restoring the ISP's resolver would send every lookup there, in
plaintext, while the user believes the kill switch holds). Without a guard it restores
the original at once: nothing is protected, and a dead tunnel's servers would only
break name resolution. ``--cleanup`` and SIGTERM always restore.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from app.helper.errors import KernelError
from app.helper.statedir import StateDir
from app.wire import fields
from app.wire.state import DnsState

log = logging.getLogger("braid.helper")

CHOICES = ("auto", "resolved", "resolvconf", "file")
RESOLV_CONF = Path("/etc/resolv.conf")
BACKUP = "resolv.conf.original.json"  # in the state directory: what the file was
MARKER = "# braid-helper: the DNS of Braid's tunnels; the system's own comes back on disconnect"
RESOLVCONF_RECORD = "tun.braid"  # "tun." ranks it first in resolvconf's interface-order
RESOLVCONF_TIMEOUT_S = 10.0
DBUS_TIMEOUT_S = 2.0
RESOLVE1 = "org.freedesktop.resolve1"
RESOLVE1_PATH = "/org/freedesktop/resolve1"
RESOLVE1_MANAGER = "org.freedesktop.resolve1.Manager"
RESOLVED_STUBS = frozenset({"127.0.0.53", "127.0.0.54"})
RESOLVED_DIR = "/run/systemd/resolve/"
SYSTEM_BUS_SOCKET = "/run/dbus/system_bus_socket"
INTENT = "dns.json"  # in the state directory: which mechanism holds DNS, before it is set


def render(servers: tuple[str, ...], domains: tuple[str, ...], *, marker: bool) -> str:
    """resolv.conf lines from validated addresses and names only."""
    lines = [MARKER] if marker else []
    lines += [f"nameserver {s}" for s in servers]
    if domains:
        lines.append("search " + " ".join(domains))
    return "\n".join(lines) + "\n"


def nameservers(text: str) -> tuple[str, ...]:
    return tuple(p[1] for p in (line.split() for line in text.splitlines())
                 if len(p) >= 2 and p[0] == "nameserver")


def search_domains(text: str) -> tuple[str, ...]:
    found: list[str] = []
    for parts in (line.split() for line in text.splitlines()):
        if parts and parts[0] == "search":
            found = parts[1:]  # the last search line counts, as glibc reads it
    return tuple(found)


class Mechanism(Protocol):
    name: str

    async def set(self, dns: DnsState, links: Mapping[str, int]) -> list[str]:
        """Make the system use ``dns``; ``links``: tunnel name -> ifindex."""

    async def revert(self) -> list[str]:
        """Put the system's own DNS back."""

    async def drifted(self) -> bool:
        """Whether someone changed what :meth:`set` set."""

    def active(self) -> bool:
        """Whether what was set is in place."""


# ---- file ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Original:
    """What the file was before Braid: a file (text, mode, owner), a symlink, nothing."""

    kind: str  # "file" | "symlink" | "absent"
    text: str = ""
    target: str = ""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text, "target": self.target,
                "mode": self.mode, "uid": self.uid, "gid": self.gid}

    @classmethod
    def from_json(cls, doc: Any) -> Original:
        if not isinstance(doc, dict) or doc.get("kind") not in ("file", "symlink", "absent"):
            raise ValueError("not a saved resolv.conf")
        return cls(str(doc["kind"]), str(doc.get("text", "")), str(doc.get("target", "")),
                   int(doc.get("mode", 0o644)) & 0o7777, int(doc.get("uid", 0)),
                   int(doc.get("gid", 0)))


def mount_points() -> set[str]:
    """This process's mount points (/proc/self/mountinfo, octal escapes undone)."""
    out = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fields = line.split()
            if len(fields) > 4:
                out.add(fields[4].encode().decode("unicode_escape"))
    return out


NETNS_RUN, NETNS_ETC = Path("/run/netns"), Path("/etc/netns")
NETNS_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")  # as `ip netns add` names


def check_target(value: str) -> Path:
    """``--resolv-conf``: the file the helper manages. Only /etc/resolv.conf or
    /etc/netns/NAME/resolv.conf (the one `ip netns exec NAME` mounts over /etc/resolv.conf)
    are accepted, spelt exactly so: a helper's configuration cannot point it at an
    arbitrary file it would then overwrite as root."""
    if value == str(RESOLV_CONF):
        return RESOLV_CONF
    parts = value.split("/")
    if (len(parts) == 5 and parts[:3] == ["", "etc", "netns"] and parts[4] == "resolv.conf"
            and NETNS_NAME_RE.match(parts[3]) and parts[3] not in (".", "..")):
        return Path(value)
    raise ValueError(f"{value[:100]!r} is neither {RESOLV_CONF} nor "
                     f"{NETNS_ETC}/NAME/resolv.conf")


def _same(a: Path, b: Path) -> bool:
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def current_netns() -> str | None:
    """The name (under /run/netns) of the network namespace this process runs in, unless
    it is init's. None: the host's, or one nobody named.

    Init's namespace is told by /proc/1/ns/net where that can be read; in a container it
    often cannot, and then any named namespace counts as a namespace of its own: wrongly
    taking the host's for a lab's refuses a write, the other way round overwrites the
    host's resolv.conf."""
    here = Path("/proc/self/ns/net")
    if _same(here, Path("/proc/1/ns/net")):
        return None
    try:
        names = sorted(p.name for p in NETNS_RUN.iterdir())
    except OSError:
        return None
    return next((n for n in names if _same(NETNS_RUN / n, here)), None)


def target_problem(path: Path) -> str | None:
    """Why the helper must not write ``path`` from where it runs (None: it may). A helper
    in a named namespace (a lab, a test) writes only that namespace's own file, never the
    host's; one on the host writes only /etc/resolv.conf."""
    if path != RESOLV_CONF and path.parent.parent != NETNS_ETC:
        return None  # no system file (check_target lets none through: tests' own files)
    ns = current_netns()
    if path == RESOLV_CONF:
        if ns is None or _same(NETNS_ETC / ns / "resolv.conf", RESOLV_CONF):
            return None
        return (f"braid-helper runs in the network namespace {ns}, and {RESOLV_CONF} is the "
                f"host's (no {NETNS_ETC / ns / 'resolv.conf'} is mounted there): not "
                "touching it")
    if ns != path.parent.name:
        where = "the host's" if ns is None else ns
        return (f"{path} is the network namespace {path.parent.name}'s, and braid-helper "
                f"runs in {where}")
    if not path.is_file() or path.is_symlink():
        return (f"{path} is not a plain file: `ip netns exec {ns}` mounts it over "
                f"{RESOLV_CONF} only where it is one")
    return None


class ResolvFile:
    """``/etc/resolv.conf`` managed by Braid, the original kept in the state directory."""

    name = "file"

    def __init__(self, state_dir: StateDir, path: Path = RESOLV_CONF) -> None:
        self.dir = state_dir
        self.path = path
        self.written: str | None = None  # what this helper last wrote

    # -- what is there ------------------------------------------------------------
    def read(self) -> Original:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return Original("absent")
        if os.path.islink(self.path):
            return Original("symlink", target=os.readlink(self.path))
        text = self.path.read_text(encoding="utf-8", errors="surrogateescape")
        return Original("file", text=text, mode=st.st_mode & 0o7777, uid=st.st_uid,
                        gid=st.st_gid)

    @staticmethod
    def ours(found: Original) -> bool:
        return found.kind == "file" and found.text.startswith(MARKER + "\n")

    def saved(self) -> Original | None:
        """The original, as saved before the first write (None: nothing saved)."""
        text = self.dir.read(BACKUP)
        if text is None:
            return None
        try:
            doc = json.loads(text)
            if doc.get("path") != str(self.path):
                # Another --resolv-conf's: its text must never land in this file.
                log.error("the saved resolv.conf in the state directory is %s's, not %s's: "
                          "leaving both as they are", doc.get("path"), self.path)
                return None
            return Original.from_json(doc.get("original"))
        except (ValueError, AttributeError, TypeError):
            log.error("the saved resolv.conf in the state directory is unreadable: leaving "
                      "%s as it is", self.path)
            return None

    # -- the mechanism ------------------------------------------------------------
    async def set(self, dns: DnsState, links: Mapping[str, int]) -> list[str]:
        text = render(dns.all_servers(), dns.all_domains(), marker=True)
        found = self.read()
        if self.ours(found) and found.text == text:
            self.written = text
            return []
        self._check_safe()
        if not self.ours(found):
            # The first write, or someone (a DHCP client) replaced ours: what is there now
            # is what the system wants once Braid is done. Saved durably before any write.
            self.dir.write(BACKUP, json.dumps({"path": str(self.path),
                                               "original": found.to_json()}))
            if self.written is not None:
                log.warning("%s was replaced by someone else: writing Braid's DNS again (the "
                            "new file comes back on disconnect)", self.path)
        self._write(text, 0o644, 0, 0)
        self.written = text
        return [f"DNS: {self.path} lists {', '.join(dns.all_servers())}"]

    async def revert(self) -> list[str]:
        original = self.saved()
        self.written = None
        if original is None:
            return []
        found = self.read()
        if self.ours(found):
            self._check_safe()
            self._put_back(original)
            change = f"DNS: {self.path} restored"
        else:
            # Someone replaced ours since: theirs is newer than the original.
            change = f"DNS: {self.path} was replaced by someone else; left as it is"
        self.dir.unlink(BACKUP)
        return [change]

    async def drifted(self) -> bool:
        return self.written is not None and not self.active()

    def active(self) -> bool:
        found = self.read()
        return self.written is not None and found.kind == "file" and found.text == self.written

    def adopt(self) -> DnsState | None:
        """After a restart: the DNS of Braid's file, if it is still there (kept)."""
        found = self.read()
        if not self.ours(found) or not nameservers(found.text):
            return None
        self.written = found.text
        return DnsState(nameservers(found.text), search_domains(found.text))

    # -- writing ------------------------------------------------------------------
    def _check_safe(self) -> None:
        """Checked before every write, not only at start: the namespace's file may have
        gone since (then /etc/resolv.conf is the host's again)."""
        problem = target_problem(self.path)
        if problem is not None:
            raise KernelError(problem, "create /etc/netns/NS/resolv.conf before starting the "
                              "helper with `ip netns exec NS`, and give it --resolv-conf "
                              "/etc/netns/NS/resolv.conf")

    def _write(self, text: str, mode: int, uid: int, gid: int) -> None:
        data = text.encode("utf-8", errors="surrogateescape")
        try:
            # A namespace's file is mounted over /etc/resolv.conf in every process started
            # there: a rename would leave them all reading the old inode.
            if self.path.parent.parent == NETNS_ETC or str(self.path) in mount_points():
                self._write_in_place(data, mode, uid, gid)
            else:
                self._replace(data, mode, uid, gid)
        except OSError as exc:
            raise KernelError(f"could not write {self.path}: {exc.strerror}") from None

    def _write_in_place(self, data: bytes, mode: int, uid: int, gid: int) -> None:
        # A mount point cannot be renamed onto (EBUSY): truncate and write, then sync.
        _fill(os.open(self.path, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC),
              data, mode, uid, gid)

    def _replace(self, data: bytes, mode: int, uid: int, gid: int) -> None:
        tmp = self.path.with_name(f".{self.path.name}.braid.{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            _fill(fd, data, mode, uid, gid)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        self._sync_dir()

    def _sync_dir(self) -> None:
        dfd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def _put_back(self, original: Original) -> None:
        try:
            if original.kind == "file":
                self._write(original.text, original.mode, original.uid, original.gid)
            elif original.kind == "symlink":
                tmp = self.path.with_name(f".{self.path.name}.braid.{os.getpid()}")
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                os.symlink(original.target, tmp)
                os.replace(tmp, self.path)
                self._sync_dir()
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
        except OSError as exc:
            raise KernelError(f"could not restore {self.path}: {exc.strerror}") from None


def _fill(fd: int, data: bytes, mode: int, uid: int, gid: int) -> None:
    """Write ``data`` to ``fd`` with its mode and owner, durably, and close it."""
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
        os.fchown(fd, uid, gid)
        os.fsync(fd)
    finally:
        os.close(fd)


# ---- resolvconf ----------------------------------------------------------------------
class Resolvconf:
    """One resolvconf record for Braid's DNS, as wg-quick keeps one per tunnel."""

    name = "resolvconf"

    def __init__(self, command: str) -> None:
        self.command = command
        self.record: str | None = None  # what this helper last gave resolvconf

    async def _run(self, *args: str, stdin: str = "") -> None:
        argv = [self.command, *args]
        try:
            done = await asyncio.to_thread(
                subprocess.run, argv, input=stdin, capture_output=True, text=True,
                timeout=RESOLVCONF_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise KernelError(f"resolvconf {args[0]} {RESOLVCONF_RECORD} failed: {exc}") from None
        if done.returncode != 0:
            raise KernelError(f"resolvconf {args[0]} {RESOLVCONF_RECORD} failed (status "
                              f"{done.returncode}): {done.stderr.strip()[-300:]}")

    async def set(self, dns: DnsState, links: Mapping[str, int]) -> list[str]:
        text = render(dns.all_servers(), dns.all_domains(), marker=False)
        if text == self.record:
            return []
        await self._run("-a", RESOLVCONF_RECORD, "-m", "0", "-x", stdin=text)
        self.record = text
        return [f"DNS: resolvconf record {RESOLVCONF_RECORD}: {', '.join(dns.all_servers())}"]

    async def revert(self) -> list[str]:
        await self._run("-d", RESOLVCONF_RECORD, "-f")
        self.record = None
        return [f"DNS: resolvconf record {RESOLVCONF_RECORD} deleted"]

    async def drifted(self) -> bool:
        return False  # resolvconf keeps its records; nobody else writes ours

    def active(self) -> bool:
        return self.record is not None


# ---- systemd-resolved ----------------------------------------------------------------
LinkDns = tuple[tuple[str, ...], tuple[tuple[str, bool], ...], bool]  # servers, domains, default


class Resolved:
    """Per-link DNS in systemd-resolved over D-Bus (jeepney: pure Python, blocking calls
    run in a thread so a hung bus never stalls the helper's loop)."""

    name = "resolved"

    def __init__(self, bus: str = "SYSTEM") -> None:
        self.bus = bus
        self.links: dict[str, tuple[int, LinkDns]] = {}  # tunnel -> (ifindex, what is set)
        self.owner: str | None = None  # resolved's unique bus name when it was set
        # A batch that failed midway (resolved restarting): the drift timer tries again.
        self.pending = False

    @staticmethod
    def want(dns: DnsState, links: Mapping[str, int]) -> dict[str, LinkDns]:
        out: dict[str, LinkDns] = {}
        if dns.via is not None and dns.via in links and dns.servers:
            # "~.": every name routes here, so no other link's servers (the ISP's) are asked.
            out[dns.via] = (dns.servers, (*((d, False) for d in dns.domains), (".", True)),
                            True)
        for split in dns.split:
            if split.via in links:
                out[split.via] = (split.servers, tuple((d, False) for d in split.domains),
                                  False)
        return out

    async def set(self, dns: DnsState, links: Mapping[str, int]) -> list[str]:
        want = self.want(dns, links)
        return await asyncio.to_thread(self._set, want, dict(links))

    def _set(self, want: dict[str, LinkDns], links: dict[str, int]) -> list[str]:
        self.pending = True
        changes = self._calls(want, links)
        self.pending = False
        return changes

    def _calls(self, want: dict[str, LinkDns], links: dict[str, int]) -> list[str]:
        changes = []
        with self._connect() as conn:
            owner = conn.owner()
            if owner != self.owner:
                self.links.clear()  # resolved restarted: it forgot every link
                self.owner = owner
            for name, spec in want.items():
                index = links[name]
                if self.links.get(name) == (index, spec):
                    continue
                servers, domains, default = spec
                conn.call("SetLinkDNS", "ia(iay)", index, [_address(s) for s in servers])
                conn.call("SetLinkDomains", "ia(sb)", index, list(domains))
                conn.call("SetLinkDefaultRoute", "ib", index, default)
                self.links[name] = (index, spec)
                changes.append(f"DNS: {name} asks {', '.join(servers)}"
                               + (" for every name" if default else
                                  f" for {', '.join(d for d, _ in domains) or 'nothing'}"))
            for name in sorted(set(self.links) - set(want)):
                index, _ = self.links.pop(name)
                if _link_is(index, name):
                    conn.call("RevertLink", "i", index)
                    changes.append(f"DNS: {name} reverted")
        return changes

    async def revert(self) -> list[str]:
        try:
            return await asyncio.to_thread(self._set, {}, {})
        except KernelError as exc:
            # Never a reason to stay connected: resolved drops a link's DNS with the link.
            log.warning("DNS: %s; the links' DNS goes with the tunnels", exc.what)
            self.links.clear()
            self.pending = False
            return [f"DNS: {exc.what}"]

    async def drifted(self) -> bool:
        if self.pending:
            return True
        if not self.links:
            return False
        try:
            owner = await asyncio.to_thread(self._owner)
        except KernelError:
            return True
        return owner != self.owner

    def _owner(self) -> str | None:
        with self._connect() as conn:
            return conn.owner()

    def active(self) -> bool:
        return bool(self.links)

    def _connect(self) -> _Bus:
        return _Bus(self.bus)

    @staticmethod
    def running(bus: str = "SYSTEM") -> bool:
        try:
            with _Bus(bus) as conn:
                return conn.owner() is not None
        except KernelError:
            return False


def _address(text: str) -> tuple[int, bytes]:
    ip = ipaddress.ip_address(text)
    return (socket.AF_INET if ip.version == 4 else socket.AF_INET6, ip.packed)


def _link_is(index: int, name: str) -> bool:
    """The link ``index`` still exists and is ``name`` (not a new link given its index)."""
    try:
        return socket.if_indextoname(index) == name
    except OSError:
        return False


class _Bus:
    """One blocking D-Bus connection to resolved's Manager, for one batch of calls."""

    def __init__(self, bus: str) -> None:
        self.bus = bus
        self.conn: Any = None

    def __enter__(self) -> _Bus:
        from jeepney.io.blocking import open_dbus_connection

        try:
            self.conn = open_dbus_connection(self.bus, auth_timeout=DBUS_TIMEOUT_S)
        except (OSError, RuntimeError, ValueError, KeyError) as exc:
            raise KernelError(f"systemd-resolved: cannot reach the system bus: {exc}",
                              "is dbus running? (or start braid-helper with --dns file)"
                              ) from None
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()

    def owner(self) -> str | None:
        from jeepney import DBusAddress, new_method_call

        bus = DBusAddress("/org/freedesktop/DBus", bus_name="org.freedesktop.DBus",
                          interface="org.freedesktop.DBus")
        reply = self.conn.send_and_get_reply(
            new_method_call(bus, "GetNameOwner", "s", (RESOLVE1,)), timeout=DBUS_TIMEOUT_S)
        body = reply.body
        if reply.header.message_type.name == "error" or not body:
            return None
        return str(body[0])

    def call(self, method: str, signature: str, *args: Any) -> None:
        from jeepney import DBusAddress, new_method_call

        manager = DBusAddress(RESOLVE1_PATH, bus_name=RESOLVE1, interface=RESOLVE1_MANAGER)
        try:
            reply = self.conn.send_and_get_reply(
                new_method_call(manager, method, signature, args), timeout=DBUS_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            raise KernelError(f"systemd-resolved: {method} failed: {exc}") from None
        if reply.header.message_type.name == "error":
            detail = reply.body[0] if reply.body else ""
            raise KernelError(f"systemd-resolved refused {method}: "
                              f"{reply.header.fields.get(4, '')} {detail}".strip())


# ---- choosing one, and what is held --------------------------------------------------
def resolv_conf_is_resolved(path: Path = RESOLV_CONF) -> bool:
    """Whether glibc's resolv.conf is resolved's: a link into /run/systemd/resolve/ or a
    file naming only its stub."""
    with contextlib.suppress(OSError):
        if os.path.realpath(path).startswith(RESOLVED_DIR):
            return True
        servers = nameservers(path.read_text(errors="replace"))
        return bool(servers) and set(servers) <= RESOLVED_STUBS
    return False


def resolvconf_command() -> str | None:
    """The resolvconf on PATH, unless it is resolved's stand-in (resolvectl)."""
    found = shutil.which("resolvconf")
    if found is None:
        return None
    if os.path.basename(os.path.realpath(found)) in ("resolvectl", "systemctl"):
        return None
    return found


def private_bus() -> bool:
    """Whether the system bus is one named by DBUS_SYSTEM_BUS_ADDRESS, not the host's
    well-known socket."""
    address = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", "")
    return address not in ("", f"unix:path={SYSTEM_BUS_SOCKET}")


def choose(choice: str, state_dir: StateDir, path: Path = RESOLV_CONF) -> Mechanism:
    """The mechanism for ``--dns choice``. In a named network namespace (a lab) auto is
    always the namespace's own file: the host's systemd-resolved sees only the host's
    links (an ifindex here may be another link there), and a real resolvconf writes the
    host's /run/resolvconf. --dns resolved there needs a bus of its own."""
    in_netns = current_netns() is not None
    if choice == "resolved" and in_netns and not private_bus():
        raise KernelError("--dns resolved: braid-helper runs in a network namespace of its "
                          "own, and the system bus's systemd-resolved is the host's",
                          "start it with --dns file (or auto) there")
    if choice == "resolved" or (choice == "auto" and not in_netns
                                and resolv_conf_is_resolved(path) and Resolved.running()):
        return Resolved()
    command = resolvconf_command()
    if choice == "resolvconf" or (choice == "auto" and not in_netns and command is not None):
        if command is None:
            raise KernelError("--dns resolvconf: resolvconf is not installed",
                              "install it, or start braid-helper with --dns auto")
        return Resolvconf(command)
    return ResolvFile(state_dir, path)


class DnsManager:
    """Which mechanism holds which DNS; the reconciler's one handle on DNS."""

    def __init__(self, state_dir: StateDir, choice: str = "auto",
                 path: Path = RESOLV_CONF) -> None:
        self.dir = state_dir
        self.choice = choice
        self.path = path
        self.mechanism: Mechanism | None = None
        self.applied: DnsState | None = None

    async def apply(self, dns: DnsState | None, links: Mapping[str, int]) -> list[str]:
        if dns is None:
            if self.mechanism is None:
                return []
            changes = await self.mechanism.revert()
            self.mechanism, self.applied = None, None
            self.dir.unlink(INTENT)
            return changes
        if self.mechanism is None:
            # Chosen when DNS is first set, not at start: resolved may start later.
            mechanism = choose(self.choice, self.dir, self.path)
            # Recorded before anything is set: a kill -9 between resolvconf's -a and the
            # journal's next write still leaves a restart that knows to take it back.
            self.dir.write(INTENT, json.dumps({"mechanism": mechanism.name}))
            self.mechanism = mechanism
            log.info("DNS: setting it through %s", mechanism.name)
        changes = await self.mechanism.set(dns, links)
        self.applied = dns
        return changes

    async def drifted(self) -> bool:
        return self.mechanism is not None and await self.mechanism.drifted()

    def journal(self) -> dict[str, Any] | None:
        """What a restarted helper needs to put the system's DNS back (never a key)."""
        if self.mechanism is None or self.applied is None:
            return None
        return {"mechanism": self.mechanism.name, "servers": list(self.applied.all_servers()),
                "domains": list(self.applied.all_domains())}

    async def leftovers(self, doc: dict[str, Any], *, keep: bool) -> tuple[list[str],
                                                                           DnsState | None]:
        """An earlier run's DNS (the saved resolv.conf, the journal): kept when ``keep``
        (the guard is adopted: the DNS stays the tunnels'), else put back. Returns what
        was found and the DNS now held (None: none)."""
        found, held = await self._leftovers(doc, keep=keep)
        if held is None:
            self.dir.unlink(INTENT)
        return found, held

    def _intent(self) -> str | None:
        with contextlib.suppress(ValueError, AttributeError):
            kind = json.loads(self.dir.read(INTENT) or "{}").get("mechanism")
            return kind if kind in ("file", "resolvconf", "resolved") else None
        return None

    async def _leftovers(self, doc: dict[str, Any], *,
                         keep: bool) -> tuple[list[str], DnsState | None]:
        found_doc = doc.get("dns")
        journaled: dict[str, Any] = found_doc if isinstance(found_doc, dict) else {}
        kind = journaled.get("mechanism") or self._intent()
        file = ResolvFile(self.dir, self.path)
        if file.saved() is not None:
            kind = "file"  # saved before the first write: the truth even without a journal
        try:
            if kind == "file":
                held = file.adopt() if keep else None
                if held is not None:
                    self.mechanism, self.applied = file, held
                    return [f"DNS: kept Braid's {self.path} (the guard holds)"], held
                return await file.revert(), None
            if kind == "resolvconf" and (command := resolvconf_command()) is not None:
                rc = Resolvconf(command)
                held = _journaled_dns(journaled) if keep else None
                if held is not None:
                    rc.record = render(held.servers, held.domains, marker=False)
                    self.mechanism, self.applied = rc, held
                    return [f"DNS: kept resolvconf record {RESOLVCONF_RECORD} (the guard "
                            "holds)"], held
                return await rc.revert(), None
        except KernelError as exc:
            log.error("DNS of an earlier run: %s", exc.what)
            return [f"DNS: {exc.what}"], None
        if kind == "resolved":
            # The links it was set on went with the tunnels, and resolved forgot them.
            return ["DNS: systemd-resolved's links went with the tunnels"], None
        return [], None


def _journaled_dns(doc: dict[str, Any]) -> DnsState | None:
    """The servers and domains a journal recorded, each checked again (None: none)."""
    def each(key: str, check: Any) -> tuple[str, ...]:
        items = doc.get(key)
        out = []
        for item in items if isinstance(items, list) else []:
            with contextlib.suppress(fields.FieldError, TypeError, AttributeError):
                out.append(check(item))
        return tuple(out)

    servers = each("servers", fields.check_dns_server)
    return DnsState(servers, each("domains", fields.check_search_domain)) if servers else None


__all__ = ["CHOICES", "RESOLV_CONF", "DnsManager", "ResolvFile", "Resolvconf", "Resolved",
           "choose"]

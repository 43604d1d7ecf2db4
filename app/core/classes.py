"""The client side of traffic classes by app (docs/classes.md): the user's saved rules
to the helper, processes moved into a class, and pinning an app (save the rule, send it,
move what runs now). The engine uses :func:`send_saved_rules` at connect and after a
helper restart; `braid run/pin/unpin` and the Apps window use the rest.

The helper does the privileged part (the groups are root's) and checks who asks: a user
moves only their own processes. A socket keeps the class of the group it was created
in, so an app that is already running keeps its open connections where they are:
:attr:`Pinned.restart` is the command that starts it again, in its class.
"""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core import apps
from app.core.apprules import AppRule, RuleStore, check_class, resolve_app
from app.core.errors import BraidError
from app.core.helper_client import HelperClient, HelperGone, HelperRefused, SyncHelperClient
from app.core.profiles.store import ProfileStore
from app.core.targets import SYSTEM_HELPER, ConnectTarget, Placement, placement
from app.wire.classes import APP_CLASSES, BULK
from app.wire.errors import Code

log = logging.getLogger(__name__)

SOCKET_NOTE = ("a socket keeps the class it was opened in: connections the app already has "
               "stay where they are until it opens new ones")


def rules_doc(rules: Iterable[AppRule]) -> list[dict[str, Any]]:
    """Rules as the helper's ``rules`` verb takes them."""
    return [{"exe": r.exe, "class": r.cls, "mptcp": r.mptcp} for r in rules]


async def send_saved_rules(client: HelperClient, store: RuleStore | None = None) -> int | None:
    """Send the user's saved rules (all of them: they replace what the helper holds for
    this user). Returns how many running programs the helper moved, None if the rules
    could not be read or the helper does not know classes (said in the log: connecting
    does not depend on it). HelperGone propagates."""
    try:
        rules = (store or RuleStore()).load()
    except BraidError as exc:
        log.warning("saved app rules not sent: %s", exc)
        return None
    try:
        result = await client.request("rules", rules=rules_doc(rules))
    except HelperRefused as exc:
        log.warning("saved app rules not sent: %s", exc.what)
        return None
    return int(result.get("moved") or 0)


def where(lab: str | None) -> Placement:
    """The helper (and namespace) of the system, or of lab ``lab``."""
    if lab is None:
        return Placement(SYSTEM_HELPER)
    target = ConnectTarget.for_lab(lab)
    return placement(target, ProfileStore().load(target.profile))


def helper_error(exc: BraidError) -> BraidError:
    """A refusal of ``move`` in words for the user: each case its own message."""
    if not isinstance(exc, HelperRefused):
        return exc
    if exc.code is Code.NO_CLASSES:
        return BraidError(exc.what.removeprefix("braid-helper refused move: "), exc.fix)
    if exc.code is Code.NOT_YOURS:
        return BraidError(exc.what.removeprefix("braid-helper refused move: "),
                          "you can move only your own processes (root can move any)")
    if exc.code is Code.NO_PROCESS:
        return BraidError(exc.what.removeprefix("braid-helper refused move: "),
                          "check the pid with `braid apps`; it may have exited")
    return exc


def move(socket: Path, pids: Iterable[int], cls: str | None) -> dict[str, Any]:
    """Move ``pids`` into class ``cls`` (None: out of Braid's groups)."""
    with SyncHelperClient(socket) as client:
        try:
            return client.request("move", pids=list(pids), **{"class": cls})
        except BraidError as exc:
            raise helper_error(exc) from None


def _netns_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def running(exe: str, uid: int | None = None, netns: str | None = None) -> list[int]:
    """The calling user's processes (``uid``'s) running ``exe``, in the network namespace
    ``netns`` (ip netns naming; None: this process's), the only ones its helper moves."""
    owner = os.getuid() if uid is None else uid
    want = _netns_id(f"/run/netns/{netns}" if netns else "/proc/self/ns/net")
    return sorted(pid for pid in apps.own_pids(owner) if apps.process_exe(pid) == exe
                  and _netns_id(f"/proc/{pid}/ns/net") == want)


def restart_command(pids: list[int]) -> str | None:
    """How to start the app again (in its class, by its saved rule): stop these
    processes, then its first one's command line, as the user ran it."""
    if not pids:
        return None
    try:
        raw = Path(f"/proc/{pids[0]}/cmdline").read_bytes()
    except OSError:
        return None
    argv = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
    if not argv:
        return None
    return f"kill {' '.join(map(str, pids))} && {shlex.join(argv)}"


@dataclass(frozen=True)
class Pinned:
    rule: AppRule | None  # None: unpinned
    replaced: AppRule | None  # the rule it replaced (or removed)
    sent: bool  # the helper holds the user's rules now
    why_not_sent: str | None  # e.g. not connected: applies at the next connect
    moved: tuple[int, ...]  # running processes moved now
    restart: str | None  # the command that restarts the app (new sockets in its class)


def _send_rules(socket: Path, rules: list[AppRule]) -> tuple[bool, str | None]:
    with SyncHelperClient(socket) as client:
        try:
            result = client.request("rules", rules=rules_doc(rules))
        except HelperGone:
            return False, "braid-helper is not running: the rule applies when Braid connects"
        except HelperRefused as exc:
            return False, exc.what
    if not result.get("active"):
        return True, "Braid is not connected: the rule applies when it connects"
    return True, None


def pin(app: str, cls: str, *, mptcp: bool = False, lab: str | None = None,
        store: RuleStore | None = None) -> Pinned:
    """Save "``app`` is of ``cls``", give the helper the user's rules, and move every
    running process of that program of the calling user into the class at once."""
    check_class(cls)
    if mptcp and cls != BULK:
        raise BraidError("--mptcp is for the bulk class",
                         "pin it with --class bulk, or drop --mptcp")
    exe = resolve_app(app)
    store = store or RuleStore()
    rule, old = store.pin(exe, cls, mptcp=mptcp)
    return _apply(store, rule, old, exe, cls, lab)


def unpin(app: str, *, lab: str | None = None, store: RuleStore | None = None) -> Pinned:
    """Remove the rule for ``app`` and take its running processes out of their class."""
    store = store or RuleStore()
    exe = _known_exe(app, store)
    old = store.unpin(exe)
    if old is None:
        raise BraidError(f"{exe} has no saved rule", "see them with `braid rules`")
    return _apply(store, None, old, exe, None, lab)


def _known_exe(app: str, store: RuleStore) -> str:
    """The rule's program: a saved rule may name a program that is gone since."""
    saved = {r.exe for r in store.load()}
    if app in saved:
        return app
    return resolve_app(app)


def _apply(store: RuleStore, rule: AppRule | None, old: AppRule | None, exe: str,
           cls: str | None, lab: str | None) -> Pinned:
    place = where(lab)
    socket = place.helper_socket
    sent, why = _send_rules(socket, store.load())
    pids = running(exe, netns=place.netns)
    moved: tuple[int, ...] = ()
    if pids and sent and why is None:
        result = move(socket, pids, cls)
        moved = tuple(int(p) for p in result.get("moved") or ())
    return Pinned(rule, old, sent, why, moved, restart_command(list(moved)))


def said(p: Pinned, cls: str | None) -> list[str]:
    """What a pin or unpin did, in the user's words: `braid pin` prints these lines and
    the Apps window shows them, so both say the same."""
    if not p.sent or p.why_not_sent:
        return [p.why_not_sent or "the rule is saved"]
    if not p.moved:
        return ["it is not running now: the rule applies when it starts"]
    where = f"into {cls}" if cls else "out of its class"
    lines = [f"moved {len(p.moved)} running process{'es' if len(p.moved) > 1 else ''} "
             f"(pid {' '.join(map(str, p.moved))}) {where}; {SOCKET_NOTE}"]
    if p.restart:
        lines.append(f"to restart it{' in its class' if cls else ''}: {p.restart}")
    return lines


NO_CLASS = "none"  # the Apps window's choice for "no saved rule"
CHOICES: tuple[str, ...] = (*APP_CLASSES, NO_CLASS)


@dataclass(frozen=True)
class AppRow:
    """One line of the Apps window: a program with sockets open now, or one that has a
    saved rule and is not running."""

    exe: str
    name: str
    pids: tuple[int, ...]
    sockets: int
    cls: str | None  # the class group its processes are in now (None: none, or mixed)
    rule: AppRule | None  # its saved rule
    remotes: tuple[str, ...] = ()

    @property
    def running(self) -> bool:
        return bool(self.pids)

    @property
    def choice(self) -> str:
        """What its selector shows: the saved rule's class, or "none"."""
        return self.rule.cls if self.rule is not None else NO_CLASS


class AppClasses:
    """The Apps window's work, without Qt: which apps are on the network and of which
    class, and a choice of class applied as `braid pin`/`braid unpin` apply it (the same
    functions: the rule saved, sent to the helper, running processes moved).

    ``lab``: the apps inside that lab's client namespace, moved by its helper (the tray
    app connected to a lab); None: the system's."""

    def __init__(self, store: RuleStore | None = None) -> None:
        self.store = store or RuleStore()
        self._places: dict[str | None, Placement] = {}

    def place(self, lab: str | None) -> Placement:
        # A lab's placement reads its profile and lab files: once per lab, not per refresh.
        if lab not in self._places:
            self._places[lab] = where(lab)
        return self._places[lab]

    def rows(self, lab: str | None = None) -> list[AppRow]:
        """The apps with TCP/UDP sockets open now (busiest first), then the saved rules
        of programs that are not running (by name)."""
        rules = {r.exe: r for r in self.store.load()}
        found = apps.list_apps(netns=self.place(lab).netns)
        out = [AppRow(a.exe, a.name, a.pids, a.sockets, a.cls, rules.get(a.exe), a.remotes)
               for a in found]
        seen = {a.exe for a in found}
        out += sorted((AppRow(r.exe, Path(r.exe).name, (), 0, None, r)
                       for r in rules.values() if r.exe not in seen),
                      key=lambda row: (row.name, row.exe))
        return out

    def choose(self, exe: str, choice: str, lab: str | None = None) -> Pinned | None:
        """The selector: a class pins ``exe`` (saves the rule, moves what runs now),
        "none" unpins it; None when there was nothing to do (no rule to remove)."""
        if choice == NO_CLASS:
            if all(r.exe != exe for r in self.store.load()):
                return None
            return unpin(exe, lab=lab, store=self.store)
        return pin(exe, choice, lab=lab, store=self.store)

    def add(self, app: str, cls: str, lab: str | None = None) -> Pinned:
        """A rule for a program picked by path, command or .desktop file (running or
        not): what `braid pin APP --class CLS` does."""
        return pin(app.strip(), cls, lab=lab, store=self.store)

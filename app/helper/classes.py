"""Traffic classes by app: the class groups' life, the ``move`` and ``rules`` verbs'
work, and the saved rules applied as programs start (docs/classes.md).

The groups exist while the helper holds a state with a marking (reconcile.py calls
:meth:`Classes.ensure` before it loads the nft table, whose ``socket cgroupv2`` rules
name them, and :meth:`Classes.remove` when the marking goes). With them go the rules
every user sent and the process-events watcher: a state's end is the classes' end, and
the next engine sends its user's rules again.

Who may move what: a peer (SO_PEERCRED) moves only processes whose real uid is its own;
root moves any; and only processes in the helper's network namespace (its nft table is
what gives a group meaning: elsewhere a class would do nothing). A request with one
process it may not move moves none. A program started by a user with rules, in this
namespace, is moved if its executable is one of them, unless it is already in a class
group (``braid run --class C`` said so explicitly, and it wins).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

from app.helper import cgroups, procs
from app.helper.cgroups import Groups, View
from app.helper.errors import HelperError
from app.helper.netlink import FR_ACT_TO_TBL, MAIN_TABLE, KernelRule
from app.helper.procevents import ProcEvents
from app.wire.classes import APP_CLASSES, ClassRule, MoveRequest
from app.wire.errors import Code
from app.wire.state import BYPASS_CLASS_MARK, BYPASS_CLASS_PRIORITY, MARK_MASK
from app.wire.status import ClassesStatus

log = logging.getLogger("braid.helper")

MAX_ORIGINS = 4096  # where moved processes came from; pruned of the dead beyond this
NOT_CONNECTED = ("no Braid connection is up here: the class groups exist only while one is",
                 "connect first (braid up), then move or start programs in a class")


class Classes:
    def __init__(self, view: View | None, root: str | None = None) -> None:
        self.view = view if view is not None else View.unavailable("not set up")
        self.groups: Groups | None = None
        if self.view.fd is not None:
            self.groups = Groups(self.view, root if root is not None else cgroups.root_name())
        self.active = False  # the groups exist (a state with a marking is held)
        self._rules: dict[int, dict[str, ClassRule]] = {}  # uid -> exe -> rule
        self._origins: dict[int, tuple[int, str]] = {}  # pid -> (start time, cgroup)
        self._watch = ProcEvents(self._exec, self._lost, cgroups.init_ns("ns/net"))
        self.watch_error: str | None = None
        self._netns = procs.own_netns()
        self.rule_moves = 0  # programs moved as they started, for status and benchmarks

    # ---- life ---------------------------------------------------------------------
    @property
    def available(self) -> bool:
        return self.groups is not None

    @property
    def root(self) -> str | None:
        return self.groups.root if self.groups is not None else None

    def nft_groups(self) -> tuple[dict[str, str], int] | None:
        """Class -> path for nft, and the groups' level; None while there are none."""
        if not self.active or self.groups is None:
            return None
        return self.groups.nft_paths(), self.groups.level

    def for_nft(self) -> contextlib.AbstractContextManager[None]:
        """nft's view of the groups, around one load (cgroups.Groups.for_nft)."""
        if self.active and self.groups is not None:
            return self.groups.for_nft()
        return contextlib.nullcontext()

    def route_rules(self, families: Iterable[int]) -> list[KernelRule]:
        """The bypass class's rule (to main), while the groups exist."""
        if not self.active:
            return []
        return [KernelRule(fam, BYPASS_CLASS_PRIORITY, None, BYPASS_CLASS_MARK, MARK_MASK,
                           FR_ACT_TO_TBL, MAIN_TABLE) for fam in families]

    def ensure(self) -> list[str]:
        """The groups, before the nft table that names them is loaded. A failure leaves
        classes by app off (status says why); the marking works without them."""
        if self.groups is None:
            return []
        try:
            made = self.groups.ensure()
        except OSError as exc:
            log.error("cannot create the class groups under %s: %s", self.groups.root,
                      exc.strerror)
            self.active = False
            return []
        fresh = not self.active
        self.active = True
        if fresh and self._rules:
            self._rescan()
        self._watching()
        return made

    def remove(self) -> list[str]:
        """The state's marking is gone: the watcher stops, the rules go, processes go
        back where they came from, the groups go."""
        self._watch.close()
        self._rules.clear()
        was, self.active = self.active, False
        if self.groups is None or not was:
            return []
        out = self.groups.remove(self.destination)
        self._origins.clear()
        return out

    def drift(self) -> list[str]:
        if self.active and self.groups is not None and not self.groups.present():
            return [f"class groups under {self.groups.root}"]
        return []

    def leftovers(self) -> list[str]:
        """At start and --cleanup: this helper's root of an earlier run, and roots of
        helpers whose named network namespace is gone."""
        if self.groups is None:
            return []
        found = []
        for groups in (self.groups, *self.groups.stale_roots()):
            if groups.exists():
                found += groups.remove(self.destination)
        return found

    def close(self) -> None:
        self._watch.close()

    # ---- where a process goes back to -----------------------------------------------
    def destination(self, pid: int) -> str:
        """Where a process leaving the groups goes: where the helper took it from;
        else (a child started inside, or moved by an earlier run) the group of its
        nearest ancestor outside Braid's; else the root."""
        assert self.groups is not None
        seen: set[int] = set()
        p: int | None = pid
        while p is not None and p > 1 and p not in seen:
            seen.add(p)
            origin = self._origins.get(p)
            if origin is not None and procs.start_time(p) == origin[0]:
                return origin[1]
            if p != pid:
                where = cgroups.process_cgroup(p)
                if where is not None and not self.groups.contains(where) and \
                        not where.startswith(f"{cgroups.ROOT_NAME}-netns-"):
                    return where
            p = cgroups.parent(p)
        return ""

    # ---- move -----------------------------------------------------------------------
    def move(self, uid: int, req: MoveRequest) -> dict[str, Any]:
        groups = self._groups()
        checked = []
        for pid in req.pids:
            ident = procs.ident(pid)
            owner = procs.real_uid(pid)
            if ident is None or owner is None:
                raise HelperError(Code.NO_PROCESS, f"no process {pid}",
                                  "check the pid: the process may have exited; nothing was "
                                  "moved")
            if uid != 0 and owner != uid:
                # Neither whose it is nor what it runs: only that it is not the peer's.
                raise HelperError(Code.NOT_YOURS, f"process {pid} is not yours: only root "
                                  "may move another user's processes",
                                  "move your own processes (or ask root); nothing was moved")
            if procs.netns_of(pid) != self._netns:
                raise HelperError(Code.BAD_REQUEST, f"process {pid} is in another network "
                                  "namespace: a class means something only in this helper's",
                                  "move processes of this namespace (for a lab: braid run "
                                  "--lab L); nothing was moved")
            checked.append(ident)
        moved, gone = [], []
        for ident in checked:
            if self._place(groups, ident, req.cls):
                moved.append(ident.pid)
            else:
                gone.append(ident.pid)
        log.info("uid %d moved %d processes to %s", uid, len(moved),
                 req.cls if req.cls is not None else "where they came from")
        return {"class": req.cls, "moved": moved, "gone": gone}

    def _groups(self) -> Groups:
        if self.groups is None:
            raise HelperError(Code.NO_CLASSES, "traffic classes by app are not available "
                              f"here: {self.view.why}",
                              "see braid-helper's log; classes by port and volume still work")
        if not self.active:
            raise HelperError(Code.NO_CLASSES, *NOT_CONNECTED)
        return self.groups

    def _place(self, groups: Groups, ident: procs.ProcId, cls: str | None) -> bool:
        """Move one process; False if it is gone. Raises for what the kernel refuses."""
        pid = ident.pid
        here = cgroups.process_cgroup(pid)
        if here is None:
            return False
        if cls is None:
            if groups.contains(here):
                to = self.destination(pid)
                if not groups.move_out(pid, to):
                    return False
                self._origins.pop(pid, None)
            return procs.alive(ident)
        if not groups.contains(here):
            self._remember(pid, ident.start, here)
        try:
            groups.move(pid, groups.path(cls))
        except ProcessLookupError:
            return False
        except OSError as exc:
            raise HelperError(Code.BAD_REQUEST, f"process {pid} cannot be moved "
                              f"({exc.strerror}): a kernel thread, or one that is exiting",
                              "move an ordinary program; nothing else was changed") from None
        if not procs.alive(ident):
            # The pid was reused between the check and the move: that stranger goes back.
            groups.move_out(pid, self.destination(pid))
            return False
        return True

    def _remember(self, pid: int, start: int, cgroup: str) -> None:
        if len(self._origins) >= MAX_ORIGINS:
            self._origins = {p: o for p, o in self._origins.items()
                             if procs.start_time(p) == o[0]}
        self._origins[pid] = (start, cgroup)

    # ---- rules ------------------------------------------------------------------------
    def set_rules(self, uid: int, rules: tuple[ClassRule, ...]) -> dict[str, Any]:
        """The peer's rules, replacing what it sent before; its running programs that
        match (and are in no class yet) are moved at once."""
        if rules:
            self._rules[uid] = {r.exe: r for r in rules}
        else:
            self._rules.pop(uid, None)
        moved = self._rescan(only=uid) if self.active else 0
        self._watching()
        log.info("uid %d: %d class rules (%d running programs moved)", uid, len(rules), moved)
        return {"rules": len(rules), "moved": moved, "active": self.active}

    def rules_of(self, uid: int) -> int:
        return len(self._rules.get(uid, {}))

    def _watching(self) -> None:
        if self.active and self._rules:
            if not self._watch.running:
                try:
                    self._watch.start()
                    self.watch_error = None
                except OSError as exc:
                    self.watch_error = f"process events unavailable ({exc.strerror or exc})"
                    log.error("%s: saved rules apply only to programs running when they "
                              "are sent", self.watch_error)
        else:
            self._watch.close()

    def _match(self, pid: int) -> str | None:
        """The class a rule gives ``pid`` (its owner's rules, its program, this
        network namespace), if any."""
        uid = procs.real_uid(pid)
        rules = self._rules.get(uid) if uid is not None else None
        if not rules:
            return None
        exe = procs.exe(pid)
        rule = rules.get(exe) if exe is not None else None
        if rule is None or procs.netns_of(pid) != self._netns:
            return None
        return rule.cls

    def _exec(self, pid: int, started: float) -> None:
        seen = time.monotonic()
        cls = self._match(pid)
        if cls is None or not self.active or self.groups is None:
            return
        here = cgroups.process_cgroup(pid)
        if here is None or self.groups.contains(here):
            return  # gone, or placed explicitly (braid run): that wins
        ident = procs.ident(pid)
        if ident is None:
            return
        with contextlib.suppress(HelperError):
            if self._place(self.groups, ident, cls):
                self.rule_moves += 1
                # The figure bench_classes reads: most of it is the move's RCU grace
                # period (docs/classes.md), the rest seeing the event.
                log.debug("pid %d: moved to %s %.2f ms after its exec (seen after %.2f ms)",
                          pid, cls, (time.monotonic() - started) * 1000,
                          (seen - started) * 1000)

    def _lost(self) -> None:
        self._rescan()

    def _rescan(self, only: int | None = None) -> int:
        """Move running programs that match a rule (of ``only``'s, or everyone's with
        rules) and are in no class group."""
        if not self.active or self.groups is None:
            return 0
        t0 = time.perf_counter()
        moved = 0
        for pid in procs.pids():
            if only is not None and procs.real_uid(pid) != only:
                continue
            cls = self._match(pid)
            if cls is None:
                continue
            here = cgroups.process_cgroup(pid)
            ident = procs.ident(pid)
            if here is None or ident is None or self.groups.contains(here):
                continue
            with contextlib.suppress(HelperError):
                moved += self._place(self.groups, ident, cls)
        log.debug("rules applied to running programs: %d moved (%.1f ms)", moved,
                  (time.perf_counter() - t0) * 1000)
        return moved

    # ---- status ---------------------------------------------------------------------
    def status(self, uid: int, flows: dict[str, int], *, members: bool = True) -> ClassesStatus:
        counts = {}
        if members and self.active and self.groups is not None:
            counts = {c: len(self.groups.members(c)) for c in APP_CLASSES}
        why = self.view.why if self.groups is None else self.watch_error
        return ClassesStatus(
            available=self.groups is not None, why=why, root=self.root,
            groups=self.active and self.groups is not None and (
                not members or self.groups.present()),
            watching=self._watch.running, rules=self.rules_of(uid), members=counts,
            flows=flows)


"""Bring the kernel to a desired state, touching only what differs; keep it there (drift
repair); find leftovers and remove them, or adopt a guard; report what is held.

One reconcile runs at a time (``lock``): requests, the grace timer, the supervisor's
restarts and drift repairs all go through here.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyroute2 import AsyncIPRoute

from app.helper import conntrack, copies, guard, mptcp, netlink, nft, procs, uapi
from app.helper.backend import Backend, UserspaceBackend, choose
from app.helper.classes import Classes
from app.helper.dns import RESOLV_CONF, DnsManager
from app.helper.errors import HelperError, KernelError
from app.helper.journal import Journal
from app.helper.statedir import StateDir
from app.helper.watch import Watch
from app.wire.doc import StateError
from app.wire.errors import Code
from app.wire.state import (
    EMPTY_STATE,
    GUARD_ALLOW_PRIORITY,
    GUARD_BLOCK_PRIORITY,
    GUARD_PRIORITY_MAX,
    GUARD_PRIORITY_MIN,
    GUARD_TABLE,
    IFACE_RE,
    DesiredState,
    GuardState,
    parse_guard,
)
from app.wire.status import (
    ClassesStatus,
    DnsStatus,
    GuardStatus,
    HelperStatus,
    PeerStatus,
    TunnelStatus,
)

log = logging.getLogger("braid.helper")

MAX_REVIVE_ATTEMPTS = 5
VERIFY_INTERVAL_S = 5.0  # the timer behind the events: what events cannot see (UAPI)
REPAIR_SPACING_S = 0.02  # between two event-driven checks: a tool fighting us costs little
HELD_CLIENT_LEFT, HELD_ADOPTED = "client_left", "adopted"


@dataclass(frozen=True)
class _Held:
    """What the last successful reconcile left in the kernel."""

    links: dict[str, int]  # tunnel -> link index
    routes: dict[netlink.RouteKey, netlink.KernelRoute]
    rules: list[netlink.KernelRule]


def _is_own_rule(rule: netlink.KernelRule) -> bool:
    """One of the helper's own rules (the guard's, the bypass class's, the copies'): 5290..5298,
    never counted as the caller's."""
    return GUARD_PRIORITY_MIN <= rule.priority <= GUARD_PRIORITY_MAX


def _copies6(state: DesiredState) -> bool:
    """Realtime copies for IPv6 too: the tunnels carry it and the kernel has it."""
    return netlink.ipv6_enabled() and any(":" in a for t in state.tunnels for a in t.addresses)


def _is_guard_rule(rule: netlink.KernelRule) -> bool:
    """The guard's (5290, 5298): what a restarted helper adopts. The bypass class's
    5291 is not: it goes with the classes."""
    return rule.priority in (GUARD_ALLOW_PRIORITY, GUARD_BLOCK_PRIORITY)


class Reconciler:
    def __init__(self, backend: str, state_dir: Path,
                 verify_interval: float = VERIFY_INTERVAL_S, *,
                 classes: Classes | None = None, dns: str = "auto",
                 resolv_conf: Path = RESOLV_CONF) -> None:
        self.dir = StateDir(state_dir)
        # Traffic classes by app (the groups live while a marking is held); without a
        # view of cgroup v2 (main.py makes it) they are off and the marking works alone.
        self.classes = classes if classes is not None else Classes(None)
        self._acct = conntrack.Accounting()
        self.mptcp = mptcp.Mptcp()  # endpoints per tunnel (app/helper/mptcp.py)
        self.journal = Journal(self.dir)
        # The system's DNS (app/helper/dns.py); resolv_conf: dns.check_target's.
        self.dns = DnsManager(self.dir, dns, resolv_conf)
        self.backend: Backend = choose(backend, self.dir, self._died)
        self.state: DesiredState = EMPTY_STATE
        self.guard_held: str | None = None  # why a guard is held without its client
        self.lock = asyncio.Lock()
        self.recovered: list[str] = []
        self.verify_interval = verify_interval
        self.repairs: list[str] = []  # drift found and repaired, for the log and tests
        self._loaded: dict[str, str] = {}  # nft table -> the ruleset the helper loaded
        self._listed: dict[str, str | None] = {}  # nft table -> its listing after the load
        self._held: _Held | None = None  # what the last apply set; None: ask the kernel
        self._journaled: dict[str, Any] | None = None
        self._conntrack = conntrack.Flusher()
        self._revivers: dict[str, asyncio.Task[None]] = {}
        self._closing = False
        self._watch: Watch | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._dirty = asyncio.Event()
        self._dirty_kinds: set[str] = set()  # what the events said changed

    # ---- apply -----------------------------------------------------------------------
    async def apply(self, new: DesiredState, *, held: str | None = None) -> list[str]:
        """Bring the kernel to ``new``, or leave it as it was: on any failure, a bug
        included, the previous state is reconciled again (links, routes, rules, nft and
        each device's WireGuard configuration). ``held``: why a guard stays without its
        client (None: a client applied it)."""
        async with self.lock:
            old = self.state
            fast = self._tunnels_held(new)
            if not fast:
                await self._check_addresses(new)
            try:
                changes = await self._reconcile(new, fast=fast, flush=True)
            except Exception as exc:
                if isinstance(exc, HelperError):
                    log.error("apply failed: %s; going back to the previous state", exc.what)
                else:
                    log.exception("apply failed (a bug); going back to the previous state")
                try:
                    await self._reconcile(old)
                except Exception as again:
                    what = again.what if isinstance(again, HelperError) else repr(again)
                    log.error("could not restore the previous state either: %s", what)
                    self.state = old
                if isinstance(exc, HelperError):
                    raise
                raise HelperError(
                    Code.INTERNAL,
                    f"internal error in braid-helper ({type(exc).__name__}); the previous "
                    "state was restored",
                    "see braid-helper's log, and report it",
                ) from exc
            finally:
                await self._write_journal()
            self.guard_held = held if new.guard is not None else None
            for change in changes:
                log.info("%s", change)
            return changes

    async def down(self) -> list[str]:
        return await self.apply(EMPTY_STATE)

    async def release(self) -> list[str]:
        """The client left and its grace period is over: remove its state, but keep a
        guard (fail closed) until someone says otherwise."""
        if self.state.guard is None:
            return await self.down()
        log.info("keeping the guard: only a disconnect (down), a state without a guard, "
                 "--cleanup or SIGTERM removes it")
        dns = self.state.dns.held() if self.state.dns is not None else None
        return await self.apply(DesiredState(guard=self.state.guard.held(), dns=dns),
                                held=HELD_CLIENT_LEFT)

    def _tunnels_held(self, new: DesiredState) -> bool:
        """Whether ``new`` has the tunnels of the last apply, each link still there with
        the index its routes point at (one ioctl per link, no dump). Then nothing about
        the tunnels needs a look, and routes and rules can be diffed against what the
        last apply set (the fast path: a switch)."""
        held = self._held
        if held is None or new.tunnels != self.state.tunnels:
            return False
        for tunnel in new.tunnels:
            try:
                if socket.if_nametoindex(tunnel.name) != held.links.get(tunnel.name):
                    return False
            except OSError:
                return False
        return True

    async def _check_addresses(self, new: DesiredState) -> None:
        """Refuse (before any change) a tunnel address another link already has: the
        kernel would take it, and traffic for that address would follow the tunnel."""
        if not any(t.addresses for t in new.tunnels):
            return
        async with AsyncIPRoute() as ipr:
            links = await netlink.braid_link_info(ipr)
            addrs = await netlink.addresses(ipr)
        ours = [link.index for link in links.values()]
        for i, tunnel in enumerate(new.tunnels):
            taken = netlink.taken_elsewhere(tunnel.addresses, addrs, ours)
            for j, addr in enumerate(tunnel.addresses):
                if addr in taken:
                    try:
                        where = socket.if_indextoname(taken[addr])
                    except OSError:
                        where = f"link {taken[addr]}"
                    raise HelperError(
                        Code.BAD_STATE,
                        f"tunnels[{i}].addresses[{j}]: {addr} is already an address of "
                        f"{where}, which is not Braid's",
                        "give the tunnel an address of its own; nothing was changed",
                    )

    @contextlib.contextmanager
    def _own_changes(self) -> Iterator[None]:
        if self._watch is None:
            yield
            return
        with self._watch.quiet():
            yield

    async def _reconcile(self, new: DesiredState, *, fast: bool = False,
                         tunnels: bool = True, flush: bool = False) -> list[str]:
        """Bring the kernel to ``new``. ``fast``: trust what the last apply set (see
        :meth:`_tunnels_held`) instead of reading it back from the kernel. ``tunnels``
        False (a drift repair that found the tunnels intact): links and devices are
        taken as the last reconcile left them, routes and rules read from the kernel.
        ``flush``: the state's conntrack flush, which only the apply that brings it
        does: a repair, a rollback or a tunnel's restart repeating it would cut every
        running flow of those paths again."""
        held, self._held = self._held, None  # until this one is through
        changes: list[str] = []
        fams = netlink.families()
        with self._own_changes():
            async with AsyncIPRoute() as ipr:
                if fast and held is not None:
                    index = held.links
                    have_routes, have_rules = held.routes, held.rules
                    links: dict[str, netlink.Link] = {}
                elif not tunnels and held is not None and new.tunnels == self.state.tunnels:
                    index = held.links
                    links = {}
                    have_routes = await netlink.dump_routes(ipr)
                    have_rules = await netlink.braid_rules(ipr)
                else:
                    changes += await self._ensure_tunnels(ipr, new)
                    links = await netlink.braid_link_info(ipr)
                    missing = [t.name for t in new.tunnels if t.name not in links]
                    if missing:
                        raise KernelError(f"{missing[0]}: its link vanished while it was "
                                          "being configured")
                    index = {t.name: links[t.name].index for t in new.tunnels}
                    have_routes = await netlink.dump_routes(ipr)
                    have_rules = await netlink.braid_rules(ipr)
                if new.marking is not None:
                    # The class groups first: the nft table names them. Any made anew
                    # has a new id, so the table loads again.
                    made = self.classes.ensure()
                    if made:
                        self._loaded.pop(nft.TABLE, None)
                        changes += made
                want_routes = netlink.want_routes(new.tables, index)
                want_rules = netlink.want_rules(new.rules) + self._own_rules(new, fams)
                if new.guard is not None:
                    want_routes |= guard.routes(new.guard, index, fams, new.tunnels)
                # What moves traffic first, each step in place before the next relies on
                # it: routes, then rules pointing at them (new before old: no gap), then
                # the nft tables (the marking stamps the new path's mark), then the flush
                # that sends old flows through it. Only then what is gone.
                changes += await netlink.put_routes(ipr, want_routes, have_routes)
                changes += await netlink.add_rules(ipr, want_rules, have_rules)
                changes += self._acct.want(new.marking is not None
                                           and new.marking.bulk_after_bytes is not None)
                # The switch itself (the marking), and the flush that sends the running
                # flows through it, before MPTCP's endpoints: those change with the
                # paths' health, so at every failover, and take 20 ms of generic netlink
                # (measured) that the moved flows would otherwise wait on the dead path.
                changes += self._ensure_nft(new, mptcp_table=False)
                if flush:
                    changes += await self._flush(new)
                    # A move only changes a flow between two spread paths, both routed
                    # (marking.moves stays within marking.spread): dying here leaks
                    # nothing, the flow stays on one of them.
                    changes += await self._move(new)
                # MPTCP endpoints go before the table translating their addresses does,
                # and come after it (app/helper/mptcp.py: what leaks if we die here).
                # Unchanged since the last apply, on tunnels it held: nothing to do (a
                # drift repair is never fast, so it looks again).
                same = fast and held is not None and new.mptcp == self.state.mptcp
                if not same:
                    changes += await self.mptcp.drop(ipr, new.mptcp, index)
                changes += self._ensure_nft(new, mptcp_table=True)
                if not same:
                    changes += await self.mptcp.put(ipr, new.mptcp, index)
                # DNS once its servers are routed (and while links it reverts still exist).
                changes += await self.dns.apply(new.dns, index)
                changes += await netlink.drop_rules(ipr, want_rules, have_rules)
                changes += await netlink.drop_routes(ipr, want_routes, have_routes)
                wanted = {t.name for t in new.tunnels}
                stale = sorted(({t.name for t in self.state.tunnels} | set(links)) - wanted)
                gone = await asyncio.gather(*(self.backend.remove(ipr, n) for n in stale))
                changes += [f"{n}: removed" for n, g in zip(stale, gone, strict=True) if g]
        if new.marking is None:
            # The marking is gone: so are the classes (processes go back, rules go).
            changes += self.classes.remove()
        self.state = new
        self._held = _Held(index, want_routes, want_rules)
        return changes

    async def _ensure_tunnels(self, ipr: AsyncIPRoute, new: DesiredState) -> list[str]:
        changes: list[str] = []
        # Devices come up side by side: most of the time is wireguard-go starting.
        results = await asyncio.gather(
            *(self.backend.ensure(ipr, t) for t in new.tunnels), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
            changes += result
        links = await netlink.braid_link_info(ipr)
        addrs = await netlink.addresses(ipr)
        for tunnel in new.tunnels:
            link = links.get(tunnel.name)
            changes += await netlink.ensure_link(
                ipr,
                tunnel.name,
                tunnel.addresses,
                tunnel.effective_mtu,
                link,
                # Without MPTCP's addresses (app/helper/mptcp.py keeps them).
                {a for a in addrs.get(link.index, set()) if not mptcp.owns(a)}
                if link else set(),
            )
        return changes

    def _own_rules(self, state: DesiredState, fams: tuple[int, ...]) -> list[netlink.KernelRule]:
        """The helper's own rules for ``state``: the guard's, the bypass class's."""
        out = guard.rules(state.guard, fams) if state.guard is not None else []
        if state.marking is not None:
            out += self.classes.route_rules(fams)
        if state.copies is not None and _copies6(state):
            out += copies.route_rules(state.copies, state.tables, fams)
        return out

    def _rulesets(self, state: DesiredState) -> dict[str, str | None]:
        """Each of Braid's nft tables as ``state`` wants it (None: absent)."""
        allow = state.guard.allow if state.guard is not None else ()
        names = [t.name for t in state.tunnels]
        groups = self.classes.nft_groups() if state.marking is not None else None
        addresses = [a for t in state.tunnels for a in t.addresses]
        return {
            nft.TABLE: None if state.marking is None else nft.render(
                state.marking, names, allow, groups, addresses, copies=state.copies is not None),
            copies.TABLE: None if state.copies is None else copies.render(state.copies, names),
            copies.TABLE6: copies.render(state.copies, names, 6)
            if state.copies is not None and _copies6(state) else None,
            mptcp.TABLE: None if state.mptcp is None else mptcp.render(state.mptcp,
                                                                       state.tunnels),
            guard.TABLE: None if state.guard is None else guard.render(
                state.guard, state.tunnels, bypass_class=groups is not None,
                dns=state.dns is not None),
        }

    def _ensure_nft(self, state: DesiredState, *, mptcp_table: bool) -> list[str]:
        """Each table as ``state`` wants it: ``ip braid_mptcp`` alone (``mptcp_table``),
        or all the others."""
        changes: list[str] = []
        for table, ruleset in self._rulesets(state).items():
            if (table == mptcp.TABLE) != mptcp_table:
                continue
            if ruleset is None:
                # Leftovers went at start (or were adopted, and so loaded by this
                # helper): the table is there only if this helper loaded it.
                if self._loaded.pop(table, None) is not None and nft.delete(table):
                    changes.append(f"removed nft table {table}")
                self._listed.pop(table, None)
            # Unchanged and loaded by us: trust it (drift checks see to the kernel's).
            elif ruleset != (loaded := self._loaded.get(table)):
                self._loaded.pop(table, None)
                marks = None if loaded is None else nft.mark_update(loaded, ruleset, table)
                if marks is not None:  # a switch: only the classes' marks changed
                    nft.update(marks, table)
                else:
                    with self.classes.for_nft():
                        nft.load(ruleset, table)
                self._loaded[table] = ruleset
                self._listed[table] = nft.listing(table)
                changes.append(f"{'changed marks in' if marks else 'loaded'} nft table {table}")
        return changes

    async def _flush(self, state: DesiredState) -> list[str]:
        marking = state.marking
        if marking is None or not marking.flush_marks:
            return []
        await self._conntrack.flush_marks(marking.flush_marks)
        return [f"flushed conntrack entries with mark {m:#x}" for m in marking.flush_marks]

    async def _move(self, state: DesiredState) -> list[str]:
        marking = state.marking
        if marking is None:
            return []
        changes = []
        for src, dst in marking.moves:
            flow = await self._conntrack.move(src, dst)
            changes.append(f"no spread flow left on mark {src:#x} to move" if flow is None else
                           f"moved spread flow {flow.saddr}:{flow.sport} -> "
                           f"{flow.daddr}:{flow.dport} from mark {src:#x} to {dst:#x}")
        return changes

    # ---- drift -----------------------------------------------------------------------
    def start_watching(self) -> None:
        """Kernel events and a timer, both leading to :meth:`verify`."""
        watch = Watch(self._changed, self._braid_indexes)
        watch.start()
        self._watch = watch
        self._watcher = asyncio.get_running_loop().create_task(self._watch_loop())

    def _changed(self, kinds: set[str]) -> None:
        log.debug("kernel events: %s", ", ".join(sorted(kinds)))
        self._dirty_kinds |= kinds
        self._dirty.set()

    def _braid_indexes(self) -> set[int]:
        return set(self._held.links.values()) if self._held is not None else set()

    async def _watch_loop(self) -> None:
        while True:
            timer = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), self.verify_interval)
                timer = False
            self._dirty.clear()
            kinds, self._dirty_kinds = self._dirty_kinds, set()
            if timer:
                self.backend.bound_logs()
            try:
                # An event says what changed: only that kind is compared (a few ms); the
                # timer compares everything, WireGuard's configuration included (which
                # no event announces).
                await self.verify(None if timer or "all" in kinds else kinds)
            except Exception:
                log.exception("checking for drift failed")
            await asyncio.sleep(REPAIR_SPACING_S)

    async def verify(self, kinds: set[str] | None = None) -> list[str]:
        """Compare the kernel with the state (``kinds`` of objects only: "link", "addr",
        "route", "rule", "nft"; None: all); repair what differs. Returns the drift."""
        async with self.lock:
            if self._closing:
                return []
            t0 = time.perf_counter()
            drift, tunnels = await self._drift(kinds)
            t1 = time.perf_counter()
            log.debug("drift check: %.1f ms", (t1 - t0) * 1000)
            if not drift:
                return []
            log.warning("drift: %s; repairing", "; ".join(drift))
            self.repairs += drift
            try:
                # Tunnels intact: their links and devices are not looked at again.
                changes = await self._reconcile(self.state, tunnels=tunnels)
                log.debug("repair: %.1f ms", (time.perf_counter() - t1) * 1000)
            except HelperError as exc:
                log.error("could not repair drift: %s", exc.what)
                return drift
            finally:
                await self._write_journal()
            for change in changes:
                log.info("repaired: %s", change)
            return drift

    async def _drift(self, kinds: set[str] | None) -> tuple[list[str], bool]:
        """How the kernel differs from what the helper set (nothing it does not own),
        looking at ``kinds`` of objects (None: all) and reading only those; and whether
        the tunnels (links, addresses, devices) are among what differs."""
        state, out = self.state, []
        fams = netlink.families()

        def look(*kind: str) -> bool:
            return kinds is None or bool(kinds & set(kind))

        held = self._held
        complete = True
        async with AsyncIPRoute() as ipr:
            if look("link", "addr") or held is None:
                links = await netlink.braid_link_info(ipr)
                addrs = await netlink.addresses(ipr)
                for t in state.tunnels:
                    link = links.get(t.name)
                    if link is None:
                        complete = False
                        # A wireguard-go that died took its link: the supervisor restarts
                        # it, with its backoff. One still running lost its link to someone.
                        if self.backend.running(t.name):
                            out.append(f"link {t.name} is gone")
                        continue
                    if not link.up or link.mtu != t.effective_mtu:
                        out.append(f"link {t.name} is down or has another MTU")
                    want = {str(ipaddress.ip_interface(a)) for a in t.addresses}
                    if {a for a in addrs.get(link.index, set()) if not mptcp.owns(a)} != want:
                        out.append(f"addresses of {t.name}")
                index = {t.name: links[t.name].index for t in state.tunnels if complete}
            else:
                index = held.links
            if kinds is None:  # the timer: what no event announces
                for t in state.tunnels:
                    device = await self.backend.drift(t)
                    if device:
                        self.backend.forget(t.name)
                        out.append(f"{t.name}'s WireGuard configuration: {', '.join(device)}")
            tunnels = bool(out) or not complete
            if complete and look("link", "route"):
                want_routes = netlink.want_routes(state.tables, index)
                if state.guard is not None:
                    want_routes |= guard.routes(state.guard, index, fams, state.tunnels)
                if await netlink.dump_routes(ipr) != want_routes:
                    out.append("routes in Braid's tables")
            if complete and look("addr"):
                out += await self.mptcp.drift(ipr, state.mptcp, index)
            if look("rule"):
                want_rules = netlink.want_rules(state.rules) + self._own_rules(state, fams)
                if Counter(await netlink.braid_rules(ipr)) != Counter(want_rules):
                    out.append("rules at Braid's priorities")
        if look("nft"):
            out += self._nft_drift(state)
        if kinds is None and await self.dns.drifted():  # the timer: nothing announces it
            out.append("DNS (someone changed what the helper set)")
        if kinds is None:  # no event announces a group removed
            out += self.classes.drift()
        return out, tunnels

    def _nft_drift(self, state: DesiredState) -> list[str]:
        out = []
        for table, ruleset in self._rulesets(state).items():
            if ruleset is not None and nft.listing(table) != self._listed.get(table):
                self._loaded.pop(table, None)  # reload it
                out.append(f"nft table {table}")
        return out

    # ---- supervision -----------------------------------------------------------------
    def _died(self, name: str) -> None:
        if self._closing:  # stopping: everything goes anyway
            return
        if name not in self._revivers or self._revivers[name].done():
            self._revivers[name] = asyncio.get_running_loop().create_task(self._revive(name))

    async def _revive(self, name: str) -> None:
        for _ in range(MAX_REVIVE_ATTEMPTS):
            if isinstance(self.backend, UserspaceBackend):
                await asyncio.sleep(self.backend.backoff(name))
            async with self.lock:
                if name not in {t.name for t in self.state.tunnels}:
                    return
                try:
                    changes = await self._reconcile(self.state)
                except HelperError as exc:
                    log.error("%s: restart failed: %s", name, exc.what)
                    continue
                except Exception:
                    log.exception("%s: restart failed (a bug)", name)
                    continue
                finally:
                    await self._write_journal()
                for change in changes:
                    log.info("%s", change)
                return
        log.error("%s: gave up restarting wireguard-go after %d tries", name, MAX_REVIVE_ATTEMPTS)

    async def close(self) -> None:
        self._closing = True
        tasks = [*self._revivers.values(), *([self._watcher] if self._watcher else [])]
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        self._conntrack.close()
        self.classes.close()

    # ---- journal, leftovers, adoption ------------------------------------------------
    async def _write_journal(self) -> None:
        """From what the helper holds (no kernel dumps: a switch waits for this), and
        only when that changed (a switch moves marks and rule targets, which it does not
        record: the scan at start finds Braid's rules and routes by priority and table
        range, so where things point is not needed to remove them)."""
        state = self.state
        doc = {
            "links": sorted(t.name for t in state.tunnels),
            "wireguard_go": self.backend.journal(),
            "tables": sorted(t.id for t in state.tables),
            "rules": sorted({r.priority for r in state.rules}),
            "nft": nft.TABLE in self._loaded,
            "persistent": state.persistent,
            # What a restarted helper needs to keep the kill switch: never a key.
            "guard": None if state.guard is None else {"allow": list(state.guard.allow)},
            "dns": self.dns.journal(),
            "cgroups": self.classes.root if self.classes.active else None,
            "acct_was": self._acct.was,
            "mptcp_was": None if self.mptcp.was is None else self.mptcp.was.as_list(),
        }
        if doc == self._journaled:
            return
        if not (doc["links"] or doc["rules"] or doc["wireguard_go"] or doc["nft"]
                or doc["guard"] or doc["dns"] or doc["cgroups"]
                or doc["acct_was"] is not None or doc["mptcp_was"] is not None):
            self.journal.clear()
        else:
            self.journal.write(doc)
        self._journaled = doc

    async def start(self) -> list[str]:
        """At start: a guard found (journal or kernel) is adopted and kept, everything
        else of Braid's is removed. Returns what was removed."""
        self.journal.prepare()
        doc = self.journal.read() or {}
        kept = await self._guard_found(doc)
        found = await self.remove_leftovers(keep_guard=kept is not None, doc=doc)
        if kept is not None:
            log.warning("adopted the guard of an earlier run (allow %s): traffic stays "
                        "blocked until a client applies a state or disconnects",
                        ", ".join(kept.allow) or "nothing")
            await self.apply(DesiredState(guard=kept, dns=self.dns.applied),
                             held=HELD_ADOPTED)
        return found

    async def _guard_found(self, doc: dict[str, Any]) -> GuardState | None:
        """The guard to adopt: the journal's (the user's intent, even if the kernel lost
        it meanwhile), else one the kernel still holds, its allowed networks read from
        its 5290 rules (allowing nothing if none can be read: fail closed)."""
        journaled = doc.get("guard")
        if isinstance(journaled, dict):
            try:
                return parse_guard({"allow": journaled.get("allow", [])}, "guard", set())
            except StateError as exc:
                log.warning("the journal's guard is unreadable (%s): allowing nothing", exc)
                return GuardState()
        async with AsyncIPRoute() as ipr:
            rules = [r for r in await netlink.braid_rules(ipr) if _is_guard_rule(r)]
            routes = [r for r in await netlink.braid_routes(ipr) if r.table == GUARD_TABLE]
        if not (rules or routes or nft.listing(guard.TABLE) is not None):
            return None
        allow = sorted({r.dst for r in rules if r.priority == GUARD_ALLOW_PRIORITY and r.dst})
        try:
            return parse_guard({"allow": allow}, "guard", set())
        except StateError:
            return GuardState()

    async def remove_leftovers(self, *, keep_guard: bool = False,
                               doc: dict[str, Any] | None = None) -> list[str]:
        """Remove everything Braid's in this network namespace (journal and scan),
        the guard too unless ``keep_guard``; returns what was found. Used at start and by
        ``--cleanup``."""
        self.journal.prepare()
        found: list[str] = []
        doc = doc if doc is not None else (self.journal.read() or {})
        if doc.get("corrupt"):
            found.append("unreadable journal")
        names: set[str] = set(doc.get("links") or [])
        for entry in doc.get("wireguard_go") or []:
            try:
                proc = procs.ProcId(int(entry["pid"]), int(entry["start"]))
                iface = str(entry["iface"])
            except (KeyError, TypeError, ValueError):
                continue
            # Only a wireguard-go of this namespace serving that interface: the pid may
            # be anyone's by now, and other labs run theirs.
            if IFACE_RE.match(iface) and procs.serves(proc, iface) and procs.stop(proc):
                found.append(f"wireguard-go pid {proc.pid} ({iface})")
            names.add(iface)
        for iface, proc in procs.wireguard_go_here().items():
            if IFACE_RE.match(iface) and procs.serves(proc, iface) and procs.stop(proc):
                found.append(f"wireguard-go pid {proc.pid} ({iface})")
                names.add(iface)
        async with AsyncIPRoute() as ipr:
            for name in sorted(await netlink.braid_links(ipr)):
                await netlink.delete_link(ipr, name)
                found.append(f"link {name}")
                names.add(name)
            for route in await netlink.braid_routes(ipr):
                if not (keep_guard and route.table == GUARD_TABLE):
                    await netlink.delete_route(ipr, route)
                    found.append(f"route {route.dst} table {route.table}")
            for rule in await netlink.braid_rules(ipr):
                if not (keep_guard and _is_guard_rule(rule)):
                    await netlink.delete_rule(ipr, rule)
                    found.append(rule.describe())
        # MPTCP's endpoints (their subflows close) before the table translating them.
        found += await self.mptcp.leftovers(doc.get("mptcp_was"))
        tables = [nft.TABLE, copies.TABLE, copies.TABLE6, mptcp.TABLE] + (
            [] if keep_guard else [guard.TABLE])
        found += [f"nft table {table}" for table in tables if nft.delete(table)]
        # The DNS stays the tunnels' while the guard does (app/helper/dns.py says why).
        found += (await self.dns.leftovers(doc, keep=keep_guard))[0]
        # The class groups (processes back where they came from) and the byte counters'
        # sysctl as it was before an earlier run turned it on.
        found += self.classes.leftovers()
        was = doc.get("acct_was")
        if isinstance(was, int) and not isinstance(was, bool) and was in (0, 1):
            with contextlib.suppress(HelperError):
                found += self._acct.restore(was)
        for name in sorted(names):
            sock = uapi.socket_path(name)
            if IFACE_RE.match(name) and sock.exists() and not uapi.answers(name):
                with contextlib.suppress(FileNotFoundError):
                    sock.unlink()
        self.journal.clear()
        self._journaled = None
        if keep_guard and (listed := nft.listing(guard.TABLE)) is not None:
            # Adopted: the apply that follows replaces it in one transaction, no gap.
            self._loaded[guard.TABLE] = "(adopted)"
            self._listed[guard.TABLE] = listed
        return found

    # ---- status ----------------------------------------------------------------------
    async def status(self, *, just_applied: bool = False, uid: int = 0) -> HelperStatus:
        """What the kernel holds. ``just_applied``: the reply to an apply, which has just
        put the links up, the rules in and the tables loaded: counted from that record
        rather than read back (dumps, ~2 ms of a ~4 ms switch). The status verb always
        reads the kernel. ``owner_connected`` and ``grace_remaining_s`` are the
        server's to fill in; ``uid``: the asking peer's (its rules are counted)."""
        now = time.time()
        tunnels = []
        state = self.state
        held = self._held if just_applied else None
        if held is not None:
            rules = list(held.rules)
            up = set(held.links)
            routes = list(held.routes.values())
            listed = {t: self._listed.get(t) for t in self._loaded}
        else:
            async with AsyncIPRoute() as ipr:
                rules = await netlink.braid_rules(ipr)
                links = await netlink.braid_link_info(ipr)
                routes = await netlink.braid_routes(ipr)
            up = {name for name, link in links.items() if link.up}
            listed = {t: nft.listing(t) for t in (nft.TABLE, guard.TABLE)}
        for t in state.tunnels:
            stats = await self.backend.stats(t.name)
            peer_stats = stats.peers if stats else ()
            ages = [a for a in (uapi.handshake_age(p, now) for p in peer_stats) if a is not None]
            tunnels.append(TunnelStatus(
                name=t.name,
                backend=self.backend.name,
                up=stats is not None and t.name in up,
                pid=self.backend.pid(t.name),
                restarts=self.backend.restarts(t.name),
                handshake_age_s=min(ages) if ages else None,
                rx_bytes=sum(p.rx_bytes for p in peer_stats),
                tx_bytes=sum(p.tx_bytes for p in peer_stats),
                peers=tuple(PeerStatus(p.public_key, p.endpoint, uapi.handshake_age(p, now),
                                       p.rx_bytes, p.tx_bytes) for p in peer_stats),
            ))

        def intact(table: str) -> bool:
            return listed.get(table) is not None and listed.get(table) == self._listed.get(table)

        return HelperStatus(
            backend=self.backend.name,
            persistent=state.persistent,
            owner_connected=False,
            grace_remaining_s=None,
            tunnels=tuple(tunnels),
            tables=tuple(sorted({r.table for r in routes if r.table != GUARD_TABLE})),
            rules=sum(1 for r in rules if not _is_own_rule(r)),
            marking=state.marking is not None and intact(nft.TABLE),
            recovered=tuple(self.recovered),
            guard=self._guard_status(rules, routes, intact(guard.TABLE)),
            classes=self._classes_status(uid, read=not just_applied and intact(nft.TABLE)),
            dns=self._dns_status(intact(guard.TABLE)),
            spread_flows={} if just_applied else await self._spread_flows(),
        )

    async def _spread_flows(self) -> dict[int, int]:
        marking = self.state.marking
        if marking is None or not marking.spread:
            return {}
        counts = dict.fromkeys(marking.spread, 0)
        for flow in await self._conntrack.spread_flows(marking.spread):
            counts[flow.mark] = counts.get(flow.mark, 0) + 1
        return counts

    def _dns_status(self, guard_nft: bool) -> DnsStatus | None:
        dns, mechanism = self.state.dns, self.dns.mechanism
        if dns is None or mechanism is None:
            return None
        blocked = nft.counter(guard.TABLE, guard.DNS_COUNTER) if guard_nft else None
        return DnsStatus(
            mechanism=mechanism.name,
            active=mechanism.active(),
            held=self.guard_held,
            servers=dns.all_servers(),
            domains=dns.all_domains(),
            via=dns.via,
            blocked_queries=blocked or 0,
        )

    def _classes_status(self, uid: int, *, read: bool) -> ClassesStatus:
        """``read``: count the flows (one nft listing) and the groups' members: not on
        an apply's reply, which a switch waits for."""
        flows = {}
        if read:
            flows = {k: v for k, v in nft.counters().items()
                     if k.startswith("app_") or k in (nft.COUNTER_SELECTOR,
                                                       nft.COUNTER_VOLUME, nft.COUNTER_DEFAULT)}
        return self.classes.status(uid, flows, members=read)

    def _guard_status(self, rules: list[netlink.KernelRule],
                      routes: list[netlink.KernelRoute], nft_ok: bool) -> GuardStatus | None:
        g = self.state.guard
        if g is None:
            return None
        fams = netlink.families()
        want_rules = guard.rules(g, fams)
        want_routes = [r for r in guard.routes(g, {}, fams).values()
                       if r.kind == netlink.RTN_UNREACHABLE]
        routing = set(want_rules) <= set(rules) and all(r in routes for r in want_routes)
        via = g.via if g.via is not None and any(
            r.table == GUARD_TABLE and r.kind == netlink.RTN_UNICAST for r in routes) else None
        return GuardStatus(
            active=nft_ok and routing,
            held=self.guard_held,
            allow=g.allow,
            via=via,
            dropped_packets=(nft.counter(guard.TABLE, guard.COUNTER) or 0) if nft_ok else 0,
            nft=nft_ok,
            routing=routing,
        )

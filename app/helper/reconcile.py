"""Bring the kernel to a desired state, touching only what differs; find and remove
leftovers; report what is held.

One reconcile runs at a time (``lock``): requests, the grace timer and the supervisor's
restarts all go through here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyroute2 import AsyncIPRoute

from app.helper import conntrack, netlink, nft, procs, uapi
from app.helper.backend import Backend, UserspaceBackend, choose
from app.helper.errors import HelperError
from app.helper.journal import Journal
from app.wire.state import EMPTY_STATE, IFACE_RE, DesiredState, Marking
from app.wire.status import HelperStatus, PeerStatus, TunnelStatus

log = logging.getLogger("braid.helper")

MAX_REVIVE_ATTEMPTS = 5


@dataclass(frozen=True)
class _Held:
    """What the last successful reconcile left in the kernel."""

    links: dict[str, int]  # tunnel -> link index
    routes: dict[netlink.RouteKey, netlink.KernelRoute]
    rules: list[netlink.KernelRule]


class Reconciler:
    def __init__(self, backend: str, state_dir: Path) -> None:
        self.journal = Journal(state_dir)
        self.backend: Backend = choose(backend, state_dir, self._died)
        self.state: DesiredState = EMPTY_STATE
        self.lock = asyncio.Lock()
        self.recovered: list[str] = []
        self._nft_loaded: str | None = None
        self._held: _Held | None = None  # what the last apply set; None: ask the kernel
        self._journaled: dict[str, Any] | None = None
        self._conntrack = conntrack.Flusher()
        self._revivers: dict[str, asyncio.Task[None]] = {}
        self._closing = False

    # ---- apply -----------------------------------------------------------------------
    async def apply(self, new: DesiredState) -> list[str]:
        async with self.lock:
            old = self.state
            try:
                changes = await self._reconcile(new, fast=self._tunnels_held(new))
            except HelperError as exc:
                log.error("apply failed: %s; going back to the previous state", exc.what)
                try:
                    await self._reconcile(old)
                except HelperError as again:
                    log.error("could not restore the previous state either: %s", again.what)
                    self.state = old
                raise
            finally:
                await self._write_journal()
            for change in changes:
                log.info("%s", change)
            return changes

    async def down(self) -> list[str]:
        return await self.apply(EMPTY_STATE)

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

    async def _reconcile(self, new: DesiredState, *, fast: bool = False) -> list[str]:
        """Bring the kernel to ``new``. ``fast``: trust what the last apply set (see
        :meth:`_tunnels_held`) instead of reading it back from the kernel."""
        held, self._held = self._held, None  # until this one is through
        changes: list[str] = []
        async with AsyncIPRoute() as ipr:
            if fast and held is not None:
                index = held.links
                have_routes, have_rules = held.routes, held.rules
                links: dict[str, netlink.Link] = {}
            else:
                changes += await self._ensure_tunnels(ipr, new)
                links = await netlink.braid_link_info(ipr)
                index = {t.name: links[t.name].index for t in new.tunnels}
                have_routes = await netlink.dump_routes(ipr)
                have_rules = await netlink.braid_rules(ipr)
            want_routes = netlink.want_routes(new.tables, index)
            want_rules = netlink.want_rules(new.rules)
            # What moves traffic first, each step in place before the next relies on it:
            # routes, then rules pointing at them (new before old: no gap), then the
            # marking that stamps the new path's mark, then the flush that sends old flows
            # through it. Only then what is gone, so nothing points at it any more.
            changes += await netlink.put_routes(ipr, want_routes, have_routes)
            changes += await netlink.add_rules(ipr, want_rules, have_rules)
            changes += self._ensure_nft(new.marking)
            changes += await self._flush(new.marking)
            changes += await netlink.drop_rules(ipr, want_rules, have_rules)
            changes += await netlink.drop_routes(ipr, want_routes, have_routes)
            wanted = {t.name for t in new.tunnels}
            stale = ({t.name for t in self.state.tunnels} | set(links)) - wanted
            gone = await asyncio.gather(*(self.backend.remove(ipr, n) for n in sorted(stale)))
            changes += [f"{n}: removed" for n, g in zip(sorted(stale), gone, strict=True) if g]
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
                addrs.get(link.index, set()) if link else set(),
            )
        return changes

    def _ensure_nft(self, marking: Marking | None) -> list[str]:
        changes: list[str] = []
        if marking is None:
            # Leftovers went at start, so the table is there only if this helper loaded it.
            if self._nft_loaded is not None and nft.delete():
                changes.append("removed nft table inet braid")
            self._nft_loaded = None
            return changes
        ruleset = nft.render(marking)
        # Unchanged and loaded by us: trust it (checking costs a process per apply).
        if ruleset != self._nft_loaded:
            nft.load(ruleset)
            self._nft_loaded = ruleset
            changes.append("loaded nft table inet braid")
        return changes

    async def _flush(self, marking: Marking | None) -> list[str]:
        if marking is None or not marking.flush_marks:
            return []
        await self._conntrack.flush_marks(marking.flush_marks)
        return [f"flushed conntrack entries with mark {m:#x}" for m in marking.flush_marks]

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
                finally:
                    await self._write_journal()
                for change in changes:
                    log.info("%s", change)
                return
        log.error("%s: gave up restarting wireguard-go after %d tries", name, MAX_REVIVE_ATTEMPTS)

    async def close(self) -> None:
        self._closing = True
        for task in self._revivers.values():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._conntrack.close()

    # ---- journal and leftovers -------------------------------------------------------
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
            "nft": self._nft_loaded is not None,
            "persistent": state.persistent,
        }
        if doc == self._journaled:
            return
        if not (doc["links"] or doc["rules"] or doc["wireguard_go"] or doc["nft"]):
            self.journal.clear()
        else:
            self.journal.write(doc)
        self._journaled = doc

    async def remove_leftovers(self) -> list[str]:
        """Remove everything Braid's in this network namespace (journal and scan);
        returns what was found. Used at start and by ``--cleanup``."""
        self.journal.prepare()
        found: list[str] = []
        doc = self.journal.read() or {}
        if doc.get("corrupt"):
            found.append("unreadable journal")
        here = procs.own_netns()
        names: set[str] = set(doc.get("links") or [])
        for entry in doc.get("wireguard_go") or []:
            try:
                proc = procs.ProcId(int(entry["pid"]), int(entry["start"]))
                iface = str(entry["iface"])
            except (KeyError, TypeError, ValueError):
                continue
            # Only a process of this namespace: other labs run theirs.
            if procs.netns_of(proc.pid) == here and procs.stop(proc):
                found.append(f"wireguard-go pid {proc.pid} ({iface})")
            names.add(iface)
        for iface, proc in procs.wireguard_go_here().items():
            if IFACE_RE.match(iface) and procs.stop(proc):
                found.append(f"wireguard-go pid {proc.pid} ({iface})")
                names.add(iface)
        async with AsyncIPRoute() as ipr:
            for name in sorted(await netlink.braid_links(ipr)):
                await netlink.delete_link(ipr, name)
                found.append(f"link {name}")
                names.add(name)
            for route in await netlink.braid_routes(ipr):
                await netlink.delete_route(ipr, route)
                found.append(f"route {route.dst} table {route.table}")
            for rule in await netlink.braid_rules(ipr):
                await netlink.delete_rule(ipr, rule)
                found.append(rule.describe())
        if nft.delete():
            found.append("nft table inet braid")
        for name in sorted(names):
            sock = uapi.socket_path(name)
            if IFACE_RE.match(name) and sock.exists() and not uapi.answers(name):
                with contextlib.suppress(FileNotFoundError):
                    sock.unlink()
        self.journal.clear()
        return found

    # ---- status ----------------------------------------------------------------------
    async def status(self, *, just_applied: bool = False) -> HelperStatus:
        """What is held. ``just_applied``: the reply to an apply, which has just put the
        links up and the rules in: counted from that record rather than read back (two
        dumps, ~2 ms of a ~4 ms switch). The status verb always reads the kernel.
        ``owner_connected`` and ``grace_remaining_s`` are the server's to fill in."""
        now = time.time()
        tunnels = []
        held = self._held if just_applied else None
        if held is not None:
            rules = len(held.rules)
            up = set(held.links)
        else:
            async with AsyncIPRoute() as ipr:
                rules = len(await netlink.braid_rules(ipr))
                links = await netlink.braid_link_info(ipr)
            up = {name for name, link in links.items() if link.up}
        for t in self.state.tunnels:
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
        return HelperStatus(
            backend=self.backend.name,
            persistent=self.state.persistent,
            owner_connected=False,
            grace_remaining_s=None,
            tunnels=tuple(tunnels),
            tables=tuple(t.id for t in self.state.tables),
            rules=rules,
            marking=self._nft_loaded is not None,
            recovered=tuple(self.recovered),
        )

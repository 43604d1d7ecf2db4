"""The engine: probe every path, score it, decide per class, have the helper apply it.

One ``Engine`` runs one connection on one asyncio loop (service.py gives it a thread of
its own). The parts, each with one job:

- paths.py: the profile's gateways as paths (resolved, with their measurements);
- probing.py + probe.py + liveness.py + pathstats.py + detect.py: probes, the tunnels'
  counters, health, RTT, loss and the early warning per path;
- steering.py: scores, one decider per class, the desired state and whose flows move;
- connection.py: the state the user sees (connecting ... error), a state machine;
- events.py: what happened, with kinds and sequence numbers;
- this module: the loops that tie them together and the helper supervision.

Event driven: each health change of a path (probing.py: a path suspected, declared down
or back) re-scores the paths and steps every class's decider at once; a tick (10 Hz)
does the same for the slow changes (scores, dwell and hold-down timers) and publishes a
snapshot. When the plan differs from what the helper holds, the new desired state is
sent, and only then. A second helper connection polls tunnel status once a second so a
slow status call never delays a switch.

Faults, and what the engine does (issue: fail closed, always):
- the helper refuses or fails an apply: ERROR (the helper rolled back; what it held
  stays, and so does the kill switch), and the engine retries with backoff; success
  is ``recovered``;
- the helper goes away (its connection closes: it died or restarted): ERROR at once,
  reconnect every 50-500 ms, and on the first hello send the whole desired state
  again (the restarted helper removed the tunnels and kept the kill switch);
- a probe socket fails (ENETUNREACH while a tunnel is recreated): the prober keeps
  going and says so in the path's note; the helper is checked at once;
- disconnect: the tunnels go down through the helper's ``down``; that is the only
  place the engine takes anything down. An error never does.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from app.core import lan
from app.core.classes import send_saved_rules
from app.core.connection import Connection, Transition
from app.core.copies import CopyConfig
from app.core.decide import DecideConfig
from app.core.errors import BraidError
from app.core.events import EventLog
from app.core.grid import sleep_until
from app.core.helper_client import HelperClient, HelperGone, HelperStatus
from app.core.liveness import PASSIVE, SILENT, Health, HealthChange, LivenessConfig
from app.core.model import (
    CLASSES,
    ConnState,
    DnsSnapshot,
    EngineCounters,
    EngineSnapshot,
    ErrorInfo,
    EventKind,
    PathSnapshot,
)
from app.core.netns import NETNS_DIR
from app.core.paths import PathRuntime, make_paths, path_specs, stall_suspected, take_status
from app.core.probe import ProbeRates
from app.core.probing import ProbeSet
from app.core.profiles.model import GatewaySecrets, Profile
from app.core.scoring import LOSS_LIMIT, in_episode
from app.core.steering import Plan, Steering
from app.core.steering import metrics as _metrics
from app.wire.status import DnsStatus

log = logging.getLogger(__name__)

RETRY_BACKOFF_S = (0.05, 0.1, 0.2, 0.5)  # reconnecting to a helper that went away
APPLY_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)  # retrying a refused or failed apply
KEEPALIVE_S = 10.0  # a quiet apply connection still says something (helper idle timeout)
FAILOVER_SHOWN_S = 2.0  # longest FAILING_OVER lasts when the new path does not answer


@dataclass(frozen=True)
class EngineConfig:
    rates: ProbeRates = field(default_factory=ProbeRates)
    liveness: LivenessConfig = field(default_factory=LivenessConfig)
    # None: each class's tuning from the profile (its settings, else DEFAULT_TUNING); set
    # (tests, `braid up --margin ...`): this for every class.
    decide: DecideConfig | None = None
    classes: tuple[str, ...] = CLASSES  # steered classes, most important first
    publish_interval_s: float = 0.1  # snapshots at 10 Hz
    status_interval_s: float = 1.0  # helper status poll
    max_events: int = 200
    # Keep the tunnels and the kill switch when the engine goes ("always on"); the
    # profile's always_on setting turns it on too.
    persistent: bool = False
    lan_refresh_s: float = 2.0  # how often the LAN the kill switch lets out is read again
    spread: bool = True  # new bulk flows over every healthy path (spread.py)
    evade: bool = True  # default routes around a silent path on a shared exit (decide.py)
    copies: CopyConfig | None = None  # None: copies.py's defaults (tests shorten them)


OnSnapshot = Callable[[EngineSnapshot], None]


@dataclass
class _Failover:
    to_path: str
    since: float  # loop time the switch reached the kernel


class Engine:
    """Runs one profile until ``stop`` is set; publishes snapshots through ``on_snapshot``."""

    def __init__(
        self,
        profile: Profile,
        secrets: Mapping[str, GatewaySecrets],
        helper_socket: Path,
        on_snapshot: OnSnapshot,
        *,
        probe_targets: Mapping[str, str] | None = None,
        config: EngineConfig | None = None,
        lab: str | None = None,
        runner: str | None = None,
        netns: str | None = None,
    ) -> None:
        self.profile = profile
        self.cfg = config or EngineConfig()
        self.lab = lab
        self.runner = runner
        self.netns = netns  # the namespace the engine's thread runs in, if not its own
        self.paths: list[PathRuntime] = make_paths(
            profile, path_specs(profile, secrets, probe_targets), self.cfg.liveness)
        self._by_name = {p.name: p for p in self.paths}
        for p in self.paths:
            p.tracker.stall_suspected = functools.partial(stall_suspected, p, self.paths)
        self._helper = HelperClient(helper_socket, on_lost=self._helper_lost)
        self._status_client = HelperClient(helper_socket)
        self._on_snapshot = on_snapshot
        self.conn = Connection()
        self.events = EventLog(self.cfg.max_events)
        self.counters = EngineCounters()
        self._steering: Steering | None = None
        self._helper_dns: DnsStatus | None = None  # the helper's last word on DNS
        self._probes = ProbeSet(self.paths, self.cfg.rates, self._on_probe,
                                self._on_probe_error)
        self._dirty = asyncio.Event()
        self._helper_down = asyncio.Event()  # the helper went away: reconnect
        self._helper_ok = asyncio.Event()  # the helper holds our state (not down)
        self._helper_gen = 0  # +1 each time the helper is reached again after a loss
        self._failovers: list[_Failover] = []  # sent, their new path not heard yet
        self._failovers_unsent = 0  # decided, not yet in the kernel
        self._failover_at = 0.0  # loop time of the last failover decided
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_apply = 0.0
        self._tasks: set[asyncio.Task[None]] = set()

    def class_config(self, cls: str) -> DecideConfig:
        if self.cfg.decide is not None:
            return self.cfg.decide
        t = self.profile.settings.class_tuning(cls)
        return DecideConfig(margin=t.margin, dwell_s=t.dwell_s, hold_down_s=t.hold_down_s,
                            unusable_dwell_s=t.unusable_dwell_s)

    # -- lifecycle ----------------------------------------------------------------

    @property
    def steering(self) -> Steering:
        assert self._steering is not None, "the engine is not running"
        return self._steering

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, steer until ``stop`` is set, then take everything down.

        A failure before anything is in the kernel (no helper, a refused first state)
        raises: there is nothing to protect yet, and the caller says why. Later faults
        are the ERROR state (module docstring)."""
        loop = self._loop = asyncio.get_running_loop()
        settings = self.profile.settings
        self._steering = Steering(self.paths, self.cfg.classes, self.class_config,
                                  self.profile.weights, loop.time(),
                                  shared_exit=self.profile.shared_exit,
                                  evade=self.cfg.evade,
                                  persistent=self.cfg.persistent or settings.always_on,
                                  copies=settings.copies, copy_cfg=self.cfg.copies,
                                  spread=self.cfg.spread)
        # Connecting from before the first await: the control socket already answers,
        # and a view that read the machine's initial DISCONNECTED then would take it for
        # a connection that ended (`braid up` said "it did not connect").
        self._transition(self.conn.start(loop.time()))
        self._steering.guard_allow = await lan.allowed(settings.lan_access, settings.exclude)
        self._steering.bulk_after_mb = settings.bulk_after_mb
        tasks: list[asyncio.Task[None]] = []
        try:
            try:
                await self._helper.hello()
                await self._send(self.steering.next_plan())  # tunnels up, classes closed
                await send_saved_rules(self._helper)  # the class groups exist now
            except BraidError as exc:
                self._fail(ErrorInfo.of(exc))  # said to every view before we go
                raise
            self._helper_ok.set()
            self._probes.start()
            tasks = [asyncio.create_task(self._apply_loop()),
                     asyncio.create_task(self._tick_loop()),
                     asyncio.create_task(self._status_loop()),
                     asyncio.create_task(self._supervise_helper())]
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t is not stopper and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
            stopper.cancel()
        finally:
            self._transition(self.conn.stop(loop.time()))
            for t in [*tasks, *self._tasks]:
                t.cancel()
            await asyncio.gather(*tasks, *self._tasks, return_exceptions=True)
            self._probes.stop()
            try:
                # Only the user takes the tunnels down. An engine that fails on a bug
                # closes its connection instead: the helper's grace period ends in the
                # kill switch holding, not in traffic let out unprotected.
                if self.counters.applies and stop.is_set():
                    await self._helper.down()
                elif self.counters.applies:
                    log.error("the engine stopped on a fault: leaving the kill switch on")
            except BraidError as exc:
                # The helper is gone: its kill switch holds until it is back and told
                # (`braid down`, or the next connect).
                log.warning("taking the tunnels down: %s", exc)
            finally:
                await self._helper.close()
                await self._status_client.close()
            self._transition(self.conn.stopped(loop.time()))

    # -- measurements -> decisions ------------------------------------------------

    def _on_probe(self, path: PathRuntime, change: HealthChange | None) -> None:
        """Every reply and every health change of a path. Only a change re-steers at
        once (a failover must not wait for the tick); otherwise the 10 Hz tick does,
        except while the classes warm up (the first decision comes with its reply)."""
        if change is not None:
            self._on_health(path, change)
            self._evaluate()
        elif self._steering is not None and self._steering.warming:
            self._evaluate()

    def _on_probe_error(self, path: PathRuntime, error: str | None) -> None:
        path.probe_error = error
        if error is not None:
            self.counters = replace(self.counters, probe_errors=self.counters.probe_errors + 1)
            # A socket that fails (ENETUNREACH: the tunnel is gone) is how a helper restart
            # or a dead wireguard-go often shows first: ask the helper now.
            self._poke_status()

    def _on_health(self, path: PathRuntime, change: HealthChange) -> None:
        if change.new is Health.SUSPECT:
            self._publish()  # a suspicion can be short: let every view see it
            return
        m = _metrics(path)
        if change.new is Health.DOWN:
            path.last_detection_s = change.detection_s
            m["silence_limit_ms"] = round(path.tracker.late_limit_s() * 1000, 3)
            silent = "" if change.detection_s is None else \
                f"silent for {change.detection_s * 1000:.0f} ms, "
            if change.old is Health.UNKNOWN:  # it never answered since connecting
                why = (f"{path.name}: no answer in {path.tracker.cfg.connect_timeout_s:.0f} s "
                       "since connecting (no WireGuard handshake or no route through it "
                       "yet); still trying")
            else:
                why = (f"{path.name}: {silent}no reply to {path.tracker.consecutive_missed} "
                       "probes in a row and nothing received")
            self.events.add(EventKind.PATH_DOWN, why, from_path=path.name, metrics=m,
                            detection_ms=None if change.detection_s is None
                            else change.detection_s * 1000)
        elif change.new is Health.UP and change.old is Health.DOWN:
            self.events.add(EventKind.PATH_UP, f"{path.name} answers again", to_path=path.name,
                            metrics=m)
        elif change.new is Health.UP and change.old is Health.UNKNOWN:
            self.events.add(EventKind.PATH_UP, f"{path.name} answered its first probe",
                            to_path=path.name, metrics=m)

    def _evaluate(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        for d in self.steering.step(now):
            if d.kind == "failover":
                self._failovers_unsent += 1
                self._failover_at = now
                self._transition(self.conn.failover_started(now))
        self._probes.set_rates(self.steering.carried(), self.steering.warming,
                               self._backup())
        if self.steering.dirty():
            self._dirty.set()

    def _backup(self) -> str | None:
        """The best healthy path that carries nothing: probed faster (probing.py), as
        the likely failover target and the witness that tells a dead path from a stall."""
        carried = self.steering.carried()
        scores = self.steering.scores()
        spare = [p for p in self.paths if p.name not in carried and p.tracker.health is Health.UP]
        return max(spare, key=lambda p: scores[p.name]).name if spare else None

    # -- plan -> helper -----------------------------------------------------------

    async def _send(self, plan: Plan) -> None:
        """Have the helper hold ``plan``; record what it settles. Raises what the
        helper raised."""
        assert self._loop is not None
        if plan.must_send:
            t0 = time.perf_counter()
            await self._helper.apply(plan.state)
            ms = (time.perf_counter() - t0) * 1000
            c = self.counters
            self.counters = replace(c, applies=c.applies + 1,
                                    apply_ms_total=c.apply_ms_total + ms, apply_ms_last=ms)
            self._last_apply = self._loop.time()
        self.steering.committed(plan)
        done = self._loop.time()
        for item in plan.pending:
            d = item.decision
            self.events.decision(d, t=self._wall(d.t), detection_s=item.detection_s,
                                 switch_ms=(done - d.t) * 1000)
            if d.kind == "failover":
                self._failovers_unsent = max(0, self._failovers_unsent - 1)
                if d.to_path is not None:
                    self._failovers.append(_Failover(d.to_path, done))
        if self.steering.all_settled:
            self._transition(self.conn.settled(done, self.steering.degraded()))

    async def _apply_loop(self) -> None:
        failures = 0
        while True:
            if failures:
                delay = APPLY_BACKOFF_S[min(failures - 1, len(APPLY_BACKOFF_S) - 1)]
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._dirty.wait(), delay)
            else:
                await self._dirty.wait()
            await self._helper_ok.wait()  # while it is gone, the supervisor re-sends all
            self._dirty.clear()
            try:
                await self._send(self.steering.next_plan())
            except HelperGone:
                self._helper_lost()
                continue
            except BraidError as exc:
                failures += 1
                self._fail(ErrorInfo(f"the helper did not take the plan: {exc.what}",
                                     exc.fix or "see braid-helper's log"))
                self._dirty.set()
                continue
            if failures:
                failures = 0
                self._recovered("the helper took the plan")
            self._publish()

    async def _supervise_helper(self) -> None:
        """Reconnect to a helper that went away and give it the whole state again."""
        while True:
            await self._helper_down.wait()
            attempt = 0
            while True:
                await asyncio.sleep(RETRY_BACKOFF_S[min(attempt, len(RETRY_BACKOFF_S) - 1)])
                attempt += 1
                if self.netns is not None and not (NETNS_DIR / self.netns).exists():
                    # The lab was taken down under us: nothing is left to protect.
                    raise BraidError(f"the network namespace {self.netns} is gone",
                                     "bring the lab up again, then connect")
                try:
                    await self._helper.hello()
                    self.steering.forget_held()
                    await self._send(self.steering.next_plan())
                    # A restarted helper lost the user's rules with its state.
                    await send_saved_rules(self._helper)
                except BraidError as exc:
                    self._fail(ErrorInfo(f"braid-helper went away: {exc.what}",
                                         "traffic stays blocked until it is back; start it "
                                         "(systemctl start braid-helper) or disconnect"))
                    continue
                break
            self.counters = replace(self.counters,
                                    helper_reconnects=self.counters.helper_reconnects + 1)
            self._helper_gen += 1
            self._helper_down.clear()
            self._helper_ok.set()
            self._recovered("braid-helper is back and holds the state again")

    def _helper_lost(self) -> None:
        """The apply connection closed (or a request found it closed)."""
        if self._helper_down.is_set() or self.conn.state is ConnState.DISCONNECTING:
            return
        self._helper_ok.clear()
        self._helper_down.set()
        self._fail(ErrorInfo("braid-helper went away (it stopped or restarted)",
                             "traffic stays blocked; Braid reconnects by itself when it is "
                             "back"))

    def _fail(self, error: ErrorInfo) -> None:
        assert self._loop is not None
        first = self.conn.state is not ConnState.ERROR
        self._transition(self.conn.fail(self._loop.time(), error))
        if first:
            self.events.add(EventKind.ERROR, error.what)
        self._publish()

    def _recovered(self, why: str) -> None:
        assert self._loop is not None
        if self.conn.state is not ConnState.ERROR:
            return
        self._transition(self.conn.recover(self._loop.time()))
        self.events.add(EventKind.RECOVERED, why)
        if self.steering.all_settled:
            self._transition(self.conn.settled(self._loop.time(), self.steering.degraded()))
        self._publish()

    async def _tick_loop(self) -> None:
        assert self._loop is not None
        due = self._loop.time()
        while True:
            # On the probes' grid: the tick wakes the thread no more than they do.
            due = max(due + self.cfg.publish_interval_s, self._loop.time())
            await sleep_until(self._loop, self._probes.grid.at_or_after(due))
            self._evaluate()
            now = self._loop.time()
            self._check_failovers(now)
            self._transition(self.conn.health(now, self.steering.degraded()))
            if now - self._last_apply > KEEPALIVE_S and not self._helper_down.is_set():
                self._last_apply = now
                self._background(self._keepalive())
            self._publish()

    async def _keepalive(self) -> None:
        try:
            await self._helper.hello()
        except HelperGone:
            self._helper_lost()
        except BraidError as exc:
            log.warning("helper keepalive: %s", exc)

    def _check_failovers(self, now: float) -> None:
        """A failover is over once its new path answered a probe sent after the switch
        (traffic flows again), or after FAILOVER_SHOWN_S. FAILING_OVER ends when every
        failover decided is over: sent and answered, or, for a decision that never
        reached the kernel (superseded by the next one, or an apply that failed),
        FAILOVER_SHOWN_S after the last one was decided. So it always ends."""
        left = []
        for f in self._failovers:
            path = self._by_name.get(f.to_path)
            answered = path is not None and path.tracker.last_reply is not None and \
                path.tracker.last_reply > f.since
            if not (answered or now - f.since >= FAILOVER_SHOWN_S):
                left.append(f)
        self._failovers = left
        if self.conn.state is not ConnState.FAILING_OVER or left:
            return
        if self._failovers_unsent and now - self._failover_at < FAILOVER_SHOWN_S:
            return
        self._failovers_unsent = 0
        self._transition(self.conn.failover_done(now, self.steering.degraded()))

    def _poke_status(self) -> None:
        if self._loop is not None:
            self._background(self._status_once())

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _status_once(self) -> None:
        gen = self._helper_gen
        try:
            status = await self._status_client.status()
        except HelperGone:
            if gen == self._helper_gen:
                self._helper_lost()
        except BraidError as exc:
            log.warning("helper status: %s", exc)
        else:
            if gen == self._helper_gen:  # not a reply from before a reconnect
                self._take_status(status)

    async def _status_loop(self) -> None:
        assert self._loop is not None
        lan_read = self._loop.time()
        while True:
            await self._status_once()
            if self._loop.time() - lan_read >= self.cfg.lan_refresh_s:
                lan_read = self._loop.time()
                await self._refresh_lan()
            await asyncio.sleep(self.cfg.status_interval_s)

    async def _refresh_lan(self) -> None:
        """The LAN may have changed (another Wi-Fi, a cable): the kill switch follows."""
        settings = self.profile.settings
        try:
            allow = await lan.allowed(settings.lan_access, settings.exclude)
        except OSError as exc:
            log.warning("reading the LAN: %s", exc)
            return
        if allow != self.steering.guard_allow:
            log.info("the LAN is now %s", ", ".join(allow) or "nothing")
            self.steering.guard_allow = allow
            self._dirty.set()

    def _take_status(self, status: HelperStatus) -> None:
        self._helper_dns = status.dns
        take_status(self.paths, {t.name: (t.handshake_age_s, t.rx_bytes, t.tx_bytes)
                                 for t in status.tunnels}, time.monotonic())
        if self._steering is not None and status.spread_flows:
            by_mark = {p.spec.mark: p.name for p in self.paths}
            flows = {by_mark[m]: n for m, n in status.spread_flows.items() if m in by_mark}
            assert self._loop is not None
            moves = self._steering.take_spread_flows(self._loop.time(), flows)
            for src, dst in moves:
                self.events.add(EventKind.REBALANCED,
                                f"a bulk flow moved from {src} to {dst}: {dst} carried no "
                                f"bulk flow, {src} {flows.get(src, 0)}", cls="bulk",
                                from_path=src, to_path=dst)
            if moves:
                self._dirty.set()
        held = {t.name for t in status.tunnels}
        if self.counters.applies and not self._helper_down.is_set() and \
                any(p.spec.interface not in held for p in self.paths):
            # The helper answers but lost our tunnels (it restarted between two polls):
            # the same as losing it.
            self._helper_lost()

    # -- events and snapshots -----------------------------------------------------

    def _transition(self, t: Transition | None) -> None:
        if t is not None:
            log.info("state %s -> %s: %s", t.old.value, t.new.value, t.why)
            self._publish()

    def _wall(self, loop_t: float) -> float:
        assert self._loop is not None
        return time.time() - (self._loop.time() - loop_t)

    def snapshot(self) -> EngineSnapshot:
        st = self._steering
        scores = st.scores() if st else {p.name: (0.0, 0.0) for p in self.paths}
        targets = st.held_targets() if st else {c: None for c in self.cfg.classes}
        # Bulk spread over several paths: it is on each of them (most slots first).
        spread = st.held_spread() if st else ()
        hold = min(self.class_config(c).hold_down_s for c in self.cfg.classes)
        now = self._loop.time() if self._loop else 0.0
        paths = []
        for p in self.paths:
            m = p.stats.metrics()
            h = p.health()
            paths.append(PathSnapshot(
                # A path that has not answered yet is "suspected" (not declared down) but
                # not up: shown as connecting.
                name=p.name, interface=p.spec.interface, up=h in (Health.UP, Health.SUSPECT),
                suspected=h in (Health.SUSPECT, Health.UNKNOWN), rtt_ms=m.rtt_ms,
                rtt_smoothed_ms=m.rtt_smoothed_ms, rtt_p50_ms=m.rtt_p50_ms,
                rtt_p95_ms=m.rtt_p95_ms, jitter_ms=m.jitter_ms, loss=m.loss,
                score=scores[p.name][0], cost=p.cost, handshake_age_s=p.handshake_age_s,
                rx_bps=p.rx_bps, tx_bps=p.tx_bps,
                classes=tuple(c for c, t in targets.items() if t == p.name or (
                    c == "bulk" and p.name in spread)),
                note=_note(p, scores[p.name][0], now, hold),
                degrading=p.degrading_reason if p.degrading else None,
            ))
        state = self.conn.state
        blocked = state is ConnState.ERROR or any(t is None for t in targets.values())
        verdict = st.copy_verdict if st else None
        return EngineSnapshot(
            copies=st.held_copies() if st else (),
            copies_reason=None if verdict is None else verdict.reason,
            t=time.time(), state=state, profile=self.profile.name, paths=tuple(paths),
            classes={c: spread if c == "bulk" and spread else (t,) if t else ()
                     for c, t in targets.items()},
            events=self.events.events, error=self.conn.error,
            counters=replace(self.counters, probes_sent=self._probes.sent),
            lab=self.lab, pid=os.getpid(), runner=self.runner,
            blocked=blocked and state not in (ConnState.CONNECTING, ConnState.DISCONNECTED),
            dns=self._dns_snapshot(st),
        )

    def _dns_snapshot(self, st: Steering | None) -> DnsSnapshot | None:
        """The DNS the helper holds for the plan, and how (its last status said)."""
        want = st.held_dns() if st else None
        if want is None:
            return None
        got = self._helper_dns
        applied = got is not None and got.servers == want.all_servers()
        return DnsSnapshot(
            servers=want.all_servers(), domains=want.all_domains(), via=want.via,
            mechanism=got.mechanism if applied and got else None,
            active=bool(applied and got and got.active),
            blocked_queries=got.blocked_queries if got else 0)

    def _publish(self) -> None:
        try:
            self._on_snapshot(self.snapshot())
        except Exception:  # a subscriber's bug must not stop the engine
            log.exception("snapshot subscriber failed")


def _note(p: PathRuntime, score: float, now: float, hold_s: float) -> str | None:
    """Why a path's score is what it is, where the number alone would puzzle."""
    if p.probe_error:
        return f"probe error: {p.probe_error}"
    h = p.health()
    if h is Health.DOWN:
        return "down"
    if h is Health.UNKNOWN:
        return "connecting"
    if h is Health.SUSPECT and p.tracker.suspect_reason == PASSIVE:
        return "suspect: its tunnel stopped receiving"
    if h is Health.SUSPECT and p.tracker.suspect_reason == SILENT:
        return "suspect: silent (nothing received past its expected replies)"
    if p.saturated:
        return (f"saturated: a {p.queue_ms or 0:.0f} ms queue of Braid's own traffic "
                "(a worse score, not an outage)")
    if p.stats.loss > LOSS_LIMIT:
        return f"loss {p.stats.loss * 100:.1f} % > {LOSS_LIMIT * 100:.0f} %: scores 0"
    if in_episode(p.score_input()):
        return (f"loss episode ({p.tracker.recent_lost} of the last "
                f"{p.tracker.recent_size} probes lost): scores 0")
    if p.degrading:
        return f"degrading: {p.degrading_reason}"
    up = p.tracker.up_since
    if up is not None and now - up < hold_s and p.last_detection_s is not None:
        return f"back up: may carry traffic in {hold_s - (now - up):.0f} s (hold-down)"
    return None if score > 0 else "not measured yet"

"""The engine: probe every path, score it, decide per class, have the helper apply it.

One ``Engine`` runs on one asyncio loop (service.py gives it a thread of its own).
Everything is event driven: each probe reply or missed deadline re-scores the paths
and steps every class's decider (decide.py); when the plan (plan.py) differs from
what the helper holds, the new desired state is sent, and only then. A periodic tick
lets dwell and hold-down timers expire when nothing else happens, publishes a
snapshot, and a second helper connection polls tunnel status (handshake age, rx/tx)
once a second so a slow status call never delays a switch.

Passive health from the helper: a path whose last handshake is older than 180 s
(WireGuard's REJECT_AFTER_TIME: no session key can still be valid) is treated as down
whatever its probes say.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from app.core.decide import Candidate, ClassDecider, ClassState, DecideConfig, Decision
from app.core.errors import BraidError
from app.core.helper_client import HelperClient, HelperStatus
from app.core.liveness import Health, HealthChange, LivenessConfig, ProbeTracker
from app.core.model import ConnState, EngineSnapshot, Event, PathSnapshot
from app.core.pathstats import PathStats
from app.core.plan import PathSpec, build_state, without_flush
from app.core.probe import Prober, ProbeRates
from app.core.profiles.model import GatewaySecrets, Profile, Weights
from app.core.scoring import ScoreInput, score_paths
from app.wire.state import DesiredState

log = logging.getLogger(__name__)

STALE_HANDSHAKE_S = 180.0


@dataclass(frozen=True)
class EngineConfig:
    rates: ProbeRates = field(default_factory=ProbeRates)
    liveness: LivenessConfig = field(default_factory=LivenessConfig)
    decide: DecideConfig = field(default_factory=DecideConfig)
    classes: tuple[str, ...] = ("default",)  # steered classes (realtime/bulk come later)
    publish_interval_s: float = 0.1  # snapshots at 10 Hz
    status_interval_s: float = 1.0  # helper status poll
    max_events: int = 200
    persistent: bool = False


@dataclass
class PathRuntime:
    spec: PathSpec
    target: str  # probe destination
    cost: float
    stats: PathStats
    tracker: ProbeTracker
    prober: Prober | None = None
    handshake_age_s: float | None = None
    rx_bps: float = 0.0
    tx_bps: float = 0.0
    counters: tuple[float, int, int] | None = None  # (t, rx, tx) of the last status
    last_detection_s: float | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def health(self) -> Health:
        """Probe health, overridden by a handshake too old to carry anything."""
        h = self.tracker.health
        if self.handshake_age_s is not None and self.handshake_age_s > STALE_HANDSHAKE_S:
            return Health.DOWN
        return h


@dataclass
class _Pending:
    decision: Decision
    detection_s: float | None


@dataclass
class _Applied:
    state: DesiredState  # without its flush list
    usable: frozenset[str]
    targets: dict[str, str | None] = field(default_factory=dict)


def default_probe_target(address: str) -> str:
    """The first host of the tunnel address's network (the gateway, by convention); for
    a /31 or /32 address, the first host of the /24 around it."""
    iface = ipaddress.ip_interface(address)
    net = iface.network if iface.network.prefixlen <= 30 else ipaddress.ip_network(
        f"{iface.ip}/24", strict=False)
    return str(next(net.hosts()))


def resolve_endpoint(endpoint: str | None, gateway: str) -> str | None:
    """``host:port`` -> ``IP:port`` (IPv4 first), as the helper takes IP literals only."""
    if endpoint is None:
        return None
    host, _, port = endpoint.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
        return endpoint
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_DGRAM)
    except (OSError, ValueError) as exc:
        raise BraidError(f"cannot resolve the endpoint {endpoint} of gateway {gateway}: {exc}",
                         "check the name and your DNS, or write an IP address") from None
    infos.sort(key=lambda i: i[0] != socket.AF_INET)
    ip = str(infos[0][4][0])
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def path_specs(profile: Profile, secrets: Mapping[str, GatewaySecrets]) -> list[PathSpec]:
    specs = []
    for i, gw in enumerate(profile.gateways):
        sec = secrets.get(gw.name)
        if sec is None:
            raise BraidError(f"no keys for gateway {gw.name} of profile {profile.name}",
                             f"import it again: braid import FILE.conf --profile {profile.name}")
        specs.append(PathSpec(
            name=gw.name, index=i, interface=gw.interface, private_key=sec.private_key,
            preshared_key=sec.preshared_key, addresses=gw.addresses, mtu=gw.mtu,
            listen_port=gw.listen_port, peer_public_key=gw.peer.public_key,
            endpoint=resolve_endpoint(gw.peer.endpoint, gw.name),
            allowed_ips=gw.peer.allowed_ips, persistent_keepalive=gw.peer.persistent_keepalive,
        ))
    return specs


OnSnapshot = Callable[[EngineSnapshot], None]


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
    ) -> None:
        self.profile = profile
        self.cfg = config or EngineConfig()
        self.weights: Weights = profile.weights
        specs = path_specs(profile, secrets)
        targets = probe_targets or {}
        self.paths = [
            PathRuntime(
                spec=s,
                target=targets.get(s.name) or gw.probe or default_probe_target(
                    next(a for a in s.addresses if ipaddress.ip_interface(a).version == 4)),
                cost=gw.cost,
                stats=(stats := PathStats()),
                tracker=ProbeTracker(stats, self.cfg.liveness),
            )
            for s, gw in zip(specs, profile.gateways, strict=True)
        ]
        self._by_name = {p.name: p for p in self.paths}
        for p in self.paths:
            p.tracker.stall_suspected = functools.partial(self._stall_suspected, p)
        self._helper_socket = helper_socket
        self._helper = HelperClient(helper_socket)
        self._status_client = HelperClient(helper_socket)
        self._on_snapshot = on_snapshot
        self._deciders: dict[str, ClassDecider] = {}
        self._events: deque[Event] = deque(maxlen=self.cfg.max_events)
        self._pending: list[_Pending] = []
        self._applied: _Applied | None = None
        self._unflushed: set[str] = set()  # dead paths whose flows are not yet flushed
        # lossy paths a class just left: their running flows move too (flushed once)
        self._evicted: set[str] = set()
        self._dirty = asyncio.Event()
        self._failing_over = False
        self._settled: set[str] = set()  # classes whose first decision the kernel holds
        self._connected = False
        self._error: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.apply_times_ms: list[float] = []  # every apply's round trip (benchmarks)

    # -- lifecycle ----------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, steer until ``stop`` is set, then take everything down."""
        self._loop = asyncio.get_running_loop()
        now = self._loop.time()
        self._deciders = {c: ClassDecider(c, self.cfg.decide, now) for c in self.cfg.classes}
        tasks: list[asyncio.Task[None]] = []
        try:
            self._publish()
            await self._helper.hello()
            await self._apply_now()  # tunnels up, every class closed until measured
            for i, p in enumerate(self.paths):
                p.prober = Prober(p.name, p.spec.source, p.target, p.tracker, self._on_probe,
                                  ident=(os.getpid() * 16 + i) & 0xFFFF,
                                  interval_s=self.cfg.rates.suspect_s)
                p.prober.start()
            self._connected = True
            tasks = [asyncio.create_task(self._apply_loop()),
                     asyncio.create_task(self._tick_loop()),
                     asyncio.create_task(self._status_loop())]
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t is not stopper and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
            stopper.cancel()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for p in self.paths:
                if p.prober is not None:
                    p.prober.stop()
            self._connected = False
            try:
                await self._helper.down()
            except BraidError as exc:
                log.warning("taking the tunnels down: %s", exc)
            finally:
                await self._helper.close()
                await self._status_client.close()

    # -- measurements -> decisions ------------------------------------------------

    def _on_probe(self, prober: Prober, change: HealthChange | None, rtt: float | None) -> None:
        path = self._by_name[prober.name]
        if change is not None:
            self._on_health(path, change)
        self._evaluate()

    def _on_health(self, path: PathRuntime, change: HealthChange) -> None:
        if change.new is Health.DOWN:
            path.last_detection_s = change.detection_s
            self._event("down", None, path.name, None,
                        f"{path.name}: no answer to {path.tracker.consecutive_missed} probes "
                        "in a row", self._metrics(path),
                        detection_ms=None if change.detection_s is None
                        else change.detection_s * 1000)
        elif change.new is Health.UP and change.old is Health.DOWN:
            self._event("up", None, None, path.name, f"{path.name} answers again",
                        self._metrics(path))
        elif change.new is Health.UP and change.old is Health.UNKNOWN:
            self._event("up", None, None, path.name, f"{path.name} answered its first probe",
                        self._metrics(path))

    def _stall_suspected(self, path: PathRuntime) -> bool:
        """No other live path has answered since ``path`` last did: everything went
        silent at once, more likely a local stall than paths failing together
        (liveness.py). A healthy standby (200 ms probes) answers within the ~200 ms
        a clean active path takes to reach K misses, so a real failure is barely held."""
        last = path.tracker.last_reply
        others = [p.tracker for p in self.paths if p is not path
                  and p.tracker.health in (Health.UP, Health.SUSPECT)]
        if last is None or not others:
            return False
        return all(t.last_reply is None or t.last_reply <= last for t in others)

    def _metrics(self, path: PathRuntime) -> dict[str, float]:
        m = path.stats.metrics()
        out = {"loss": m.loss, "recent_lost": float(path.tracker.recent_lost)}
        for key, value in (("rtt_ms", m.rtt_smoothed_ms), ("jitter_ms", m.jitter_ms),
                           ("rtt_p95_ms", m.rtt_p95_ms)):
            if value is not None:
                out[key] = round(value, 3)
        return out

    def _scores(self) -> dict[str, tuple[float, float]]:
        inputs = []
        for p in self.paths:
            m = p.stats.metrics()
            inputs.append(ScoreInput(p.name, p.health() in (Health.UP, Health.SUSPECT),
                                     m.rtt_smoothed_ms, m.loss, m.jitter_ms, p.cost,
                                     p.tracker.recent_lost))
        return {n: (s.score, s.raw) for n, s in score_paths(inputs, self.weights).items()}

    def _evaluate(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        scores = self._scores()
        cands = [
            Candidate(p.name, p.health(), scores[p.name][0], scores[p.name][1],
                      p.tracker.up_since, {**self._metrics(p), "score": scores[p.name][0]},
                      samples=p.stats.samples)
            for p in self.paths
        ]
        for decider in self._deciders.values():
            decision = decider.step(now, cands)
            if decision is not None:
                detection = None
                if decision.kind in ("failover", "fail_closed") and decision.from_path:
                    detection = self._by_name[decision.from_path].last_detection_s
                    self._failing_over = decision.kind == "failover"
                elif decision.kind == "switch" and decision.from_path and \
                        decision.metrics.get("from_score") == 0.0:
                    # Left because it is unusable (lossy), not merely worse: stickiness
                    # would keep the running flows on it for as long as it loses.
                    self._evicted.add(decision.from_path)
                self._pending.append(_Pending(decision, detection))
        self._set_rates()
        if self._plan_key() != self._applied_key():
            self._dirty.set()

    def _set_rates(self) -> None:
        carried = {d.current for d in self._deciders.values()}
        warming = any(d.state is ClassState.WAITING for d in self._deciders.values())
        r = self.cfg.rates
        for p in self.paths:
            if p.prober is None:
                continue
            h = p.tracker.health
            if h in (Health.SUSPECT, Health.UNKNOWN) or warming:
                p.prober.set_interval(r.suspect_s)
            elif h is Health.UP and p.name in carried:
                p.prober.set_interval(r.active_s)
            else:
                p.prober.set_interval(r.standby_s)

    # -- plan -> helper -----------------------------------------------------------

    def _usable(self) -> frozenset[str]:
        return frozenset(p.name for p in self.paths
                         if p.health() in (Health.UP, Health.SUSPECT))

    def _targets(self) -> dict[str, str | None]:
        return {c: d.current for c, d in self._deciders.items()}

    def _plan_key(self) -> tuple[frozenset[str], tuple[tuple[str, str | None], ...]]:
        return self._usable(), tuple(sorted(self._targets().items()))

    def _applied_key(self) -> tuple[frozenset[str], tuple[tuple[str, str | None], ...]] | None:
        if self._applied is None:
            return None
        return self._applied.usable, tuple(sorted(self._applied.targets.items()))

    async def _apply_now(self) -> None:
        assert self._loop is not None
        usable, targets = self._usable(), self._targets()
        decided = {c for c, d in self._deciders.items() if d.state is not ClassState.WAITING}
        pending, self._pending = self._pending, []
        prev = self._applied
        if prev is not None:
            self._unflushed |= prev.usable - usable
        self._unflushed -= usable
        # Flows on a dead path are flushed (re-classified onto the new best) only when
        # there is somewhere to go: while every class is closed they keep their dead
        # mark and hit its unreachable rule, which is the safest place for them.
        flush: set[str] = set()
        if any(t is not None for t in targets.values()):
            flush, self._unflushed = set(self._unflushed), set()
            flush |= self._evicted - set(targets.values())
        self._evicted = set()
        left_closed = any(t is not None and (prev is None or prev.targets.get(c) is None)
                          for c, t in targets.items())
        state = build_state([p.spec for p in self.paths], targets, usable, flush=flush,
                            flush_closed=left_closed, persistent=self.cfg.persistent)
        plain = without_flush(state)
        if prev is None or plain != prev.state or flush or left_closed:
            t0 = time.perf_counter()
            await self._helper.apply(state)
            self.apply_times_ms.append((time.perf_counter() - t0) * 1000)
        self._applied = _Applied(plain, usable, targets)
        self._settled |= decided
        done = self._loop.time()
        for item in pending:
            self._decision_event(item, (done - item.decision.t) * 1000)
        self._failing_over = False

    async def _apply_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self._apply_now()
            except BraidError as exc:
                self._error = str(exc)
                self._event("error", None, None, None, f"the helper refused the plan: {exc.what}",
                            {})
                raise
            self._publish()

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.publish_interval_s)
            self._evaluate()
            self._publish()

    async def _status_loop(self) -> None:
        while True:
            try:
                status = await self._status_client.status()
            except BraidError as exc:
                log.warning("helper status: %s", exc)
            else:
                self._take_status(status)
            await asyncio.sleep(self.cfg.status_interval_s)

    def _take_status(self, status: HelperStatus) -> None:
        now = time.monotonic()
        for p in self.paths:
            t = status.tunnel(p.spec.interface)
            if t is None:
                continue
            p.handshake_age_s = t.handshake_age_s
            if p.counters is not None:
                t0, rx0, tx0 = p.counters
                dt = max(now - t0, 1e-3)
                p.rx_bps = max(0, t.rx_bytes - rx0) * 8 / dt
                p.tx_bps = max(0, t.tx_bytes - tx0) * 8 / dt
            p.counters = (now, t.rx_bytes, t.tx_bytes)

    # -- events and snapshots -----------------------------------------------------

    def _wall(self, loop_t: float) -> float:
        assert self._loop is not None
        return time.time() - (self._loop.time() - loop_t)

    def _event(self, kind: str, cls: str | None, frm: str | None, to: str | None, reason: str,
               metrics: dict[str, float], detection_ms: float | None = None,
               switch_ms: float | None = None, t: float | None = None) -> None:
        self._events.append(Event(t if t is not None else time.time(), kind, cls, frm, to,
                                  reason, metrics, detection_ms, switch_ms))
        log.info("%s %s: %s", kind, cls or "", reason)

    def _decision_event(self, item: _Pending, switch_ms: float) -> None:
        d = item.decision
        kind = {"fail_closed": "fail_closed", "restored": "restored"}.get(d.kind, "switch")
        label = {"select": "connected", "switch": "better path", "failover": "failover"}
        reason = f"{label[d.kind]}: {d.reason}" if d.kind in label else d.reason
        self._event(kind, d.cls, d.from_path, d.to_path, reason, dict(d.metrics),
                    detection_ms=None if item.detection_s is None else item.detection_s * 1000,
                    switch_ms=round(switch_ms, 3), t=self._wall(d.t))

    def _state(self) -> ConnState:
        if self._error is not None:
            return ConnState.ERROR
        # Connecting until every class's first decision is in the kernel: before that
        # the snapshot's classes (what the kernel holds) would read as closed.
        if not self._connected or self._applied is None or \
                self._settled != set(self._deciders):
            return ConnState.CONNECTING
        if self._failing_over:
            return ConnState.FAILING_OVER
        scores = self._scores()
        closed = any(d.current is None for d in self._deciders.values())
        lost = any(p.health() is Health.DOWN for p in self.paths)
        poor = any(d.current is not None and scores[d.current][0] == 0
                   for d in self._deciders.values())
        return ConnState.DEGRADED if closed or lost or poor else ConnState.CONNECTED

    def snapshot(self) -> EngineSnapshot:
        scores = self._scores()
        # What the kernel holds, not what is being applied: a class "is on" a path once
        # the helper has put the rules in.
        targets = dict(self._applied.targets) if self._applied else {
            c: None for c in self._deciders}
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
                classes=tuple(c for c, t in targets.items() if t == p.name),
            ))
        return EngineSnapshot(
            t=time.time(), state=self._state(), profile=self.profile.name, paths=tuple(paths),
            classes={c: (t,) if t else () for c, t in targets.items()},
            events=tuple(self._events), error=self._error,
        )

    def _publish(self) -> None:
        try:
            self._on_snapshot(self.snapshot())
        except Exception:  # a subscriber's bug must not stop the engine
            log.exception("snapshot subscriber failed")


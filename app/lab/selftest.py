"""`braid lab selftest`: is the relay as good as its profiles say?

Builds a lab of its own with a shared exit (so a running lab and its timeline are left
alone) whose paths each carry one known profile, sends stamped packets from the client
namespace through the relay's measurement port to a receiver in the gateway namespace
(the international link only: client -> wan -> gateway, no WireGuard in between), and
from a gateway through the backbone's measurement port to a receiver on the exit (the
backbone only), and compares configured with measured: one-way delay within 2 ms at
1000 pps (both directions, both links), random and bursty loss within 1 point over
20 000 packets, rate within 5 %, and an outage, asked over the control socket or due on
the timeline (of either link), starting within 5 ms of when it should.
"""

from __future__ import annotations

import json
import secrets
import statistics
import string
import subprocess
import time
from dataclasses import asdict, dataclass
from typing import Any

from app.lab import topology
from app.lab.emulate import IP_UDP_OVERHEAD
from app.lab.link import BACKBONE, WAN
from app.lab.model import BACKBONE_PROBE_BASE_PORT, SHARED
from app.lab.relay_client import relay_request
from app.lab.scenario import Scenario, parse_scenario

DELAY_MS, LOSS_PCT, BURST = 40.0, 5.0, (1.0, 25.0)
BACKBONE_DELAY_MS = 25.0
JITTER_DELAY_MS, JITTER_MS, JITTER_PPS = 30.0, 3.0, 50  # spacing 20 ms >> jitter: no FIFO clamp
RATE_MBIT, QUEUE_MS = 20.0, 50.0
TIMELINE_AT_S = 4.0  # the timeline outage, from the lab's start
OUTAGE_S = 0.5

SCENARIO: dict[str, Any] = {
    "description": "self-test: one known profile per path (up direction unless noted)",
    "path": [
        {"name": "dly", "delay_ms": DELAY_MS,  # both directions
         "backbone": {"delay_ms": BACKBONE_DELAY_MS}},
        {"name": "los", "delay_ms": 5, "up": {"loss_pct": LOSS_PCT}},
        {"name": "bst", "delay_ms": 5, "up": {"burst_loss": list(BURST)}},
        {"name": "rat", "delay_ms": 5, "up": {"rate_mbit": RATE_MBIT, "queue_ms": QUEUE_MS}},
        {"name": "out", "delay_ms": 10},
        {"name": "tln", "delay_ms": 10},
        {"name": "jit", "delay_ms": JITTER_DELAY_MS, "up": {"jitter_ms": JITTER_MS}},
    ],
    "timeline": [
        {"at": TIMELINE_AT_S, "path": "tln", "for": OUTAGE_S, "set": {"down": True}},
        {"at": TIMELINE_AT_S, "path": "tln", "link": "backbone", "for": OUTAGE_S,
         "set": {"down": True}},
    ],
}


@dataclass(frozen=True)
class Check:
    path: str
    what: str
    configured: float
    measured: float
    bound: float  # |measured - configured| must not exceed this
    unit: str

    @property
    def passed(self) -> bool:
        return abs(self.measured - self.configured) <= self.bound


@dataclass(frozen=True)
class SelftestReport:
    lab: str
    checks: tuple[Check, ...]
    seconds: float

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def check(self, path: str, what: str) -> Check:
        return next(c for c in self.checks if c.path == path and c.what == what)

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "seconds": self.seconds,
                "checks": [{**asdict(c), "passed": c.passed} for c in self.checks]}

    def text(self) -> str:
        lines = [f"{'path':<5} {'what':<30} {'configured':>10} {'measured':>10} {'bound':>8}",
                 "-" * 78]
        for c in self.checks:
            lines.append(f"{c.path:<5} {c.what:<30} {c.configured:>10.3f} {c.measured:>10.3f} "
                         f"±{c.bound:>7.3f} {c.unit:<6} {'ok' if c.passed else 'FAIL'}")
        lines.append(f"{'PASSED' if self.passed else 'FAILED'} in {self.seconds:.1f} s")
        return "\n".join(lines)


def selftest_scenario() -> Scenario:
    return parse_scenario(SCENARIO, name="selftest", where="selftest")


class _Run:
    """One sender and one receiver on one link of one path: on the international link
    (wan), the client and the path's gateway; on the backbone, the gateway and the exit."""

    def __init__(self, lab: str, info: topology.LabInfo, path: str, *, pps: int, count: int,
                 size: int = 200, echo: bool = False, link: str = WAN) -> None:
        gw = info.gateway(path)
        seconds = count / pps + 2.5
        if link == WAN:
            sender, receiver, port = "client", f"gw-{path}", topology.PROBE_BASE_PORT
            to = f"{topology.CLIENT_WAN}:{topology.PROBE_BASE_PORT + gw.index}"
        else:
            sender, receiver = f"gw-{path}", "exit"
            port = BACKBONE_PROBE_BASE_PORT + gw.index
            to = f"198.18.{10 + gw.index}.1:{port}"
        self.receiver = topology.run_in(
            lab, receiver, topology.python_argv(
                "app.lab.measure", "recv", "--port", str(port),
                "--seconds", f"{seconds:.3f}", *(["--echo"] if echo else [])),
            stdout=subprocess.PIPE, env=topology.python_env())
        assert self.receiver.stdout is not None
        self.receiver.stdout.readline()  # "ready": listening before anything is sent
        self.sender = topology.run_in(
            lab, sender, topology.python_argv(
                "app.lab.measure", "send", "--to", to,
                "--pps", str(pps), "--count", str(count), "--size", str(size)),
            stdout=subprocess.PIPE, env=topology.python_env())
        assert self.sender.stdout is not None
        self.sender.stdout.readline()  # "ready": sending from now on

    def result(self) -> tuple[dict[str, Any], dict[str, Any]]:
        sent_out, _ = self.sender.communicate()
        recv_out, _ = self.receiver.communicate()
        return json.loads(sent_out), json.loads(recv_out)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _stdev(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else float("nan")


def _bursts(sent: int, received: list[int]) -> list[float]:
    """Lengths of the runs of consecutive lost packets."""
    got = set(received)
    runs: list[float] = []
    run = 0
    for seq in range(sent):
        if seq in got:
            if run:
                runs.append(run)
            run = 0
        else:
            run += 1
    return runs + ([run] if run else [])


def _one_way(snd: dict[str, Any], rec: dict[str, Any]) -> tuple[list[float], list[float]]:
    """One-way delays (ms) up, from the receiver's record, and down, from the echoes."""
    up = [(rx - s) * 1000.0 for s, rx in zip(rec["sent"], rec["rx"], strict=True)]
    return up, [(rx - server) * 1000.0 for rx, server, _ in snd["got"].values()]


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2] if values else float("nan")


def _outage_start(sent: list[float], rec: dict[str, Any], after: float) -> float:
    """Send time of the first packet lost after ``after`` (unix time)."""
    got = set(rec["seq"])
    lost = [t for seq, t in enumerate(sent) if seq not in got and t >= after]
    return lost[0] if lost else float("nan")


def run_selftest(quick: bool = False) -> SelftestReport:
    lab = "st" + "".join(secrets.choice(string.ascii_lowercase + string.digits)
                         for _ in range(3))
    began = time.monotonic()
    info = topology.build(lab, selftest_scenario(), start_helper=False, write_profile=False,
                          exit=SHARED)
    try:
        checks = _measure(lab, info, quick)
    finally:
        topology.destroy(lab, forget_profile=False)
    return SelftestReport(lab=lab, checks=tuple(checks), seconds=time.monotonic() - began)


def _measure(lab: str, info: topology.LabInfo, quick: bool) -> list[Check]:
    n_delay, n_loss, rate_s = (2000, 10_000, 2.0) if quick else (5000, 20_000, 4.0)
    checks: list[Check] = []

    # Phase 1, the timing checks, with little else running: delay, both outages.
    tln_until = info.started_at + TIMELINE_AT_S + OUTAGE_S + 1.0

    def tln_count() -> int:  # until after the timeline's outage, from when it starts
        return max(1000, int((tln_until - time.time()) * 1000))

    # In order of how much their timing matters: the timeline's outages are due at a
    # fixed time from the lab's start, the asked one a second after the last run starts.
    runs = {
        "tln": _Run(lab, info, "tln", pps=1000, count=tln_count()),
        "tln backbone": _Run(lab, info, "tln", pps=1000, count=tln_count(), link=BACKBONE),
        "dly": _Run(lab, info, "dly", pps=1000, count=n_delay, echo=True),
        "dly backbone": _Run(lab, info, "dly", pps=1000, count=n_delay, echo=True,
                             link=BACKBONE),
        "jit": _Run(lab, info, "jit", pps=JITTER_PPS, count=int(JITTER_PPS * n_delay / 1000)),
        "out": _Run(lab, info, "out", pps=1000, count=3000),
    }
    time.sleep(1.0)  # a scheduled event, not a wait for a condition: the outage starts here
    # Straight to the control socket: "asked" is when the request leaves.
    asked_down = time.time()
    relay_request(info.relay_socket, {"op": "set", "path": "out", "changes": {"down": True}})
    time.sleep(OUTAGE_S)
    relay_request(info.relay_socket, {"op": "set", "path": "out", "changes": {"down": False}})
    results = {name: run.result() for name, run in runs.items()}

    up, down = _one_way(*results["dly"])
    checks += [
        Check("dly", "one-way delay up, mean", DELAY_MS, _mean(up), 2.0, "ms"),
        Check("dly", "one-way delay down, mean", DELAY_MS, _mean(down), 2.0, "ms"),
        Check("dly", "one-way delay up, median", DELAY_MS, _median(up), 2.0, "ms"),
    ]
    up, down = _one_way(*results["dly backbone"])
    checks += [
        Check("dly", "backbone delay up, mean", BACKBONE_DELAY_MS, _mean(up), 2.0, "ms"),
        Check("dly", "backbone delay down, mean", BACKBONE_DELAY_MS, _mean(down), 2.0, "ms"),
    ]
    snd, rec = results["jit"]
    jit = [(rx - s) * 1000.0 for s, rx in zip(rec["sent"], rec["rx"], strict=True)]
    checks += [
        Check("jit", "delay with jitter, mean", JITTER_DELAY_MS, _mean(jit), 2.0, "ms"),
        Check("jit", "jitter (standard deviation)", JITTER_MS, _stdev(jit), 0.5, "ms"),
    ]
    snd, rec = results["out"]
    checks.append(Check("out", "outage start vs asked", 0.0,
                        (_outage_start(snd["sent"], rec, asked_down - 0.2) - asked_down) * 1e3,
                        5.0, "ms"))
    snd, rec = results["tln"]
    due = info.started_at + TIMELINE_AT_S
    checks.append(Check("tln", "timeline outage start vs due", 0.0,
                        (_outage_start(snd["sent"], rec, due - 0.5) - due) * 1e3, 5.0, "ms"))
    snd, rec = results["tln backbone"]
    checks.append(Check("tln", "backbone timeline outage vs due", 0.0,
                        (_outage_start(snd["sent"], rec, due - 0.5) - due) * 1e3, 5.0, "ms"))

    # Phase 2, the volume checks: loss, bursts, rate, in parallel.
    rate_pps = int(RATE_MBIT * 1.25 * 1e6 / ((1200 + IP_UDP_OVERHEAD) * 8))
    runs = {
        "los": _Run(lab, info, "los", pps=4000, count=n_loss),
        "bst": _Run(lab, info, "bst", pps=4000, count=n_loss),
        "rat": _Run(lab, info, "rat", pps=rate_pps, count=int(rate_pps * rate_s), size=1200),
    }
    results = {name: run.result() for name, run in runs.items()}
    for name, what, configured in (
        ("los", "random loss", LOSS_PCT),
        ("bst", "burst loss (Gilbert-Elliott)", 100.0 * BURST[0] / (BURST[0] + BURST[1])),
    ):
        snd, rec = results[name]
        measured = 100.0 * (1 - len(set(rec["seq"])) / len(snd["sent"]))
        checks.append(Check(name, what, configured, measured, 1.0, "%"))
    snd, rec = results["bst"]
    checks.append(Check("bst", "mean burst length", 100.0 / BURST[1],
                        _mean(_bursts(len(snd["sent"]), rec["seq"])), 1.0, "pkts"))
    snd, rec = results["rat"]
    rx = sorted(rec["rx"])
    wire = sum(s + IP_UDP_OVERHEAD for s in rec["size"][1:])
    rate = wire * 8 / (rx[-1] - rx[0]) / 1e6 if len(rx) > 1 else float("nan")
    checks.append(Check("rat", "rate", RATE_MBIT, rate, RATE_MBIT * 0.05, "Mbit/s"))
    # Sent at 125 % of the rate, the queue is full after a fraction of a second: from then
    # on every packet waits the whole queue.
    delays = [(r - s) * 1000.0 for s, r in zip(rec["sent"], rec["rx"], strict=True)]
    queued = _median(delays[len(delays) // 2:]) - 5.0
    checks.append(Check("rat", "full queue adds (median)", QUEUE_MS, queued, 3.0, "ms"))
    return checks

"""Bulk spreading with the engine on a real lab (docs/multipath.md, "Bulk spreading"):
many flows of a bulk-class program, each one's path read from its conntrack mark in the
client namespace, against the slots the kernel holds in `inet braid`'s bulk chain."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from app.core.engine import EngineConfig
from app.core.model import EventKind
from app.lab import control
from app.lab.topology import LabInfo, netns
from app.wire.state import MARK_MASK, MARK_SHIFT
from tests.engine.conftest import TEST_DECIDE, Connected
from tests.faults import no_leak, ns_run, reset_leaks, restart_helper, uplink
from tests.util import wait_until

REPO = Path(__file__).resolve().parents[2]
FLOWS = 30
PORT = 9001  # the far side's UDP sink

# FLOWS UDP sockets (one flow each), every one sending a datagram every 50 ms until the
# test kills it: a flow whose entry a flush removed is re-classified by its next packet.
FLOWER = r"""
import socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]
for s in socks:
    s.connect((host, port))
    s.send(b"braid-spread-test")
    time.sleep(0.01)  # one after the other: the order new flows take the slots
print(" ".join(str(s.getsockname()[1]) for s in socks), flush=True)
while True:
    for s in socks:
        try:
            s.send(b"braid-spread-test")
        except OSError:
            pass
    time.sleep(0.05)
"""


def path_of(lab: LabInfo, mark: int) -> str:
    """The gateway a path mark belongs to (the profile's order: plan.path_mark)."""
    return lab.gateways[(mark >> MARK_SHIFT) - 1].name


def held_slots(lab: LabInfo) -> Counter[str]:
    """Slots per path in the bulk chain the kernel holds (empty: bulk is not spread)."""
    text = ns_run(netns(lab.name, "client"), "nft", "list", "chain", "inet", "braid",
                  "to_bulk", check=False)
    return Counter(path_of(lab, int(n) << MARK_SHIFT)
                   for n in re.findall(r"goto spread_(\d+)", text))


def flow_paths(lab: LabInfo, ports: list[int], *select: str) -> dict[int, str]:
    """Each of the program's flows (by source port) and the path its conntrack mark
    names; flows without an entry (or an unmarked one) are left out. ``select``:
    conntrack's filter (default: the UDP flows to the sink)."""
    out = ns_run(netns(lab.name, "client"), "conntrack", "-L",
                 *(select or ("-p", "udp", "--dport", str(PORT))), check=False)
    wanted, found = set(ports), {}
    for line in out.splitlines():
        sport, mark = re.search(r"sport=(\d+)", line), re.search(r"mark=(\d+)", line)
        if sport and mark and int(sport.group(1)) in wanted and int(mark.group(1)) & MARK_MASK:
            found[int(sport.group(1))] = path_of(lab, int(mark.group(1)) & MARK_MASK)
    return found


@contextmanager
def bulk_flows(lab: LabInfo) -> Iterator[list[int]]:
    """FLOWS running flows of a program started in the bulk class; their source ports."""
    child = subprocess.Popen(
        [sys.executable, "-m", "app.cli.main", "run", "--lab", lab.name, "--class", "bulk",
         "--", sys.executable, "-c", FLOWER, lab.server_address, str(PORT), str(FLOWS)],
        stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert child.stdout is not None
        ports = [int(p) for p in child.stdout.readline().split()]
        assert len(ports) == FLOWS, "the flows did not start"
        yield ports
    finally:
        child.kill()
        child.wait()


@contextmanager
def spread_over_three(make_lab: Callable[..., LabInfo], connect: Callable[..., Connected]
                      ) -> Iterator[tuple[LabInfo, Connected]]:
    """A shared-exit lab without realtime, bulk spread over its three paths, the leak
    counter at zero."""
    lab = make_lab("clean", exit="shared")
    with uplink(lab):
        c = connect(lab, EngineConfig(decide=TEST_DECIDE, classes=("bulk", "default")))
        wait_until(lambda: len(held_slots(lab)) == 3, timeout=20,
                   message=f"bulk never spread over three paths: {c.rec.last}")
        reset_leaks(lab)
        yield lab, c


def test_bulk_flows_spread_by_weight_and_a_dead_paths_flows_alone_move(
        make_lab: Callable[..., LabInfo], connect: Callable[..., Connected]) -> None:
    """No realtime class: bulk may use all three paths. 30 flows land in proportion to
    the slots the kernel holds; when one path dies only its flows get another mark, and
    nothing leaves unencrypted meanwhile."""
    with spread_over_three(make_lab, connect) as (lab, _):
        slots = held_slots(lab)
        with bulk_flows(lab) as ports:
            before = wait_until(lambda: (f := flow_paths(lab, ports)) and len(f) == FLOWS
                                and f, timeout=10, message="the flows have no marks")
            counts = Counter(before.values())
            total = sum(slots.values())
            for path, n in slots.items():
                # Dealt round-robin by slot: within a few of its share, whatever the
                # counter's phase when the flows started (flows, not timing).
                assert abs(counts[path] - FLOWS * n / total) <= 3, (counts, slots)
            assert set(counts) == set(slots), (counts, slots)
            dead = min(counts, key=lambda p: (counts[p], p))
            control.impair(lab.name, dead, {"down": True})
            after = wait_until(
                lambda: (f := flow_paths(lab, ports)) and len(f) == FLOWS
                and dead not in f.values() and f, timeout=20,
                message=f"{dead}'s flows never left it: {flow_paths(lab, ports)}")
            for port, path in before.items():
                if path == dead:
                    assert after[port] != dead
                else:
                    assert after[port] == path, (port, path, after[port])  # never moved
            assert dead not in held_slots(lab)
        no_leak(lab, "bulk spread over three paths, one killed")


def test_spreading_keeps_bulk_off_realtimes_path(
        make_lab: Callable[..., LabInfo], connect: Callable[..., Connected]) -> None:
    lab = make_lab("clean", exit="shared")
    c = connect(lab)
    wait_until(lambda: len(held_slots(lab)) == 2, timeout=20,
               message=f"bulk never spread: {c.rec.last}")
    realtime = c.rec.carrier("realtime")
    assert realtime is not None and realtime not in held_slots(lab)
    # The snapshot says so too: bulk is on each spread path.
    wait_until(lambda: (s := c.rec.last) is not None and set(s.classes["bulk"]) == set(
        held_slots(lab)), timeout=5, message=f"{c.rec.last}")
    with bulk_flows(lab) as ports:
        flows = wait_until(lambda: (f := flow_paths(lab, ports)) and len(f) == FLOWS and f,
                           timeout=10, message="the flows have no marks")
    assert realtime not in flows.values()
    assert len(set(flows.values())) == 2, flows  # both other paths carry some


# TCP flows to the far side's sink, each sending 1000 bytes every 20 ms; "end PORT" on
# stdin ends one (it half-closes, and the sink answers with what it received).
TCP_FLOWER = r"""
import selectors, socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
live, sent = {}, {}
for _ in range(n):
    s = socket.create_connection((host, port))
    s.sendall(b"x" * 1000)
    live[s.getsockname()[1]], sent[s.getsockname()[1]] = s, 1000
print(" ".join(str(p) for p in live), flush=True)
sel = selectors.DefaultSelector()
sel.register(sys.stdin, selectors.EVENT_READ)
while live:
    if sel.select(0.02):
        p = int(sys.stdin.readline().split()[1])
        s = live.pop(p)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(10)
        print(p, sent[p], s.recv(100).decode().strip(), flush=True)
        s.close()
    for p, s in live.items():
        s.sendall(b"x" * 1000)
        sent[p] += 1000
"""
TCP_SINK = 9003


def tcp_flow_paths(lab: LabInfo, ports: list[int]) -> dict[int, str]:
    """:func:`flow_paths` of the established TCP flows to the sink."""
    return flow_paths(lab, ports, "-p", "tcp", "--dport", str(TCP_SINK), "--state",
                      "ESTABLISHED")


def test_a_spread_path_left_idle_takes_a_running_flow_that_carries_on(
        make_lab: Callable[..., LabInfo], connect: Callable[..., Connected]) -> None:
    """Rebalancing (docs/multipath.md): four TCP flows over three paths; the flows of the
    path with the fewest end, and that idle path takes one running flow from a path with
    two. Every flow's far end then counts every byte it was sent (nothing reset), and
    nothing leaves unencrypted, through the move, a helper kill -9 and an nft flush."""
    with spread_over_three(make_lab, connect) as (lab, c):
        child = subprocess.Popen(
            [sys.executable, "-m", "app.cli.main", "run", "--lab", lab.name, "--class",
             "bulk", "--", sys.executable, "-c", TCP_FLOWER, lab.server_address,
             str(TCP_SINK), "4"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
        assert child.stdin is not None and child.stdout is not None
        try:
            ports = [int(p) for p in child.stdout.readline().split()]
            assert len(ports) == 4, "the flows did not start"
            before = wait_until(lambda: (f := tcp_flow_paths(lab, ports)) and len(f) == 4
                                and f, timeout=10, message="the flows have no marks")
            counts = Counter(before.values())
            received = []

            def end(port: int) -> None:
                assert child.stdin is not None and child.stdout is not None
                child.stdin.write(f"end {port}\n")
                child.stdin.flush()
                received.append(child.stdout.readline().split())

            # The path with the fewest flows (one, when 4 flows took all three) goes idle.
            idle = min(held_slots(lab), key=lambda p: (counts[p], p))
            for port in [p for p, path in before.items() if path == idle]:
                end(port)
            left = [p for p in ports if before[p] != idle]
            after = wait_until(lambda: (f := tcp_flow_paths(lab, left)) and len(f) == len(left)
                               and idle in f.values() and f, timeout=15,
                               message=f"idle {idle} took no flow: {tcp_flow_paths(lab, left)} "
                                       f"{[e.reason for e in c.rec.events()][-5:]}")
            moved = [p for p in left if after[p] != before[p]]
            # (a flow moved elsewhere too: its path left the spread; the events say why)
            assert len(moved) == 1 and after[moved[0]] == idle, \
                (before, after, [(e.kind.value, e.cls, e.from_path, e.to_path, e.reason)
                                 for e in c.rec.events()][-8:])
            src = before[moved[0]]
            assert counts[src] >= 2, (before, after)  # from a path that had two
            wait_until(lambda: any(e.from_path == src and e.to_path == idle
                                   for e in c.rec.events(EventKind.REBALANCED)), timeout=5,
                       message="no rebalanced event")
            no_leak(lab, "a spread flow moved onto an idle path")
            # The faults it can meet with moved flows running: the helper killed -9 (it
            # starts again and the engine applies again), then `nft flush ruleset`.
            restart_helper(lab)
            no_leak(lab, "the helper killed with a moved flow running")
            # Spread again (over the paths scoring above 0: the restart's lost probes can
            # put one at 0 for a while, and it leaves the spread as it should).
            wait_until(lambda: len(held_slots(lab)) >= 2, timeout=20,
                       message="bulk not spread again after the helper's restart")
            ns_run(netns(lab.name, "client"), "nft", "flush", "ruleset")
            no_leak(lab, "nft flush ruleset with a moved flow running")
            wait_until(lambda: len(held_slots(lab)) >= 2, timeout=20,
                       message="bulk not spread again after the flush")
            for port in left:
                end(port)
        finally:
            child.kill()
            child.wait()
        assert len(received) == 4 and all(received), (received, child.returncode)
        for port, sent, *answer in received:
            assert answer == ["received", sent], (port, sent, answer)  # not a byte lost
        no_leak(lab, "a spread flow moved onto an idle path")

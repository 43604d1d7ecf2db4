"""Faults the engine must live through without letting traffic out: a refused apply,
and (with the kill switch) the helper, wireguard-go and the nft table going away."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from app.core.helper_client import SyncHelperClient
from app.core.model import ConnState, EventKind
from app.lab import control, topology
from app.lab.topology import LabInfo
from tests.engine.conftest import Connected
from tests.engine.leaks import count_leaks, stream_gets_through
from tests.faults import (
    blaster,
    braid_cli,
    engine_state,
    helper_pid,
    no_leak,
    reset_leaks,
    restart_helper,
    uplink,
    wireguard_go_pid,
)
from tests.util import wait_until


def test_a_refused_apply_is_an_error_that_keeps_traffic_in_the_tunnels(
        make_lab: Callable[..., LabInfo], connect: Callable[..., Connected]) -> None:
    """Make the helper refuse for real: a link of someone else's (a veth pair) takes the name
    of a tunnel whose wireguard-go died, so every apply that needs that tunnel fails in
    the kernel. The engine says so (error, with what and fix), traffic keeps going
    through the tunnel it was on and nothing leaves through the main table; when the
    link goes, the engine recovers by itself; disconnect cleans up."""
    lab = make_lab("clean")
    c = connect(lab)
    wait_until(lambda: c.rec.carrier() == "hk", timeout=15)
    ns = topology.netns(lab.name, "client")
    tyo = lab.gateway("tyo").client_interface
    count_leaks(lab, reset=True)
    pid = wireguard_go_pid(lab, tyo)
    helper = helper_pid(lab)
    # The helper restarts a dead wireguard-go at once: hold it still meanwhile.
    subprocess.run(["kill", "-STOP", str(helper)], check=True)
    try:
        subprocess.run(["kill", "-9", str(pid)], check=True)
        # (This kernel has no dummy links: a veth pair is someone else's link just as well.)
        wait_until(lambda: subprocess.run(["ip", "-n", ns, "link", "add", tyo, "type", "veth",
                                           "peer", "name", "xfault0"],
                                          capture_output=True).returncode == 0,
                   timeout=5, message="the tunnel's name never came free")
    finally:
        subprocess.run(["kill", "-CONT", str(helper)], check=True)
    try:
        wait_until(lambda: c.rec.last is not None and c.rec.last.state is ConnState.ERROR,
                   timeout=20, message=f"no error state: {c.rec.events()}")
        snap = c.rec.last
        assert snap is not None and snap.error is not None
        assert "the helper did not take the plan" in snap.error.what and snap.error.fix
        assert snap.blocked
        assert c.rec.events(EventKind.ERROR)
        assert stream_gets_through(lab)  # on hk, through its tunnel
        assert count_leaks(lab) == 0
    finally:
        subprocess.run(["ip", "-n", ns, "link", "del", tyo], check=False)
    wait_until(lambda: c.rec.last is not None and c.rec.last.state in (
        ConnState.CONNECTED, ConnState.DEGRADED), timeout=20,
        message=f"never recovered: {c.rec.last}")
    assert c.rec.events(EventKind.RECOVERED)
    assert count_leaks(lab) == 0
    c.service.shutdown()
    with SyncHelperClient(lab.helper_socket) as client:
        held = client.status()
    assert held.tunnels == () and held.rules == 0


def test_a_helper_restart_is_noticed_and_the_state_is_sent_again(
        make_lab: Callable[..., LabInfo], connect: Callable[..., Connected]) -> None:
    lab = make_lab("clean")
    c = connect(lab)
    wait_until(lambda: c.rec.last is not None and c.rec.last.state is ConnState.CONNECTED,
               timeout=15)
    restart_helper(lab)
    wait_until(lambda: c.rec.events(EventKind.ERROR), timeout=5,
               message="the engine never noticed the helper going away")
    wait_until(lambda: c.rec.last is not None and c.rec.last.state in (
        ConnState.CONNECTED, ConnState.DEGRADED) and c.rec.events(EventKind.RECOVERED),
        timeout=15, message=f"never recovered: {c.rec.last}")
    assert c.rec.last is not None and c.rec.last.counters.helper_reconnects >= 1
    wait_until(lambda: stream_gets_through(lab), timeout=10)


def test_nothing_leaks_through_any_fault_and_traffic_resumes_by_itself(
        make_lab: Callable[..., LabInfo], tmp_path: Path) -> None:
    """The kill switch with a real engine: `braid up`, then every fault the fail-closed
    issue names, with an app sending UDP and TCP over IPv4 and IPv6 all along and the
    packets that leave the client's ISP link unencrypted counted through the
    transitions (tests/faults.py). Where a path is still there, traffic comes back by
    itself; after an engine kill -9 past the grace period, it stays blocked until the
    user disconnects."""
    lab = make_lab("clean", helper_grace_seconds=1)
    env = {**os.environ, "BRAID_RUNTIME_DIR": str(tmp_path / "run")}
    with uplink(lab), blaster(lab, tmp_path):
        up = braid_cli(env, "up", "--lab", lab.name)
        assert up.returncode == 0, up.stderr
        wait_until(lambda: engine_state(env) == "connected", timeout=20)
        reset_leaks(lab)
        assert stream_gets_through(lab)
        no_leak(lab, "connected")

        restart_helper(lab)  # 1. helper kill -9 and restart: the engine sends it all again
        wait_until(lambda: engine_state(env) == "connected" and stream_gets_through(lab),
                   timeout=20, message="traffic did not come back after a helper restart")
        no_leak(lab, "helper kill -9 and restart")

        default = json.loads(braid_cli(env, "status", "--json").stdout)["classes"]["default"][0]
        iface = lab.gateway(default).client_interface
        subprocess.run(["kill", "-9", str(wireguard_go_pid(lab, iface))], check=True)
        wait_until(lambda: stream_gets_through(lab), timeout=20,  # 2. wireguard-go dies
                   message="traffic did not come back after wireguard-go was killed")
        no_leak(lab, "wireguard-go kill -9")

        ns = topology.netns(lab.name, "client")  # 3. a firewall reload, say
        subprocess.run(["ip", "netns", "exec", ns, "nft", "flush", "ruleset"], check=True)
        wait_until(lambda: stream_gets_through(lab), timeout=20,
                   message="traffic did not come back after nft flush ruleset")
        no_leak(lab, "nft flush ruleset")

        for gw in lab.gateways:  # 4. paths die one by one, each a failover, then all
            control.impair(lab.name, gw.name, {"down": True})
            wait_until(lambda g=gw.name: g not in json.loads(braid_cli(
                env, "status", "--json").stdout)["classes"]["default"], timeout=15)
        assert not stream_gets_through(lab)
        control.impair(lab.name, lab.gateways[-1].name, {"down": False})
        wait_until(lambda: stream_gets_through(lab), timeout=20,
                   message="traffic did not come back when a path did")
        no_leak(lab, "paths dying one by one and one coming back")

        pid = json.loads(braid_cli(env, "status", "--json").stdout)["pid"]
        subprocess.run(["kill", "-9", str(pid)], check=True)  # 5. the engine dies
        with SyncHelperClient(lab.helper_socket) as helper:
            wait_until(lambda: (g := helper.status().guard) is not None
                       and g.held == "client_left", timeout=15,
                       message="the kill switch did not stay after the engine died")
        assert not stream_gets_through(lab)
        no_leak(lab, "engine kill -9 past the grace period")

        down = braid_cli(env, "down", "--lab", lab.name)  # the user disconnects
        assert down.returncode == 0 and "kill switch" in down.stdout, down.stdout
        with SyncHelperClient(lab.helper_socket) as helper:
            assert helper.status().guard is None

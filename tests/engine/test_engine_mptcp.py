"""One TCP flow over several paths: kernel MPTCP (docs/multipath.md, "MPTCP"), on a shared
exit, in the lab. The engine gives each healthy tunnel an MPTCP endpoint; a transfer to
the lab's far end (which speaks MPTCP) then has a subflow through every tunnel, and
carries on when one of them dies."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from app.lab import control, transfer
from app.lab.topology import LabInfo, netns
from tests.engine.conftest import Connected
from tests.faults import blaster, no_leak, ns_run, reset_leaks, uplink
from tests.helper.conftest import mptcp_endpoints
from tests.util import WaitTimeout, wait_until


def _tx(lab: LabInfo) -> dict[str, int]:
    ns = netns(lab.name, "client")
    return {g.name: int(ns_run(ns, "cat", f"/sys/class/net/{g.client_interface}/statistics/"
                                        "tx_bytes")) for g in lab.gateways}


def _endpoint_devs(lab: LabInfo) -> set[str]:
    shown = mptcp_endpoints(netns(lab.name, "client"))
    return {g.name for g in lab.gateways if any(f"dev {g.client_interface}" in e
                                                for e in shown)}


def _mptcp_mib(lab: LabInfo) -> dict[str, int]:
    """The client's and the far end's MPTCP counters (fallbacks, resets, removed
    subflows, ...): what a stuck transfer leaves behind after its socket is closed."""
    out: dict[str, int] = {}
    for side in ("client", "server"):
        for line in ns_run(netns(lab.name, side), "nstat", "-asz", check=False).splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[0].startswith("MPTcp") and fields[1].isdigit():
                out[f"{side}:{fields[0]}"] = int(fields[1])
    return out


def _stuck_state(lab: LabInfo, mib_before: dict[str, int]) -> str:
    """Why an MPTCP transfer made no progress, for the failure message: its subflows as
    the client's kernel sees them (while the connection is still open), the endpoints,
    and which MPTCP counters moved since the transfer began."""
    ns = netns(lab.name, "client")
    moved = {k: v - mib_before.get(k, 0) for k, v in _mptcp_mib(lab).items()
             if v != mib_before.get(k, 0)}
    return (f"subflows (ss -tniM):\n{ns_run(ns, 'ss', '-tniM', check=False)}\n"
            f"endpoints: {mptcp_endpoints(ns)}\nMPTCP counters moved: {moved}")


def test_one_mptcp_transfer_uses_every_tunnel_and_outlives_a_path(
        make_lab: Callable[..., LabInfo], connect: Callable[..., Connected],
        tmp_path: Path) -> None:
    lab = make_lab("clean", exit="shared")
    names = {g.name for g in lab.gateways}
    with uplink(lab), blaster(lab, tmp_path):
        c = connect(lab)
        wait_until(lambda: _endpoint_devs(lab) == names, timeout=15,
                   message=f"no endpoint per tunnel: {mptcp_endpoints(netns(lab.name, 'client'))}")
        reset_leaks(lab)
        before, mib_before = _tx(lab), _mptcp_mib(lab)
        carrier = c.rec.carrier()  # the connection's first subflow: the default class's
        assert carrier is not None
        with ThreadPoolExecutor(1) as pool:
            flow = pool.submit(transfer.one_mptcp_flow, lab.name, size_mb=40.0, timeout=90)
            wait_until(lambda: all(_tx(lab)[n] - before[n] > 1_000_000 for n in names),
                       timeout=30, message=f"not every tunnel carried the flow: {_tx(lab)}")
            # The path carrying the first subflow dies mid-transfer.
            control.impair(lab.name, carrier, {"down": True})
            wait_until(lambda: carrier not in _endpoint_devs(lab), timeout=15,
                       message="the dead path kept its MPTCP endpoint")
            stuck = ""
            try:  # a transfer that stalls is looked at while its socket is still open
                wait_until(flow.done, timeout=60)
            except WaitTimeout:
                stuck = _stuck_state(lab, mib_before)
            done = flow.result(timeout=120)
        assert done.completed and done.done_bytes == done.size_bytes, f"{done}\n{stuck}"
        # The far end saw one MPTCP connection, with a subflow per tunnel and the first.
        assert done.mptcp_subflows is not None and done.mptcp_subflows >= len(names), done
        no_leak(lab, "an MPTCP transfer through a path's death")
        # The path recovers: its endpoint is back.
        control.impair(lab.name, carrier, {"down": False})
        wait_until(lambda: _endpoint_devs(lab) == names, timeout=30,
                   message="the recovered path got no endpoint back")
        c.service.disconnect()
        wait_until(lambda: mptcp_endpoints(netns(lab.name, "client")) == [], timeout=20,
                   message="endpoints left after disconnect")


def test_braid_run_mptcp_makes_the_programs_connections_mptcp(
        make_lab: Callable[..., LabInfo], connect: Callable[..., Connected]) -> None:
    lab = make_lab("clean", exit="shared")
    connect(lab)
    wait_until(lambda: len(_endpoint_devs(lab)) == len(lab.gateways), timeout=15)
    # An unmodified program: a plain TCP socket to the far end's sink.
    program = (f"import socket; s = socket.create_connection(({lab.server_address!r}, 9003)); "
               "s.sendall(bytes(2_000_000)); s.shutdown(socket.SHUT_WR); "
               "print(s.recv(100).decode().strip())")
    run = [sys.executable, "-m", "app.cli.main", "run", "--lab", lab.name, "--class", "bulk"]
    mptcp = subprocess.run([*run, "--mptcp", "--", sys.executable, "-c", program],
                           capture_output=True, text=True, timeout=60, check=False)
    assert mptcp.returncode == 0, mptcp.stderr
    # The far end's own word: "received N mptcp K" (K subflows), not plain TCP.
    answer = mptcp.stdout.split()
    assert answer[:3] == ["received", "2000000", "mptcp"], mptcp.stdout
    assert int(answer[3]) >= 2, mptcp.stdout
    plain = subprocess.run([*run, "--", sys.executable, "-c", program],
                           capture_output=True, text=True, timeout=60, check=False)
    assert plain.returncode == 0 and plain.stdout.split() == ["received", "2000000"], plain

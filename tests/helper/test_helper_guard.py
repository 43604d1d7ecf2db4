"""The guard (kill switch) against the real thing: nothing leaves the client's ISP link
unencrypted through every fault the issue names, and only a disconnect removes it.

Leaks are counted in the lab's wan namespace (tests/faults.py).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.core.helper_client import HelperStatus, SyncHelperClient
from app.lab.topology import LabInfo
from tests.faults import blaster, leaked, no_leak, reset_leaks, uplink
from tests.helper.conftest import (
    Helper,
    all_handshaken,
    braid_leftovers,
    lab_state,
    ns_run,
)
from tests.util import wait_until

ALLOW = ["192.0.2.0/24", "2001:db8:aa::/48"]  # a "LAN" of each family


def guarded(lab: LabInfo, **kw: Any) -> dict[str, Any]:
    via = lab.gateways[0].client_interface
    return lab_state(lab, guard={"allow": ALLOW, "via": via}, **kw)


def tunnel_names(lab: LabInfo) -> list[str]:
    return [g.client_interface for g in lab.gateways]


@pytest.fixture
def ipv6_uplink(lab: LabInfo) -> Iterator[None]:
    with uplink(lab):
        yield


def guard_of(status: HelperStatus) -> Any:
    assert status.guard is not None, status
    return status.guard


def handshaken(client: SyncHelperClient, lab: LabInfo) -> None:
    wait_until(lambda: all_handshaken(client.status(), tunnel_names(lab)), 15,
               message="tunnels never handshook")


def tx_grows(client: SyncHelperClient, iface: str) -> None:
    """The blaster's traffic goes through ``iface`` (encrypted) while the tunnels are up."""
    first = client.status().tunnel(iface)
    assert first is not None
    wait_until(lambda: (t := client.status().tunnel(iface)) is not None
               and t.tx_bytes > first.tx_bytes + 10_000, 10,
               message=f"traffic did not go through {iface}")


def test_nothing_leaks_through_any_fault_until_the_user_disconnects(
    lab: LabInfo, tmp_path: Path, sock_dir: Path, ipv6_uplink: None,
) -> None:
    h = Helper(lab, sock_dir / "g.sock", tmp_path / "state", tmp_path / "g.log", grace=1.0)
    h.start()
    hk = lab.gateways[0].client_interface
    try:
        with blaster(lab, tmp_path):
            # The counters see a leak: before any state, everything leaves in plaintext.
            wait_until(lambda: all(leaked(lab).values()), 10,
                       message="the leak counters see nothing even without Braid")
            owner = h.client()
            owner.apply(guarded(lab))
            handshaken(owner, lab)
            reset_leaks(lab)
            status = owner.status()
            g = guard_of(status)
            assert g.active and g.nft and g.routing and g.held is None and g.via == hk
            assert list(g.allow) == ALLOW
            tx_grows(owner, hk)
            no_leak(lab, "tunnels up")

            # 1. The client goes away: after the grace period the tunnels go, the guard stays.
            owner.close()
            watcher = h.client()
            wait_until(lambda: guard_of(watcher.status()).held == "client_left", 15,
                       message="the guard was not kept after the client left")
            st = watcher.status()
            assert st.tunnels == () and guard_of(st).active and guard_of(st).via is None
            assert guard_of(st).dropped_packets > 0  # the blaster is being stopped
            no_leak(lab, "client gone past the grace period")

            # A new client takes over.
            owner = h.client()
            owner.apply(guarded(lab))
            handshaken(owner, lab)
            assert guard_of(owner.status()).held is None

            # 2. The helper is killed and restarted: it adopts the guard.
            h.kill9()
            h.start()
            watcher = h.client()
            st = watcher.status()
            assert guard_of(st).held == "adopted" and guard_of(st).active, st
            assert st.tunnels == ()
            assert "removed leftovers" in h.log.read_text()
            no_leak(lab, "helper killed and restarted")
            owner = h.client()
            owner.apply(guarded(lab))
            handshaken(owner, lab)
            tx_grows(owner, hk)

            # 3. The via tunnel's wireguard-go dies: restarted, nothing leaks meanwhile.
            pid = owner.status().tunnel(hk).pid  # type: ignore[union-attr]
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: (t := owner.status().tunnel(hk)) is not None and t.pid != pid
                       and t.handshake_age_s is not None, 15,
                       message="wireguard-go was not restarted")
            no_leak(lab, "wireguard-go killed")

            # 4. Someone flushes the ruleset: both nft tables come back by themselves.
            ns_run(h.ns, "nft", "flush", "ruleset")
            wait_until(lambda: (s := owner.status()).marking and guard_of(s).nft, 10,
                       message="nft tables not repaired after nft flush ruleset")
            no_leak(lab, "nft flush ruleset")

            # 5. Someone deletes the routing layer's rule: it comes back.
            ns_run(h.ns, "ip", "rule", "del", "priority", "5298")
            ns_run(h.ns, "ip", "-6", "rule", "del", "priority", "5298")
            wait_until(lambda: "5298:" in ns_run(h.ns, "ip", "rule")
                       and "5298:" in ns_run(h.ns, "ip", "-6", "rule"), 10,
                       message="rule 5298 not repaired")
            assert guard_of(owner.status()).routing
            tx_grows(owner, hk)
            no_leak(lab, "ip rule del 5298")

            # Disconnect: the guard goes with everything else, and traffic flows again.
            owner.down()
            assert braid_leftovers(h.ns) == []
            assert owner.status().guard is None
            wait_until(lambda: all(leaked(lab).values()), 10,
                       message="after down the traffic should leave as without Braid")
    finally:
        h.stop()
        h.cleanup()
    assert braid_leftovers(h.ns) == []


def test_guard_layers_as_rendered(helper: Helper) -> None:
    """What each layer holds: the allow list left unmarked and routed to main, the
    block rule and table 52099, exact tunnel names in nft."""
    lab = helper.lab
    owner = helper.client()
    owner.apply(guarded(lab))
    hk = lab.gateways[0].client_interface
    rules4, rules6 = ns_run(helper.ns, "ip", "rule"), ns_run(helper.ns, "ip", "-6", "rule")
    assert "5290:\tfrom all to 192.0.2.0/24 lookup main" in rules4
    assert "5290:\tfrom all to 2001:db8:aa::/48 lookup main" in rules6
    assert "5290:\tfrom all ipproto udp sport 68 dport 67 lookup main" in rules4
    assert "5298:\tnot from all fwmark 0xf000000/0xf000000 lookup 52099" in rules4
    assert "5298:\tnot from all fwmark 0xf000000/0xf000000 lookup 52099" in rules6
    table4 = ns_run(helper.ns, "ip", "route", "show", "table", "52099")
    assert f"default dev {hk}" in table4 and "unreachable default" in table4
    assert "unreachable default" in ns_run(helper.ns, "ip", "-6", "route", "show", "table",
                                           "52099")
    guard_nft = ns_run(helper.ns, "nft", "list", "table", "inet", "braid_guard")
    assert "policy drop" in guard_nft and "br-*" not in guard_nft
    for g in lab.gateways:
        assert f'"{g.client_interface}"' in guard_nft
    marking = ns_run(helper.ns, "nft", "list", "table", "inet", "braid")
    assert "ip daddr 192.0.2.0/24 return" in marking
    assert "ip6 daddr 2001:db8:aa::/48 return" in marking
    # A state without a guard removes both layers, and nothing else of it stays.
    owner.apply(lab_state(lab))
    assert "52099" not in ns_run(helper.ns, "ip", "rule")
    assert ns_run(helper.ns, "ip", "route", "show", "table", "52099") == ""
    assert "braid_guard" not in ns_run(helper.ns, "nft", "list", "tables")
    assert owner.status().guard is None


@pytest.mark.parametrize("how", ["cleanup", "sigterm"])
def test_cleanup_and_sigterm_remove_the_guard_even_of_a_persistent_state(
    helper: Helper, how: str,
) -> None:
    owner = helper.client()
    owner.apply(guarded(helper.lab, persistent=True))
    assert braid_leftovers(helper.ns)
    if how == "sigterm":
        # docs: SIGTERM removes everything the helper holds, persistent or not.
        assert helper.sigterm() == 0
    else:
        helper.kill9()
        done = helper.cleanup()
        assert done.returncode == 0 and "braid_guard" in done.stdout, done.stdout
    assert braid_leftovers(helper.ns) == []
    assert not (helper.state_dir / "journal.json").exists()
    helper.start()  # the fixture stops it
    assert helper.client().status().guard is None


def test_a_guard_journaled_but_gone_from_the_kernel_is_put_back(helper: Helper) -> None:
    """The journal is the user's intent: a restarted helper re-installs a guard that
    vanished while it was dead, rather than trusting the empty kernel."""
    owner = helper.client()
    owner.apply(guarded(helper.lab))
    helper.kill9()
    ns_run(helper.ns, "nft", "delete", "table", "inet", "braid_guard")
    for fam in ("-4", "-6"):
        while "5298:" in ns_run(helper.ns, "ip", fam, "rule"):
            ns_run(helper.ns, "ip", fam, "rule", "del", "priority", "5298")
    helper.start()
    g = guard_of(helper.client().status())
    assert g.held == "adopted" and g.active and list(g.allow) == ALLOW

"""Realtime copies with the engine on a real lab (docs/multipath.md): the kernel copies a
realtime stream onto a second tunnel of a shared exit, the exit keeps the first copy up
and copies the answers down, the client keeps the first answer. Counted in packets, at
both ends: the stream's far end says how many it got (and how many twice), the client
how many answers came back."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import replace

import pytest

from app.core.copies import CopyConfig
from app.core.decide import DecideConfig
from app.core.model import EngineSnapshot
from app.core.profiles.store import ProfileStore
from app.core.targets import lab_profile_name
from app.lab import control, stream, topology
from app.lab.scenario import PathSpec, Scenario, load_scenario
from app.lab.topology import LabInfo
from app.wire.state import NFT_COPY_FAMILY, NFT_COPY_FAMILY6, NFT_COPY_TABLE
from tests.engine.conftest import TEST_CONFIG, TEST_DECIDE, Connected
from tests.faults import no_leak, ns_run, restart_helper, uplink
from tests.util import WaitTimeout, wait_until

FLUSH_ALLOWANCE = 5  # answers (packets): see the death test's downstream assertion


def set_copies(lab: LabInfo, mode: str) -> None:
    """The lab profile's settings.copies, as the Settings dialog would save it."""
    store = ProfileStore()
    prof = store.load(lab_profile_name(lab.name))
    store.save(replace(prof, settings=replace(prof.settings, copies=mode)), {})


def nft(lab: LabInfo, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", topology.netns(lab.name, "client"), "nft",
                           *args], capture_output=True, text=True, check=False)


def copied(lab: LabInfo, ipv6: bool = False) -> int:
    """Packets the client's kernel has copied onto a second tunnel (the helper's counter)."""
    out = nft(lab, "list", "counter", NFT_COPY_FAMILY6 if ipv6 else NFT_COPY_FAMILY,
              NFT_COPY_TABLE, "copies")
    m = re.search(r"packets (\d+)", out.stdout)
    assert m, out.stderr
    return int(m.group(1))


def quiet_cn_us() -> Scenario:
    """cn-us's paths (their delays, jitter and rates) without their random loss and
    without the scenario's timed episodes. What these tests count is what a path's
    death or an impairment the test makes costs; the surviving path's own random loss in
    the second before the failover would make "no packet lost" a matter of luck (the
    doc's figures, docs/multipath.md, are measured on cn-us as it is)."""
    scen = load_scenario("cn-us")

    def clear(p: PathSpec) -> PathSpec:
        return replace(p, up=replace(p.up, loss_pct=0.0), down=replace(p.down, loss_pct=0.0),
                       backbone_up=replace(p.backbone_up, loss_pct=0.0),
                       backbone_down=replace(p.backbone_down, loss_pct=0.0))

    return replace(scen, paths=tuple(clear(p) for p in scen.paths), timeline=())


def realtime_with_copies(c: Connected) -> tuple[str, str]:
    def placed() -> EngineSnapshot | None:
        snap = c.rec.last
        ok = snap is not None and snap.classes.get("realtime") and snap.copies
        return snap if ok else None

    snap = wait_until(placed, timeout=30, message=f"no copies: {c.rec.last}")
    assert snap is not None
    return snap.classes["realtime"][0], snap.copies[0]


@pytest.mark.parametrize("ipv6", [False, True], ids=["ipv4", "ipv6"])
def test_a_realtime_call_loses_no_packet_when_its_path_dies_and_the_far_end_sees_each_once(
        make_lab: Callable[..., LabInfo], connect: Callable[..., Connected], ipv6: bool) -> None:
    """IPv4, and IPv6 in a dual-stack lab (its own table, and the clone's route through
    the copy tunnel that IPv6's ``dup`` needs: app/helper/copies.py)."""
    lab = make_lab(quiet_cn_us(), exit="shared", ipv6=ipv6)
    set_copies(lab, "always")
    c = connect(lab)
    primary, second = realtime_with_copies(c)
    assert primary != second
    call = stream.start(lab.name, pps=200, duration=10.0, size=200, cls="realtime",
                        sticky=True, wait=3.0, ipv6=ipv6)
    wait_until(lambda: copied(lab, ipv6) > 200, timeout=15,
               message="the kernel did not copy the call")
    control.impair(lab.name, primary, {"down": True})
    wait_until(lambda: c.rec.carrier("realtime") not in (None, primary), timeout=15,
               message=f"realtime never left {primary}: {c.rec.events()}")
    # The copies go on a third path: realtime is on what was the copy path now.
    wait_until(lambda: (s := c.rec.last) is not None and s.copies
               and primary not in s.copies
               and s.copies[0] != c.rec.carrier("realtime"), timeout=15,
               message=f"the copies were not placed again: {c.rec.last}")
    r = call.result()
    assert r.server_duplicates == 0, r  # every copy met its twin before the far end
    assert r.server_sources == 1 and r.ignored == 0, r  # one address the whole time
    assert r.up_loss_pct == 0.0, r  # upstream, counted at the far end: every packet
    # Downstream, at the client: every answer but those the failover's conntrack flush
    # most likely costs (not proven yet). The helper flushes the flows of the path
    # realtime left, so that they follow it (steering.py, "movers"), and an answer that
    # arrives before the call's next packet has made the flow's entry again is dropped
    # as new from a tunnel (nft.py: "ct state new drop"); copies cannot save those.
    # Seen: 0 or 2 of 2000. An open issue (docs/multipath.md, "Open"), bounded here so
    # that a real downstream hole still fails.
    assert r.sent - r.received <= FLUSH_ALLOWANCE, r
    assert r.down_duplicates == 0, r  # the client kept the first copy of each answer


def test_on_demand_copies_switch_on_when_realtimes_path_loses_and_off_after_the_hold_down(
        make_lab: Callable[..., LabInfo], connect: Callable[..., Connected]) -> None:
    """Auto (the profile default). The copies' hold-down is 3 s here, not the shipped
    10 s (CopyConfig's default, tested in tests/core/test_copies.py with times given),
    and realtime is kept on its path by a margin no score change passes, so that the
    copies follow this one path's loss alone."""
    lab = make_lab("clean", exit="shared")
    cfg = replace(TEST_CONFIG, decide=replace(TEST_DECIDE, margin=1.0),
                  copies=CopyConfig(hold_down_s=3.0, after_failure_s=3.0))
    assert isinstance(cfg.decide, DecideConfig)
    c = connect(lab, cfg)
    wait_until(lambda: (s := c.rec.last) is not None and s.copies_reason is not None
               and "clean" in s.copies_reason and not s.copies, timeout=20,
               message=f"copies were not off on a clean path: {c.rec.last}")
    primary = c.rec.carrier("realtime")
    assert primary is not None
    call = stream.start(lab.name, pps=100, duration=20.0, size=200, cls="realtime", wait=1.0)
    # 3 %: past the copies' 1 % (copies.py), short of the 5 % at which a path scores 0
    # and realtime would leave it whatever the margin (scoring.py's LOSS_LIMIT).
    # Only what came after the loss: an older snapshot can show copies the kernel still
    # held while the decision was already "off: clean" (the apply follows it).
    since = time.time()  # snapshots' own clock (the recorder keeps only the last 50)
    control.impair(lab.name, primary, {"loss_pct": 3.0})
    on = wait_until(lambda: next((s for s in reversed(c.rec.snaps) if s.t >= since and s.copies
                                  and not (s.copies_reason or "off").startswith("off")), None),
                    timeout=20, message=f"copies never came on: {c.rec.last}")
    assert on is not None
    assert primary not in on.copies and on.copies_reason and primary in on.copies_reason, on
    wait_until(lambda: copied(lab) > 50, timeout=15, message="the kernel copied nothing")
    since = time.time()
    control.impair(lab.name, primary, {"loss_pct": 0.0})
    # Clear, then held on for the hold-down, then off.
    holding = wait_until(lambda: next((s for s in reversed(c.rec.snaps) if s.t >= since
                                       and s.copies and
                                       (s.copies_reason or "").startswith("holding")), None),
                         timeout=40, message=f"no hold-down: {c.rec.last}")
    assert holding is not None
    assert "was:" in (holding.copies_reason or ""), holding
    # The loss window (pathstats.py, by probe count) must drain below 1 % first.
    wait_until(lambda: (s := c.rec.last) is not None and not s.copies, timeout=60,
               message=f"copies stayed on: {c.rec.last}")
    # Off in the kernel too: the copy chain copies nothing (one "return").
    chain = nft(lab, "list", "chain", NFT_COPY_FAMILY, NFT_COPY_TABLE, "to_copies").stdout
    assert "dup" not in chain and "return" in chain, chain
    r = call.result()
    assert r.server_duplicates == 0, r


def test_no_copies_on_separate_exits_and_the_snapshot_says_why(
        make_lab: Callable[..., LabInfo], connect: Callable[..., Connected]) -> None:
    lab = make_lab("clean")  # each gateway its own exit
    set_copies(lab, "always")  # even when the profile asks for them
    c = connect(lab)
    wait_until(lambda: c.rec.carrier("realtime") is not None, timeout=20)
    snap = c.rec.last
    assert snap is not None and snap.copies == (), snap
    assert snap.copies_reason is not None and "separate exits" in snap.copies_reason, snap
    assert nft(lab, "list", "table", NFT_COPY_FAMILY, NFT_COPY_TABLE).returncode != 0


@pytest.mark.parametrize("ipv6", [False, True], ids=["ipv4", "ipv6"])
def test_no_copy_leaves_outside_a_tunnel_when_the_copy_tunnel_goes(
        make_lab: Callable[..., LabInfo], connect: Callable[..., Connected], ipv6: bool) -> None:
    """A clone is untracked and skips NAT: it must still never leave unencrypted. The
    copies' tunnel is deleted under a copied call (the clone names it as its device, so
    the kernel finds no route for it), its wireguard-go killed, the copy table flushed:
    the ISP side counts every packet that is not WireGuard to a relay (tests/faults.py).
    IPv6's clone is routed by the helper's ``oif`` rule, which names the device: gone,
    it matches nothing, and the clone finds no route either."""
    lab = make_lab("clean", exit="shared", ipv6=ipv6)
    set_copies(lab, "always")
    c = connect(lab)
    with uplink(lab):
        primary, second = realtime_with_copies(c)
        iface = lab.gateway(second).client_interface
        call = stream.start(lab.name, pps=200, duration=8.0, size=200, cls="realtime",
                            wait=1.0, ipv6=ipv6)
        wait_until(lambda: copied(lab, ipv6) > 100, timeout=15,
                   message="the kernel did not copy the call")
        ns = topology.netns(lab.name, "client")
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "del", iface], check=True)
        start = copied(lab, ipv6)
        # Copies are still being made: into the gone device (the rule holds its index:
        # no route, dropped) until the helper has the tunnel and the table back.
        wait_until(lambda: copied(lab, ipv6) > start + 100, timeout=15,
                   message="the copy rule stopped copying")
        no_leak(lab, f"copies with their tunnel {iface} deleted")
        r = call.result()
        no_leak(lab, "after the call")
    assert r.server_duplicates == 0, r
    assert c.rec.carrier("realtime") == primary


def test_no_ipv6_copy_leaves_outside_a_tunnel_through_a_helper_kill_and_an_nft_flush(
        make_lab: Callable[..., LabInfo], connect: Callable[..., Connected]) -> None:
    """The copy tables and the helper's IPv6 copy-route rule in place under a copied
    IPv6 call: the helper killed -9 (the guard holds across its restart, the restarted
    helper removes what it finds and the engine applies again), then `nft flush
    ruleset` (the copy tables go with everything else; the guard's rules send what is
    unmarked into its table). The ISP side counts every packet that is not WireGuard."""
    lab = make_lab("clean", exit="shared", ipv6=True)
    set_copies(lab, "always")
    c = connect(lab)
    ns = topology.netns(lab.name, "client")
    with uplink(lab):
        realtime_with_copies(c)
        # The call outlasts every wait below (each of which may take its whole timeout
        # on a busy machine: a path back from down carries no copies for its hold-down),
        # and is stopped when they are done: copies are counted only while it sends.
        call = stream.start(lab.name, pps=200, duration=75.0, size=200, cls="realtime",
                            wait=1.0, ipv6=True)

        def copies_back() -> bool:
            return nft(lab, "list", "counter", "ip6", NFT_COPY_TABLE,
                       "copies").returncode == 0 and copied(lab, True) > 50

        def wait_copies_back(after: str) -> None:
            try:
                wait_until(copies_back, timeout=20)
            except WaitTimeout:
                snap = c.rec.last
                why = f"copies {snap.copies}: {snap.copies_reason}" if snap else "no snapshot"
                raise AssertionError(f"the copies never came back after {after} ({why})") \
                    from None

        try:
            wait_until(lambda: copied(lab, True) > 100, timeout=15,
                       message="the kernel did not copy the call")
            restart_helper(lab)
            no_leak(lab, "the helper killed with the copy tables in place")
            wait_copies_back("the restart")
            ns_run(ns, "nft", "flush", "ruleset")
            no_leak(lab, "nft flush ruleset with the copy tables in place")
            wait_copies_back("the flush")
        finally:
            call.stop()
        no_leak(lab, "after the call")

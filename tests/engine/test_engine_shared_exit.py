"""The engine on a shared exit (docs/gateways.md): one inner address on every tunnel, the
exit the only NAT, so a switch breaks nothing — what runs on a path carries on through
its death, and the far end sees one address the whole time."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from app.core.model import EventKind
from app.lab import control, stream, topology, transfer
from app.lab.topology import LabInfo
from tests.engine.conftest import Connected
from tests.engine.leaks import count_leaks
from tests.util import wait_until


def test_a_tcp_upload_and_a_sticky_call_survive_their_path_dying(
        make_lab: Callable[..., LabInfo], connect: Callable[..., Connected]) -> None:
    lab = make_lab("clean", exit="shared")
    c = connect(lab)
    wait_until(lambda: c.rec.carrier() == "hk", timeout=15)
    with ThreadPoolExecutor(2) as pool:
        call = stream.start(lab.name, pps=200, duration=8.0, size=200, sticky=True)
        upload = pool.submit(transfer.transfer, lab.name, size_mb=6.0, timeout=60)
        wait_until(lambda: c.rec.last is not None and c.rec.last.paths[0].tx_bps > 300_000,
                   timeout=10, message="nothing flowed on hk")
        control.impair(lab.name, "hk", {"down": True})
        wait_until(lambda: c.rec.carrier() not in (None, "hk"), timeout=10,
                   message=f"no failover: {c.rec.events()}")
        done = upload.result(timeout=90)
        result = call.result()
    assert c.rec.events(EventKind.FAILOVER)
    # The TCP upload moved with its class and completed (on separate exits it restarts).
    assert done.completed and done.done_bytes == done.size_bytes, done
    # The call's far end answers only its first address: it kept answering.
    assert result.server_sources == 1 and result.ignored == 0, result
    assert result.received >= 0.8 * result.sent, result


def test_a_tcp_download_lives_through_a_flush_of_its_flow(
        make_lab: Callable[..., LabInfo], connect: Callable[..., Connected]) -> None:
    """A download's client only answers: after a flush (a class moving its running flows,
    a failover's) the next segment in is one conntrack has no entry for. It is taken, and
    the client's answers classified as a flow of ours, not dropped: a dropped one is
    retransmitted and dropped again, for good (the download stalled here before)."""
    lab = make_lab("clean", exit="shared")
    c = connect(lab)
    wait_until(lambda: c.rec.carrier() == "hk", timeout=15)
    ns = topology.netns(lab.name, "client")
    count_leaks(lab, reset=True)  # the segment taken in must not let anything out
    with ThreadPoolExecutor(1) as pool:
        download = pool.submit(transfer.transfer, lab.name, size_mb=8.0, reverse=True,
                               timeout=60)
        wait_until(lambda: c.rec.last is not None and sum(
            p.rx_bps for p in c.rec.last.paths) > 300_000,
                   timeout=10, message="nothing came down")
        # What a flush by mark does to this flow (conntrack -D is the same netlink call).
        # Its entry is the client's connect's, or, if the engine already flushed it (an
        # evasion, a move), the next segment's from the server: delete whichever it is.
        gone = [subprocess.run(["ip", "netns", "exec", ns, "conntrack", "-D", "-p", "tcp",
                                side, str(transfer.BULK_PORT)], capture_output=True, text=True)
                for side in ("--orig-port-dst", "--orig-port-src")]
        assert any(g.returncode == 0 for g in gone), [g.stderr for g in gone]
        done = download.result(timeout=90)
    assert done.completed and done.done_bytes == done.size_bytes, done
    assert count_leaks(lab) == 0


def test_a_tcp_download_lives_through_its_path_dying(
        make_lab: Callable[..., LabInfo], connect: Callable[..., Connected]) -> None:
    """A downloading client sends only when it receives: after its path dies nothing of
    the flow reaches the exit through another gateway, so the exit must stop answering
    into the dead one by itself (it falls back to a gateway it heard the client through
    lately: app/node/plan.py). The download stalled for good here before."""
    lab = make_lab("clean", exit="shared")
    c = connect(lab)
    wait_until(lambda: c.rec.carrier() == "hk", timeout=15)
    count_leaks(lab, reset=True)
    with ThreadPoolExecutor(1) as pool:
        download = pool.submit(transfer.transfer, lab.name, size_mb=8.0, reverse=True,
                               timeout=40)
        wait_until(lambda: c.rec.last is not None and c.rec.last.paths[0].rx_bps > 300_000,
                   timeout=10, message="nothing came down on hk")
        control.impair(lab.name, "hk", {"down": True})
        wait_until(lambda: c.rec.carrier() not in (None, "hk"), timeout=10,
                   message=f"no failover: {c.rec.events()}")
        done = download.result(timeout=60)
    assert done.completed and done.done_bytes == done.size_bytes, done
    assert count_leaks(lab) == 0


def test_running_flows_follow_their_class_when_it_moves_to_a_better_path(
        make_lab: Callable[..., LabInfo], connect: Callable[..., Connected]) -> None:
    """On a shared exit stickiness buys nothing: a class's running flows go where the
    class goes, also on a voluntary move."""
    lab = make_lab("clean", exit="shared")
    control.impair(lab.name, "hk", {"delay_ms": 80.0})  # hk starts as the worst path
    c = connect(lab)
    wait_until(lambda: c.rec.carrier() == "tyo", timeout=15)
    running = stream.start(lab.name, pps=200, duration=12.0, size=200, sticky=True)
    wait_until(lambda: c.rec.last is not None and c.rec.last.paths[1].tx_bps > 200_000,
               timeout=10, message="the stream never showed on tyo")
    control.impair(lab.name, "hk", {"delay_ms": 15.0})  # hk is the best again
    wait_until(lambda: c.rec.carrier() == "hk", timeout=20,
               message=f"never moved back to hk: {c.rec.events()}")
    wait_until(lambda: c.rec.last is not None and c.rec.last.paths[0].tx_bps > 200_000,
               timeout=8, message="the running stream stayed on tyo")
    result = running.result()
    assert result.server_sources == 1 and result.ignored == 0, result

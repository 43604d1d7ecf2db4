"""Counting what leaves a lab's client unencrypted, for the helper's and the engine's
fault tests and benchmarks.

Leaks are counted where they would land: in the lab's wan namespace, on the client's
link (cl0), everything but the tunnels' own UDP to the relays and IPv6 neighbour
discovery. The client's ISP link gets an IPv6 address and default route (``uplink``),
so that an IPv6 leak can be seen at all. The counter lives outside the client
namespace, so `nft flush ruleset` there cannot reset it. ``blaster`` sends what apps
send — UDP and TCP, both families, unbound — until it is stopped.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from app.core.helper_client import SyncHelperClient
from app.lab import nodes, topology
from app.lab.topology import LabInfo
from tests.util import wait_until


def wireguard_go_pid(lab: LabInfo, iface: str) -> int:
    with SyncHelperClient(lab.helper_socket) as client:
        tunnel = client.status().tunnel(iface)
    assert tunnel is not None and tunnel.pid is not None
    return tunnel.pid


def helper_pid(lab: LabInfo) -> int:
    ns = topology.netns(lab.name, "client")
    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True,
                          check=True).stdout.split()
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"braid-helper") or a == b"app.helper.main" for a in argv):
            return int(pid)
    raise AssertionError(f"no braid-helper in {ns}")


def dead(pid: int) -> bool:
    """Gone, or a zombie waiting for the lab's builder (this process) to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def restart_helper(lab: LabInfo, grace_s: int = 10) -> None:
    """kill -9 the lab's helper and start it again, as systemd or the lab would (with a
    grace period of ``grace_s`` for a client that leaves)."""
    pid = helper_pid(lab)
    subprocess.run(["kill", "-9", str(pid)], check=True)
    wait_until(lambda: dead(pid), timeout=5, message=f"the helper (pid {pid}) did not die")
    nodes.start_helper(lab, grace_s)


def braid_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli.main", *args], text=True,
                          capture_output=True, timeout=60, env=env)


def engine_state(env: dict[str, str]) -> str:
    return str(json.loads(braid_cli(env, "status", "--json").stdout)["state"])


def ns_run(ns: str, *argv: str, check: bool = True) -> str:
    done = subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True,
                          check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{argv} failed in {ns}: {done.stderr.strip()}")
    return done.stdout


V6_FAR = "2001:db8:200::1"  # somewhere past the client's IPv6 default route
LEAK_TABLE = "braidtest_leak"


@contextlib.contextmanager
def uplink(lab: LabInfo) -> Iterator[None]:
    """The client's ISP link with IPv6 (address, default route; a lab built with IPv6
    has its own), and the leak counter."""
    client, wan = topology.netns(lab.name, "client"), topology.netns(lab.name, "wan")
    own = not lab.ipv6
    if own:
        ns_run(client, "ip", "-6", "addr", "add", "2001:db8:ff::2/64", "dev", "wan0", "nodad")
        ns_run(wan, "ip", "-6", "addr", "add", "2001:db8:ff::1/64", "dev", "cl0", "nodad")
        ns_run(client, "ip", "-6", "route", "add", "default", "via", "2001:db8:ff::1")
    nd = "nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert, mld2-listener-report"
    script = (
        f"table inet {LEAK_TABLE} {{\n"
        " counter leak4 {}\n counter leak6 {}\n counter underlay {}\n"
        " chain in { type filter hook prerouting priority -300;\n"
        '  iifname != "cl0" return\n'
        "  meta nfproto ipv4 udp dport 51000-51099 return\n"  # WireGuard to the relays
        # The underlay's own word that a WireGuard port closed (its wireguard-go was
        # stopped): an ICMP error back to the relay, about the relay's packets, carrying
        # no user traffic. It leaves where the LAN is allowed (the lab's "LAN" is the
        # ISP subnet); it is counted apart, not as a leak.
        "  meta nfproto ipv4 icmp type destination-unreachable ip daddr 198.18.0.1 "
        'counter name "underlay" return\n'
        f"  icmpv6 type {{ {nd} }} return\n"
        '  meta nfproto ipv4 counter name "leak4"\n'
        '  meta nfproto ipv6 counter name "leak6"\n'
        " }\n}\n"
    )
    subprocess.run(["ip", "netns", "exec", wan, "nft", "-f", "-"], input=script, text=True,
                   check=True)  # fmt: skip
    try:
        yield
    finally:
        ns_run(wan, "nft", "delete", "table", "inet", LEAK_TABLE, check=False)
        if own:
            ns_run(client, "ip", "-6", "route", "del", "default", check=False)
            ns_run(client, "ip", "-6", "addr", "del", "2001:db8:ff::2/64", "dev", "wan0",
                   check=False)
            ns_run(wan, "ip", "-6", "addr", "del", "2001:db8:ff::1/64", "dev", "cl0",
                   check=False)


def leaked(lab: LabInfo) -> dict[str, int]:
    wan = topology.netns(lab.name, "wan")
    out = {}
    for name in ("leak4", "leak6"):
        text = ns_run(wan, "nft", "list", "counter", "inet", LEAK_TABLE, name)
        m = re.search(r"packets (\d+)", text)
        assert m, text
        out[name] = int(m.group(1))
    return out


def reset_leaks(lab: LabInfo) -> None:
    ns_run(topology.netns(lab.name, "wan"), "nft", "reset", "counters", "table", "inet",
           LEAK_TABLE)


_BLAST = r"""
import os, socket, sys, time
server, far, stop = sys.argv[1], sys.argv[2], sys.argv[3]
u4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
for s in (u4, u6):
    s.setblocking(False)
tcp = []
n = 0
while not os.path.exists(stop):
    for s, dst in ((u4, (server, 9001)), (u6, (far, 9001))):
        try:
            s.sendto(b"braid-leak-test" * 4, dst)
        except OSError:
            pass
    if n % 25 == 0:  # a TCP connect every ~50 ms per family: SYNs, retransmits
        for old in tcp:
            old.close()
        tcp = []
        for fam, dst in ((socket.AF_INET, (server, 9003)), (socket.AF_INET6, (far, 9003))):
            c = socket.socket(fam, socket.SOCK_STREAM)
            c.setblocking(False)
            try:
                c.connect(dst)
            except OSError:
                pass
            tcp.append(c)
    n += 1
    time.sleep(0.002)
"""


@contextlib.contextmanager
def blaster(lab: LabInfo, tmp: Path) -> Iterator[None]:
    """UDP and TCP at the far-side server (and an IPv6 address past the default route),
    from the client namespace, unbound: what an app does."""
    stop = tmp / "blast.stop"
    child = subprocess.Popen(
        ["ip", "netns", "exec", topology.netns(lab.name, "client"), sys.executable, "-c",
         _BLAST, lab.server_address, V6_FAR, str(stop)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield
    finally:
        stop.touch()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()




def no_leak(lab: LabInfo, step: str) -> None:
    counts = leaked(lab)
    assert counts == {"leak4": 0, "leak6": 0}, f"{step}: packets left unencrypted: {counts}"

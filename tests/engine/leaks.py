"""Counting what leaves a lab's client outside the tunnels, and whether traffic gets
through: shared by the engine's fault tests and benchmarks."""

from __future__ import annotations

import subprocess
import sys

from app.core.errors import BraidError
from app.lab import stream, topology
from app.lab.topology import LabInfo

LEAKS = "braidtest"


def count_leaks(lab: LabInfo, reset: bool = False) -> int:
    """Packets leaving the client namespace towards its ISP that are not WireGuard to
    the relay: what would leak outside the tunnels. Counted by kind in a table of the
    test's own in the lab's client namespace (the failure message lists them)."""
    ns = topology.netns(lab.name, "client")
    if reset:
        subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], check=True, input=(
            f"table inet {LEAKS} {{}}\ndelete table inet {LEAKS}\n"
            f"table inet {LEAKS} {{ counter leaks {{}}\n"
            " chain out { type filter hook postrouting priority 100;\n"
            '  oifname "wan0" ip daddr 198.18.0.1 udp dport 51000-51099 accept\n'
            # The underlay's own word about a WireGuard port that closed (a killed
            # wireguard-go): an ICMP error to the relay, carrying no user traffic.
            '  oifname "wan0" ip daddr 198.18.0.1 icmp type destination-unreachable accept\n'
            # IPv6 link housekeeping (router solicitations...) is link-local, not routed.
            '  oifname "wan0" ip6 saddr fe80::/10 accept\n'
            '  oifname "wan0" ip6 daddr ff02::/16 accept\n'
            '  oifname "wan0" meta l4proto udp counter\n'
            '  oifname "wan0" meta l4proto tcp counter\n'
            '  oifname "wan0" meta l4proto icmp counter\n'
            '  oifname "wan0" ct state untracked counter\n'
            '  oifname "wan0" ct state invalid counter\n'
            '  oifname "wan0" counter name leaks\n }\n}\n').encode())
        return 0
    out = subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "counter", "inet", LEAKS,
                          "leaks"], check=True, capture_output=True, text=True).stdout
    leaks = int(out.split("packets")[1].split()[0])
    if leaks:
        listing = subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "table", "inet",
                                  LEAKS], capture_output=True, text=True).stdout
        print(listing)
    return leaks


def reach_server(lab: LabInfo) -> subprocess.CompletedProcess[bytes]:
    """A TCP connection from the client to the far side's HTTP server (a new flow)."""
    code = (f"import socket; socket.create_connection(('{lab.server_address}', 8080), "
            "timeout=2).close()")
    proc = topology.run_in(lab.name, "client", [sys.executable, "-c", code],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = proc.communicate(timeout=10)
    return subprocess.CompletedProcess(proc.args, proc.returncode or 0, out)


def stream_gets_through(lab: LabInfo) -> bool:
    try:
        return stream.stream(lab.name, pps=100, duration=0.5, size=200, wait=1.0).received > 0
    except BraidError:  # the sender's socket errors out when every route is unreachable
        return False


